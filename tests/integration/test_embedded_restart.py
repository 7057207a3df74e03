"""The embedded engine keeps its data between runs: a snapshot written on a clean stop (and
every `mongodb.snapshot_seconds`), loaded at the next start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest

from scrm.follower import Follower
from store.mongo import MongoStore
from store.records import Identity, new_interaction
from tests.conftest import ADMIN, APP_ID, TOKEN, closed_port_url
from tests.support.app_process import AppProcess, app_env, loopback_config

NOW = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


async def test_a_snapshot_brings_back_every_record_and_its_indexes(tmp_path):
    path = tmp_path / "data" / "embedded.bson"
    store = await MongoStore.open(None, "snap", path)
    ident: Identity = {"channel": "wechat", "app_id": "wx", "openid": "o1", "unionid": None}
    p = await store.profiles.touch(ident, NOW, "zh")
    record = new_interaction(p["_id"], "wechat", "in", "text", "你好", {}, NOW)
    record["dedupe_key"] = "in:wechat:k1"
    assert await store.interactions.add(record)
    await store.ledger.award(p["_id"], "signup:p", 100, "signup", now=NOW)
    await store.close()  # a clean stop writes the snapshot
    assert path.exists()

    again = await MongoStore.open(None, "snap", path)
    back = await again.profiles.find_by_identity("wechat", "wx", "o1")
    assert back is not None and back["_id"] == p["_id"] and back["first_seen"] == NOW
    assert back["first_seen"].tzinfo is not None  # times come back as they went in
    assert (await again.interactions.get("in:wechat:k1"))["text"] == "你好"
    assert await again.ledger.balance(p["_id"]) == (100, 100)
    assert not await again.interactions.add(record)  # the unique key still holds
    await again.close()


async def test_a_crash_while_writing_keeps_the_last_snapshot(tmp_path):
    path = tmp_path / "embedded.bson"
    store = await MongoStore.open(None, "snap", path)
    ident: Identity = {"channel": "wechat", "app_id": "wx", "openid": "o1", "unionid": None}
    await store.profiles.touch(ident, NOW, None)
    await store.checkpoint()
    good = path.read_bytes()
    (tmp_path / "embedded.bson.tmp").write_bytes(b"half a file")  # a write that died
    again = await MongoStore.open(None, "snap", path)
    assert path.read_bytes() == good
    assert await again.profiles.find_by_identity("wechat", "wx", "o1") is not None


@pytest.mark.timeout(120)
async def test_a_member_is_still_there_after_the_server_is_stopped_and_started(tmp_path,
                                                                              namespace):
    snapshot = tmp_path / "data" / "embedded.bson"
    env = app_env(WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET="s3cret",
                  WECHAT_API_BASE=closed_port_url(), RASA_URL=closed_port_url(),
                  SCRM_ADMIN_TOKEN=ADMIN, SCRM_REDIS_NAMESPACE=namespace, MONGODB_URL=None,
                  SCRM_EMBEDDED_SNAPSHOT=str(snapshot), SCRM_ACTION_TOKEN=None)
    config = loopback_config(tmp_path)
    f = Follower(token=TOKEN, openid="o_stays", app_id=APP_ID)

    async def say(proc: AppProcess, text: str) -> str:
        query, body = f.request(f.text(text))
        async with aiohttp.ClientSession() as http, http.post(
                f"{proc.url}/wechat?{query}", data=body.encode()) as resp:
            return f.read_reply(await resp.text()).get("Content", "")

    first = AppProcess("first", config, env, tmp_path / "first.log").start()
    try:
        await first.wait_healthy(60, rasa=False)
        assert "签到成功" in await say(first, "签到")
        await asyncio.sleep(0.5)  # its records are written just after the answer
    finally:
        assert first.stop() == 0, first.tail()
    assert snapshot.exists()

    second = AppProcess("second", config, env, tmp_path / "second.log").start()
    try:
        await second.wait_healthy(60, rasa=False)
        assert "今天已经签到过啦" in await say(second, "签到")  # her points came back
        async with aiohttp.ClientSession() as http, http.get(
                f"{second.url}/admin/api/profiles", params={"openid": "o_stays"},
                headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            data = await resp.json()
        texts = [i["text"] for i in data["interactions"] if i["direction"] == "in"]
        assert texts == ["签到", "签到"]  # and her history
    finally:
        second.stop()
