"""Customer-service delivery: the shared access_token, retries, at-most-once sends, and a
durable job that another app instance finishes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.messages import Reply
from store.keys import Keys
from store.records import new_interaction
from store.redis_state import RedisAllowances, RedisSendMarks, RedisTokenCache
from tests.conftest import closed_port_url, make_settings
from webhooks.wechat.api import WeChatAPI, WeChatTransportError
from webhooks.wechat.outlet import WeChatOutlet
from webhooks.wechat.settings import WeChatSettings


@pytest.fixture
async def redis():
    r = Redis.from_url("redis://127.0.0.1:6379/0")
    yield r
    await r.aclose()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def api_for(session, wechat_api, redis, namespace) -> WeChatAPI:
    return WeChatAPI(session, wechat_api.url, "wx-app", "secret",
                     RedisTokenCache(redis, Keys(namespace)))


async def test_concurrent_callers_in_two_instances_fetch_one_token(
        session, wechat_api, redis, namespace):
    wechat_api.token_delay = 0.2  # a slow refresh makes the race real
    a = api_for(session, wechat_api, redis, namespace)
    b = api_for(session, wechat_api, redis, namespace)  # another process's client
    tokens = await asyncio.gather(*(x.access_token() for x in [a, b] * 5))
    assert set(tokens) == {"TOKEN-1"}
    assert len(wechat_api.token_calls()) == 1
    call = wechat_api.token_calls()[0].body
    assert call == {"grant_type": "client_credential", "appid": "wx-app", "secret": "secret",
                    "force_refresh": False}
    ttl = await redis.ttl(f"{namespace}:token:wechat:wx-app")
    assert 6800 < ttl <= 6900  # refreshed 5 minutes before WeChat expires it


async def test_invalid_token_is_refreshed_once_and_the_call_retried_once(
        session, wechat_api, redis, namespace):
    api = api_for(session, wechat_api, redis, namespace)
    await api.access_token()
    wechat_api.heard("o")  # she wrote: WeChat lets the account answer her
    wechat_api.valid_tokens.clear()  # WeChat no longer accepts TOKEN-1
    data = await api.send_custom({"touser": "o", "msgtype": "text", "text": {"content": "x"}})
    assert data["errcode"] == 0
    assert [c.query.get("access_token") for c in wechat_api.sends()] == ["TOKEN-1", "TOKEN-2"]
    assert wechat_api.token_calls()[-1].body["force_refresh"] is True
    # Still invalid after one refresh: the error comes back, no loop of refreshes.
    wechat_api.send_errcodes[:] = [40001, 40001]
    data = await api.send_custom({"touser": "o", "msgtype": "text", "text": {"content": "y"}})
    assert data["errcode"] == 40001
    assert len(wechat_api.token_calls()) == 3


async def test_transport_error_is_reported_not_swallowed(session, redis, namespace):
    api = WeChatAPI(session, closed_port_url(), "wx", "s", RedisTokenCache(redis, Keys(namespace)))
    with pytest.raises(WeChatTransportError):
        await api.access_token()


def interaction(key: str) -> dict:
    doc = new_interaction("p", "wechat", "out", "text", "x", {}, datetime.now(UTC))
    doc["dedupe_key"] = key
    return doc


async def test_job_rerun_never_sends_twice_and_records_outcomes(
        session, wechat_api, redis, namespace):
    from bot.metrics import Metrics
    from store.mongo import MongoStore

    store = await MongoStore.open(None, "late")
    outlet = WeChatOutlet(WeChatSettings(token="tok", app_id="wx-app"),
                          api_for(session, wechat_api, redis, namespace), None,  # type: ignore[arg-type]
                          namespace, RedisSendMarks(redis, Keys(namespace)), store, Metrics(),
                          RedisAllowances(redis, Keys(namespace)))
    replies = [Reply(kind="text", text=t).model_dump(mode="json") for t in ("one", "two",
                                                                             "three")]
    keys = ["k:0", "k:1", "k:2"]
    for key in keys:
        await store.interactions.add(interaction(key))
    wechat_api.heard("o_job")
    await outlet.budget.heard(outlet.address("o_job"), "message")
    wechat_api.send_errcodes[:] = [0, 40003, 45015]  # a bad openid; then outside 48 h
    tally = await outlet.send_late({}, "o_job", replies, keys)
    assert tally == {"sent": 1, "failed": 1, "skipped": 0, "waiting": 1}
    again = await outlet.send_late({}, "o_job", replies, keys)
    # Sent and failed ones are never tried again; the one WeChat held back still waits
    # for her next message (45015: the app believes WeChat over its own count).
    assert again == {"sent": 0, "failed": 0, "skipped": 2, "waiting": 1}
    assert [c.body["text"]["content"] for c in wechat_api.sends()] == ["one", "two", "three"]
    # The records say what happened, in the core's words.
    assert (await store.interactions.get("k:0"))["outcome"] == "sent"
    second = await store.interactions.get("k:1")
    assert second["outcome"] == "failed" and second["code"] == 40003
    assert (await store.interactions.get("k:2"))["outcome"] == "waiting"


async def test_late_job_is_finished_by_another_instance(start_app, namespace, wechat_api):
    """Instance A (no worker) enqueues; instance B's worker sends. The job outlives A."""
    settings = make_settings(namespace, closed_port_url(), wechat_api.url)
    a = await start_app(settings, run_worker=False)
    msg_follower = "o_durable"
    wechat_api.heard(msg_follower)
    await a.services.wechat.budget.heard(a.services.wechat.address(msg_follower), "message")
    from bot.messages import InboundMessage

    msg = InboundMessage(channel="wechat", app_id="wx", sender=msg_follower, kind="text",
                         dedupe_key="msg:1", created_at=datetime.now(UTC), text="hi")
    await a.services.wechat.push(
        msg.sender, [Reply(kind="text", text="late hello")], ["in:wechat:msg:1:out:0"])
    await a.services.wechat.push(  # enqueued twice: one job (job id)
        msg.sender, [Reply(kind="text", text="late hello")], ["in:wechat:msg:1:out:0"])
    await asyncio.sleep(0.5)
    assert wechat_api.sends() == []  # nobody is working yet
    await a.client.close()
    await start_app(settings)  # B, with a worker
    sends = await wechat_api.wait_sends(1)
    await asyncio.sleep(0.3)
    assert [s.body["text"]["content"] for s in wechat_api.sends()] == ["late hello"]
    assert sends[0].body["touser"] == msg_follower
