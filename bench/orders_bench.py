#!/usr/bin/env python
"""The shop's order webhook: signed orders posted to POST /admin/api/orders of the real
app (embedded store, real Redis), against a bare aiohttp handler that only checks the
same signature and answers, in the same run, the same process and the same client.

    .venv/bin/python bench/orders_bench.py                    # 20,000 members, 4,000 orders
    .venv/bin/python bench/orders_bench.py --members 100000 --orders 10000 --concurrency 32

Phases: bare (baseline), created (new orders), repeat (the same posts again: unchanged),
refund (each order refunded in part: updated, points taken back). Orders/s and latency
per phase, then a check: every order once, aggregates and points exact, ledger clean.
Loopback only; the private Redis namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from store.mongo import MongoStore  # noqa: E402
from webhooks.app import create_app  # noqa: E402
from webhooks.config import load_settings  # noqa: E402
from webhooks.shop import ORDERS_PATH  # noqa: E402
from webhooks.signing import signed  # noqa: E402

SECRET = "bench-shop-secret"
APP_ID = "wx-bench"


def body_of(order_id: str, member: str, fen: int, at: datetime, category: str,
            refund: int = 0) -> bytes:
    def yuan(f: int) -> str:
        return f"{f // 100}.{f % 100:02d}"
    doc = {"order_id": order_id, "member": member, "at": at.isoformat(), "amount": yuan(fen),
           "channel": "tmall",
           "items": [{"name": "纸尿裤", "category": category,
                      "qty": 1, "amount": yuan(fen)}],
           "refunds": [{"refund_id": f"{order_id}-r", "amount": yuan(refund),
                        "at": (at + timedelta(days=1)).isoformat()}] if refund else []}
    return json.dumps(doc, ensure_ascii=False).encode()


def headers(body: bytes) -> dict[str, str]:
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-SCRM-Signature": sig, "Content-Type": "application/json"}


async def bare(request: web.Request) -> web.Response:
    """The floor: read, verify, parse, answer."""
    body = await request.read()
    if not signed(SECRET, body, request.headers.get("X-SCRM-Signature", "")):
        return web.json_response({"ok": False}, status=401)
    doc = json.loads(body)
    return web.json_response({"ok": True, "order_id": doc["order_id"], "result": "created",
                              "points": 0})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}{ORDERS_PATH}"


async def phase(session: aiohttp.ClientSession, url: str, bodies: list[bytes],
                concurrency: int, expect: str | None) -> dict[str, Any]:
    latencies: list[float] = []
    wrong: dict[str, int] = {}
    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers(body)) as resp:
                answer = await resp.json()
            latencies.append(time.perf_counter() - started)
            got = f"{resp.status} {answer.get('result')}"
            if resp.status != 200 or (expect and answer.get("result") != expect):
                wrong[got] = wrong.get(got, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"n": len(bodies), "s": elapsed, "rate": len(bodies) / elapsed,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "wrong": wrong}


async def members(store: MongoStore, n: int) -> list[str]:
    """n members straight into the embedded store (as sign-up leaves them)."""
    now = datetime.now(UTC)
    docs = [{"_id": uuid.uuid4().hex, "identity_keys": [f"wechat:{APP_ID}:o_{i}"],
             "identities": [{"channel": "wechat", "app_id": APP_ID, "openid": f"o_{i}",
                             "unionid": None}],
             "first_seen": now, "last_seen": now, "follow": {"state": "subscribed",
                                                             "changed_at": now},
             "counters": {}, "tags": [], "fields": {"mobile": f"139{i:08d}"},
             "member": {"id": f"M{i:010X}"}} for i in range(n)]
    col = store._db["profiles"]  # loading only: the app reads through its repositories
    for i in range(0, n, 5000):
        await col.insert_many(docs[i:i + 5000])
    return [d["member"]["id"] for d in docs]  # type: ignore[index]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=4_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds the started app is left alone before measuring")
    args = parser.parse_args()
    random.seed(args.seed)
    namespace = f"bench-orders-{uuid.uuid4().hex[:8]}"
    env = {"WECHAT_TOKEN": "bench-token", "WECHAT_APP_ID": APP_ID,
           "SCRM_SHOP_SECRET": SECRET, "SCRM_EMBEDDED_SNAPSHOT": "off",
           "RASA_URL": "http://127.0.0.1:9", "WECHAT_API_BASE": "http://127.0.0.1:9",
           **{k: v for k, v in os.environ.items() if k == "REDIS_URL"}}
    settings = load_settings(ROOT / "config.yml", env)
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"namespace": namespace})})
    store = await MongoStore.open(None, "bench_orders")
    started = time.perf_counter()
    ids = await members(store, args.members)
    print(f"members in the embedded store: {len(ids):,} "
          f"(loaded in {time.perf_counter() - started:.1f} s)")

    now = datetime.now(UTC).replace(microsecond=0)
    plan = [(f"B-{i}", random.choice(ids), random.randint(100, 99_999),
             now - timedelta(minutes=i), random.choice(["diapers", "wipes", "formula"]))
            for i in range(args.orders)]
    paid = [body_of(*o) for o in plan]
    refunds = {o[0]: random.randint(1, o[2]) for o in plan}
    refunded = [body_of(*o, refund=refunds[o[0]]) for o in plan]

    base_app = web.Application()
    base_app.router.add_post(ORDERS_PATH, bare)
    app = create_app(settings, store=store, run_worker=False)
    runners = []
    results: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        runner, url = await serve(base_app)
        runners.append(runner)
        results["bare"] = await phase(session, url, paid, args.concurrency, None)
        runner, url = await serve(app)
        runners.append(runner)
        # The app's start-up work (the matching index is rebuilt from every member in
        # the background) is not the order path: let it finish first.
        await asyncio.sleep(args.settle)
        results["created"] = await phase(session, url, paid, args.concurrency, "created")
        results["repeat"] = await phase(session, url, paid, args.concurrency, "unchanged")
        results["refund"] = await phase(session, url, refunded, args.concurrency, "updated")

        # Exact after all of it: from the plan, not from the app's own functions.
        nets: dict[str, list[int]] = {}
        for o, m, f, _, _ in plan:
            nets.setdefault(m, []).append(f - refunds[o])
        by_member = {m: (sum(1 for n in v if n > 0), sum(v), sum(n // 100 for n in v))
                     for m, v in nets.items()}
        bad = 0
        for m, (count, spent, points) in by_member.items():
            p = await store.profiles.find_by_member(m)
            assert p is not None
            got = (p.get("orders", {}).get("count"), p.get("orders", {}).get("spent_fen"),
                   p.get("points", {}).get("balance"))
            bad += got != (count, spent, points)
        mismatches = await store.ledger.check()
        for r in runners:
            await r.cleanup()
    redis = Redis.from_url(settings.redis.url)
    found = [k async for k in redis.scan_iter(f"{namespace}:*", count=1000)]
    if found:
        await redis.delete(*found)
    await redis.aclose()
    await store.close()

    base = results["bare"]["rate"]
    print(f"\n{args.orders:,} orders over {len(by_member):,} of {args.members:,} members, "
          f"concurrency {args.concurrency}\n")
    print("| phase | orders | s | orders/s | vs bare | p50 ms | p99 ms | wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['n']:,} | {r['s']:.2f} | {r['rate']:,.0f} | "
              f"{r['rate'] / base:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{sum(r['wrong'].values()) or 0} |")
    print(f"\ncheck: {len(by_member) - bad:,}/{len(by_member):,} members' count, spent and "
          f"points exact; ledger mismatches: {len(mismatches)}")
    if bad or mismatches or any(r["wrong"] for r in results.values()):
        print("FAILED:", {k: r["wrong"] for k, r in results.items() if r["wrong"]})
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
