"""A mother in her own words, through the real Rasa server: each journey by intent (texts
that are neither training examples nor keywords), natural dates, a correction, a common
question, and a person (转人工) from opening the ticket to the bot being back."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.conftest import make_settings
from tests.support.chat import TODAY, Chat

pytestmark = pytest.mark.rasa


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                         handoff={"service_hours": "00:00-23:59"}))


async def last_intent(chat: Chat) -> str | None:
    profile = await chat.profile()
    latest = await chat.app.store.interactions.latest(profile["_id"], 10)
    return next(i.get("intent") for i in latest if i["direction"] == "in")


@pytest.mark.parametrize(("text", "intent", "expected"), [
    ("想认识几个跟我孕周差不多的妈妈", "find_sisters", "姐妹匹配是会员服务"),
    ("我能拉我闺蜜一起来吗", "invite", "会员"),
    ("积分都能兑点啥呀", "rewards_list", "可兑换"),
    ("你们存了我哪些资料呀给我看看", "my_data", "我们为你保存了"),
    ("能让真人客服来跟我说吗", "human", "工单"),
    ("我不会用这个啊", "help", "我可以帮你"),
])
async def test_each_journey_starts_from_her_own_words(app, text, intent, expected):
    chat = Chat(app, f"o_words_{intent}")
    await chat.say("你好")
    reply = await chat.say(text)
    assert expected in reply, (text, reply)
    assert await last_intent(chat) == intent


async def test_a_due_date_by_weeks_is_confirmed_then_corrected_in_her_words(app):
    chat = Chat(app, "o_words_dates")
    for answer in ("我要注册", "同意", "同意", "小雨", "13812345671"):
        await chat.say(answer)
    await chat.say("1")
    assert "对吗" in await chat.say("孕20周")
    assert "城市" in await chat.say("对")
    await chat.say("上海")
    first = (await chat.profile())["fields"]["due_date"]
    assert "预产期" in await chat.say("医生说我预产期得往后推一推")  # correct_due_date
    assert await last_intent(chat) == "correct_due_date"
    later = TODAY + timedelta(days=150)
    assert "已更新预产期" in await chat.say(f"{later.year}年{later.month}月{later.day}日")
    assert (await chat.profile())["fields"]["due_date"] == later.isoformat() != first


async def test_a_common_question_is_answered_with_care(app):
    chat = Chat(app, "o_words_faq")
    reply = await chat.say("怀孕期间喝咖啡有没有事呀")  # not one of the file's phrasings
    assert "不能替代医生的诊断" in reply and "有帮助吗" in reply
    assert "谢谢" in await chat.say("1")


async def test_a_person_answers_and_the_bot_comes_back(app):
    kefu = Chat(app, "o_words_kefu")
    await kefu.say("你好")
    staff = await kefu.profile()
    await app.store.profiles.update(staff["_id"], {"role": "employee",
                                                   "fields.nickname": "小王"})
    assert "已上班" in await kefu.say("/duty on")
    mom = Chat(app, "o_words_mom")
    opened = await mom.say("转人工")
    ticket = re.search(r"T[0-9A-F]{6}", opened).group()
    assert await mom.say("宝宝一直哭怎么办") == ""  # the bot is silent: a person has it
    await app.services.core.orchestrator.drain(10)
    assert "✓ 已转达" in await kefu.say("可以先抱起来安抚一下")
    assert "已结束" in await kefu.say(f"/done {ticket}")
    assert "你好" in await mom.say("你好")  # the bot answers her again
