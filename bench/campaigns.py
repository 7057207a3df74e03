#!/usr/bin/env python
"""Marketing at scale: /segment and the queueing of a broadcast over 100,000 profiles in the
embedded store, then the send rate against the fake WeChat API.

    .venv/bin/python bench/campaigns.py                      # 100,000 profiles; 600 sends at 20/s
    .venv/bin/python bench/campaigns.py --profiles 20000 --sends 300 --rate 10

Targets (issue #5): segment count and queueing to all of them <= 10 s each; measured send
rate within +-5 % of the configured rate. Loopback only (real Redis, fake WeChat API); the
private Redis namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from arq.connections import RedisSettings, create_pool  # noqa: E402
from mongomock_motor import AsyncMongoMockClient  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bench.matching import profiles  # noqa: E402
from bot.core import build_core  # noqa: E402
from bot.marketing.campaigns import Campaigns  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from store.keys import Keys  # noqa: E402
from store.mongo import MongoStore  # noqa: E402
from store.redis_state import redis_state  # noqa: E402
from tests.support.fake_wechat import FakeWeChatAPI  # noqa: E402
from webhooks.config import load_settings  # noqa: E402
from webhooks.services import ArqQueue, staff_of  # noqa: E402
from webhooks.wechat.api import WeChatAPI  # noqa: E402
from webhooks.wechat.outlet import WeChatOutlet  # noqa: E402


class NoNlu:
    async def parse(self, text: str, follower: str = "") -> Any:
        raise NotImplementedError("the campaign benchmark sends no chat")


async def make(store: MongoStore, redis: Redis, keys: Keys, pool: Any, rate: float,
               session: aiohttp.ClientSession, api_url: str = "http://127.0.0.1:9"
               ) -> tuple[Campaigns, WeChatOutlet]:
    """The app's own campaigns, as bot/core.py builds them, on the WeChat outlet."""
    env = {"WECHAT_TOKEN": "bench-token", "WECHAT_APP_ID": "wx-bench", **os.environ}
    settings = load_settings(ROOT / "config.yml", env)
    settings = settings.model_copy(update={"marketing": settings.marketing.model_copy(
        update={"quiet_hours": "", "rate_per_second": rate})})
    state = redis_state(redis, keys, dedupe_ttl=300, rate_per_second=rate)
    metrics = Metrics()
    wechat = WeChatAPI(session, api_url, "wx-bench", "s", state.tokens)
    outlet = WeChatOutlet(settings.wechat, wechat, pool, keys.queue, state.marks, store,
                          metrics, state.allowances)
    core = await build_core(settings, store, state, nlu=NoNlu(), outlets=[outlet],
                            queue=ArqQueue(pool, keys.queue), qr=None, metrics=metrics,
                            staff=staff_of(settings))
    return core.campaigns, outlet


async def wrote(outlet: WeChatOutlet, fake: FakeWeChatAPI | None,
                docs: list[dict[str, Any]]) -> None:
    """Each member wrote just now: her customer-service budget is open, in the app's count
    and in WeChat's (the fake), as her message would have opened it."""
    openids = [d["identities"][0]["openid"] for d in docs]
    for i in range(0, len(openids), 500):  # a bounded number of Redis connections
        await asyncio.gather(*(outlet.budget.heard(outlet.address(o), "message")
                               for o in openids[i:i + 500]))
    for o in openids:
        if fake is not None:
            fake.heard(o)


def actor() -> Any:
    return {"_id": "bench-marketer", "identities": []}


async def scale(n: int, rng: random.Random, redis: Redis, pool: Any, keys: Keys) -> None:
    store = MongoStore(AsyncMongoMockClient(tz_aware=True), "bench_campaigns", embedded=True)
    docs = profiles(n, date.today(), rng)
    for d in docs:  # members with a channel identity, seen recently
        d["identities"] = [{"channel": "wechat", "app_id": "wx-bench",
                            "openid": f"o{d['_id']}", "unionid": None}]
    started = time.perf_counter()
    await store._db["profiles"].insert_many(docs)  # bulk test data (no unique-index scans)
    loaded = time.perf_counter() - started
    print(f"profiles in the embedded store: {n:,} (loaded in {loaded:.1f} s)")
    async with aiohttp.ClientSession() as session:
        campaigns, outlet = await make(store, redis, keys, pool, 20.0, session)
        await wrote(outlet, None, docs)
        await scale_steps(store, campaigns, pool, keys)


