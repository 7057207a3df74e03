"""Structured JSON logs carrying a request id; message texts and phone numbers stay out."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from bot.privacy import mask_phones

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # Last line of defence: whatever a caller passed, no phone number leaves unmasked.
        return mask_phones(json.dumps(out, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats query strings (signatures); our middleware logs instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
