"""MongoDB unavailable (no server can run here, so connection errors are injected at the
store seam): followers get the apology, every inbound message is kept in the Redis outbox,
and written in order and exactly once when the store is back. Zero lost."""

from __future__ import annotations

import asyncio
from collections import Counter

from pymongo.errors import ServerSelectionTimeoutError

from scrm.follower import Follower
from tests.conftest import APP_ID, TOKEN, closed_port_url, make_settings


async def test_mongo_outage_keeps_every_message_and_writes_it_once(start_app, namespace,
                                                                   monkeypatch):
    app = await start_app(make_settings(namespace, closed_port_url()))
    store, outbox = app.store, app.services.core.orchestrator._outbox

    def down(*args, **kwargs):
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")

    for col, method in ((store.profiles._col, "find_one_and_update"),
                        (store.interactions._col, "insert_one"),
                        (store.interactions._col, "find_one")):
        monkeypatch.setattr(col, method, down)

    followers = [Follower(token=TOKEN, openid=f"o_outage_{i}") for i in range(5)]
    sent: dict[str, list[str]] = {f.openid: [] for f in followers}

    async def chat(f: Follower) -> list[tuple[int, str]]:
        out = []
        for n in range(4):
            text = f"消息{n}"
            sent[f.openid].append(text)
            status, body = await app.post_wechat(*f.request(f.text(text)))
            out.append((status, f.read_reply(body).get("Content", body)))
        return out

    replies = [r for rs in await asyncio.gather(*(chat(f) for f in followers)) for r in rs]
    await app.services.core.orchestrator.drain(5)
    assert all(status == 200 and "稍后再试" in text for status, text in replies)
    assert await outbox.size() == 20

    monkeypatch.undo()  # the database is back
    for _ in range(100):
        if await outbox.size() == 0:
            break
        await asyncio.sleep(0.1)
    stored, duplicated, lost = 0, 0, 0
    for f in followers:
        p = await store.profiles.find_by_identity("wechat", APP_ID, f.openid)
        log = list(reversed(await store.interactions.latest(p["_id"], 100)))
        inbound = [i for i in log if i["direction"] == "in"]
        texts = [i["text"] for i in inbound]
        stored += len(inbound)
        duplicated += sum(c - 1 for c in Counter(i["dedupe_key"] for i in inbound).values())
        lost += len(set(sent[f.openid]) - set(texts))
        assert texts == sent[f.openid]  # in arrival order
        assert {i["outcome"] for i in inbound} == {"store_unavailable"}
        assert p["counters"]["inbound"] == 4
    print(f"\nmongo outage: sent 20, kept in outbox 20, stored {stored}, lost {lost}, "
          f"duplicated {duplicated}")
    assert (stored, lost, duplicated) == (20, 0, 0)
    assert await app.services.core.orchestrator.replay_outbox() == 0  # nothing left, nothing twice
