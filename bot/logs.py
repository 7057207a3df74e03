"""Structured JSON logs carrying a request id; message texts, phone numbers and secrets
stay out.

The formatter is the last line of defence: whatever a caller (or a library's traceback)
passes, phone numbers are masked, the configured secrets and credential-looking values
(`Authorization: ...`, `access_token=...`) are replaced, and arq's job lines carry the job
and its function, never its arguments.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.privacy import mask_phones

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
HIDDEN = "***"
# A credential written as header, query parameter or JSON field: the value goes.
_CREDENTIAL = re.compile(
    r"(?i)((?:authorization|x-scrm-signature|cookie|access_token|secret|token|signature|"
    r"msg_signature|password)[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s\"'&,;}]+")
_secrets: set[str] = set()


def hide_secrets(values: Iterable[str | None]) -> None:
    """Values no log line may show (tokens, keys), registered once at start-up."""
    _secrets.update(v for v in values if v and len(v) >= 6)


def redact(text: str) -> str:
    text = _CREDENTIAL.sub(rf"\g<1>{HIDDEN}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return mask_phones(text)


class JobLines(logging.Filter):
    """arq logs each job's arguments (`→ job_id:function(args)`): they are messages,
    openids and names; the line keeps the job and drops them. (A handler filter: it sees
    every record the handler writes, whichever logger made it.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "arq.worker" and record.msg == "%6.2fs → %s(%s)%s" and \
                isinstance(record.args, tuple) and len(record.args) == 4:
            t, ref, _, extra = record.args
            record.args = (t, ref, "…", extra)
        return True


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
        return redact(json.dumps(out, ensure_ascii=False, default=str))


def json_handler(handler: logging.Handler) -> logging.Handler:
    """`handler` writing the app's JSON lines, with arq's job arguments dropped."""
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobLines())
    return handler


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.handlers[:] = [json_handler(logging.StreamHandler(sys.stderr))]
    root.setLevel(level.upper())
    # aiohttp's access log repeats query strings (signatures); our middleware logs instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
