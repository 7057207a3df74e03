"""转人工 through the core, without Rasa: a ticket opens, the staff member on duty gets her
message with context, replies go both ways (by /reply and by plain text), the bot is
silent for her meanwhile, /done and the idle time hand her back; nobody on duty or outside
service hours; two staff on duty share the work; timings in /stats; and a second
misunderstanding in a row offers a person."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import BOSS

SHE, KEFU, KEFU2 = "o_mom", "o_kefu", "o_kefu2"


async def staff(core: CoreHarness, openid: str, nickname: str) -> None:
    """A colleague with the employee role, who has written (so WeChat lets us reach her)."""
    await core.say(openid, "你好")
    profile = await core.profile(openid)
    await core.store.profiles.update(profile["_id"], {"role": "employee",
                                                      "fields.nickname": nickname})


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness(marketing={"admins": [BOSS]},
                                 handoff={"service_hours": "00:00-23:59"})
    await staff(harness, KEFU, "客服小王")
    return harness


def ticket_in(text: str) -> str:
    found = re.search(r"T[0-9A-F]{6}", text)
    assert found, text
    return found.group()


async def test_a_ticket_from_open_to_done_with_messages_both_ways(core):
    assert "已上班" in await core.say(KEFU, "/duty on")
    await core.say(SHE, "宝宝吐奶怎么办")
    opened = await core.say(SHE, "转人工")
    assert "已为你转接人工客服" in opened
    ticket = ticket_in(opened)
    [note] = core.texts_to(KEFU)
    assert ticket in note and "宝宝吐奶怎么办" in note  # her last messages, for context
    # While the ticket is open the bot is silent for her; a person reads it.
    assert await core.say(SHE, "一天吐好几次") == ""
    assert core.texts_to(KEFU)[-1].endswith("一天吐好几次")
    assert "已转达" in await core.say(KEFU, f"/reply {ticket} 别担心，少量多次喂")
    assert core.texts_to(SHE)[-1] == "客服小王（客服）：别担心，少量多次喂"
    assert "已转达" in await core.say(KEFU, "拍嗝也很重要")  # plain text, right after
    assert core.texts_to(SHE)[-1].endswith("拍嗝也很重要")
    assert "已结束" in await core.say(KEFU, "/done")
    assert "小助手回来啦" in core.texts_to(SHE)[-1]
    assert "积分" in await core.say(SHE, "我的积分")  # the bot answers her again
    doc = await core.store.tickets.get(ticket)
    assert doc["status"] == "closed" and doc["first_response_at"] >= doc["opened_at"]
    assert doc["messages"] == 1 and doc["replies"] == 2
    stats = await core.say(BOSS, "/stats")
    assert "人工服务: 进行中 0 · 7 天结束 1" in stats
    assert core.wechat.refusals == []  # all within WeChat's budget


async def test_nobody_on_duty_she_is_told_and_the_next_on_duty_gets_it(core):
    opened = await core.say(SHE, "找客服")
    assert "同事有空会马上" in opened and core.texts_to(KEFU) == []
    await core.say(SHE, "在吗")
    assert "1 个等待中的工单已分配" in await core.say(KEFU, "/duty on")
    assert ticket_in(opened) in core.texts_to(KEFU)[0]


async def test_outside_service_hours_she_is_told_when():
    probe = await core_harness()
    later = probe.calendar.local(datetime.now(UTC)) + timedelta(hours=2)
    hours = f"{later:%H}:00-{(later + timedelta(hours=1)):%H}:00"  # never now
    core = await core_harness(handoff={"service_hours": hours})
    assert f"非服务时间（服务时间 {hours}）" in await core.say(SHE, "转人工")


async def test_two_on_duty_share_tickets_and_a_colleague_cannot_answer_anothers(core):
    await staff(core, KEFU2, "客服小李")
    await core.say(KEFU, "/duty on")
    await core.say(KEFU2, "/duty on")
    first = ticket_in(await core.say("o_a", "转人工"))
    second = ticket_in(await core.say("o_b", "转人工"))
    holders = {(await core.store.tickets.get(t))["staff"] for t in (first, second)}
    assert len(holders) == 2  # the one with fewer open tickets gets the next
    kefu = (await core.profile(KEFU))["_id"]
    mine, theirs = (first, second) if (await core.store.tickets.get(first))["staff"] == kefu \
        else (second, first)
    assert "其他同事处理中" in await core.say(KEFU, f"/reply {theirs} 你好")
    assert "已转达" in await core.say(KEFU, f"/reply {mine} 你好")
    assert "已上班" not in await core.say("o_a", "/duty on")  # a member: ordinary chat
    assert (await core.profile("o_a")).get("staff") is None


async def test_an_idle_ticket_goes_back_to_the_bot(core):
    await core.say(KEFU, "/duty on")
    ticket = ticket_in(await core.say(SHE, "转人工"))
    await core.say(SHE, "你好")
    [last] = [j for j in core.queue.named("handoff_idle")][-1:]
    assert last.at is not None and last.at - datetime.now(UTC) > timedelta(minutes=29)
    await core.queue.run(core.core, until=last.at + timedelta(seconds=1))
    doc = await core.store.tickets.get(ticket)
    assert doc["status"] == "closed" and doc["closed_by"] == "idle"
    assert "一段时间没有新消息" in core.texts_to(SHE)[-1]


async def test_a_second_misunderstanding_in_a_row_offers_a_person(core):
    first = await core.say(SHE, "叽里咕噜")
    assert "不太会回答" in first  # no common question close either
    second = await core.say(SHE, "呜啦啦")
    assert "还是没听懂" in second and "转人工" in second  # now a person is the offer
    await core.say(SHE, "我的积分")  # understood: the count starts again
    assert "还是没听懂" not in await core.say(SHE, "叽里咕噜")


async def test_a_colleague_who_writes_chinese_stays_chinese_through_her_commands(core):
    # Commands are Latin by design: "/duty on" must not switch her notes to English.
    assert "已上班" in await core.say(KEFU, "/duty on")
    assert (await core.profile(KEFU))["lang"] == "zh"
    ticket = ticket_in(await core.say("o_nameless", "转人工"))  # a follower with no nickname
    [note] = core.texts_to(KEFU)
    assert note.startswith(f"【转人工 {ticket}】会员") and "直接回复即可转达给她" in note
    await core.say("o_nameless", "在吗")
    assert core.texts_to(KEFU)[-1] == f"【{ticket}】会员：在吗"
    assert "已结束" in await core.say(KEFU, f"/done {ticket}")
    assert (await core.profile(KEFU))["lang"] == "zh"
    await core.say(KEFU, "/reply 你好")  # Chinese after a command is hers
    assert (await core.profile(KEFU))["lang"] == "zh"
