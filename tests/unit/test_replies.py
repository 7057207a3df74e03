"""Rasa's bot messages -> replies -> WeChat passive XML and customer-service JSON."""

from __future__ import annotations

import defusedxml.ElementTree as ET

from bot.messages import Article, Reply
from bot.metrics import Metrics
from bot.orchestrator import Orchestrator
from bot.templates import TemplateLibrary
from webhooks.wechat.render import custom_message, passive_xml

PROFILE = {"_id": "p", "fields": {"nickname": "小美"}}


def orchestrator() -> Orchestrator:
    lib = TemplateLibrary({"hi": {"zh": "你好 {{ profile.nickname }}{{ suffix }}",
                                  "en": "hi {{ profile.nickname }}{{ suffix }}"},
                           "apology": {"zh": "抱歉", "en": "sorry"}})
    return Orchestrator(store=None, rasa=None, templates=lib, order=None,  # type: ignore[arg-type]
                        metrics=Metrics(), late_senders={})


def convert(message: dict, lang: str = "zh") -> list[Reply]:
    o = orchestrator()
    return o._merge(o._convert(message, lang, PROFILE))  # type: ignore[arg-type]


def test_template_with_vars_in_the_members_language():
    assert convert({"custom": {"template": "hi", "vars": {"suffix": "!"}}}, "en") == [
        Reply(kind="text", text="hi 小美!")]


def test_text_with_buttons_becomes_numbered_choices():
    [r] = convert({"text": "选一个", "buttons": [{"title": "是"}, {"title": "否"}]})
    assert r.text == "选一个\n1. 是\n2. 否"


def test_news_image_and_plain_image_url():
    replies = convert({"custom": {"news": [{"title": "T", "url": "http://u", "image": "http://i"}],
                                  "image": {"media_id": "MID"}}})
    assert [r.kind for r in replies] == ["news", "image"]
    assert replies[0].articles[0].title == "T" and replies[1].media_id == "MID"
    [pic] = convert({"image": "http://pic"})
    assert pic.kind == "news" and pic.articles[0].image == "http://pic"


def test_consecutive_texts_merge_into_one_passive_message():
    o = orchestrator()
    merged = o._merge([Reply(kind="text", text="a"), Reply(kind="text", text="b"),
                       Reply(kind="image", media_id="m"), Reply(kind="text", text="c")])
    assert [(r.kind, r.text) for r in merged] == [("text", "a\n\nb"), ("image", ""),
                                                  ("text", "c")]


def test_unknown_template_falls_back_to_the_apology_not_an_error():
    assert convert({"custom": {"template": "nope"}}) == [Reply(kind="text", text="抱歉")]


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
