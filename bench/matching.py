#!/usr/bin/env python
"""Sister matching at scale: 100,000 generated member profiles in the embedded store, the
matching index rebuilt from them in Redis, then timed match requests (query + scoring).

    .venv/bin/python bench/matching.py                  # 100,000 profiles, 300 requests
    .venv/bin/python bench/matching.py --profiles 20000 --requests 100

Target (issue #4): p99 of one match request <= 200 ms. Only loopback Redis is used; the
private key namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bot.settings import MatchingSettings  # noqa: E402
from bot.sisters.matching import Matcher  # noqa: E402
from store.keys import Keys  # noqa: E402
from store.match_index import RedisMatchIndex  # noqa: E402
from store.mongo import MongoStore  # noqa: E402

CITIES = [("上海", "上海"), ("北京", "北京"), ("广州", "广东"), ("深圳", "广东"),
          ("杭州", "浙江"), ("宁波", "浙江"), ("成都", "四川"), ("南京", "江苏"),
          ("苏州", "江苏"), ("武汉", "湖北"), ("西安", "陕西"), ("重庆", "重庆"),
          ("天津", "天津"), ("长沙", "湖南"), ("郑州", "河南"), ("青岛", "山东"),
          ("厦门", "福建"), ("昆明", "云南"), ("合肥", "安徽"), ("大连", "辽宁")]
INTERESTS = ["瑜伽", "母乳", "辅食", "早教", "二胎", "职场妈妈", "顺产", "剖腹产", "睡眠", "旅行"]


def profiles(n: int, today: date, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        city, province = rng.choice(CITIES)
        offset = rng.randint(-730, 280)  # from a 2-year-old to a due date 40 weeks ahead
        key = "due_date" if offset > 0 else "baby_birthday"
        out.append({
            "_id": f"p{i:06d}", "identity_keys": [f"bench:x:o{i}"], "identities": [],
            "first_seen": datetime.now(UTC), "last_seen": datetime.now(UTC),
            "follow": {"state": "subscribed", "changed_at": None}, "counters": {},
            "tags": ["会员", *rng.sample(INTERESTS, rng.randint(0, 3))],
            "fields": {"nickname": f"姐妹{i}", "city": city, "province": province,
                       key: date.fromordinal(today.toordinal() + offset).isoformat()},
            "member": {"id": f"M{i:06d}"},
            "consents": {"matching": {"accepted": rng.random() < 0.8},
                         "privacy": {"accepted": True}},
        })
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    today = date.today()
    namespace = f"bench-match-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    # Built without its unique indexes: mongomock checks a unique index on every insert by
    # scanning the collection, which makes loading 100,000 profiles quadratic. The match
    # path never touches MongoDB, so the figures are the same.
    from mongomock_motor import AsyncMongoMockClient

    store = MongoStore(AsyncMongoMockClient(tz_aware=True), "bench_matching", embedded=True)
    try:
        started = time.perf_counter()
        docs = profiles(args.profiles, today, rng)
        await store._db["profiles"].insert_many(docs)  # bulk test data, straight in
        loaded = time.perf_counter() - started
        matcher = Matcher(RedisMatchIndex(redis, Keys(namespace)), MatchingSettings())
        started = time.perf_counter()
        indexed = await matcher.rebuild(store.profiles.members())
        rebuilt = time.perf_counter() - started
        askers = rng.sample([d["_id"] for d in docs
                             if d["consents"]["matching"]["accepted"]], args.requests)
        times, shown = [], 0
        for pid in askers:
            t0 = time.perf_counter()
            found = await matcher.find(pid)
            times.append((time.perf_counter() - t0) * 1000)
            shown += len(found)
        times.sort()
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"profiles in the embedded store: {args.profiles:,} (loaded in {loaded:.1f} s)")
        print(f"members in the matching index:  {indexed:,} (rebuilt in {rebuilt:.1f} s)")
        print(f"match requests: {len(times)}, candidates shown per request: "
              f"{shown / len(times):.2f}")
        print(f"latency ms: p50 {p50:.1f}, p99 {p99:.1f}, max {times[-1]:.1f}")
        print(f"target p99 <= 200 ms: {'PASS' if p99 <= 200 else 'FAIL'}")
    finally:
        keys = [k async for k in redis.scan_iter(f"{namespace}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await redis.delete(*keys[i:i + 5000])
        await redis.aclose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
