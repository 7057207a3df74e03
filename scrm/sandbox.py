"""A WeChat API sandbox on loopback, for development and tests.

`scrm up` runs it when no AppSecret is configured (nothing could reach WeChat anyway): it
answers the calls the app makes (stable_token, customer-service and template messages,
qrcode/create) as WeChat does, keeps every call, and lists what each follower was sent at
`GET /sandbox/messages`, which `scrm chat` polls. It holds the app to WeChat's
customer-service budget: `scrm chat` tells it of each message or event (`POST
/sandbox/inbound`, as WeChat itself sees them pass), and a send to a follower is refused
with 45015 outside 48 h of her last message (and a minute of her last follow, menu tap or
scan) and with 45047 past 5 sends after a message or 3 after such an event. So
broadcasts, late replies, sister invitations and referral QR codes can be tried in the
chat as WeChat would let them through. The tests' fake WeChat API is
this class with errcodes and delays to inject.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEEP_CALLS = 10_000  # a long dev session must not grow without bound
DATA_FORMAT_ERROR = 47001  # WeChat: the body is not JSON it can read
ACCESS_TOKEN_MISSING = 41001
OUTSIDE_WINDOW, OVER_BUDGET = 45015, 45047
NOT_FOLLOWING = 43004  # "require subscribe": a template message to someone who unfollowed
# WeChat's numbers, written here on their own: the sandbox stands in for WeChat and must
# not share the app's own count (bot/allowance.py), or it could not catch the app's errors.
AFTER_MESSAGE = (5, 48 * 3600.0)
AFTER_EVENT = (3, 60.0)
# A \uXXXX escape of a non-ASCII character (not an escaped backslash before it): what
# json.dumps writes for Chinese by default, and WeChat shows as it is.
_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?:00[89a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]|"
                     r"[1-9a-fA-F][0-9a-fA-F]{2})[0-9a-fA-F]")


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    seq: int = 0  # numbers every call, so a trimmed list still pages right


def shown_text(body: dict[str, Any]) -> str:
    """What the follower would see for a customer-service or template message."""
    kind = body.get("msgtype")
    if kind == "text":
        return str(body.get("text", {}).get("content", ""))
    if kind == "news":
        return "\n".join(f"[{a.get('title', '')}] {a.get('url', '')}"
                         for a in body.get("news", {}).get("articles", []))
    if "template_id" in body:
        values = [str(v.get("value", "")) for v in body.get("data", {}).values()
                  if isinstance(v, dict)]
        return f"[模板消息 {body['template_id']}] " + " / ".join(values)
    return f"[{kind}]"


@dataclass
class _Budget:
    """One follower's customer-service budget as WeChat keeps it: [until, left] each."""

    message: list[float] = field(default_factory=lambda: [0.0, 0])
    event: list[float] = field(default_factory=lambda: [0.0, 0])


