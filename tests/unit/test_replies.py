"""Templates -> replies -> WeChat passive XML and customer-service JSON."""

from __future__ import annotations

import defusedxml.ElementTree as ET

from bot.conversation.outbound import Outbound, merge
from bot.flow_engine.templates import TemplateLibrary
from bot.messages import Article, Reply
from webhooks.wechat.render import custom_message, passive_xml

PROFILE = {"_id": "p", "fields": {"nickname": "小美"}}


def outbound() -> Outbound:
    lib = TemplateLibrary({"hi": {"zh": "你好 {{ profile.nickname }}{{ suffix }}",
                                  "en": "hi {{ profile.nickname }}{{ suffix }}"},
                           "apology": {"zh": "抱歉", "en": "sorry"}})
    return Outbound(store=None, templates=lib, outlets=[], default_lang="zh")  # type: ignore[arg-type]


def test_template_with_vars_in_the_members_language():
    o = outbound()
    assert o.text("hi", "en", PROFILE, {"suffix": "!"}) == Reply(kind="text", text="hi 小美!")
    assert o.text("hi", "zh", PROFILE, {"suffix": "!"}).text == "你好 小美!"


def test_consecutive_texts_merge_into_one_passive_message():
    merged = merge([Reply(kind="text", text="a"), Reply(kind="text", text="b"),
                    Reply(kind="image", media_id="m"), Reply(kind="text", text="c")])
    assert [(r.kind, r.text) for r in merged] == [("text", "a\n\nb"), ("image", ""),
                                                  ("text", "c")]


def test_unknown_template_falls_back_to_the_apology_not_an_error():
    assert outbound().text("nope", "zh", PROFILE) == Reply(kind="text", text="抱歉")


def test_passive_xml_for_each_kind():
    text = ET.fromstring(passive_xml(Reply(kind="text", text="你好"), "o1", "gh_1"))
    assert (text.findtext("MsgType"), text.findtext("Content"),
            text.findtext("ToUserName"), text.findtext("FromUserName")) == (
        "text", "你好", "o1", "gh_1")
    image = ET.fromstring(passive_xml(Reply(kind="image", media_id="M"), "o1", "gh_1"))
    assert image.findtext("Image/MediaId") == "M"
    news = ET.fromstring(passive_xml(
        Reply(kind="news", articles=(Article(title="T", url="http://u"),)), "o1", "gh_1"))
    assert news.findtext("ArticleCount") == "1" and news.findtext("Articles/item/Title") == "T"


def test_customer_service_bodies():
    assert custom_message(Reply(kind="text", text="x"), "o") == {
        "touser": "o", "msgtype": "text", "text": {"content": "x"}}
    assert custom_message(Reply(kind="image", media_id="M"), "o")["image"] == {"media_id": "M"}
    news = custom_message(Reply(kind="news", articles=(Article(title="T", image="i"),)), "o")
    assert news["news"]["articles"][0]["picurl"] == "i"
