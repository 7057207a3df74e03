"""The embedded engine's hash indexes never change an answer: after random inserts,
updates, replaces, upserts and deletes, every query returns what a full scan returns, in
the same order; unique indexes refuse exactly the duplicates; the maps equal maps rebuilt
from scratch; and cursors honour skip and limit as before.
"""

from __future__ import annotations

import random
from typing import Any

import mongomock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock import filtering
from pymongo.errors import DuplicateKeyError

from store import embedded

embedded.install()

SCALARS: list[Any] = ["x", "y", "z", 0, 1, 2, 1.0, True, None, float("nan")]
IDS: list[Any] = [1, 2, 3, "a", "b", 2.0]
FIELDS = ["_id", "a", "tags", "b.c", "u", "missing"]


def value(rng: random.Random) -> Any:
    """A scalar, or an array that may hold scalars and arrays (multikey cases)."""
    if rng.random() < 0.6:
        return rng.choice(SCALARS)
    return [rng.choice(SCALARS) if rng.random() < 0.8 else
            [rng.choice(SCALARS) for _ in range(rng.randint(0, 2))]
            for _ in range(rng.randint(0, 3))]


def document(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": rng.choice(IDS)}
    for field in ("a", "tags"):
        if rng.random() < 0.7:
            doc[field] = value(rng)
    if rng.random() < 0.5:
        doc["u"] = rng.choice(["k1", "k2", "k3"])
    if rng.random() < 0.3:
        doc["b"] = {"c": value(rng)}
    elif rng.random() < 0.3:
        doc["b"] = [{"c": rng.choice(SCALARS)} for _ in range(rng.randint(0, 2))]
    return doc


def condition(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return value(rng)
    if kind == 1:
        return {"$eq": value(rng)}
    if kind == 2:
        return {"$in": [value(rng) for _ in range(rng.randint(0, 3))]}
    if kind == 3:
        return {"$elemMatch": {"$eq": rng.choice(SCALARS)}}
    if kind == 4:
        return {"$ne": rng.choice(SCALARS)}
    return {"$gte": rng.randint(0, 3)}


def query(rng: random.Random) -> dict[str, Any]:
    # _id conditions use real ids: an upsert seeds _id from its query, and mongomock
    # cannot find a NaN _id again (NaN != NaN), indexed or not.
    return {f: ({"$in": rng.sample(IDS, 2)} if rng.random() < 0.3 else rng.choice(IDS))
            if f == "_id" else condition(rng)
            for f in rng.sample(FIELDS, rng.randint(0, 2))}


def update(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(4)
    if kind == 0:
        return {"$set": {rng.choice(["a", "tags", "b.c", "u"]): value(rng)}}
    if kind == 1:
        return {"$unset": {rng.choice(["a", "tags", "b", "u"]): ""}}
    if kind == 2:
        return {"$addToSet": {"tags": rng.choice(SCALARS)}}
    return {"$pull": {"tags": rng.choice(SCALARS)}}


def scan(coll: Any, flt: dict[str, Any]) -> list[Any]:
    return [d["_id"] for d in list(coll._store._documents.values())
            if filtering.filter_applies(flt, d)]


def outcome(call: Any, *args: Any, **kwargs: Any) -> str:
    try:
        call(*args, **kwargs)
    except DuplicateKeyError:
        return "duplicate"
    except Exception as e:  # an operation mongomock refuses must be refused either way
        return type(e).__name__
    return "ok"


def check_maps(coll: Any) -> None:
    index = coll._store.__dict__.get("_scrm_index")
    if index is None:  # nothing written yet
        assert not coll._store._documents
        return
    fresh = embedded._Index()
    for field in index.maps:
        fresh.add_field(field, coll._store._documents.items())
    assert index.maps == fresh.maps
    assert index.wild == fresh.wild
    in_order = sorted(coll._store._documents, key=index.order.__getitem__)
    assert in_order == list(coll._store._documents)


@pytest.mark.parametrize("seed", range(120))
def test_indexed_answers_equal_scans(seed: int) -> None:
    rng = random.Random(seed)
    coll = mongomock.MongoClient().db.c

    def create_indexes() -> None:
        coll.create_index("a")
        coll.create_index([("tags", 1), ("a", 1)])
        coll.create_index("b.c")
        coll.create_index("u", unique=True, sparse=True)

    create_indexes()
    for step in range(40):
        kind = rng.choice(["insert", "insert", "update", "upsert", "replace", "delete"])
        if step == 25 and seed % 4 == 0:
            coll.drop()  # then the same collection, refilled
            create_indexes()
        before = {d["_id"]: d.get("u") for d in coll._store._documents.values()}
        if kind == "insert":
            doc = document(rng)
            clash = doc["_id"] in before or ("u" in doc and doc["u"] in before.values())
            assert outcome(coll.insert_one, doc) == (
                "duplicate" if clash else "ok")
        elif kind == "update":
            many = rng.random() < 0.5
            flt, upd = query(rng), update(rng)
            outcome(coll.update_many if many else coll.update_one, flt, upd)
        elif kind == "upsert":
            flt, upd = query(rng), update(rng)
            outcome(coll.find_one_and_update, flt, upd, upsert=True)
        elif kind == "replace":
            flt, new = query(rng), {k: v for k, v in document(rng).items() if k != "_id"}
            outcome(coll.replace_one, flt, new)
        else:
            many = rng.random() < 0.3
            flt = query(rng)
            outcome(coll.delete_many if many else coll.delete_one, flt)
        stored_u = [d["u"] for d in coll._store._documents.values()
                    if isinstance(d.get("u"), str)]
        assert len(stored_u) == len(set(stored_u)), "a unique index let a duplicate in"
        check_maps(coll)
        for flt in [query(rng) for _ in range(6)]:
            try:
                expected = scan(coll, flt)
            except Exception as e:
                with pytest.raises(type(e)):
                    list(coll.find(flt))
                continue
            assert [d["_id"] for d in coll.find(flt)] == expected, flt
            assert coll.count_documents(flt) == len(expected)


@given(n=st.integers(0, 30), skip=st.integers(0, 35), limit=st.integers(-35, 35))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_cursor_skip_and_limit(n: int, skip: int, limit: int) -> None:
    coll = mongomock.MongoClient().db.c
    if n:
        coll.insert_many([{"_id": i, "odd": i % 2 == 1} for i in range(n)])
    rows = [d["_id"] for d in coll.find().skip(skip).limit(limit)]
    expected = list(range(n))[skip:]
    if limit:
        expected = expected[:abs(limit)]
    assert rows == expected
    # Sorted, filtered and projected, with the limit given to find() itself.
    odd = [d["_id"] for d in coll.find({"odd": True}, {"_id": 1}, skip=skip,
                                       limit=limit).sort("_id", -1)]
    want = [i for i in reversed(range(n)) if i % 2][skip:]
    assert odd == (want[:abs(limit)] if limit else want)
