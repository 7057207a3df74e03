"""Per-follower order across app instances; different followers run in parallel."""

from __future__ import annotations

import asyncio

import pytest

from scrm.follower import Follower
from store.mongo import MongoStore
from tests.conftest import APP_PORT, TOKEN, make_settings

pytestmark = pytest.mark.rasa


@pytest.fixture
async def two_apps(start_app, namespace, rasa_proxy):
    store = await MongoStore.open(None, "order")  # both instances write to one database
    settings = make_settings(namespace, rasa_proxy.url)
    # Rasa calls its actions on the first; both share the store and Redis.
    return (await start_app(settings, store=store, port=APP_PORT),
            await start_app(settings, store=store))


async def test_one_followers_messages_are_handled_in_arrival_order_across_instances(
        two_apps, rasa_proxy):
    a, b = two_apps
    rasa_proxy.delay_for["你好"] = 0.7  # the first message is slow in Rasa
    f = Follower(token=TOKEN, openid="o_order")
    first = asyncio.create_task(a.post_wechat(*f.request(f.text("你好"))))
    await asyncio.sleep(0.1)  # the second arrives later, at the other instance
    second = asyncio.create_task(b.post_wechat(*f.request(f.text("谢谢"))))
    (s1, r1), (s2, r2) = await asyncio.gather(first, second)
    assert (s1, s2) == (200, 200)
    assert "姐妹社区" in f.read_reply(r1)["Content"] and "不客气" in f.read_reply(r2)["Content"]
    assert rasa_proxy.turns_of("o_order") == ["你好", "谢谢"]
    await a.services.core.orchestrator.drain(5)
    await b.services.core.orchestrator.drain(5)
    profile = await a.store.profiles.find_by_identity("wechat", a.services.settings.wechat.app_id,
                                                      "o_order")
    log = list(reversed(await a.store.interactions.latest(profile["_id"], 10)))
    assert [(i["direction"], i["text"][:2]) for i in log] == [
        ("in", "你好"), ("out", "你好"), ("in", "谢谢"), ("out", "不客")]


async def test_different_followers_do_not_wait_for_each_other(two_apps, rasa_proxy):
    a, b = two_apps
    rasa_proxy.delay_for["你好"] = 1.0
    slow, fast = Follower(token=TOKEN, openid="o_slow1"), Follower(token=TOKEN, openid="o_fast")
    finished: list[str] = []

    async def send(app, f, text):
        status, _ = await app.post_wechat(*f.request(f.text(text)))
        finished.append(f.openid)
        return status

    slow_task = asyncio.create_task(send(a, slow, "你好"))
    await asyncio.sleep(0.1)
    assert await send(b, fast, "谢谢") == 200
    assert finished == ["o_fast"]  # done while the slow follower is still waiting on Rasa
    assert await slow_task == 200
