"""转人工 through the real Rasa server: a ticket asked for in her own words that goes quiet
and is handed back to the bot by the idle job the app queued, and two colleagues on duty
who each get one mother, answer only her and close her ticket, with the counts in /stats.
What each person sees is read from the fake WeChat, which refuses nothing here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.handoff.tickets import IDLE_JOB
from tests.conftest import make_settings
from tests.support.chat import Chat
from tests.support.marketing import BOSS, boss, texts_to, until
from webhooks.wechat.outlet import JOB_NAME as PUSH_JOB

pytestmark = pytest.mark.rasa

TICKET = re.compile(r"T[0-9A-F]{6}")
# Her own words: neither a training example nor any of the flow's keywords (转人工, 人工客服,
# 找客服, 联系客服, 真人), so only Rasa's intent can open the ticket.
IDLE_ASK = "有没有工作人员能跟我聊聊"
ASK_A = "可以让工作人员来帮我看看吗"
ASK_B = "我想和你们客服直接说几句"


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                         handoff={"service_hours": "00:00-23:59"},
                                         marketing={"admins": [BOSS]}))


async def colleague(app, openid: str, nickname: str) -> Chat:
    """An employee who has written (so WeChat lets the app reach her) and is on duty."""
    chat = Chat(app, openid)
    await chat.say("你好")
    profile = await chat.profile()
    await app.store.profiles.update(profile["_id"], {"role": "employee",
                                                     "fields.nickname": nickname})
    assert "已上班" in await chat.say("/duty on")
    return chat


async def settled(app) -> None:
    """Every turn finished and every push it queued has been tried with WeChat."""
    services = app.services
    await services.core.orchestrator.drain(10)

    async def no_push_queued() -> bool:
        jobs = await services.arq.queued_jobs(queue_name=services.keys.queue)
        return not [j for j in jobs if j.function == PUSH_JOB]
    assert await until(no_push_queued), "pushes still queued"


async def received(wechat_api, openid: str, n: int) -> list[str]:
    """What she has seen pushed once at least n messages reached her."""
    assert await until(lambda: _at_least(wechat_api, openid, n)), texts_to(wechat_api, openid)
    return texts_to(wechat_api, openid)


async def _at_least(wechat_api, openid: str, n: int) -> bool:
    return len(texts_to(wechat_api, openid)) >= n


async def intent_of(chat: Chat, text: str) -> str | None:
    """The intent Rasa gave her message `text` (recorded on the inbound interaction)."""
    profile = await chat.profile()
    latest = await chat.app.store.interactions.latest(profile["_id"], 50)
    return next(i.get("intent") for i in latest
                if i["direction"] == "in" and i.get("text") == text)


def is_notice(text: str, ticket: str, said: str) -> bool:
    """The new-ticket notice a colleague gets: the ticket, her words, how to answer.
    In zh or en: a profile's language is the one her last message was written in, and
    for a colleague that is often a command ("/duty on" reads as English)."""
    return text.startswith((f"【转人工 {ticket}】", f"[Ticket {ticket}]")) and \
        f"· {said}" in text and f"/done {ticket}" in text


def is_relay(text: str, ticket: str, said: str) -> bool:
    """Her message as her colleague gets it."""
    return text.startswith((f"【{ticket}】", f"[{ticket}]")) and \
        text.endswith((f"：{said}", f": {said}"))


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def nothing_twice(wechat_api) -> None:
    """No follower was sent the same message twice, and WeChat refused no send."""
    for openid in {str(c.body.get("touser")) for c in wechat_api.sends()}:
        texts = texts_to(wechat_api, openid)
        assert len(texts) == len(set(texts)), (openid, texts)
    assert len(wechat_api.delivered()) == len(wechat_api.sends())
    assert wechat_api.refusals == []


async def test_a_quiet_ticket_goes_back_to_the_bot(app, rasa_proxy, wechat_api):
    kefu = await colleague(app, "o_idle_kefu", "小王")
    mom = Chat(app, "o_idle_mom")
    await mom.say("你好")
    opened = await mom.say(IDLE_ASK)
    assert "已为你转接人工客服" in opened, opened
    ticket = TICKET.search(opened).group()
    assert await intent_of(mom, IDLE_ASK) == "human"  # Rasa understood her
    [note] = await received(wechat_api, kefu.openid, 1)
    assert is_notice(note, ticket, IDLE_ASK)

    # A person has her conversation: the bot is silent, Rasa is not asked, 小王 reads it.
    assert await mom.say("宝宝夜里老是醒") == ""
    assert is_relay((await received(wechat_api, kefu.openid, 2))[-1], ticket, "宝宝夜里老是醒")
    assert "宝宝夜里老是醒" not in [t["message"] for t in rasa_proxy.turns]
    assert f"已转达（{ticket}）" in await kefu.say("白天多晒晒太阳，晚上固定时间睡")
    assert await received(wechat_api, mom.openid, 1) == [
        "小王（客服）：白天多晒晒太阳，晚上固定时间睡"]
    await settled(app)

    # Then nobody writes. The app queued its idle check after every message; each is due
    # `idle_minutes` after that message, and only the last one finds nothing said since.
    services = app.services
    idle = timedelta(minutes=services.settings.handoff.idle_minutes)
    doc = await app.store.tickets.get(ticket)
    checks = sorted((j for j in await services.arq.queued_jobs(queue_name=services.keys.queue)
                     if j.function == IDLE_JOB and j.args[0] == ticket), key=lambda j: j.score)
    assert len(checks) == 3  # opened, her message, his reply
    last = checks[-1]
    due = datetime.fromtimestamp(last.score / 1000, UTC)
    assert abs(due - (aware(doc["last_at"]) + idle)) < timedelta(seconds=1)
    assert due > datetime.now(UTC) + idle - timedelta(minutes=1)  # not before its time
    run = services.core.jobs[IDLE_JOB]  # what the job worker runs when each is due
    for early in checks[:-1]:
        assert await run(*early.args) is False  # something was said after it: stays open
    assert (await app.store.tickets.get(ticket))["status"] == "open"
    assert await run(*last.args) is True
    bye = await received(wechat_api, mom.openid, 2)
    assert bye[-1] == ("一段时间没有新消息，本次人工服务先结束啦。"
                       "小助手回来啦，有需要随时发送「转人工」。")
    assert await run(*last.args) is False  # the worker running it again changes nothing

    # The bot answers her again, through Rasa; 小王 gets nothing of it.
    seen_by_kefu = texts_to(wechat_api, kefu.openid)
    assert "积分可兑换的礼品" in await mom.say("攒的积分能换些啥礼物")
    assert await intent_of(mom, "攒的积分能换些啥礼物") == "rewards_list"
    await settled(app)
    assert texts_to(wechat_api, kefu.openid) == seen_by_kefu
    # And his plain text is ordinary chat again: it does not reach her.
    assert "已转达" not in await kefu.say("宝宝后来睡得好吗")
    await settled(app)
    assert texts_to(wechat_api, mom.openid) == bye

    doc = await app.store.tickets.get(ticket)
    assert doc["status"] == "closed" and doc["closed_by"] == "idle"
    assert aware(doc["closed_at"]) >= aware(doc["last_at"])
    assert doc["messages"] == 1 and doc["replies"] == 1 and doc["first_response_at"]
    assert await app.store.tickets.open_for(doc["member"]) is None
    nothing_twice(wechat_api)


async def test_two_on_duty_each_answers_her_own_mother(app, wechat_api):
    admin = await boss(app)
    wang = await colleague(app, "o_duo_wang", "小王")
    li = await colleague(app, "o_duo_li", "小李")
    staff_ids = {(await c.profile())["_id"]: c for c in (wang, li)}
    mom_a, mom_b = Chat(app, "o_duo_mom_a"), Chat(app, "o_duo_mom_b")

    opened_a = await mom_a.say(ASK_A)
    assert "已为你转接人工客服" in opened_a, opened_a
    ticket_a = TICKET.search(opened_a).group()
    holder_a = staff_ids[(await app.store.tickets.get(ticket_a))["staff"]]
    other = li if holder_a is wang else wang
    [note_a] = await received(wechat_api, holder_a.openid, 1)
    assert is_notice(note_a, ticket_a, ASK_A)
    # The next goes to the colleague with fewer open tickets: the other one.
    opened_b = await mom_b.say(ASK_B)
    assert "已为你转接人工客服" in opened_b, opened_b
    ticket_b = TICKET.search(opened_b).group()
    assert ticket_b != ticket_a
    [note_b] = await received(wechat_api, other.openid, 1)
    assert is_notice(note_b, ticket_b, ASK_B)
    assert await intent_of(mom_a, ASK_A) == await intent_of(mom_b, ASK_B) == "human"
    await settled(app)
    assert texts_to(wechat_api, holder_a.openid) == [note_a]  # exactly one each
    pairs = [(mom_a, ticket_a, holder_a, "宝宝脸上起了湿疹"),
             (mom_b, ticket_b, other, "奶粉要用多少度的水冲")]
    answers = {ticket_a: ("先别着急，拍张照片给我看看", "保湿很重要，洗澡水别太热"),
               ticket_b: ("一般是四十到五十度", "先放水再放奶粉")}

    for mom, ticket, kefu, question in pairs:  # her message reaches her colleague only
        assert await mom.say(question) == ""
        assert is_relay((await received(wechat_api, kefu.openid, 2))[-1], ticket, question)
    name = {wang.openid: "小王", li.openid: "小李"}
    for mom, ticket, kefu, _ in pairs:
        # Plain text right after the notification, then /reply with the ticket.
        first, second = answers[ticket]
        assert f"已转达（{ticket}）" in await kefu.say(first)
        assert f"已转达（{ticket}）" in await kefu.say(f"/reply {ticket} {second}")
        assert await received(wechat_api, mom.openid, 2) == [
            f"{name[kefu.openid]}（客服）：{first}", f"{name[kefu.openid]}（客服）：{second}"]
    # Neither can answer the other's mother.
    assert "其他同事处理中" in await wang.say(
        f"/reply {ticket_a if holder_a is li else ticket_b} 你好")
    await settled(app)

    stats = await admin.say("/stats")
    assert "人工服务: 进行中 2 · 7 天结束 0" in stats, stats
    assert f"{ticket_a} 已结束" in await holder_a.say(f"/done {ticket_a}")
    assert f"{ticket_b} 已结束" in await other.say("/done")  # the ticket she is answering
    closed = "本次人工服务已结束。小助手回来啦，有需要随时发送「转人工」。"
    for mom, ticket, kefu, _ in pairs:
        texts = await received(wechat_api, mom.openid, 3)
        assert texts[-1] == closed
        assert all(t.startswith(f"{name[kefu.openid]}（客服）：") for t in texts[:-1])
        doc = await app.store.tickets.get(ticket)
        assert doc["status"] == "closed" and doc["closed_by"] == "done"
        assert doc["messages"] == 1 and doc["replies"] == 2
    stats = await admin.say("/stats")
    assert re.search(r"人工服务: 进行中 0 · 7 天结束 2 · 平均首次响应 \d+\.\d 分钟 · "
                     r"平均解决 \d+\.\d 分钟", stats), stats
    assert "你好" in await mom_a.say("你好")  # the bot answers her again
    await settled(app)

    for (mom, ticket, kefu, question), ask in zip(pairs, (ASK_A, ASK_B), strict=True):
        assert len(texts_to(wechat_api, mom.openid)) == 3  # who saw what, in full
        notice, relay = texts_to(wechat_api, kefu.openid)
        assert is_notice(notice, ticket, ask) and is_relay(relay, ticket, question)
    assert texts_to(wechat_api, admin.openid) == []
    nothing_twice(wechat_api)
