"""A mother in her own words, through the real Rasa server: each journey by intent (texts
that are neither training examples nor keywords), every date form the issue lists, each
correction, a common question, and a person (转人工) from opening the ticket to the bot
being back. (Idle time-out and two staff on duty: test_handoff_rasa.py.)"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.flow_engine.validators import Valid, due_date
from scrm.rasa_proc import nlu_examples
from tests.conftest import ROOT, make_settings
from tests.support.chat import TODAY, Chat, sign_up

pytestmark = pytest.mark.rasa


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                         handoff={"service_hours": "00:00-23:59"}))


async def last_intent(chat: Chat) -> str | None:
    profile = await chat.profile()
    latest = await chat.app.store.interactions.latest(profile["_id"], 10)
    return next(i.get("intent") for i in latest if i["direction"] == "in")


# Each journey as she might put it: none of these is a training example or a keyword.
OWN_WORDS = [
    ("想认识几个跟我孕周差不多的妈妈", "find_sisters", "姐妹"),
    ("我能拉我闺蜜一起来吗", "invite", "二维码"),
    ("积分都能兑点啥呀", "rewards_list", "积分可兑换的礼品"),
    ("帮我拿积分换包湿巾呗", "redeem", "兑换成功：婴儿湿巾"),
    ("我现在攒了多少分啦", "points_query", "你的积分"),
    ("今天的卡还没打呢帮我打一下", "checkin", "签到成功"),
    ("看看我在你们这儿登记的档案", "whoami", "会员号"),
    ("你们存了我哪些资料呀给我看看", "my_data", "我们为你保存了"),
    ("有没有工作人员能跟我聊聊", "human", "工单"),
    ("我不会用这个啊", "help", "我可以帮你"),
    ("我不想你们再存着我的预产期了", "withdraw_sensitive", "撤回后"),
    ("以后别再把我推荐给别的宝妈了", "withdraw_matching", "退出后"),
    ("我想把账号彻底删掉，以后不用了", "erase_me", "注销会删除你的资料"),
    ("我后悔了，账号先别删了", "erase_cancel", "注销"),
    ("我的预产期登记得不对", "correct_due_date", "预产期"),
    ("宝宝生日那里登记错了", "correct_baby_birthday", "宝宝"),
    ("我们家搬到杭州了，城市帮我改下", "correct_city", "城市"),
    ("昵称能不能改成果果妈呀", "correct_nickname", "称呼"),
    ("我手机号换了要更新一下", "correct_mobile", "手机号"),
    ("怀孕期间喝咖啡有没有事呀", "faq", "咖啡因"),
    ("帮我订一张明天去三亚的机票", "out_of_scope", "转人工"),
]


async def test_her_words_are_neither_training_examples_nor_keywords(app):
    examples = {text.casefold() for _, text, _ in nlu_examples(ROOT)}
    keywords = app.services.core.flows.current.keywords()
    for text, _, _ in OWN_WORDS:
        assert text.casefold() not in examples, text
        assert not any(k in text.casefold() for k in keywords), text


@pytest.mark.parametrize(("text", "intent", "expected"), OWN_WORDS,
                         ids=[intent for _, intent, _ in OWN_WORDS])
async def test_each_journey_starts_from_her_own_words(app, text, intent, expected):
    chat = Chat(app, f"o_words_{intent}")
    await sign_up(chat, date_answer=(TODAY + timedelta(days=120)).isoformat())
    reply = await chat.say(text)
    assert expected in reply, (text, reply)
    assert await last_intent(chat) == intent


async def test_a_new_follower_asks_to_join_in_her_own_words(app):
    chat = Chat(app, "o_words_join")
    assert "隐私政策" in await chat.say("我也想入会，要怎么弄呀")
    assert await last_intent(chat) == "signup"


def date_forms() -> list[str]:
    """Every form the issue lists, for a date about four months away (so each is a valid
    due date whatever today is); 明年N月 only where next year's month is in range."""
    day = TODAY + timedelta(days=120)
    forms = [day.isoformat(), f"{day.year}/{day.month}/{day.day}",
             f"{day.year}年{day.month}月{day.day}日", f"{day.month}月{day.day}号",
             f"{day.month}.{day.day}", "下个月10号", "孕20周", "还有12周"]
    forms += [f"明年{m}月" for m in range(1, 13)
              if isinstance(due_date(f"明年{m}月", TODAY), Valid)][:1]
    return forms


@pytest.mark.parametrize("form", date_forms())
async def test_every_date_form_through_real_rasa(app, form):
    expected = due_date(form, TODAY)
    assert isinstance(expected, Valid)
    chat = Chat(app, f"o_dates_{abs(hash(form)) % 10**8}")
    await sign_up(chat, date_answer=(TODAY + timedelta(days=200)).isoformat())
    assert "预产期" in await chat.say("预产期写错了")
    reply = await chat.say(form)
    if expected.confirm:  # our reading of what she said: she is asked first
        assert f"{expected.value.isoformat()}" in reply and "对吗" in reply, reply
        reply = await chat.say("对")
    assert f"已更新预产期：{expected.value.isoformat()}" in reply, (form, reply)
    assert (await chat.profile())["fields"]["due_date"] == expected.value.isoformat()


@pytest.mark.parametrize(("ask", "answer", "field", "stored"), [
    ("城市填错了，我在杭州", "杭州市", "city", "杭州"),
    ("昵称想改一下", "果果妈", "nickname", "果果妈"),
    ("我换了个新手机号", "+86 139-1234-5678", "mobile", "13912345678"),
])
async def test_a_correction_in_her_words_changes_that_field_only(app, ask, answer, field,
                                                                  stored):
    chat = Chat(app, f"o_fix_{field}")
    await sign_up(chat, date_answer=(TODAY + timedelta(days=120)).isoformat())
    before = (await chat.profile())["fields"]
    await chat.say(ask)
    assert "已更新" in await chat.say(answer)
    after = (await chat.profile())["fields"]
    assert after[field] == stored
    follows = {field, "province"} if field == "city" else {field}  # the city decides both
    assert {k: v for k, v in after.items() if k not in follows} == \
        {k: v for k, v in before.items() if k not in follows}


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
