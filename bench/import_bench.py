#!/usr/bin/env python
"""Importing members at scale: 100,000 generated rows (Chinese names and cities, tags, two
custom fields, points; a share of them already followers, matched by unionid or mobile)
imported into the embedded store, as UTF-8 and as GBK.

    .venv/bin/python bench/import_bench.py                  # 100,000 rows, UTF-8 and GBK
    .venv/bin/python bench/import_bench.py --rows 20000 --followers 2000

Target (issue #14): 100,000 rows in <= 60 s on the embedded store. Baselines in the same
run, so the figure means something: (a) reading the CSV alone (decode, header, every row),
(b) a bare insert_many of the same number of profile documents, (c) one ledger award per
member with points. A re-run of the same file is timed too (everything "unchanged").
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.members.csvfile import read_csv  # noqa: E402
from bot.members.fields import FieldBook  # noqa: E402
from bot.members.importer import ImportOptions, MemberImporter, Progress  # noqa: E402
from store.mongo import MongoStore  # noqa: E402
from store.records import identity_key  # noqa: E402
from webhooks.config import load_settings  # noqa: E402

APP_ID = "wx-bench"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗"
GIVEN = "小美丽娜婷静芳敏雪琳慧佳欣悦彤卉雨萱妍"
CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "南京", "武汉", "西安", "苏州"]
TAGS = ["VIP", "老客", "新客", "门店", "线上", "活动", "试用装", "复购"]
HEADER = ["会员编号", "手机号", "unionid", "昵称", "城市", "标签", "积分", "宝宝性别", "孩子数量"]


def rows(n: int, followers: int, rng: random.Random) -> list[list[str]]:
    out = []
    for i in range(n):
        # The first `followers` rows are people who already follow the account: half of
        # them named by unionid, half by mobile.
        unionid = f"union{i:07d}" if i < followers and i % 2 == 0 else ""
        out.append([
            f"C{i:07d}", f"13{rng.randint(5, 9)}{i:08d}", unionid,
            rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2)), rng.choice(CITIES),
            "，".join(rng.sample(TAGS, rng.randint(0, 3))),
            str(rng.choice([0, 0, 50, 120, 300, 1000])),
            rng.choice(["女孩", "男孩", "还不知道", ""]), str(rng.randint(0, 3)),
        ])
    return out


def as_csv(table: list[list[str]], encoding: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(table)
    return buf.getvalue().encode(encoding)


def follower_docs(table: list[list[str]], followers: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    docs = []
    for i, row in enumerate(table[:followers]):
        openid = f"o_bench_{i:07d}"
        docs.append({
            "_id": uuid.uuid4().hex, "identity_keys": [identity_key("wechat", APP_ID, openid)],
            "identities": [{"channel": "wechat", "app_id": APP_ID, "openid": openid,
                            "unionid": row[2] or None}],
            "first_seen": now, "last_seen": now,
            "follow": {"state": "subscribed", "changed_at": now}, "counters": {"inbound": 1},
            "tags": [], "fields": {"mobile": row[1]} if i % 2 else {}})
    return docs


async def fresh_store(docs: list[dict[str, Any]]) -> MongoStore:
    store = await MongoStore.open(None, f"bench_{uuid.uuid4().hex[:8]}")
    for i in range(0, len(docs), 1000):
        await store._db["profiles"].insert_many(docs[i:i + 1000])
    return store


async def timed_import(data: bytes, followers: list[dict[str, Any]], settings: Any,
                       label: str) -> dict[str, Any]:
    store = await fresh_store(followers)
    importer = MemberImporter(store, FieldBook(settings.members.fields), settings,
                              openid_key=lambda o: identity_key("wechat", APP_ID, o))
    phases: dict[str, float] = {}
    started = time.perf_counter()

    async def progress(p: Progress) -> None:
        phases[p.phase] = time.perf_counter() - started

    report = await importer.run(data, ImportOptions("bench"), progress=progress)
    took = time.perf_counter() - started
    again_started = time.perf_counter()
    again = await importer.run(data, ImportOptions("bench"))
    again_took = time.perf_counter() - again_started
    mismatches = await store.ledger.check()
    await store.close()
    assert not report.problems, report.problems[:5]
    assert again.unchanged == report.rows and not again.points, again.as_dict()
    assert not mismatches
    return {"label": label, "seconds": took, "rows": report.rows, "created": report.created,
            "updated": report.updated, "points": report.points, "phases": phases,
            "rerun": again_took}


async def baselines(data: bytes, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    t = time.perf_counter()
    count = sum(1 for _ in read_csv(data).rows())
    out["read"] = time.perf_counter() - t
    assert count == n
    store = await fresh_store([])
    now = datetime.now(UTC)
    docs = [{"_id": uuid.uuid4().hex, "identity_keys": [f"import:base:{i}"], "identities": [],
             "first_seen": now, "last_seen": None, "tags": ["VIP"],
             "fields": {"mobile": f"139{i:08d}", "nickname": "王小美", "city": "上海"},
             "member": {"id": f"M{i:010X}"}} for i in range(n)]
    t = time.perf_counter()
    for i in range(0, n, 500):
        await store._db["profiles"].insert_many(docs[i:i + 500])
    out["insert_many"] = time.perf_counter() - t
    with_points = docs[: n * 4 // 6]  # as in the generated file: 4 rows in 6 have points
    t = time.perf_counter()
    for d in with_points:
        await store.ledger.award(d["_id"], f"import:base:{d['_id']}", 100, "import", now=now)
    out["awards"] = time.perf_counter() - t
    out["awards_n"] = len(with_points)
    # The same credits in bulk, in the ledger's own order (entries first, then the $inc):
    # what a LedgerRepo.award_many would cost (proposed; the import uses award()).
    entries = [{"_id": uuid.uuid4().hex, "profile_id": d["_id"], "key": f"bulk:{d['_id']}",
                "points": 100, "reason": "import", "source": None, "ts": now}
               for d in with_points]
    t = time.perf_counter()
    for i in range(0, len(entries), 500):
        await store._db["ledger"].insert_many(entries[i:i + 500], ordered=False)
    for d in with_points:
        await store._db["profiles"].update_one(
            {"_id": d["_id"]}, {"$inc": {"points.balance": 100, "points.earned": 100}})
    out["bulk"] = time.perf_counter() - t
    await store.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--followers", type=int, default=10_000,
                    help="rows that are already followers (matched, not created)")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the embedded engine's warning, once per store
    settings = load_settings(ROOT / "config.yml", {"WECHAT_TOKEN": "bench",
                                                   "WECHAT_APP_ID": APP_ID})
    table = rows(args.rows, args.followers, random.Random(args.seed))
    followers = follower_docs(table, args.followers)
    utf8, gbk = as_csv(table, "utf-8-sig"), as_csv(table, "gbk")
    print(f"{args.rows:,} rows ({len(utf8) / 1e6:.1f} MB UTF-8), {args.followers:,} of them "
          "already followers", file=sys.stderr)
    base = await baselines(utf8, args.rows)
    results = [await timed_import(utf8, followers, settings, "UTF-8 (BOM)"),
               await timed_import(gbk, followers, settings, "GBK")]
    n = args.rows
    print(f"\n| {n:,} rows | seconds | rows/s |\n|---|---:|---:|")
    print(f"| baseline a: read the CSV only | {base['read']:.1f} | {n / base['read']:,.0f} |")
    print(f"| baseline b: bare insert_many of {n:,} profiles | {base['insert_many']:.1f} | "
          f"{n / base['insert_many']:,.0f} |")
    print(f"| baseline c: {base['awards_n']:,.0f} bare ledger awards | {base['awards']:.1f} "
          f"| {base['awards_n'] / base['awards']:,.0f} |")
    print(f"| baseline d: the same credits in bulk (a proposed ledger.award_many) | "
          f"{base['bulk']:.1f} | {base['awards_n'] / base['bulk']:,.0f} |")
    for r in results:
        ph = r["phases"]
        print(f"| import, {r['label']} ({r['created']:,} created, {r['updated']:,} updated, "
              f"{r['points']:,} points) | {r['seconds']:.1f} | {n / r['seconds']:,.0f} |")
        print(f"|   phases: checked {ph.get('checking', 0):.1f} s, matched by "
              f"{ph.get('matching', 0):.1f} s, written by {ph.get('writing', 0):.1f} s | | |")
        print(f"| same file again, {r['label']} (all unchanged) | {r['rerun']:.1f} | "
              f"{n / r['rerun']:,.0f} |")
    worst = max(r["seconds"] for r in results)
    print(f"\ntarget: {n:,} rows <= 60 s: {'met' if worst <= 60 * n / 100_000 else 'MISSED'} "
          f"(slowest {worst:.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
