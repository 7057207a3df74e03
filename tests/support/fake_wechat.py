"""The fake WeChat API of the tests: the development sandbox (scrm/sandbox.py), a real
aiohttp server on loopback that records every call, plus errcodes and delays to inject
(40001 for an invalid token, 45015, 45009 after a quota, slow sends and token calls).
It holds the app to WeChat's per-follower budget as the sandbox does: the tests' followers
(tests/support/chat.py, core.py, marketing.py `seed`) tell it what they did.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

import defusedxml.ElementTree as SafeET

from scrm.sandbox import Call, WeChatSandbox

__all__ = ["Call", "FakeWeChatAPI"]


@dataclass
class FakeWeChatAPI(WeChatSandbox):
    send_errcodes: list[int] = field(default_factory=list)  # consumed one per send
    token_delay: float = 0.0
    errcode_for: dict[str, int] = field(default_factory=dict)  # openid -> errcode, every send
    quota_after: int | None = None  # successful sends (custom + template) before 45009
    send_delay: float = 0.0
    expected_refusals: list[int] = field(default_factory=list)  # a test that provokes them
    running: ClassVar[dict[str, FakeWeChatAPI]] = {}  # url -> fake, for the app harness

    @classmethod
    def serving(cls, api_base: str) -> FakeWeChatAPI | None:
        """The fake an app's `wechat.api_base` points at (with or without a route prefix)."""
        for url, fake in cls.running.items():
            if api_base.startswith(url):
                return fake
        return None

    async def start(self, port: int = 0) -> FakeWeChatAPI:
        await super().start(port)
        FakeWeChatAPI.running[self.url] = self
        return self

    async def close(self) -> None:
        FakeWeChatAPI.running.pop(self.url, None)
        await super().close()

    def heard_xml(self, xml: str) -> None:
        """What WeChat sees in a follower's plain-XML message: her budget opens."""
        try:
            root = SafeET.fromstring(xml)
        except Exception:  # not a message a follower could have sent
            return
        openid, kind = root.findtext("FromUserName"), root.findtext("MsgType")
        if not openid or not kind:
            return
        if kind != "event":
            self.heard(openid)
            return
        event = (root.findtext("Event") or "").lower()
        if event == "unsubscribe":
            self.unfollowed(openid)
        elif event in ("subscribe", "scan", "click", "view"):
            self.heard(openid, "event")

    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/message/custom/send"]

    def template_sends(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/message/template/send"]

    def token_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/stable_token"]

    def qr_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path == "/cgi-bin/qrcode/create"]

    async def before_token(self) -> None:
        await asyncio.sleep(self.token_delay)

    async def answer_send(self, body: dict[str, Any], token: str) -> int:
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if token not in self.valid_tokens:
            return 40001
        code = self.send_errcodes.pop(0) if self.send_errcodes else 0
        if code == 0:
            code = self.errcode_for.get(str(body.get("touser")), 0)
        if code == 0 and self.quota_after is not None and \
                len(self.delivered()) >= self.quota_after:
            code = 45009
        if code == 0:
            code = self.spend(body)
        if code in (40001, 42001):
            self.valid_tokens.discard(token)
        return code

    async def wait_sends(self, n: int, timeout: float = 10.0) -> list[Call]:
        """Wait until at least n sends arrived (or timeout); return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.sends()) < n and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.sends()
