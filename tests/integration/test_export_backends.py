"""The export's column reads (store/exports.py) give the same answers on every store
backend: the embedded engine's direct path and a real server's projected cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.mongo import MongoStore
from tests.support.backends import BACKENDS, open_store

T0 = datetime(2026, 11, 25, 2, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture(params=[b if b == "embedded" else pytest.param(b, marks=pytest.mark.server)
                        for b in BACKENDS])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MongoStore]:
    url = request.getfixturevalue("secantus_url") if request.param == "secantus" else None
    async with open_store(request.param, prefix="export", secantus=url) as s:
        yield s


def docs() -> list[dict[str, Any]]:
    found = [
        {"_id": "a", "fields": {"city": "上海", "mobile": "13912345678"}, "tags": ["会员", "VIP"],
         "orders": {"count": 2, "spent": 99.5, "categories": {"湿巾": 99.5}}, "last_seen": T0},
        {"_id": "b", "fields": {"city": "北京"}, "tags": [], "orders": None,
         "last_seen": T0 - timedelta(days=3)},
        {"_id": "c", "fields": [{"city": "x"}], "last_seen": T0 - timedelta(days=1)},
        {"_id": "d"},
    ]
    for d in found:  # the profiles' unique index needs one each
        d["identity_keys"] = [f"test:x:{d['_id']}"]
    return found


PATHS = ["_id", "fields.city", "fields.mobile", "tags", "orders.count", "orders",
         "orders.categories", "last_seen", "nothing.here"]


async def read(store: MongoStore, query: dict[str, Any], batch: int = 2
               ) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    async for cols in store.exports.columns("profiles", query, PATHS, batch):
        assert len({len(c) for c in cols}) == 1 and len(cols[0]) <= batch
        rows.extend(zip(*cols, strict=True))
    return sorted(rows, key=lambda r: r[0])


async def test_columns_read_each_path_the_same_on_every_backend(store):
    await store._db["profiles"].insert_many(docs())
    rows = await read(store, {})
    orders = {"count": 2, "spent": 99.5, "categories": {"湿巾": 99.5}}
    assert rows == [
        ("a", "上海", "13912345678", ["会员", "VIP"], 2, orders, {"湿巾": 99.5}, T0, None),
        ("b", "北京", None, [], None, None, None, T0 - timedelta(days=3), None),
        ("c", None, None, None, None, None, None, T0 - timedelta(days=1), None),  # an array
        ("d", None, None, None, None, None, None, None, None),
    ]
    assert all(r[7] is None or r[7].tzinfo is not None for r in rows)  # times are aware
    assert await store.exports.count("profiles", {"tags": "VIP"}) == 1


async def test_columns_follow_the_filter_and_hand_out_copies(store):
    await store._db["profiles"].insert_many(docs())
    recent = await read(store, {"last_seen": {"$gte": T0 - timedelta(days=2)}})
    assert [r[0] for r in recent] == ["a", "c"]
    assert [r[0] for r in await read(store, {"fields.city": {"$in": ["北京", "杭州"]}})] == ["b"]
    first = recent[0]
    first[3].append("changed")  # what a caller does with a value stays with the caller
    first[5]["categories"]["湿巾"] = 0
    again = (await read(store, {"_id": "a"}))[0]
    assert again[3] == ["会员", "VIP"] and again[5]["categories"] == {"湿巾": 99.5}


async def test_only_known_collections_are_read(store):
    with pytest.raises(ValueError, match="not an exported collection"):
        await store.exports.count("ledger", {})  # type: ignore[arg-type]
