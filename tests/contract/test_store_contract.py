"""One contract suite over every store backend available: the embedded engine always,
and a real MongoDB server too when MONGODB_URL is set (e.g. in a deployment's CI).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from store.mongo import MongoStore
from store.records import Identity, Interaction


def ident(openid: str, channel: str = "wechat") -> Identity:
    return {"channel": channel, "app_id": "wx", "openid": openid, "unionid": None}


def interaction(profile_id: str, key: str, ts: datetime, direction: str = "in") -> Interaction:
    return {"_id": uuid.uuid4().hex, "profile_id": profile_id, "channel": "wechat",
            "direction": direction, "type": "text", "text": "hi", "payload": {},
            "intent": None, "confidence": None, "latency_ms": None, "outcome": "received",
            "dedupe_key": key, "ts": ts}  # type: ignore[typeddict-item]


NOW = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


async def test_touch_creates_once_then_updates(store):
    p1 = await store.profiles.touch(ident("o1"), NOW, "zh")
    p2 = await store.profiles.touch(ident("o1"), NOW + timedelta(minutes=1), None)
    assert p1["_id"] == p2["_id"]
    assert p2["first_seen"] == NOW and p2["last_seen"] == NOW + timedelta(minutes=1)
    assert p2["counters"]["inbound"] == 2 and p2["lang"] == "zh"
    assert p2["follow"]["state"] == "unknown" and p2["tags"] == [] and p2["fields"] == {}
    assert p2["identities"] == [ident("o1")]


async def test_same_openid_on_another_channel_is_another_profile(store):
    a = await store.profiles.touch(ident("o1"), NOW, None)
    b = await store.profiles.touch(ident("o1", channel="json"), NOW, None)
    assert a["_id"] != b["_id"]


async def test_concurrent_first_messages_make_one_profile(store):
    results = await asyncio.gather(*(store.profiles.touch(ident("race"), NOW, None)
                                     for _ in range(10)))
    assert len({p["_id"] for p in results}) == 1
    final = await store.profiles.find_by_identity("wechat", "wx", "race")
    assert final["counters"]["inbound"] == 10


async def test_follow_state_fields_and_outbound_counter(store):
    p = await store.profiles.touch(ident("o2"), NOW, None)
    await store.profiles.set_follow(p["_id"], "subscribed", NOW)
    await store.profiles.set_fields(p["_id"], {"city": "上海", "any name": 1})
    await store.profiles.count_outbound(p["_id"], 3)
    got = await store.profiles.get(p["_id"])
    assert got["follow"] == {"state": "subscribed", "changed_at": NOW}
    assert got["fields"] == {"city": "上海", "any name": 1}
    assert got["counters"] == {"inbound": 1, "outbound": 3}
    assert await store.profiles.get("missing") is None
    assert await store.profiles.find_by_identity("wechat", "wx", "nobody") is None


async def test_interactions_are_unique_on_dedupe_key(store):
    assert await store.interactions.add(interaction("p", "k1", NOW))
    assert not await store.interactions.add(interaction("p", "k1", NOW))
    assert await store.interactions.count("p") == 1


async def test_latest_is_newest_first_and_limited(store):
    for i in range(5):
        await store.interactions.add(interaction("p", f"k{i}", NOW + timedelta(seconds=i)))
    await store.interactions.add(interaction("other", "x", NOW))
    latest = await store.interactions.latest("p", 3)
    assert [i["dedupe_key"] for i in latest] == ["k4", "k3", "k2"]
    assert await store.interactions.count() == 6


async def test_update_and_get_by_dedupe_key(store):
    await store.interactions.add(interaction("p", "k", NOW))
    await store.interactions.update("k", {"intent": "greet", "confidence": 0.9})
    got = await store.interactions.get("k")
    assert got["intent"] == "greet" and got["confidence"] == 0.9
    assert got["ts"] == NOW


async def test_ping(store):
    await store.ping()


async def test_embedded_engine_warns_that_data_is_in_memory(caplog):
    s = await MongoStore.open(None, "warn")
    await s.close()
    assert "embedded in-memory MongoDB engine" in caplog.text


async def test_a_reply_in_the_same_millisecond_sorts_after_its_message(store):
    await store.interactions.add(interaction("p", "in:m:out:1", NOW, "out"))
    await store.interactions.add(interaction("p", "in:m", NOW, "in"))
    await store.interactions.add(interaction("p", "in:m:out:0", NOW, "out"))
    latest = await store.interactions.latest("p", 10)
    assert [i["dedupe_key"] for i in latest] == ["in:m:out:1", "in:m:out:0", "in:m"]


async def test_records_sharing_a_millisecond_keep_the_order_they_were_made_in(store):
    # A reply and the next message written in the same millisecond (seq breaks the tie).
    first_out = interaction("p", "in:m1:out:0", NOW, "out")
    next_in = interaction("p", "in:m2", NOW, "in")
    first_out["seq"], next_in["seq"] = 100, 200
    await store.interactions.add(next_in)
    await store.interactions.add(first_out)
    assert [i["dedupe_key"] for i in await store.interactions.latest("p", 10)] == [
        "in:m2", "in:m1:out:0"]
