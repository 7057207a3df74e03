"""WeChat XML -> InboundMessage for every type wechatpy parses, and dedupe keys."""

from __future__ import annotations

import pytest

from scrm.follower import Follower
from webhooks.wechat.parse import MalformedMessage, to_inbound

F = Follower(token="t", openid="o_1", clock=1_790_000_000)


def test_text_uses_msgid_for_dedupe():
    m = to_inbound(F.text("你好", MsgId=123), "wx")
    assert (m.kind, m.text, m.sender, m.dedupe_key) == ("text", "你好", "o_1",
                                                                "msg:gh_scrm_demo:o_1:123")
    assert m.payload["account"] == "gh_scrm_demo" and m.app_id == "wx"


def test_events_dedupe_on_sender_time_and_event():
    m = to_inbound(F.event("CLICK", "MENU_HELP"), "wx")
    assert (m.kind, m.event, m.event_key) == ("event", "click", "MENU_HELP")
    assert m.dedupe_key == "evt:gh_scrm_demo:o_1:1790000000:CLICK"
    other = to_inbound(F.event("VIEW", "http://x"), "wx")
    assert other.dedupe_key != m.dedupe_key


def test_the_same_msgid_from_another_follower_or_account_is_another_message():
    mine = to_inbound(F.text("我的积分", MsgId=77), "wx")
    hers = to_inbound(Follower(token="t", openid="o_2", clock=1_790_000_000).text(
        "你好", MsgId=77), "wx")
    elsewhere = to_inbound(Follower(token="t", openid="o_1", account="gh_other",
                                    clock=1_790_000_000).text("你好", MsgId=77), "wx")
    assert len({mine.dedupe_key, hers.dedupe_key, elsewhere.dedupe_key}) == 3


def test_subscribe_with_qr_scene_strips_the_prefix():
    m = to_inbound(F.event("subscribe", "qrscene_ref_9", Ticket="tk"), "wx")
    assert (m.event, m.event_key, m.payload["scene"]) == ("subscribe", "ref_9", "ref_9")
    plain = to_inbound(F.event("subscribe"), "wx")
    assert plain.event == "subscribe" and plain.event_key is None


@pytest.mark.parametrize(("xml", "kind", "check"), [
    (F.xml("image", PicUrl="http://p", MediaId="m"), "image", {"media_id": "m"}),
    (F.xml("voice", MediaId="v", Format="amr", Recognition="你好"), "voice", {"format": "amr"}),
    (F.xml("video", MediaId="v", ThumbMediaId="t"), "video", {"media_id": "v"}),
    (F.xml("shortvideo", MediaId="s", ThumbMediaId="t"), "video", {"media_id": "s"}),
    (F.xml("location", Location_X="1.5", Location_Y="2.5", Scale="3", Label="L"), "location",
     {"label": "L"}),
    (F.xml("link", Title="T", Description="D", Url="http://u"), "link", {"url": "http://u"}),
    (F.event("SCAN", "s1", Ticket="t"), "event", {"scene": "s1"}),
    (F.event("LOCATION", Latitude="1", Longitude="2", Precision="3"), "event", {"lat": 1.0}),
    (F.xml("hologram", Data="x"), "unknown", {"msg_type": "hologram"}),
])
def test_every_type_becomes_one_inbound_message(xml, kind, check):
    m = to_inbound(xml, "wx")
    assert m.kind == kind
    for key, value in check.items():
        assert m.payload[key] == value


def test_voice_recognition_becomes_text():
    m = to_inbound(F.xml("voice", MediaId="v", Format="amr", Recognition="谢谢"), "wx")
    assert m.text == "谢谢"


@pytest.mark.parametrize("xml", [
    "", "<xml>", "<xml><MsgType>text</MsgType></xml>",
    "<!DOCTYPE x [<!ENTITY a 'b'>]><xml><MsgType>&a;</MsgType></xml>",
])
def test_malformed_is_rejected(xml):
    with pytest.raises(MalformedMessage):
        to_inbound(xml, "wx")
