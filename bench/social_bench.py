#!/usr/bin/env python
"""Social value at scale: the daily recompute (bot/members/social.py `refresh_all`) over
100,000 members in the embedded store, against a bare scan of the same profiles in the same
run, plus the reads staff trigger (/stats' top contributors and sources, one member's
event-driven recompute).

    .venv/bin/python bench/social_bench.py                     # 100,000 profiles
    .venv/bin/python bench/social_bench.py --profiles 20000

The data is shaped like a brand's: most followers joined, a quarter came by a member's
code and a tenth by 60 staff/KOL campaign codes, some already-following scans, a few
refused referrals, a tenth unfollowed, last seen over 90 days, 0-6 poll answers per member
from 40 polls and a few hundred mentors with helpful answers. Loopback only, nothing kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.brand_calendar import BrandCalendar  # noqa: E402
from bot.members.referrals import Referrals  # noqa: E402
from bot.members.social import SCAN_PATHS, Social  # noqa: E402
from store.mongo import MongoStore  # noqa: E402
from webhooks.config import load_settings  # noqa: E402


def profiles(n: int, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(n)]
    owners = ids[:60]  # staff and KOLs with campaign codes
    members: list[str] = []
    polls = [f"B{p:06X}" for p in range(40)]
    docs = []
    for i, pid in enumerate(ids):
        member = rng.random() < 0.7 or i < 60
        d: dict[str, Any] = {
            "_id": pid, "identity_keys": [f"wechat:wx-bench:o{i}"],
            "identities": [{"channel": "wechat", "app_id": "wx-bench", "openid": f"o{i}",
                            "unionid": None}],
            "first_seen": now - timedelta(days=200),
            "last_seen": now - timedelta(days=rng.uniform(0, 90)),
            "follow": {"state": "unsubscribed" if rng.random() < 0.1 else "subscribed",
                       "changed_at": now},
            "counters": {"inbound": 5}, "tags": [],
            "fields": {"nickname": f"妈妈{i}", "mobile": f"139{i:08d}"}}
        roll = rng.random()
        if roll < 0.25 and members:
            by = rng.choice(members)
            d["source"] = {"kind": "referral", "scene": "ref_x", "campaign": None, "by": by,
                           "at": now}
            d["referral"] = {"by": by, "scene": "ref_x", "event": "subscribe", "at": now}
            if rng.random() < 0.04:
                d["referral"]["refused"] = "mobile_in_use"
        elif roll < 0.35:
            d["source"] = {"kind": "qr", "scene": "cq_x", "campaign": f"c{rng.randrange(8)}",
                           "by": rng.choice(owners), "at": now}
        elif roll < 0.95:
            d["source"] = {"kind": "organic", "scene": None, "campaign": None, "by": None,
                           "at": now}
            if rng.random() < 0.05 and members:  # already following, scanned a code
                d["referral"] = {"by": rng.choice(members), "scene": "ref_x", "event": "scan",
                                 "at": now}
        if member:
            d["member"] = {"id": f"M{i:010X}", "tier": "普通", "stage": "pregnant"}
            members.append(pid)
            social: dict[str, Any] = {}
            answered = rng.sample(polls, min(len(polls), int(rng.expovariate(0.6))))
            if answered:
                social["polls"] = {p: now for p in answered}
            if rng.random() < 0.005:
                social["helpful"] = {uuid.uuid4().hex: now for _ in range(rng.randint(1, 3))}
            if social:
                d["social"] = social
        docs.append(d)
    return docs


async def bare_scan(store: MongoStore) -> int:
    n = 0
    async for _ in store.profiles.fields_where({}, SCAN_PATHS):
        n += 1
    return n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    env = {"WECHAT_TOKEN": "bench-token", "WECHAT_APP_ID": "wx-bench", **os.environ}
    settings = load_settings(ROOT / "config.yml", env)
    now = datetime.now(UTC)
    store = await MongoStore.open(None, f"bench_social_{uuid.uuid4().hex[:6]}")  # the app's indexes
    docs = profiles(args.profiles, now, random.Random(args.seed))
    started = time.perf_counter()
    await store._db["profiles"].insert_many(docs)  # bulk test data, straight in
    print(f"profiles in the embedded store: {len(docs):,} "
          f"(loaded in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    social = Social(store, settings.social, BrandCalendar(settings.app.timezone))
    referrals = Referrals(store, None, None)  # type: ignore[arg-type] - source counts only
    rows: list[tuple[str, float, str, int]] = []  # label, seconds, note, baseline row

    async def step(label: str, work: Any, base: int | None = None) -> Any:
        started = time.perf_counter()
        result = await work
        seconds = time.perf_counter() - started
        note = ""
        if isinstance(result, dict) and "changed" in result:
            note = f"{result['scored']:,} scored, {result['changed']:,} written"
        rows.append((label, seconds, note, len(rows) if base is None else base))
        print(f"  {label}: {seconds:.2f} s {note}", file=sys.stderr)
        return result

    n = await step("baseline: a bare scan of the profiles (the job's projection)",
                   bare_scan(store))
    await step("daily job, first run (every score written)", social.refresh_all(now), 0)
    after = len(rows)
    await step("baseline again, now that scores are stored", bare_scan(store))
    await step("daily job, same day again (idempotent)", social.refresh_all(now), after)
    await step("daily job, next day (recency moved)",
               social.refresh_all(now + timedelta(days=1)), after)
    top = await step("/stats: top 5 by social value", social.top(5), after)
    await step("/stats: counts by source", referrals.source_counts(), after)
    busiest = top[0]["profile_id"] if top else docs[0]["_id"]
    # The first lookup by source.by builds the embedded engine's hash map of that field
    # (once per process, store/embedded.py); every later one reads it.
    await step("one member's recompute, first in the process (builds the source.by map)",
               social.refresh(busiest, now), after)
    await step("one member's recompute (the social_refresh job of an event)",
               social.refresh(busiest, now), after)

    print(f"\nsocial value over {n:,} profiles (embedded store, {time.strftime('%Y-%m-%d')}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)\n")
    print("| step | seconds | x its baseline | |\n|---|---:|---:|---|")
    for label, seconds, note, base in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / rows[base][1]:.1f} | {note} |")


if __name__ == "__main__":
    asyncio.run(main())
