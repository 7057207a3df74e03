"""Contract suite for the points ledger over every store backend available: the embedded
engine always, and a real MongoDB server too when MONGODB_URL is set.

The embedded engine runs each operation synchronously, so asyncio.gather alone would never
interleave two redemptions. Its collections are wrapped to yield to the event loop before
and after every call, which makes the concurrency tests actually race.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.ledger import Mismatch, MongoLedger
from tests.support.backends import open_client

NOW = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)

ASYNC_METHODS = {"insert_one", "find_one", "find_one_and_update", "update_one", "delete_one",
                 "create_index", "count_documents"}


class YieldingCollection:
    def __init__(self, col: Any) -> None:
        self._col = col

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._col, name)
        if name not in ASYNC_METHODS:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            result = await attr(*args, **kwargs)
            await asyncio.sleep(0)
            return result

        return call


class YieldingDb:
    def __init__(self, db: Any) -> None:
        self._db = db

    def __getitem__(self, name: str) -> YieldingCollection:
        return YieldingCollection(self._db[name])


@pytest.fixture
async def db(backend, server):
    name = f"ledger_{uuid.uuid4().hex[:8]}"
    async with open_client(backend, secantus=server) as client:
        if backend == "embedded":
            yield YieldingDb(client[name])  # mongomock never yields: make it interleave
        else:
            yield client[name]
            await client.drop_database(name)
        client.close()


@pytest.fixture
async def ledger(db):
    led = MongoLedger(db)
    await led.ensure_indexes()
    for pid in ("p1", "p2"):
        await db["profiles"].insert_one({"_id": pid})
    return led


async def test_award_applies_once_per_key(ledger):
    first = await ledger.award("p1", "k1", 10, "signup", "in:abc", now=NOW)
    again = await ledger.award("p1", "k1", 10, "signup", "in:abc", now=NOW)
    assert (first.applied, first.balance, first.earned) == (True, 10, 10)
    assert (again.applied, again.balance, again.earned) == (False, 10, 10)
    assert await ledger.balance("p1") == (10, 10)
    [entry] = await ledger.entries("p1", 10)
    assert entry["key"] == "k1" and entry["points"] == 10 and entry["reason"] == "signup"
    assert entry["source"] == "in:abc" and entry["ts"] == NOW


@pytest.mark.parametrize("points", [0, -5])
async def test_award_rejects_non_positive_points(ledger, points):
    with pytest.raises(ValueError):
        await ledger.award("p1", "k", points, "x", now=NOW)
    assert await ledger.entries("p1", 10) == []
    assert await ledger.balance("p1") == (0, 0)


async def test_award_to_unknown_profile_raises_and_leaves_no_entry(ledger):
    with pytest.raises(LookupError):
        await ledger.award("ghost", "k", 5, "x", now=NOW)
    assert await ledger.entries("ghost", 10) == []
    assert await ledger.balance("ghost") == (0, 0)


async def test_balance_equals_ledger_sum_after_mixed_operations(ledger):
    await ledger.set_reward("mug", "Mug", 30, 3)
    await ledger.award("p1", "a1", 100, "purchase", now=NOW)
    await ledger.award("p1", "a2", 20, "survey", now=NOW + timedelta(seconds=1))
    assert (await ledger.spend("p1", "s1", 15, "correction", now=NOW)).applied
    assert (await ledger.redeem("p1", "mug", "r1", now=NOW)).applied
    assert not (await ledger.spend("p1", "s2", 1000, "too much", now=NOW)).applied
    await ledger.award("p2", "b1", 5, "signup", now=NOW)
    assert await ledger.balance("p1") == (100 + 20 - 15 - 30, 120)
    assert await ledger.balance("p2") == (5, 5)
    assert sum(e["points"] for e in await ledger.entries("p1", 100)) == 75
    assert await ledger.check() == []


async def test_spend_never_goes_negative_and_leaves_no_entry(ledger):
    await ledger.award("p1", "a", 10, "x", now=NOW)
    refused = await ledger.spend("p1", "s", 11, "correction", now=NOW)
    assert (refused.applied, refused.reason, refused.balance) == (False, "insufficient", 10)
    assert [e["key"] for e in await ledger.entries("p1", 10)] == ["a"]
    ok = await ledger.spend("p1", "s", 10, "correction", now=NOW)
    assert (ok.applied, ok.balance) == (True, 0)
    dup = await ledger.spend("p1", "s", 10, "correction", now=NOW)
    assert (dup.applied, dup.reason) == (False, "duplicate")
    # earned is lifetime: spending does not reduce it.
    assert await ledger.balance("p1") == (0, 10)
    assert not (await ledger.spend("p2", "s2", 1, "no points at all", now=NOW)).applied
    with pytest.raises(ValueError):
        await ledger.spend("p1", "s3", 0, "x", now=NOW)
    assert await ledger.check() == []


async def test_concurrent_redemptions_never_oversell(ledger):
    await ledger.set_reward("tote", "Tote bag", 50, 5)
    await ledger.award("p1", "a", 10_000, "x", now=NOW)
    results = await asyncio.gather(*(ledger.redeem("p1", "tote", f"r{i}", now=NOW)
                                     for i in range(20)))
    assert sum(r.applied for r in results) == 5
    assert {r.reason for r in results if not r.applied} == {"out_of_stock"}
    assert (await ledger.reward("tote"))["stock"] == 0
    assert await ledger.balance("p1") == (10_000 - 5 * 50, 10_000)
    negative = [e for e in await ledger.entries("p1", 100) if e["points"] < 0]
    assert len(negative) == 5
    assert all(e["points"] == -50 and e["reason"] == "redeem:tote" for e in negative)
    assert await ledger.check() == []


async def test_concurrent_redemptions_never_overdraw(ledger):
    await ledger.set_reward("mug", "Mug", 30, 10)
    await ledger.award("p1", "a", 70, "x", now=NOW)  # affords 2 mugs, not 3
    results = await asyncio.gather(*(ledger.redeem("p1", "mug", f"r{i}", now=NOW)
                                     for i in range(10)))
    assert sum(r.applied for r in results) == 2
    assert {r.reason for r in results if not r.applied} == {"insufficient_points"}
    assert all(r.balance >= 0 for r in results)
    assert (await ledger.reward("mug"))["stock"] == 8
    assert await ledger.balance("p1") == (10, 70)
    assert await ledger.check() == []


async def test_concurrent_redemptions_with_one_key_apply_once(ledger):
    await ledger.set_reward("mug", "Mug", 30, 10)
    await ledger.award("p1", "a", 1000, "x", now=NOW)
    results = await asyncio.gather(*(ledger.redeem("p1", "mug", "same", now=NOW)
                                     for _ in range(5)))
    assert sum(r.applied for r in results) == 1
    assert {r.reason for r in results if not r.applied} == {"duplicate"}
    assert (await ledger.reward("mug"))["stock"] == 9
    assert await ledger.balance("p1") == (970, 1000)
    assert await ledger.check() == []


async def test_redeem_reasons(ledger):
    await ledger.set_reward("pin", "Pin", 10, 1)
    await ledger.award("p1", "a", 100, "x", now=NOW)
    unknown = await ledger.redeem("p1", "nothing", "r0", now=NOW)
    assert (unknown.applied, unknown.reason) == (False, "unknown_item")
    ok = await ledger.redeem("p1", "pin", "r1", now=NOW)
    assert (ok.applied, ok.reason, ok.balance) == (True, None, 90)
    dup = await ledger.redeem("p1", "pin", "r1", now=NOW)
    assert (dup.applied, dup.reason, dup.balance) == (False, "duplicate", 90)
    empty = await ledger.redeem("p1", "pin", "r2", now=NOW)
    assert (empty.applied, empty.reason) == (False, "out_of_stock")
    await ledger.set_reward("pin", "Pin", 10, 1)  # restock from config
    poor = await ledger.redeem("p2", "pin", "r3", now=NOW)
    assert (poor.applied, poor.reason, poor.balance) == (False, "insufficient_points", 0)
    assert (await ledger.reward("pin"))["stock"] == 1
    assert await ledger.entries("p2", 10) == []


async def test_check_detects_tampering_and_repair_fixes_it(ledger, db):
    await ledger.award("p1", "a", 40, "x", now=NOW)
    await ledger.spend("p1", "s", 15, "x", now=NOW)
    await ledger.award("p2", "b", 7, "x", now=NOW)
    await db["profiles"].update_one({"_id": "p1"}, {"$inc": {"points.balance": 500}})
    await db["profiles"].update_one({"_id": "p2"}, {"$unset": {"points": ""}})
    assert await ledger.check() == [Mismatch("p1", 525, 25, 40, 40), Mismatch("p2", 0, 7, 0, 7)]
    assert await ledger.repair() == 2
    assert await ledger.check() == []
    assert await ledger.balance("p1") == (25, 40)
    assert await ledger.balance("p2") == (7, 7)
    assert await ledger.repair() == 0


async def test_check_detects_an_interrupted_award(ledger, db):
    # What a crash between the ledger insert and the profile $inc leaves behind.
    await db["ledger"].insert_one({"_id": "e1", "profile_id": "p1", "key": "k", "points": 9,
                                   "reason": "x", "source": None, "ts": NOW})
    assert await ledger.check() == [Mismatch("p1", 0, 9, 0, 9)]
    assert await ledger.repair() == 1
    assert await ledger.balance("p1") == (9, 9)


async def test_entries_newest_first_and_limited(ledger):
    for i in range(5):
        await ledger.award("p1", f"k{i}", i + 1, "x", now=NOW + timedelta(minutes=i))
    await ledger.award("p2", "other", 1, "x", now=NOW + timedelta(hours=1))
    got = await ledger.entries("p1", 3)
    assert [e["key"] for e in got] == ["k4", "k3", "k2"]
    assert [e["ts"] for e in got] == [NOW + timedelta(minutes=m) for m in (4, 3, 2)]
