"""POST/GET /wechat under wrong, stale, oversized and hostile input: refused, nothing stored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scrm.follower import Follower, sign
from tests.conftest import AES_KEY, TOKEN, closed_port_url, make_settings


@pytest.fixture
async def app(start_app, namespace):
    return await start_app(make_settings(namespace, closed_port_url()))


async def _stored(app) -> int:
    return await app.store.interactions.count()


async def test_get_echoes_echostr_with_a_valid_signature(app):
    ts, nonce = str(int(time.time())), "n1"
    resp = await app.client.get("/wechat", params={
        "signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e42"})
    assert resp.status == 200 and await resp.text() == "e42"


async def test_get_with_a_wrong_signature_is_403(app):
    resp = await app.client.get("/wechat", params={
        "signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "n", "echostr": "x"})
    assert resp.status == 403


async def test_post_with_a_wrong_signature_is_403_and_stores_nothing(app):
    f = Follower(token="not-the-token", openid="o_bad")
    status, _ = await app.post_wechat(*f.request(f.text("hi")))
    assert status == 403
    assert await _stored(app) == 0


async def test_replayed_timestamp_is_403(app):
    f = Follower(token=TOKEN, openid="o_old")
    status, _ = await app.post_wechat(*f.request(f.text("hi"), timestamp=int(time.time()) - 301))
    assert status == 403
    status, _ = await app.post_wechat(*f.request(f.text("hi"), timestamp=int(time.time()) + 301))
    assert status == 403
    assert await _stored(app) == 0


async def test_body_over_one_mebibyte_is_413(app):
    f = Follower(token=TOKEN, openid="o_big")
    query, _ = f.request("")
    status, _ = await app.post_wechat(query, f.text("x" * (1024 * 1024 + 10)))
    assert status == 413
    assert await _stored(app) == 0


@pytest.mark.parametrize("body", [
    "not xml at all",
    "<xml><FromUserName>a</FromUserName>",
    "<notxml><a>1</a></notxml>",
    "<xml><ToUserName>x</ToUserName></xml>",  # no FromUserName / MsgType
    "<xml><FromUserName>a</FromUserName><CreateTime>abc</CreateTime><MsgType>text</MsgType></xml>",
    "\xff\xfe<xml/>",
])
async def test_malformed_xml_is_400_and_stores_nothing(app, body):
    f = Follower(token=TOKEN, openid="o_mal")
    query, _ = f.request("")
    status, text = await app.post_wechat(query, body)
    assert status == 400
    assert "Traceback" not in text
    assert await _stored(app) == 0


async def test_entity_expansion_is_refused(app):
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            "<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName>"
            "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol2;</Content>"
            "<MsgId>1</MsgId></xml>")
    f = Follower(token=TOKEN, openid="o")
    status, _ = await app.post_wechat(f.request("")[0], bomb)
    assert status == 400
    assert await _stored(app) == 0


async def test_external_entities_are_never_resolved(app, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
           "<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName>"
           "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;</Content>"
           "<MsgId>2</MsgId></xml>")
    f = Follower(token=TOKEN, openid="o")
    status, text = await app.post_wechat(f.request("")[0], xxe)
    assert status == 400 and "TOP-SECRET" not in text
    assert await _stored(app) == 0


async def test_safe_mode_message_without_a_configured_key_is_400(app):
    f = Follower(token=TOKEN, openid="o_aes", aes_key=AES_KEY)
    status, _ = await app.post_wechat(*f.request(f.text("hi")))
    assert status == 400
    assert await _stored(app) == 0


async def test_safe_mode_with_a_wrong_key_or_signature_changes_nothing(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(),
                                        wechat={"aes_key": AES_KEY}))
    wrong_key = Follower(token=TOKEN, openid="o_aes", aes_key="B" * 43)
    status, _ = await app.post_wechat(*wrong_key.request(wrong_key.text("hi")))
    assert status == 400
    right = Follower(token=TOKEN, openid="o_aes", aes_key=AES_KEY)
    query, body = right.request(right.text("hi"))
    tampered = query.replace("msg_signature=", "msg_signature=0")
    status, _ = await app.post_wechat(tampered, body)
    assert status == 403
    assert await _stored(app) == 0
