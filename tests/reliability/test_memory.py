"""Memory: the app keeps nothing per message beyond the records it stores.

The soak (bench/soak.py) runs the embedded MongoDB engine inside the app's process, so the
app's RSS grows with every stored interaction by design; RSS alone cannot tell a leak from
data. This test can: an in-process app against the real Rasa server takes 1,500 warm-up
messages, then 1,000 measured ones from 200 followers, under tracemalloc. The records written
during the measured phase are deleted again, and the heap the app still holds (leaving out
the load generator's side and the embedded engine's own tables) is what it kept per message.

The limit, 350 B a message, is the soak's target read per message: 10 % of the app's
starting RSS (about 100 MiB) spread over the 30,000 messages of 10 minutes at 50 msg/s.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from typing import Any

import pytest

from scrm.follower import Follower
from tests.conftest import APP_PORT, TOKEN, make_settings

pytestmark = pytest.mark.rasa

FOLLOWERS = 200
WARMUP = 300
PRIMER = 1200
MEASURED = 1000
LIMIT_BYTES_PER_MESSAGE = 350
TEXTS = ["你好", "我的积分", "签到", "帮助", "宝宝晚上总是哭怎么办", "谢谢", "今天天气真好", "再见"]

# Allocations that are not the app's to keep: the test's own HTTP client and this file, and
# the embedded engine's internal tables (dicts and sets keep their size after deletes).
NOT_THE_APP = ["*/aiohttp/client*.py", "*/aiohttp/test_utils.py", "*/aiohttp/connector.py",
               "*/mongomock/*", "*/mongomock_motor/*", "*/store/embedded.py", __file__]


async def _send(app: Any, followers: list[Follower], n: int, rng: random.Random) -> None:
    sem = asyncio.Semaphore(16)
    statuses: list[int] = []

    async def one(i: int) -> None:
        # Every follower speaks in turn, so the warm-up has met them all.
        f = followers[i % len(followers)]
        async with sem:
            status, _ = await app.post_wechat(*f.request(f.text(rng.choice(TEXTS))))
            statuses.append(status)

    await asyncio.gather(*(one(i) for i in range(n)))
    await app.services.orchestrator.drain(10)
    assert statuses == [200] * n


async def _ids(db: Any) -> dict[str, list[Any]]:
    return {name: [d["_id"] for d in await db[name].find({}, {"_id": 1}).to_list(None)]
            for name in await db.list_collection_names()}


async def test_the_app_keeps_nothing_per_message(start_app, namespace, rasa_server):
    app = await start_app(make_settings(namespace, rasa_server), port=APP_PORT)
    followers = [Follower(token=TOKEN, openid=f"o_mem_{k:03d}") for k in range(FOLLOWERS)]
    rng = random.Random(7)
    db = app.store._db  # the embedded engine's database: the test deletes what it wrote
    await _send(app, followers, WARMUP, rng)
    tracemalloc.start(12)
    try:
        # Traced before the start snapshot, so that bounded caches (yarl keeps the last
        # 1,024 parsed queries) replace traced entries and do not look like growth.
        await _send(app, followers, PRIMER, rng)
        before = await _ids(db)
        gc.collect()
        start = tracemalloc.take_snapshot()
        await _send(app, followers, MEASURED, rng)
        stored = sum(len(v) for v in (await _ids(db)).values()) - sum(
            len(v) for v in before.values())
        for name, ids in before.items():
            await db[name].delete_many({"_id": {"$nin": ids}})
        gc.collect()
        end = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    filters = [tracemalloc.Filter(False, p, all_frames=True) for p in NOT_THE_APP]
    diff = end.filter_traces(filters).compare_to(start.filter_traces(filters), "traceback")
    kept = sum(d.size_diff for d in diff)
    per_message = kept / MEASURED
    print(f"\nmemory: {MEASURED} messages ({stored} records stored, then deleted); the app "
          f"kept {kept / 1024:.1f} KiB = {per_message:.0f} B per message "
          f"(limit {LIMIT_BYTES_PER_MESSAGE}). Largest:")
    for d in diff[:5]:
        print(f"  {d.size_diff / 1024:7.1f} KiB in {d.count_diff:5d} blocks, allocated at "
              f"{d.traceback[-1]}")
    assert stored >= 2 * MEASURED  # every message and its reply were recorded
    assert per_message < LIMIT_BYTES_PER_MESSAGE
