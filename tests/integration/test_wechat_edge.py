"""POST/GET /wechat under wrong, stale, oversized and hostile input: refused, nothing stored."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from scrm.follower import Follower, sign
from tests.conftest import AES_KEY, APP_ID, TOKEN, closed_port_url, make_settings


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
    # Far outside the 300 s window, so no delay of the store or the machine can bring a
    # timestamp back inside it between writing the request and the server reading it.
    f = Follower(token=TOKEN, openid="o_old")
    window = app.services.settings.wechat.replay_window_seconds
    status, _ = await app.post_wechat(*f.request(f.text("hi"),
                                                 timestamp=int(time.time()) - 2 * window))
    assert status == 403
    status, _ = await app.post_wechat(*f.request(f.text("hi"),
                                                 timestamp=int(time.time()) + 2 * window))
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


async def _say(app, f: Follower, text: str, msg_id: int) -> str:
    status, body = await app.post_wechat(*f.request(f.text(text, MsgId=msg_id)))
    assert status == 200
    return f.read_reply(body).get("Content", "")


async def test_a_captured_query_string_carries_no_other_body(app):
    victim, forger = Follower(token=TOKEN, openid="o_victim"), Follower(token=TOKEN,
                                                                        openid="o_admin")
    query, body = victim.request(victim.text("签到", MsgId=1))
    assert (await app.post_wechat(query, body))[0] == 200
    assert (await app.post_wechat(query, body))[0] == 200  # WeChat's retry: the same body
    # The same signed query string with a body naming someone else: refused, not stored.
    forged = forger.text("/stats", MsgId=2)
    status, _ = await app.post_wechat(query, forged)
    assert status == 403
    await app.services.core.orchestrator.drain(5)
    assert await app.store.profiles.find_by_identity("wechat", APP_ID, "o_admin") is None


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("form", [
    lambda t: f" {t}", lambda t: t.translate(FULL_WIDTH), lambda t: f"{t[0]}_{t[1:]}",
    lambda t: f"+{t}", lambda t: f"{t}.0", lambda t: f"{t}\n",
], ids=["space", "full-width", "underscore", "plus", "decimal", "newline"])
async def test_timestamps_are_ascii_digits_only(app, form):
    """The current time, written in a form int() would take: each is refused."""
    f = Follower(token=TOKEN, openid="o_stamp")
    now = str(int(time.time()))
    stamp = form(now)
    params = {"timestamp": stamp, "nonce": "n1", "signature": sign(TOKEN, stamp, "n1")}
    status, _ = await app.post_wechat(urlencode(params), f.text("hi"))
    assert status == 403
    assert await _stored(app) == 0


async def test_with_a_key_the_encrypted_form_is_required(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(),
                                        wechat={"aes_key": AES_KEY}))
    plain = Follower(token=TOKEN, openid="o_down")
    status, _ = await app.post_wechat(*plain.request(plain.text("/stats")))
    assert status == 403  # a plaintext request to a safe-mode account is a downgrade
    enc = Follower(token=TOKEN, openid="o_down", aes_key=AES_KEY, app_id=APP_ID)
    query, body = enc.request(enc.text("hi"))
    stripped = "&".join(p for p in query.split("&")
                        if not p.startswith(("encrypt_type=", "msg_signature=")))
    assert (await app.post_wechat(stripped, body))[0] == 403
    assert await _stored(app) == 0
    assert (await app.post_wechat(query, body))[0] == 200  # the real thing still works


async def test_compatible_mode_is_an_explicit_choice(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(),
                                        wechat={"aes_key": AES_KEY, "mode": "compatible"}))
    plain = Follower(token=TOKEN, openid="o_compat")
    assert (await app.post_wechat(*plain.request(plain.text("hi"))))[0] == 200
    enc = Follower(token=TOKEN, openid="o_compat", aes_key=AES_KEY, app_id=APP_ID)
    assert (await app.post_wechat(*enc.request(enc.text("hi"))))[0] == 200


async def test_a_msgid_reused_by_another_follower_is_her_own_message(app):
    mine, hers = Follower(token=TOKEN, openid="o_mine"), Follower(token=TOKEN, openid="o_hers")
    assert "签到成功" in await _say(app, mine, "签到", 424242)
    answer = await _say(app, hers, "我的积分", 424242)
    assert "你的积分：0" in answer  # her own balance, not the first follower's reply
    await app.services.core.orchestrator.drain(5)
    p = await app.store.profiles.find_by_identity("wechat", APP_ID, "o_hers")
    assert await app.store.interactions.count(p["_id"]) == 2
