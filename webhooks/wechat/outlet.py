"""The official account as the core's Outlet: WeChat's rules for messages the bot sends
outside a passive reply, and the errcodes they come back with.

- Free text goes by the customer-service API, which reaches a follower only within
  `wechat.window_hours` (48 at most) of her last message; outside it a campaign uses a
  mapped template message, or does not try.
- A follower is addressed by her openid on this account (openids are per account).
- Pushes (late answers, invitations, staff notes) are a durable arq job, enqueued once per
  first key; each reply is marked in Redis before it is sent, so a re-run after a crash
  never messages the follower twice. A send that provably did not reach WeChat is retried.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from wechatpy.constants import WeChatErrorCode

from bot.messages import Reply
from bot.metrics import Metrics
from bot.outlets import Delivery, Fallback, ReachRules, Recipient, SendResult
from store.protocols import Store
from store.records import Profile
from store.state import SendMarks
from webhooks.wechat.api import WeChatAPI, WeChatTransportError
from webhooks.wechat.render import custom_message
from webhooks.wechat.settings import WeChatSettings

log = logging.getLogger(__name__)

JOB_NAME = "wechat_send_late"
CUSTOMER_SERVICE, TEMPLATE = "customer_service", "template"
# Daily API quotas at the base tier (WeChat's documentation).
CUSTOMER_SERVICE_DAILY, TEMPLATE_DAILY = 500_000, 100_000
_OUTCOMES = {
    0: Delivery.SENT,
    WeChatErrorCode.OUT_OF_API_FREQ_LIMIT.value: Delivery.QUOTA,  # 45009: today's quota
    WeChatErrorCode.OUT_OF_RESPONSE_TIME_LIMIT.value: Delivery.WINDOW_CLOSED,  # 45015
}


def outcome_of(errcode: int) -> Delivery:
    """What an errcode means to the core."""
    return _OUTCOMES.get(errcode, Delivery.FAILED)


class WeChatOutlet:
    channel = "wechat"

    def __init__(self, settings: WeChatSettings, api: WeChatAPI, pool: ArqRedis, queue: str,
                 marks: SendMarks, store: Store, metrics: Metrics) -> None:
        self._app_id = settings.app_id
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

    def reach(self, to: Recipient, has_fallback: bool, now: datetime) -> str | None:
        window = self.rules.window
        if to.last_seen is not None and (window is None or to.last_seen >= now - window):
            return CUSTOMER_SERVICE
        return TEMPLATE if has_fallback else None

    async def send_now(self, to: Recipient, text: str, fallback: Fallback | None,
                       now: datetime) -> SendResult:
        via = self.reach(to, fallback is not None, now)
        if via is None:
            return SendResult(Delivery.WINDOW_CLOSED)
        try:
            if via == CUSTOMER_SERVICE:
                data = await self._api.send_custom(
                    custom_message(Reply(kind="text", text=text), to.address))
            else:
                assert fallback is not None
                data = await self._api.call("/cgi-bin/message/template/send", {
                    "touser": to.address, "template_id": fallback.template_id,
                    "data": {k: {"value": v} for k, v in fallback.data.items()},
                    **({"url": fallback.url} if fallback.url else {})})
        except WeChatTransportError as e:
            log.warning("campaign send may not have arrived", extra={"error": str(e)[:200]})
            return SendResult(Delivery.UNCERTAIN, via=via)
        code = int(data.get("errcode", 0) or 0)
        return SendResult(outcome_of(code), code, via)

    async def push(self, address: str, replies: list[Reply], keys: list[str]) -> None:
        await self._pool.enqueue_job(
            JOB_NAME, address, [r.model_dump(mode="json") for r in replies], keys,
            # arq keeps job ids under its own global "arq:" prefix: namespace them, or two
            # deployments on one Redis would swallow each other's jobs as duplicates. A
            # digest of the first key, not the key: job ids are logged, keys name openids.
            _job_id=f"{self._queue}:cs:{hashlib.sha256(keys[0].encode()).hexdigest()[:24]}",
            _queue_name=self._queue,
        )

    async def send_late(self, ctx: dict[str, Any], openid: str, replies: list[dict[str, Any]],
                        keys: list[str]) -> dict[str, int]:
        """The push job: each reply once, its outcome on its interaction."""
        tally = {"sent": 0, "failed": 0, "skipped": 0}
        for raw, key in zip(replies, keys, strict=True):
            if not await self._marks.claim(key):
                tally["skipped"] += 1  # an earlier run already tried this one
                continue
            reply = Reply.model_validate(raw)
            try:
                data = await self._api.send_custom(custom_message(reply, openid))
            except WeChatTransportError as e:
                # It did not provably reach WeChat: free the mark and let arq retry later.
                await self._marks.release(key)
                self._metrics.cs_sends.labels("retry").inc()
                log.warning("customer-service send will be retried", extra={"error": str(e)})
                raise Retry(defer=ctx.get("job_try", 1) * 2) from e
            code = int(data.get("errcode", 0) or 0)
            outcome = outcome_of(code)
            tally["sent" if code == 0 else "failed"] += 1
            self._metrics.cs_sends.labels("sent" if code == 0 else "failed").inc()
            await self._store.interactions.update(key, {
                "outcome": outcome.value, "delivery": CUSTOMER_SERVICE,
                **({"code": code} if code else {})})
        log.info("late replies delivered", extra=tally)
        return tally
