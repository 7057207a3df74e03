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
