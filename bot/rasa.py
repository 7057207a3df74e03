"""Client for the Rasa server (its own process): REST channel, tracker and status.

One shared aiohttp ClientSession for the app's lifetime; every call has a timeout that
fits inside the WeChat time budget.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp


class RasaUnavailable(Exception):
    """Rasa did not answer in time or answered with an error."""


class RasaClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        self._s = session
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """One user turn through the REST channel; Rasa's bot messages in order."""
        body = {"sender": sender, "message": text, "metadata": metadata}
        try:
            async with self._s.post(
                f"{self._url}/webhooks/rest/webhook", json=body, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    raise RasaUnavailable(f"Rasa answered HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise RasaUnavailable(f"{type(e).__name__}: {e}") from e
        if not isinstance(data, list):
            raise RasaUnavailable("Rasa answered something other than a list of messages")
        return [m for m in data if isinstance(m, dict)]

    async def latest_intent(self, sender: str) -> tuple[str | None, float | None]:
        """The intent Rasa recognised for the sender's last message (no events loaded)."""
        url = f"{self._url}/conversations/{quote(sender, safe='')}/tracker"
        try:
            async with self._s.get(
                url, params={"include_events": "NONE"}, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    return None, None
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None, None
        intent = (data.get("latest_message") or {}).get("intent") or {}
        name = intent.get("name")
        conf = intent.get("confidence")
        return (str(name) if name else None, float(conf) if conf is not None else None)

    async def healthy(self) -> bool:
        try:
            async with self._s.get(f"{self._url}/status", timeout=self._timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
