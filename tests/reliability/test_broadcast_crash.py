"""Broadcast worker dying at the worst moment: right after WeChat accepted a message and
before it was recorded. Another instance's worker finishes the job, and no member is
messaged twice; the one delivery caught in that moment is reported failed: interrupted.

To hit that exact moment the two instances run in one process (sharing one store and the
real Redis, where arq keeps the jobs); a SIGKILL of a real OS process at a moment it
chooses itself is tests/reliability/test_broadcast_kill.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from arq.connections import RedisSettings
from arq.worker import Worker

from store.mongo import MongoStore
from tests.conftest import make_settings
from tests.support.chat import Chat
from tests.support.marketing import (
    BOSS,
    bid_in,
    marketing,
    member_doc,
    member_sends,
    seed,
    status_of,
    until,
)
from webhooks.services import worker_functions

pytestmark = pytest.mark.rasa
MEMBERS = 60
FREEZE_AFTER = 17


class FreezingSend:
    """The outlet's send, for real; after `after` sends, the next one reaches WeChat and
    never returns."""

    def __init__(self, real, after: int) -> None:
        self.real = real
        self.after = after
        self.sent = 0
        self.frozen = asyncio.Event()

    async def __call__(self, *args):
        result = await self.real(*args)
        self.sent += 1
        if self.sent > self.after:
            self.frozen.set()
            await asyncio.Event().wait()  # the process "dies" here
        return result


async def test_killed_broadcast_worker_resumes_without_duplicates(
        start_app, namespace, rasa_proxy, wechat_api):
    settings = make_settings(namespace, rasa_proxy.url, wechat_api.url, marketing=marketing(
        chunk_size=10, rate_per_second=40.0, job_timeout_seconds=5))
    store = await MongoStore.open(None, "crash")
    try:
        front = await start_app(settings, store=store, run_worker=False)  # takes commands
        doomed = await start_app(settings, store=store, run_worker=False)
        svc = doomed.services
        # This process's campaign sends freeze (only its outlet: the rescuer has its own).
        freezing = FreezingSend(svc.wechat.send_now, FREEZE_AFTER)
        svc.wechat.send_now = freezing
        # The doomed process's job worker, as the app runs it (the same functions).
        worker = Worker(functions=worker_functions(svc.core, svc.wechat),
                        queue_name=svc.keys.queue,
                        redis_settings=RedisSettings.from_dsn(settings.redis.url),
                        handle_signals=False, poll_delay=0.05,
                        job_timeout=settings.marketing.job_timeout_seconds, max_tries=8)
        running = asyncio.create_task(worker.async_run())
        await seed(front, [member_doc(i) for i in range(MEMBERS)])
        admin = Chat(front, BOSS)
        await admin.say("你好")
        bid = bid_in(await admin.say("/broadcast member:yes | 周末活动通知"))
        await admin.say(f"/confirm {bid}")
        await asyncio.wait_for(freezing.frozen.wait(), 60)
        at_kill = len(member_sends(wechat_api))
        # Killed: every task of the worker stops where it is; nothing is cleaned up, so
        # its jobs stay marked in progress until arq sees them expire.
        for task in [*worker.tasks.values(), running]:
            task.cancel()
        # (A cancelled job may never finish unwinding; like a dead process, it is left.)
        await asyncio.wait([*worker.tasks.values(), running], timeout=5)
        await asyncio.sleep(0.5)
        assert await status_of(front, bid) == "running"

        rescuer = await start_app(settings, store=store)  # a new process with a worker
        assert await until(lambda: _finished(front, bid), timeout=90)
        sends = Counter(c.body["touser"] for c in member_sends(wechat_api))
        tally = await store.campaigns.tally(bid)
        duplicated = sum(n - 1 for n in sends.values() if n > 1)
        lost = MEMBERS - len(sends)
        print(f"\nbroadcast crash: {MEMBERS} members; {at_kill} sent before the kill, "
              f"{len(sends)} messaged in all; duplicated {duplicated}, not messaged {lost}; "
              f"tally {tally}")
        assert duplicated == 0
        # Every delivery ends sent, or -- the ones a send job held at the moment of the
        # kill, at most one per running chunk -- failed:interrupted: never resent, since
        # the message may have arrived. Nobody else is missed.
        interrupted = tally.get("failed:interrupted", 0)
        assert tally["sent"] + interrupted == MEMBERS
        assert interrupted <= MEMBERS // 10  # one per chunk job at most
        assert len(sends) >= MEMBERS - interrupted
        assert len(sends) >= tally["sent"]
        assert rescuer.services.wechat.send_now is not freezing
    finally:
        await store.close()


async def _finished(app, bid: str) -> bool:
    return await status_of(app, bid) == "done"
