"""Orders over every store backend: the same orders and refunds posted concurrently,
repeated and in shuffled order leave each member's aggregates and points equal to a
computation from scratch, and the ledger clean.

The embedded engine runs each operation synchronously, so its collections are wrapped to
yield to the event loop a few times around every call (as test_ledger_contract does):
the records then interleave at every database step, as over a network.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.brand_calendar import BrandCalendar
from bot.members.orders import OrderBook, order_from_json
from bot.members.points import Points
from store.mongo import MongoStore
from tests.support.backends import open_store
from tests.support.core import settings

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
APP_ID = "wx-contract"
ASYNC = {"insert_one", "find_one", "find_one_and_update", "update_one", "replace_one",
         "delete_one", "count_documents"}


async def pause(rng: random.Random) -> None:
    # Mostly a step or two; now and then long enough for a whole other record to run.
    for _ in range(rng.randint(0, 3) if rng.random() < 0.9 else rng.randint(20, 60)):
        await asyncio.sleep(0)


class YieldingCursor:
    def __init__(self, cursor: Any, rng: random.Random) -> None:
        self._cursor, self._rng = cursor, rng

    def sort(self, *args: Any, **kwargs: Any) -> YieldingCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        await pause(self._rng)
        found: list[Any] = await self._cursor.to_list(length=length)
        await pause(self._rng)
        return found


class YieldingCollection:
    def __init__(self, col: Any, rng: random.Random) -> None:
        self._col, self._rng = col, rng

    def find(self, *args: Any, **kwargs: Any) -> YieldingCursor:
        return YieldingCursor(self._col.find(*args, **kwargs), self._rng)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._col, name)
        if name not in ASYNC:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            await pause(self._rng)
            result = await attr(*args, **kwargs)
            await pause(self._rng)
            return result

        return call


class YieldingClient:
    def __init__(self, client: Any, rng: random.Random) -> None:
        self._client, self._rng = client, rng

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __getitem__(self, database: str) -> Any:
        db = self._client[database]
        rng = self._rng

        class Db:
            name = database

            def __getitem__(self, col: str) -> YieldingCollection:
                return YieldingCollection(db[col], rng)

        return Db()


@pytest.fixture
async def store(backend: str, server: str | None) -> AsyncIterator[MongoStore]:
    if backend != "embedded":
        async with open_store(backend, prefix="orders", secantus=server) as s:
            yield s
        return
    from mongomock_motor import AsyncMongoMockClient

    s = MongoStore(YieldingClient(AsyncMongoMockClient(tz_aware=True), random.Random(7)),
                   f"orders_{uuid.uuid4().hex[:8]}", embedded=True)
    for repo in (s.profiles, s.ledger, s.orders):
        await repo.ensure_indexes()
    yield s


@dataclass
class Spec:
    order_id: str
    member: Any  # the reference the shop uses
    profile: str
    at: datetime
    fen: int
    category: str
    refunds: list[tuple[str, int]] = field(default_factory=list)

    def doc(self, refunds: list[tuple[str, int]]) -> dict[str, Any]:
        def yuan(f: int) -> str:
            return f"{f // 100}.{f % 100:02d}"
        return {"order_id": self.order_id, "member": self.member, "at": self.at.isoformat(),
                "amount": yuan(self.fen), "channel": "youzan",
                "items": [{"name": "x", "category": self.category, "qty": 1,
                           "amount": yuan(self.fen)}],
                "refunds": [{"refund_id": rid, "amount": yuan(f),
                             "at": (self.at + timedelta(days=1)).isoformat()}
                            for rid, f in refunds]}


async def test_concurrent_repeated_shuffled_posts_keep_everything_exact(store):
    rng = random.Random(2026)
    cfg = settings()
    points = Points(store, cfg.points, BrandCalendar(cfg.app.timezone))
    book = OrderBook(store, points, cfg, ("wechat", APP_ID))
    members = []
    for n in range(3):
        p = await store.profiles.touch({"channel": "wechat", "app_id": APP_ID,
                                        "openid": f"o_{n}", "unionid": f"u_{n}"}, NOW, "zh")
        await store.profiles.update(p["_id"], {"member.id": f"M000000000{n}",
                                               "fields.mobile": f"1391234000{n}"})
        members.append((p["_id"], [f"M000000000{n}", f"1391234000{n}", f"o_{n}",
                                   {"unionid": f"u_{n}"}]))
    specs = []
    for i in range(12):
        pid, refs = members[i % 3]
        paid = rng.randint(1, 50_000)
        spec = Spec(f"O-{i}", rng.choice(refs), pid, NOW - timedelta(days=i, minutes=i),
                    paid, rng.choice(["diapers", "wipes", "formula"]))
        left = paid
        for k in range(rng.choice([0, 1, 2, 3])):
            amount = left if k == 2 or rng.random() < 0.3 else rng.randint(1, left)
            spec.refunds.append((f"R{i}-{k}", amount))
            left -= amount
            if left == 0:
                break
        specs.append(spec)
    posts = []
    for s in specs:
        views = [s.refunds[:k] for k in range(len(s.refunds) + 1)]  # as they happened
        views += [[r] for r in s.refunds]  # each refund told on its own
        views.append(list(reversed(s.refunds)))
        for view in views:
            posts += [order_from_json(s.doc(view))] * rng.randint(1, 3)
    rng.shuffle(posts)
    results = await asyncio.gather(*(book.record(o, NOW) for o in posts))

    assert sorted(r.order_id for r in results if r.outcome == "created") == sorted(
        s.order_id for s in specs)
    assert not [r for r in results if r.outcome == "conflict"]
    for pid, _ in members:
        mine = [s for s in specs if s.profile == pid]
        nets = {s.order_id: s.fen - sum(f for _, f in s.refunds) for s in mine}
        kept = [s for s in mine if nets[s.order_id] > 0]
        categories: dict[str, int] = {}
        for s in kept:
            categories[s.category] = categories.get(s.category, 0) + nets[s.order_id]
        profile = await store.profiles.get(pid)
        assert profile is not None
        agg = dict(profile["orders"])  # type: ignore[typeddict-item]
        assert agg["count"] == len(kept)
        assert agg["spent_fen"] == sum(nets.values())
        assert agg["spent"] == sum(nets.values()) / 100
        assert {c: round(v * 100) for c, v in agg["categories"].items()} == categories
        if kept:
            assert agg["last_at"] == max(s.at for s in kept)
            assert agg["top_category"] == min(categories, key=lambda c: (-categories[c], c))
        # One point per whole yuan still paid, each change counted in exactly one answer.
        expected = sum(n // 100 for n in nets.values())
        assert profile["points"]["balance"] == expected  # type: ignore[typeddict-item]
        assert sum(r.points for r in results if r.profile_id == pid) == expected
    for s in specs:
        doc = await store.orders.get(s.order_id)
        assert doc is not None and doc["settled"] == doc["version"] and "lease" not in doc
        assert sorted(r["refund_id"] for r in doc["refunds"]) == sorted(r for r, _ in s.refunds)
    assert await store.ledger.check() == []


async def test_a_slower_recomputation_never_overwrites_a_newer_one(store):
    p = await store.profiles.touch({"channel": "wechat", "app_id": APP_ID, "openid": "o_r",
                                    "unionid": None}, NOW, "zh")
    older = await store.orders.bump(p["_id"])
    newer = await store.orders.bump(p["_id"])
    assert older is not None and newer == older + 1
    assert await store.orders.set_aggregates(p["_id"], newer, {"orders.count": 2}, [])
    # The older one read her orders before the newer change: it finishes last, and loses.
    assert not await store.orders.set_aggregates(p["_id"], older, {"orders.count": 1}, [])
    assert (await store.profiles.get(p["_id"]))["orders"]["count"] == 2
    assert await store.orders.bump("no-such-profile") is None
