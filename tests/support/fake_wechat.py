"""A fake WeChat API: a real aiohttp server on loopback that records every call.

It hands out tokens from stable_token, accepts customer-service sends, and can be told to
answer the next calls with given errcodes (40001 for an invalid token, 45015, ...).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeWeChatAPI:
    calls: list[Call] = field(default_factory=list)
    send_errcodes: list[int] = field(default_factory=list)  # consumed one per send
    token_delay: float = 0.0
    issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    server: TestServer | None = None
    errcode_for: dict[str, int] = field(default_factory=dict)  # openid -> errcode, every send
    quota_after: int | None = None  # successful sends (custom + template) before 45009
    send_delay: float = 0.0

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/message/custom/send"]

    def template_sends(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/message/template/send"]

    def delivered(self) -> list[Call]:
        """Sends WeChat accepted (errcode 0), customer-service and template."""
        return [c for c in self.calls if c.body.get("_errcode") == 0]

    def token_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/stable_token"]

    async def stable_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(Call(request.path, dict(request.query), body))
        await asyncio.sleep(self.token_delay)
        self.issued += 1
        token = f"TOKEN-{self.issued}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def custom_send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(Call(request.path, dict(request.query), body))
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if request.query.get("access_token") not in self.valid_tokens:
            body["_errcode"] = 40001
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        code = self.send_errcodes.pop(0) if self.send_errcodes else 0
        if code == 0:
            code = self.errcode_for.get(str(body.get("touser")), 0)
        if code == 0 and self.quota_after is not None and \
                len(self.delivered()) >= self.quota_after:
            code = 45009
        if code in (40001, 42001):
            self.valid_tokens.discard(request.query["access_token"])
        body["_errcode"] = code  # recorded with the call, so tests can count what arrived
        return web.json_response({"errcode": code, "errmsg": "ok" if code == 0 else "error"})

    async def qrcode_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(Call(request.path, dict(request.query), body))
        scene = body["action_info"]["scene"]["scene_str"]
        return web.json_response({"ticket": f"TICKET-{scene}",
                                  "url": f"http://weixin.qq.com/q/{scene}"})

    def qr_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/qrcode/create"]

    async def start(self) -> FakeWeChatAPI:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_post("/cgi-bin/qrcode/create", self.qrcode_create)
        app.router.add_post("/cgi-bin/message/template/send", self.custom_send)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def wait_sends(self, n: int, timeout: float = 10.0) -> list[Call]:
        """Wait until at least n sends arrived (or timeout); return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.sends()) < n and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.sends()
