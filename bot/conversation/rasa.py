"""Client for the Rasa server (its own process): NLU parsing and health.

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
class Parsed:
    """What Rasa's NLU understood: the intent, its confidence, and entities."""

    intent: str | None
    confidence: float | None
    entities: list[dict[str, Any]]


class RasaClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        self._s = session
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def parse(self, text: str, follower: str = "") -> Parsed:
        """Rasa's NLU on one message (POST /model/parse): no tracker, no dialogue policy.

        The dialogue itself is the flow engine's, in the app; asking Rasa only for NLU
        keeps each turn's cost flat however long the conversation grows.
        """
        headers = {"X-SCRM-Follower": follower} if follower else None  # for Rasa's logs
        try:
            async with self._s.post(f"{self._url}/model/parse", json={"text": text},
                                    headers=headers, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise RasaUnavailable(f"Rasa answered HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise RasaUnavailable(f"{type(e).__name__}: {e}") from e
        if not isinstance(data, dict):
            raise RasaUnavailable("Rasa's answer is not a JSON object")
        raw = data.get("intent")
        intent: dict[str, Any] = raw if isinstance(raw, dict) else {}
        name, conf = intent.get("name"), intent.get("confidence")
        entities = data.get("entities")
        return Parsed(
            intent=str(name) if name else None,
            confidence=float(conf) if isinstance(conf, int | float) else None,
            entities=[e for e in entities if isinstance(e, dict)] if isinstance(entities, list)
            else [],
        )

    async def healthy(self) -> bool:
        try:
            async with self._s.get(f"{self._url}/status", timeout=self._timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