async def scale_steps(store: MongoStore, campaigns: Campaigns, pool: Any, keys: Keys) -> None:
    now = datetime.now(UTC)
    started = time.perf_counter()
    flt = campaigns.segment("city:上海,北京,杭州 week:20..28", now)
    count = await store.profiles.count_where(flt)
    seg = time.perf_counter() - started
    started = time.perf_counter()
    everyone = await store.profiles.count_where(campaigns.segment("all", now))
    seg_all = time.perf_counter() - started
    print(f"/segment city:上海,北京,杭州 week:20..28 -> {count:,} in {seg:.2f} s; "
          f"all -> {everyone:,} in {seg_all:.2f} s  (target <= 10 s: "
          f"{'met' if max(seg, seg_all) <= 10 else 'NOT met'})")
    started = time.perf_counter()
    preview = await campaigns.preview(actor(), "all", "lecture_invite", now)
    previewed = time.perf_counter() - started
    await campaigns.confirm(actor(), True, preview.broadcast_id, now)
    started = time.perf_counter()
    planned = await campaigns.plan(preview.broadcast_id)
    queued = time.perf_counter() - started
    jobs = await pool.queued_jobs(queue_name=keys.queue)
    print(f"/broadcast all: preview {previewed:.2f} s; queueing {planned:,} deliveries in "
          f"{len([j for j in jobs if j.function == 'campaign_send'])} jobs: {queued:.2f} s "
          f"(target <= 10 s: {'met' if queued <= 10 else 'NOT met'})")


async def rate_run(sends: int, rate: float, redis: Redis, pool: Any, keys: Keys) -> None:
    store = MongoStore(AsyncMongoMockClient(tz_aware=True), "bench_rate", embedded=True)
    await store.campaigns.ensure_indexes()
    docs = profiles(sends, date.today(), random.Random(3))
    for d in docs:
        d["identities"] = [{"channel": "wechat", "app_id": "wx-bench",
                            "openid": f"o{d['_id']}", "unionid": None}]
    await store._db["profiles"].insert_many(docs)
    api = await FakeWeChatAPI().start()
    async with aiohttp.ClientSession() as session:
        campaigns, outlet = await make(store, redis, keys, pool, rate, session, api.url)
        await wrote(outlet, api, docs)
        now = datetime.now(UTC)
        preview = await campaigns.preview(actor(), "all", "你好，{{ nickname }}", now)
        bid = preview.broadcast_id
        await campaigns.confirm(actor(), True, bid, now)
        await campaigns.plan(bid)
        jobs = [j for j in await pool.queued_jobs(queue_name=keys.queue)
                if j.function == "campaign_send" and j.args[0] == bid]
        # Three "workers" (concurrent chunk jobs) share the global rate, as processes do.
        started = time.perf_counter()
        sem = asyncio.Semaphore(3)

        async def run(job: Any) -> None:
            async with sem:
                await campaigns.send_chunk(*job.args)

        await asyncio.gather(*(run(j) for j in jobs))
        elapsed = time.perf_counter() - started
    await api.close()
    sent = len(api.delivered())
    measured = sent / elapsed
    off = (measured - rate) / rate * 100
    print(f"send rate: {sent} sends in {elapsed:.1f} s = {measured:.2f}/s against "
          f"{rate:.0f}/s configured ({off:+.1f} %; target +-5 %: "
          f"{'met' if abs(off) <= 5 else 'NOT met'})")


async def _keys(redis: Redis, pattern: str) -> list[Any]:
    return [k async for k in redis.scan_iter(pattern, count=1000)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--sends", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    keys = Keys(f"bench-camp-{uuid.uuid4().hex[:8]}")
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    pool = await create_pool(RedisSettings(), default_queue_name=keys.queue)
    try:
        await scale(args.profiles, random.Random(7), redis, pool, keys)
        await rate_run(args.sends, args.rate, redis, pool, keys)
    finally:
        found = [k for pattern in (f"{keys.namespace}:*", f"arq:*{keys.namespace}*")
                 for k in await _keys(redis, pattern)]
        if found:
            await redis.delete(*found)
        await pool.aclose()
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
