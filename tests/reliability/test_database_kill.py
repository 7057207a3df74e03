"""A real database outage: the SecantusDB server process (MongoDB wire protocol over
WiredTiger) is killed with SIGKILL while followers are writing, and started again on the
same data directory. Every inbound message ends up stored exactly once, in the order each
follower sent it (the outbox keeps what arrived while the database was gone), and nothing
that was stored before the kill is missing afterwards."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from scrm.follower import Follower
from tests.conftest import APP_ID, TOKEN, closed_port_url, make_settings
from tests.support.secantus import SecantusServer

pytestmark = pytest.mark.server

FOLLOWERS, BEFORE, DURING, AFTER = 4, 4, 2, 3


async def test_sigkill_of_the_database_loses_and_doubles_nothing(start_app, namespace,
                                                                 tmp_path):
    server = SecantusServer(tmp_path / "data", log=tmp_path / "secantus.log").start()
    try:
        settings = make_settings(namespace, closed_port_url(),
                                 mongodb={"url": server.url, "database": "outage"})
        app = await start_app(settings)
        store = app.store
        followers = [Follower(token=TOKEN, openid=f"o_kill_{i}") for i in range(FOLLOWERS)]
        sent: dict[str, list[str]] = {f.openid: [] for f in followers}

        async def say(f: Follower, n: int) -> str:
            text = f"第{n}条消息来自{f.openid[-1]}"
            sent[f.openid].append(text)
            status, body = await app.post_wechat(*f.request(f.text(text)))
            assert status == 200
            return f.read_reply(body).get("Content", body)

        async def phase(start: int, count: int) -> list[str]:
            async def one(f: Follower) -> list[str]:
                return [await say(f, n) for n in range(start, start + count)]
            return [r for rs in await asyncio.gather(*(one(f) for f in followers)) for r in rs]

        await phase(0, BEFORE)
        await app.services.core.orchestrator.drain(10)
        acknowledged = {i["dedupe_key"] for i in await _inbound(store, followers)}
        assert len(acknowledged) == FOLLOWERS * BEFORE

        server.kill()  # SIGKILL: no shutdown, no flush
        during = await phase(BEFORE, DURING)
        assert all("稍后再试" in r for r in during)  # the apology, never WeChat's error page
        assert await app.services.core.state.outbox.size() == FOLLOWERS * DURING

        server.start()  # the same data directory
        for _ in range(300):
            if await app.services.core.state.outbox.size() == 0:
                break
            await asyncio.sleep(0.1)
        await phase(BEFORE + DURING, AFTER)
        await app.services.core.orchestrator.drain(10)

        inbound = await _inbound(store, followers)
        keys = Counter(i["dedupe_key"] for i in inbound)
        lost = acknowledged - set(keys)
        duplicated = sum(n - 1 for n in keys.values() if n > 1)
        print(f"\ndatabase SIGKILL: {FOLLOWERS * (BEFORE + DURING + AFTER)} sent, "
              f"{len(inbound)} stored, acknowledged before the kill {len(acknowledged)}, "
              f"lost {len(lost)}, duplicated {duplicated}")
        assert not lost and not duplicated
        for f in followers:
            p = await store.profiles.find_by_identity("wechat", APP_ID, f.openid)
            log = list(reversed(await store.interactions.latest(p["_id"], 200)))
            assert [i["text"] for i in log if i["direction"] == "in"] == sent[f.openid]
    finally:
        server.stop()


async def _inbound(store, followers: list[Follower]) -> list[dict]:
    out = []
    for f in followers:
        p = await store.profiles.find_by_identity("wechat", APP_ID, f.openid)
        if p is not None:
            out += [i for i in await store.interactions.latest(p["_id"], 200)
                    if i["direction"] == "in"]
    return out
