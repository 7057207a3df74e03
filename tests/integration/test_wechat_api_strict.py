"""Outbound bodies exactly as WeChat reads them: raw UTF-8 Chinese, never \\uXXXX escapes;
and a fake WeChat API as strict as WeChat about them and about a missing access_token."""

from __future__ import annotations

import json

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.messages import Reply
from store.keys import Keys
from store.redis_state import RedisTokenCache
from webhooks.wechat.api import WeChatAPI, wechat_json
from webhooks.wechat.render import custom_message


def test_the_encoder_writes_chinese_as_utf8():
    raw = wechat_json(custom_message(Reply(kind="text", text="你好，小美"), "o1"))
    assert "你好，小美".encode() in raw and b"\\u" not in raw
    assert json.loads(raw)["text"]["content"] == "你好，小美"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_the_fake_refuses_escaped_chinese_and_a_missing_token(session, wechat_api):
    url = f"{wechat_api.url}/cgi-bin/message/custom/send"
    body = {"touser": "o1", "msgtype": "text", "text": {"content": "开始"}}
    wechat_api.valid_tokens.add("T")
    wechat_api.heard("o1")
    async with session.post(url, params={"access_token": "T"}, json=body) as resp:
        assert (await resp.json())["errcode"] == 47001  # aiohttp's json= escapes: refused
    async with session.post(url, data=wechat_json(body)) as resp:
        assert (await resp.json())["errcode"] == 41001  # no access_token
    async with session.post(url, params={"access_token": "T"}, data=wechat_json(body)) as resp:
        assert (await resp.json())["errcode"] == 0
    assert [c.body.get("_errcode") for c in wechat_api.sends()] == [47001, 41001, 0]
    assert wechat_api.delivered()[0].body["text"]["content"] == "开始"


async def test_every_call_the_app_makes_is_accepted_as_written(session, wechat_api, namespace):
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    wechat_api.heard("o1")
    try:
        api = WeChatAPI(session, wechat_api.url, "wx", "s",
                        RedisTokenCache(redis, Keys(namespace)))
        sent = await api.send_custom(custom_message(Reply(kind="text", text="姐妹社区欢迎你"),
                                                    "o1"))
        qr = await api.create_qr("ref_M0000000001")
        tpl = await api.call("/cgi-bin/message/template/send", {
            "touser": "o1", "template_id": "T1", "data": {"thing1": {"value": "孕12周提醒"}}})
    finally:
        await redis.aclose()
    assert sent["errcode"] == 0 and tpl["errcode"] == 0 and qr["ticket"]
    assert {c.body.get("_errcode") for c in wechat_api.sends()} == {0}


async def test_the_sandbox_keeps_wechats_budget_per_follower(session):
    """`scrm up`'s sandbox, over HTTP as `scrm chat` uses it: nothing before she writes
    (45015), 5 after a message, 3 after a follow, 45047 beyond, nothing after unfollow, and
    no template message to someone who unfollowed (43004)."""
    from scrm.sandbox import WeChatSandbox

    sandbox = await WeChatSandbox().start()
    sandbox.valid_tokens.add("T")
    url = f"{sandbox.url}/cgi-bin/message/custom/send"

    async def send(openid: str) -> int:
        body = {"touser": openid, "msgtype": "text", "text": {"content": "你好"}}
        async with session.post(url, params={"access_token": "T"},
                                data=wechat_json(body)) as resp:
            return int((await resp.json())["errcode"])

    async def tell(openid: str, kind: str) -> None:
        async with session.post(f"{sandbox.url}/sandbox/inbound",
                                json={"openid": openid, "kind": kind}) as resp:
            assert resp.status == 200

    try:
        assert await send("o_a") == 45015
        await tell("o_a", "message")
        assert [await send("o_a") for _ in range(6)] == [0] * 5 + [45047]
        await tell("o_b", "event")
        assert [await send("o_b") for _ in range(4)] == [0] * 3 + [45047]
        await tell("o_b", "unfollow")
        assert await send("o_b") == 45015
        async with session.post(f"{sandbox.url}/sandbox/inbound", data=b"{") as resp:
            assert resp.status == 400

        async def template(openid: str) -> int:
            tpl = {"touser": openid, "template_id": "T1",
                   "data": {"thing1": {"value": "提醒"}}}
            async with session.post(f"{sandbox.url}/cgi-bin/message/template/send",
                                    params={"access_token": "T"},
                                    data=wechat_json(tpl)) as resp:
                return int((await resp.json())["errcode"])

        assert await template("o_c") == 0  # template messages do not count
        assert await template("o_b") == 43004  # but only followers get them
        await tell("o_b", "event")  # she follows again
        assert await template("o_b") == 0
    finally:
        await sandbox.close()