@dataclass
class WeChatSandbox:
    calls: list[Call] = field(default_factory=list)
    issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    keep_calls: int | None = None  # None: keep all (tests count them)
    route_prefix: str = ""  # e.g. "/{door}": one URL prefix per caller, in tests
    clock: Callable[[], float] = time.time
    budgets: dict[str, _Budget] = field(default_factory=dict)
    refusals: list[int] = field(default_factory=list)  # sends the budget refused, in order
    gone: set[str] = field(default_factory=set)  # followers who unfollowed (until they return)
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _url: str = ""
    _seq: int = 0

    @property
    def url(self) -> str:
        return self._url

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        self.record(request.path, dict(request.query), body)

    def record(self, path: str, query: dict[str, str], body: dict[str, Any]) -> None:
        """Keep one call (the HTTP handlers, and in-process callers in tests, use it)."""
        self.calls.append(Call(path, query, body, self._seq))
        self._seq += 1
        if self.keep_calls is not None and len(self.calls) > self.keep_calls:
            del self.calls[: len(self.calls) - self.keep_calls]

    def heard(self, openid: str, kind: str = "message", at: float | None = None) -> None:
        """A follower wrote ("message") or followed, tapped a menu or scanned ("event"):
        WeChat opens her budget afresh."""
        size, seconds = AFTER_EVENT if kind == "event" else AFTER_MESSAGE
        when = self.clock() if at is None else at
        self.gone.discard(openid)
        budget = self.budgets.setdefault(openid, _Budget())
        setattr(budget, "event" if kind == "event" else "message", [when + seconds, size])

    def unfollowed(self, openid: str) -> None:
        self.budgets.pop(openid, None)
        self.gone.add(openid)

    def spend(self, body: dict[str, Any]) -> int:
        """Count one customer-service send against the follower's budget: 0, 45015 when
        no window is open, 45047 when the open ones are spent. Template messages do not
        count, but go only to followers: 43004 to one who unfollowed."""
        if "template_id" in body:
            if str(body.get("touser")) in self.gone:
                self.refusals.append(NOT_FOLLOWING)
                return NOT_FOLLOWING
            return 0
        budget = self.budgets.get(str(body.get("touser")))
        now = self.clock()
        windows = [w for w in (budget.event, budget.message) if w[0] > now] if budget else []
        if not windows:
            self.refusals.append(OUTSIDE_WINDOW)
            return OUTSIDE_WINDOW
        for window in windows:  # the event's minute first: it ends first
            if window[1] > 0:
                window[1] -= 1
                return 0
        self.refusals.append(OVER_BUDGET)
        return OVER_BUDGET

    async def answer_send(self, body: dict[str, Any], token: str) -> int:
        """The errcode for a send: WeChat refuses an unknown access_token with 40001, then
        a send beyond the follower's budget."""
        return self.spend(body) if token in self.valid_tokens else 40001

    async def inbound(self, request: web.Request) -> web.Response:
        """`scrm chat` says what the follower just did, as WeChat would see it."""
        try:
            body = await request.json()
            openid, kind = str(body["openid"]), str(body.get("kind", "message"))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='{"openid": ..., "kind": "message"|"event"|'
                                          '"unfollow"}') from None
        if kind == "unfollow":
            self.unfollowed(openid)
        else:
            self.heard(openid, kind)
        return web.json_response({"ok": True})

    async def before_token(self) -> None:
        """Called between recording a token request and answering it (tests delay here)."""

    async def read(self, request: web.Request) -> tuple[dict[str, Any], int]:
        """The body as WeChat reads it, and the errcode WeChat would answer for its form:
        47001 for JSON that is not an object or not UTF-8, and for `\\uXXXX` escapes
        (WeChat shows those to the follower literally, so the sandbox refuses them)."""
        raw = await request.read()
        try:
            text = raw.decode("utf-8")
            body = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            return {"_raw": raw[:200].decode("utf-8", "replace")}, DATA_FORMAT_ERROR
        if not isinstance(body, dict):
            return {"_raw": text[:200]}, DATA_FORMAT_ERROR
        if _ESCAPE.search(text):
            return body, DATA_FORMAT_ERROR
        return body, 0

    async def stable_token(self, request: web.Request) -> web.Response:
        body, _ = await self.read(request)
        self._record(request, body)
        await self.before_token()
        self.issued += 1
        token = f"TOKEN-{self.issued}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def custom_send(self, request: web.Request) -> web.Response:
        body, code = await self.read(request)
        self._record(request, body)
        token = request.query.get("access_token")
        if code == 0:
            code = ACCESS_TOKEN_MISSING if not token else await self.answer_send(body, token)
        body["_errcode"] = code  # kept with the call: what WeChat accepted
        return web.json_response({"errcode": code, "errmsg": "ok" if code == 0 else "error"})

    async def qrcode_create(self, request: web.Request) -> web.Response:
        body, code = await self.read(request)
        self._record(request, body)
        token = request.query.get("access_token")
        if code == 0 and not token:
            code = ACCESS_TOKEN_MISSING
        elif code == 0 and token not in self.valid_tokens:
            code = 40001
        if code:
            return web.json_response({"errcode": code, "errmsg": "error"})
        scene = body["action_info"]["scene"]["scene_str"]
        return web.json_response({"ticket": f"TICKET-{scene}",
                                  "url": f"http://weixin.qq.com/q/{scene}"})

    def delivered(self) -> list[Call]:
        """Sends WeChat accepted (errcode 0), customer-service and template."""
        return [c for c in self.calls if c.body.get("_errcode") == 0]

    async def messages(self, request: web.Request) -> web.Response:
        """What `openid` was sent from call number `after` on: the chat's push inbox."""
        openid = request.query.get("openid", "")
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after: a number") from None
        found = [{"seq": c.seq, "text": shown_text(c.body)} for c in self.calls
                 if c.seq >= after and c.body.get("_errcode") == 0
                 and c.body.get("touser") == openid]
        return web.json_response({"messages": found, "next": self._seq})

    def app(self) -> web.Application:
        app = web.Application()
        cgi = f"{self.route_prefix}/cgi-bin"
        app.router.add_post(f"{cgi}/stable_token", self.stable_token)
        app.router.add_post(f"{cgi}/message/custom/send", self.custom_send)
        app.router.add_post(f"{cgi}/message/template/send", self.custom_send)
        app.router.add_post(f"{cgi}/qrcode/create", self.qrcode_create)
        app.router.add_get("/sandbox/messages", self.messages)
        app.router.add_post("/sandbox/inbound", self.inbound)
        return app

    async def start(self, port: int = 0) -> WeChatSandbox:
        """Serve on 127.0.0.1 (loopback only); port 0 picks a free one."""
        # Cancel a handler whose caller gave up, as a closed connection to WeChat would.
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        bound = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{bound}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
