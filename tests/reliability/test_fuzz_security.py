"""Fuzzing the classes of attack an outside tester found (issue 16), beyond the examples:
text that would break out of CDATA, a captured signed request with other bodies, stripped
or mangled encryption, message ids reused across senders, and over-long texts."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl, urlencode

import defusedxml.ElementTree as ET
from hypothesis import given
from hypothesis import strategies as st

from bot.messages import Reply
from scrm.follower import Follower
from tests.conftest import AES_KEY, APP_ID, TOKEN, closed_port_url, make_settings
from tests.reliability.test_fuzz_webhooks import FUZZ, generated
from tests.support.core import core_harness
from webhooks.wechat.render import passive_xml

NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
hostile_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["]]>", "<![CDATA[", "</Content>", "<MsgType>image</MsgType>",
                              "&amp;", "<", ">", "\x00", "\x1b[2J", "小美", "]]", ">"]),
             max_size=12).map("".join),
)


@FUZZ
@given(hostile_text)
def test_any_text_stays_text_in_a_passive_reply(text):
    text = text.replace("\r", "")  # XML parsers normalise line ends; WeChat's too
    root = ET.fromstring(passive_xml(Reply(kind="text", text=text), "o_1", "gh_1"))
    assert [child.tag for child in root] == ["MsgType", "Content", "FromUserName",
                                             "ToUserName", "CreateTime"]
    assert root.findtext("MsgType") == "text"
    assert (root.findtext("Content") or "") == NOT_XML.sub("", text)


async def test_a_captured_request_takes_no_other_body(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(), closed_port_url()))
    victim = Follower(token=TOKEN, openid="o_victim")
    query, body = victim.request(victim.text("签到", MsgId=1))
    assert (await app.client.post(f"/wechat?{query}", data=body.encode())).status == 200
    forgers = st.builds(lambda openid, text, n: Follower(token=TOKEN, openid=openid).text(
        text, MsgId=n), st.from_regex(r"o_[a-z0-9]{1,12}", fullmatch=True),
        st.text(min_size=1, max_size=40), st.integers(2, 10**9))
    refused = 0
    for forged in generated(forgers):
        if forged == body:
            continue
        resp = await app.client.post(f"/wechat?{query}", data=forged.encode())
        assert resp.status == 403
        refused += 1
    # WeChat's own retry of the original still answers.
    assert (await app.client.post(f"/wechat?{query}", data=body.encode())).status == 200
    await app.services.core.orchestrator.drain(5)
    print(f"\nreplay fuzz: {refused} other bodies refused")
    assert await app.store.interactions.count() == 2  # the one message and its reply


async def test_safe_mode_accepts_nothing_but_the_encrypted_form(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(), closed_port_url(),
                                        wechat={"aes_key": AES_KEY}))
    f = Follower(token=TOKEN, openid="o_safe", aes_key=AES_KEY, app_id=APP_ID)
    plain = Follower(token=TOKEN, openid="o_safe")
    mutations = st.tuples(st.booleans(), st.sampled_from(["", "AES", "aes ", "none", "aes"]),
                          st.sampled_from(["drop", "zero", "keep"]), st.booleans())
    accepted = tried = 0
    for drop_type, type_value, signature, as_plain in generated(mutations):
        if as_plain:
            query, body = plain.request(plain.text("/stats"))
        else:
            query, body = f.request(f.text("你好"))
        params = dict(parse_qsl(query))
        if drop_type:
            params.pop("encrypt_type", None)
        elif "encrypt_type" in params:
            params["encrypt_type"] = type_value
        if signature == "drop":
            params.pop("msg_signature", None)
        elif signature == "zero":
            params["msg_signature"] = "0" * 40
        resp = await app.client.post(f"/wechat?{urlencode(params)}", data=body.encode())
        tried += 1
        assert resp.status < 500
        valid = (not as_plain and not drop_type and type_value == "aes"
                 and signature == "keep")
        assert (resp.status == 200) == valid, (params, resp.status)
        accepted += valid
    await app.services.core.orchestrator.drain(5)
    print(f"\ndowngrade fuzz: {tried} requests, {accepted} genuine accepted")
    assert await app.store.interactions.count() == 2 * accepted


async def test_message_ids_reused_across_senders_stay_their_own(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(), closed_port_url()))
    pairs = generated(st.tuples(st.integers(1, 50), st.sampled_from(["o_a", "o_b", "o_c"])))
    seen: set[tuple[int, str]] = set()
    for msg_id, openid in pairs:
        f = Follower(token=TOKEN, openid=openid, clock=int(time.time()))
        query, body = f.request(f.text("签到", MsgId=msg_id))
        resp = await app.client.post(f"/wechat?{query}", data=body.encode())
        assert resp.status == 200
        seen.add((msg_id, openid))
    await app.services.core.orchestrator.drain(10)
    for openid in ("o_a", "o_b", "o_c"):
        p = await app.store.profiles.find_by_identity("wechat", APP_ID, openid)
        mine = sum(1 for _, o in seen if o == openid)
        if p is None:
            assert mine == 0
            continue
        inbound = [i for i in await app.store.interactions.latest(p["_id"], 500)
                   if i["direction"] == "in"]
        assert len(inbound) == mine  # each (sender, id) once, whoever else used the id


async def test_over_long_texts_never_reach_nlu():
    core = await core_harness(app={"max_text_chars": 50})
    lengths = generated(st.integers(1, 400))
    for n in lengths:
        calls = len(core.nlu.calls)
        reply = await core.say("o_long", "说" * n)
        if n > 50:
            assert f"（{n} 字）" in reply and len(core.nlu.calls) == calls
        else:
            assert "有点长" not in reply
    p = await core.profile("o_long")
    stored = [i for i in await core.store.interactions.latest(p["_id"], 1000)
              if i["direction"] == "in"]
    assert all(len(i["text"] or "") <= 50 for i in stored)  # kept as far as it is read
