"""Late delivery: replies that missed the passive window go out as a durable arq job.

The job survives the process (arq keeps it in Redis and retries it), is enqueued once per
inbound message (job id), and each reply is marked in Redis before it is sent, so a re-run
after a crash never messages the follower twice.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry
from arq.connections import ArqRedis

from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from store.protocols import Store
from store.redis_state import SendMarks
from webhooks.wechat.api import WeChatAPI, WeChatTransportError
from webhooks.wechat.render import custom_message

log = logging.getLogger(__name__)

JOB_NAME = "wechat_send_late"


class WeChatLateSender:
    def __init__(self, pool: ArqRedis, queue: str) -> None:
        self._pool = pool
        self._queue = queue

    async def send_late(self, msg: InboundMessage, replies: list[Reply], keys: list[str]) -> None:
        await self.push(msg.sender, replies, keys)

    async def push(self, recipient: str, replies: list[Reply], keys: list[str]) -> None:
        await self._pool.enqueue_job(
            JOB_NAME, recipient, [r.model_dump(mode="json") for r in replies], keys,
            # arq keeps job ids under its own global "arq:" prefix: namespace them, or two
            # deployments on one Redis would swallow each other's jobs as duplicates.
            _job_id=f"{self._queue}:cs:{keys[0]}", _queue_name=self._queue,
        )


async def wechat_send_late(
    ctx: dict[str, Any], openid: str, replies: list[dict[str, Any]], keys: list[str]
) -> dict[str, int]:
    api: WeChatAPI = ctx["wechat_api"]
    marks: SendMarks = ctx["send_marks"]
    store: Store = ctx["store"]
    metrics: Metrics = ctx["metrics"]
    tally = {"sent": 0, "failed": 0, "skipped": 0}
    for raw, key in zip(replies, keys, strict=True):
        if not await marks.claim(key):
            tally["skipped"] += 1  # an earlier run already tried this one
            continue
        reply = Reply.model_validate(raw)
        try:
            data = await api.send_custom(custom_message(reply, openid))
        except WeChatTransportError as e:
            # It did not provably reach WeChat: free the mark and let arq retry later.
            await marks.release(key)
            metrics.cs_sends.labels("retry").inc()
            log.warning("customer-service send will be retried", extra={"error": str(e)})
            raise Retry(defer=ctx.get("job_try", 1) * 2) from e
        code = int(data.get("errcode", 0) or 0)
        outcome = "sent" if code == 0 else f"failed:{code}"
        tally["sent" if code == 0 else "failed"] += 1
        metrics.cs_sends.labels("sent" if code == 0 else "failed").inc()
        await store.interactions.update(key, {"outcome": outcome, "delivery": "customer_service"})
    log.info("late replies delivered", extra=tally)
    return tally
