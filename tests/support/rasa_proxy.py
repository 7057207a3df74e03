"""A proxy in front of the real Rasa server that counts NLU calls and can slow them down.

Tests read `turns` to assert "one Rasa call", and set `delay` (or `delay_for`) to make Rasa
slow without touching it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class RasaProxy:
    target: str
    delay: float = 0.0
    delay_for: dict[str, float] = field(default_factory=dict)  # message text -> delay
    turns: list[dict[str, object]] = field(default_factory=list)
    server: TestServer | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def turns_of(self, sender_suffix: str) -> list[str]:
        return [str(t["message"]) for t in self.turns if str(t["sender"]).endswith(sender_suffix)]

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/model/parse":
            data = json.loads(body)
            self.turns.append({"sender": request.headers.get("X-SCRM-Follower", ""),
                               "message": data.get("text")})
            await asyncio.sleep(self.delay_for.get(str(data.get("text")), self.delay))
        assert self._session is not None
        async with self._session.request(
            request.method, self.target + request.path_qs, data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as resp:
            payload = await resp.read()
            return web.Response(body=payload, status=resp.status,
                                content_type=resp.content_type)

    async def start(self) -> RasaProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self._session is not None:
            await self._session.close()
