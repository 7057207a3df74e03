"""The official account as the core's Outlet: WeChat's rules for messages the bot sends
outside a passive reply, and the errcodes they come back with.

- Free text goes by the customer-service API, within WeChat's per-follower budget: 5
  messages within `wechat.window_hours` (48 at most) of her last message, 3 within a minute
  of a follow, a menu tap or a scan (45047 beyond, 45015 outside). The budget is counted
  in Redis for every process (bot/allowance.py); a send it does not allow is not tried. A
  turn holds one message for its own late answer. Outside the window or the budget a
  campaign uses a mapped template message, or skips her with the reason; a push (a late
  answer, an invitation, a relay, a staff note) waits for her next message.
- A follower is addressed by her openid on this account (openids are per account).
- Pushes (late answers, invitations, staff notes) are a durable arq job, enqueued once per
  first key; each reply is marked in Redis before it is sent, so a re-run after a crash
  never messages the follower twice. A send that provably did not reach WeChat is retried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from wechatpy.constants import WeChatErrorCode

from bot.allowance import ContactAllowance, Grant
from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from bot.outlets import Delivery, Fallback, ReachRules, Recipient, Route, SendResult
from store.protocols import Store
from store.records import Profile, identity_key
from store.state import Allowances, SendMarks
from webhooks.wechat.api import WeChatAPI, WeChatTransportError
from webhooks.wechat.render import custom_message
from webhooks.wechat.settings import WeChatSettings

log = logging.getLogger(__name__)

JOB_NAME = "wechat_send_late"
CUSTOMER_SERVICE, TEMPLATE = "customer_service", "template"
# Daily API quotas at the base tier (WeChat's documentation).
CUSTOMER_SERVICE_DAILY, TEMPLATE_DAILY = 500_000, 100_000
# The per-follower budget since 2023-06-12: after a message, after an event.
MESSAGE_SENDS, EVENT_SENDS, EVENT_SECONDS = 5, 3, 60
OPENING_EVENTS = frozenset({"subscribe", "scan", "click", "view"})
NO_BUDGET_CODE = 45047  # wechatpy names no constant for it
WINDOW_CODE = WeChatErrorCode.OUT_OF_RESPONSE_TIME_LIMIT.value  # 45015
_OUTCOMES = {
    0: Delivery.SENT,
    WeChatErrorCode.OUT_OF_API_FREQ_LIMIT.value: Delivery.QUOTA,  # 45009: today's quota
    WINDOW_CODE: Delivery.WINDOW_CLOSED,
    NO_BUDGET_CODE: Delivery.NO_BUDGET,
}


def outcome_of(errcode: int) -> Delivery:
    """What an errcode means to the core."""
    return _OUTCOMES.get(errcode, Delivery.FAILED)


class WeChatOutlet:
    channel = "wechat"

    def __init__(self, settings: WeChatSettings, api: WeChatAPI, pool: ArqRedis, queue: str,
                 marks: SendMarks, store: Store, metrics: Metrics,
                 allowances: Allowances) -> None:
        self._app_id = settings.app_id
        self.budget = ContactAllowance(allowances, {
            "message": Grant(MESSAGE_SENDS, settings.window_hours * 3600),
            "event": Grant(EVENT_SENDS, EVENT_SECONDS)})
        self._api = api
        self._pool = pool
        self._queue = queue
        self._marks = marks
        self._store = store
        self._metrics = metrics
        self.rules = ReachRules(window=timedelta(hours=settings.window_hours),
                                text_name="客服消息", fallback_name="模板消息",
                                text_daily=CUSTOMER_SERVICE_DAILY, fallback_daily=TEMPLATE_DAILY)

    def recipient(self, profile: Profile) -> Recipient | None:
        for ident in profile.get("identities", []):
            if ident["channel"] == self.channel and ident["app_id"] == self._app_id:
                return Recipient(ident["openid"], profile.get("last_seen"))
        return None

    def address(self, openid: str) -> str:
        return identity_key(self.channel, self._app_id, openid)

    async def heard(self, msg: InboundMessage) -> None:
        """Her message or event opens her budget afresh, holding one send for this turn's
        own answer (released by `answered`); pushes that waited for it go now."""
        if msg.kind == "event":
            if msg.event == "unsubscribe":
                await self.budget.close(self.address(msg.sender))
                return
            if msg.event not in OPENING_EVENTS:
                return
        kind = "event" if msg.kind == "event" else "message"
        waiting = await self.budget.heard(self.address(msg.sender), kind, msg.record_key)
        if waiting:
            # After her passive reply, not before it: a few seconds' delay.
            await self._enqueue(msg.sender, [r for r, _ in waiting], [k for _, k in waiting],
                                None, f"wait:{msg.record_key}", defer=6)

    async def answered(self, msg: InboundMessage) -> None:
        """Her turn was answered in its own reply: the send it held is free again."""
        await self.budget.release(self.address(msg.sender), msg.record_key)

    async def reach_many(self, to: list[Recipient], has_fallback: bool, now: datetime
                         ) -> list[Route]:
        status = await self.budget.status([self.address(r.address) for r in to])
        out = []
        for is_open, left in status:
            if is_open and left > 0:
                out.append(Route(CUSTOMER_SERVICE))
            elif has_fallback:
                out.append(Route(TEMPLATE))
            else:
                out.append(Route(None, "no_budget" if is_open else "outside_window"))
        return out

    async def send_now(self, to: Recipient, text: str, fallback: Fallback | None,
                       now: datetime) -> SendResult:
        address = self.address(to.address)
        kind = await self.budget.take(address)
        if kind is not None:
            result = await self._send(CUSTOMER_SERVICE, lambda: self._api.send_custom(
                custom_message(Reply(kind="text", text=text), to.address)))
            if await self._settle(address, kind, result) or fallback is None:
                return result
        elif fallback is None:
            (route,) = await self.reach_many([to], False, now)
            return SendResult(Delivery.NO_BUDGET if route.skip == "no_budget"
                              else Delivery.WINDOW_CLOSED)
        return await self._send(TEMPLATE, lambda: self._api.call(
            "/cgi-bin/message/template/send", {
                "touser": to.address, "template_id": fallback.template_id,
                "data": {k: {"value": v} for k, v in fallback.data.items()},
                **({"url": fallback.url} if fallback.url else {})}))

    @staticmethod
    async def _send(via: str, call: Callable[[], Awaitable[dict[str, Any]]]) -> SendResult:
        try:
            data = await call()
        except WeChatTransportError as e:
            log.warning("send may not have arrived", extra={"error": str(e)[:200]})
            return SendResult(Delivery.UNCERTAIN, via=via)
        code = int(data.get("errcode", 0) or 0)
        return SendResult(outcome_of(code), code, via)

    async def _settle(self, address: str, kind: str, result: SendResult) -> bool:
        """Count a customer-service send as WeChat answered it. True when it is settled;
        False when WeChat said she is out of window or budget (another way may go)."""
        if result.outcome is Delivery.NO_BUDGET:
            await self.budget.exhausted(address)
            return False
        if result.outcome is Delivery.WINDOW_CLOSED:
            await self.budget.exhausted(address, kind)
            return False
        if result.outcome in (Delivery.FAILED, Delivery.QUOTA):
            await self.budget.give_back(address, kind)  # refused: it did not count
        return True

    async def push(self, address: str, replies: list[Reply], keys: list[str],
                   answering: str | None = None) -> None:
        await self._enqueue(address, [r.model_dump(mode="json") for r in replies], keys,
                            answering, keys[0])

    async def _enqueue(self, address: str, replies: list[dict[str, Any]], keys: list[str],
                       answering: str | None, first: str, defer: float | None = None) -> None:
        await self._pool.enqueue_job(
            JOB_NAME, address, replies, keys, answering,
            # arq keeps job ids under its own global "arq:" prefix: namespace them, or two
            # deployments on one Redis would swallow each other's jobs as duplicates. A
            # digest of the first key, not the key: job ids are logged, keys name openids.
            _job_id=f"{self._queue}:cs:{hashlib.sha256(first.encode()).hexdigest()[:24]}",
            _queue_name=self._queue, _defer_by=defer,
        )

    async def send_late(self, ctx: dict[str, Any], openid: str, replies: list[dict[str, Any]],
                        keys: list[str], answering: str | None = None) -> dict[str, int]:
        """The push job: each reply once, its outcome on its interaction. The first reply
        to her own message uses the send her turn held; one her budget does not allow
        waits for her next message."""
        tally = {"sent": 0, "failed": 0, "skipped": 0, "waiting": 0}
        address = self.address(openid)
        hold = answering
        for raw, key in zip(replies, keys, strict=True):
            if not await self._marks.claim(key):
                tally["skipped"] += 1  # an earlier run already tried this one
                continue
            kind = await self.budget.take(address, hold)
            hold = None
            if kind is None:
                tally["waiting" if await self._wait(address, raw, key) else "failed"] += 1
                continue
            reply = Reply.model_validate(raw)
            try:
                data = await self._api.send_custom(custom_message(reply, openid))
            except WeChatTransportError as e:
                # It did not provably reach WeChat: free the mark and let arq retry later.
                await self._marks.release(key)
                await self.budget.give_back(address, kind)
                self._metrics.cs_sends.labels("retry").inc()
                log.warning("customer-service send will be retried", extra={"error": str(e)})
                raise Retry(defer=ctx.get("job_try", 1) * 2) from e
            code = int(data.get("errcode", 0) or 0)
            result = SendResult(outcome_of(code), code, CUSTOMER_SERVICE)
            if not await self._settle(address, kind, result):
                tally["waiting" if await self._wait(address, raw, key) else "failed"] += 1
                continue
            tally["sent" if code == 0 else "failed"] += 1
            self._metrics.cs_sends.labels("sent" if code == 0 else "failed").inc()
            await self._store.interactions.update(key, {
                "outcome": result.outcome.value, "delivery": CUSTOMER_SERVICE,
                **({"code": code} if code else {})})
        log.info("late replies delivered", extra=tally)
        return tally

    async def _wait(self, address: str, raw: dict[str, Any], key: str) -> bool:
        """Not sent now (no budget): kept for her next message, the mark freed for it.
        False when she unfollowed: then it is not kept, and recorded as not sent."""
        await self._marks.release(key)
        kept = await self.budget.wait(address, raw, key)
        outcome = "waiting" if kept else Delivery.WINDOW_CLOSED.value
        self._metrics.cs_sends.labels(outcome).inc()
        await self._store.interactions.update(key, {"outcome": outcome,
                                                    "delivery": CUSTOMER_SERVICE})
        return kept
