"""GET/POST /wechat: the official-account server URL.

Order of work on POST: replay window, signature, size, the account's encryption mode (no
plaintext in safe mode), the request's nonce (one body per signed query string), hardened
parse, decrypt, dedupe (SET NX before any work), then the orchestrator within the time
budget. Errors become a
status code here and nowhere else; nothing but 'success' or a valid reply ever goes back
with a 200, and no request is ever answered with a 5xx.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from bot.conversation.orchestrator import Orchestrator
from bot.messages import InboundMessage
from bot.metrics import Metrics
from store.records import reply_key
from store.state import Dedupe, RequestNonces
from webhooks.wechat.outlet import WeChatOutlet
from webhooks.wechat.parse import MalformedMessage, harden, to_inbound
from webhooks.wechat.render import passive_xml
from webhooks.wechat.settings import WeChatSettings

log = logging.getLogger(__name__)

SUCCESS = "success"
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_NONCE = re.compile(r"[0-9A-Za-z]{1,64}", re.ASCII)


class WeChatChannel:
    name = "wechat"

    def __init__(self, settings: WeChatSettings, budget: float, dedupe: Dedupe,
                 nonces: RequestNonces, orchestrator: Orchestrator, outlet: WeChatOutlet,
                 metrics: Metrics) -> None:
        self._cfg = settings
        self._budget = budget
        self._dedupe = dedupe
        self._nonces = nonces
        self._orchestrator = orchestrator
        self._outlet = outlet
        self._metrics = metrics
        self._crypto = (WeChatCrypto(settings.token, settings.aes_key, settings.app_id)
                        if settings.aes_key else None)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [web.get("/wechat", self.verify), web.post("/wechat", self.receive)]

    def _fresh(self, timestamp: str) -> bool:
        # Strict: ASCII digits only (int() would also take " 17", "１７" or "1_7").
        if not _TIMESTAMP.fullmatch(timestamp):
            return False
        return abs(time.time() - int(timestamp)) <= self._cfg.replay_window_seconds

    async def verify(self, request: web.Request) -> web.Response:
        """WeChat's server-URL check: echo `echostr` if the signature is ours."""
        q = request.query
        try:
            check_signature(self._cfg.token, q.get("signature", ""), q.get("timestamp", ""),
                            q.get("nonce", ""))
        except InvalidSignatureException:
            raise web.HTTPForbidden(text="invalid signature") from None
        return web.Response(text=q.get("echostr", ""))

    async def receive(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not self._fresh(timestamp):
            raise web.HTTPForbidden(text="timestamp outside the replay window")
        if not _NONCE.fullmatch(nonce):
            raise web.HTTPForbidden(text="nonce: 1 to 64 ASCII letters or digits")
        try:
            check_signature(self._cfg.token, q.get("signature", ""), timestamp, nonce)
        except InvalidSignatureException:
            raise web.HTTPForbidden(text="invalid signature") from None
        body = await request.read()  # over client_max_size: aiohttp answers 413
        encrypted = q.get("encrypt_type") == "aes"
        if "encrypt_type" in q and not encrypted:
            raise web.HTTPBadRequest(text="unknown encrypt_type")
        if not encrypted and not self._cfg.accepts_plaintext:
            # Safe mode: a request stripped of its encryption is a forgery, not a message.
            raise web.HTTPForbidden(text="safe mode: plaintext messages are refused")
        # The plain signature covers token, timestamp and nonce, not the body: one signed
        # query string may come again only with the body it first came with (a retry).
        if not await self._nonces.remember(f"{timestamp}:{nonce}",
                                           hashlib.sha256(body).hexdigest(),
                                           2 * self._cfg.replay_window_seconds + 60):
            raise web.HTTPForbidden(text="signed request already used with another body")
        try:
            outer = harden(body)
            if encrypted:
                if self._crypto is None:
                    raise MalformedMessage("encrypted message but no EncodingAESKey configured")
                xml = self._decrypt(body, outer, q.get("msg_signature", ""), timestamp, nonce)
            else:
                xml = body.decode("utf-8")
            msg = to_inbound(xml, self._cfg.app_id)
        except InvalidSignatureException:
            raise web.HTTPForbidden(text="invalid msg_signature") from None
        except (MalformedMessage, UnicodeDecodeError) as e:
            log.info("rejected malformed message", extra={"reason": str(e)[:120]})
            raise web.HTTPBadRequest(text="malformed message") from None

        plain = await self._answer(msg, received)
        if plain == SUCCESS or not encrypted:
            return web.Response(text=plain, content_type="application/xml" if plain != SUCCESS
                                else "text/plain")
        assert self._crypto is not None
        return web.Response(text=self._crypto.encrypt_message(plain, nonce, timestamp),
                            content_type="application/xml")

    def _decrypt(
        self, body: bytes, outer: dict[str, str], signature: str, timestamp: str, nonce: str
    ) -> str:
        assert self._crypto is not None
        if not outer.get("Encrypt"):
            raise MalformedMessage("encrypted message without <Encrypt>")
        try:
            xml = self._crypto.decrypt_message({"Encrypt": outer["Encrypt"]}, signature,
                                               timestamp, nonce)
        except InvalidSignatureException:
            raise
        except Exception as e:  # bad padding, wrong key, wrong AppId: all "cannot read"
            raise MalformedMessage(f"cannot decrypt: {type(e).__name__}") from e
        return str(xml)

    async def _answer(self, msg: InboundMessage, received: float) -> str:
        """The plain XML reply or 'success'; the same for every retry of one message."""
        remaining = self._budget - (time.monotonic() - received)
        if not await self._dedupe.claim(msg.dedupe_key):
            self._metrics.dedupe_hits.labels(self.name).inc()
            earlier = await self._dedupe.wait_result(msg.dedupe_key, remaining)
            return earlier if earlier is not None else SUCCESS
        # Her budget of customer-service messages opens now, one held for this turn.
        await self._outlet.heard(msg)
        turn = self._orchestrator.start(msg, received)
        replies = await turn.answer(self._budget - (time.monotonic() - received))
        if not replies:
            if replies is not None:
                await self._outlet.answered(msg)  # nothing to say: nothing held
            await self._dedupe.publish(msg.dedupe_key, SUCCESS)
            return SUCCESS  # or late: the orchestrator pushes it with the held send
        first, rest = replies[0], replies[1:]
        plain = passive_xml(first, msg.sender, str(msg.payload.get("account", "")))
        await self._dedupe.publish(msg.dedupe_key, plain)
        if rest:
            # A passive reply carries one message; the others follow by customer service,
            # the first of them with the send this turn held.
            keys = [reply_key(msg.record_key, i) for i in range(1, len(replies))]
            await self._outlet.push(msg.sender, rest, keys, answering=msg.record_key)
        else:
            await self._outlet.answered(msg)
        return plain
