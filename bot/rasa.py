"""Client for the Rasa server (its own process): REST channel, tracker and status.

One shared aiohttp ClientSession for the app's lifetime; every call has a timeout that
fits inside the WeChat time budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


class RasaUnavailable(Exception):
    """Rasa did not answer in time or answered with an error."""


@dataclass(frozen=True)
class RasaTurn:
    """Rasa's answer to one user turn: its bot messages and the intent it acted on."""

    messages: list[dict[str, Any]]
    intent: str | None
    confidence: float | None


class RasaClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        self._s = session
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> RasaTurn:
        """One user turn through our input channel (rasa_ext/scrm_channel.py)."""
        body = {"sender": sender, "message": text, "metadata": metadata}
        try:
            async with self._s.post(
                f"{self._url}/webhooks/scrm/webhook", json=body, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    raise RasaUnavailable(f"Rasa answered HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise RasaUnavailable(f"{type(e).__name__}: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise RasaUnavailable("Rasa's answer has no list of messages")
        raw = data.get("intent")
        intent: dict[str, Any] = raw if isinstance(raw, dict) else {}
        name, conf = intent.get("name"), intent.get("confidence")
        return RasaTurn(
            messages=[m for m in data["messages"] if isinstance(m, dict)],
            intent=str(name) if name else None,
            confidence=float(conf) if isinstance(conf, int | float) else None,
        )

    async def healthy(self) -> bool:
        try:
            async with self._s.get(f"{self._url}/status", timeout=self._timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
