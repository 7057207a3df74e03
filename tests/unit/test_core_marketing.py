"""Staff commands and campaigns through the core, without Rasa or servers: roles and audit,
a broadcast from preview to tally with every skip reason, the channel's window rule and
quota outcome, polls answered once, and a life-stage moment once per member. (Through the
real app and a strict fake WeChat API: tests/integration/test_marketing.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import BOSS, bid_in, member_doc, seed


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness(marketing={"admins": [BOSS]})
    await harness.say(BOSS, "你好")  # her profile exists once she has written
    return harness


async def test_a_consumers_command_is_chat_and_staff_rights_are_checked(core):
    calls = len(core.nlu.calls)
    reply = await core.say("o_someone", "/stats")  # ordinary chat for her: it goes to NLU
    assert "关注" not in reply and core.nlu.calls[calls:] == ["/stats"]
    assert "关注" in await core.say(BOSS, "/stats")
    log = await core.store.audit.latest(10)
    assert [(a["command"], a["result"]) for a in log] == [("stats", "ok"),
                                                           ("stats", "refused")]


async def test_an_admins_openid_on_another_channel_is_nobody(core):
    # The JSON channel's sender picks her own name: "o_boss" there is not the admin.
    reply = await core.say(BOSS, "/stats", channel="json")
    assert "关注" not in reply
    assert (await core.store.audit.latest(1))[0]["result"] == "refused"


async def test_points_grants_are_never_for_oneself_and_capped_per_day():
    core = await core_harness(marketing={"admins": [BOSS], "grant_daily_cap": 100})
    await core.say(BOSS, "你好")
    await seed(core, [member_doc(1)])
    me = (await core.profile(BOSS))["_id"]
    assert "不能给自己发放积分" in await core.say(BOSS, f"/points grant {BOSS} 10 我自己")
    assert await core.store.ledger.balance(me) == (0, 0)
    assert "发放 60 积分" in await core.say(BOSS, "/points grant o_m0001 60 活动")
    refused = await core.say(BOSS, "/points grant o_m0001 50 再来")
    assert "超过每日上限 100" in refused
    assert "发放 40 积分" in await core.say(BOSS, "/points grant o_m0001 40 补足")
    member = await core.profile("o_m0001")
    assert await core.store.ledger.balance(member["_id"]) == (100, 100)
    granted = [a.get("points", 0) for a in await core.store.audit.latest(10)
               if a["command"] == "points" and a["result"] == "ok"]
    assert sum(granted) == 100  # every grant audited with its amount


async def test_a_broadcast_from_preview_to_tally_with_every_skip_reason(core):
    docs = [member_doc(i, tags=["会员"]) for i in range(1, 3)] + [
        member_doc(3, tags=["会员"], follow="unsubscribed"),
        member_doc(4, tags=["会员"], last_seen=timedelta(hours=72)),
        member_doc(5, tags=["会员"], month_count=4)]
    await seed(core, docs)
    preview = await core.say(BOSS, "/broadcast tag:会员 | {{ nickname }}，周末讲座开始报名")
    assert "人群: tag:会员 → 5 人" in preview
    assert "客服消息 2" in preview and "取关 1" in preview and "本月已达 4 条 1" in preview
    bid = bid_in(preview)
    assert "已确认" in await core.say(BOSS, f"/confirm {bid}")
    assert await core.queue.run(core.core) >= 2  # plan, then the chunk
    sent = {c.body["touser"]: c.body["text"]["content"] for c in core.wechat.delivered()
            if c.body["touser"] != BOSS}
    assert sent == {"o_m0001": "妈妈1，周末讲座开始报名", "o_m0002": "妈妈2，周末讲座开始报名"}
    tally = await core.store.campaigns.tally(bid)
    assert (tally["sent"], tally["skipped:unsubscribed"], tally["skipped:outside_window"],
            tally["skipped:monthly_cap"]) == (2, 1, 1, 1)
    assert (await core.store.campaigns.get(bid))["status"] == "done"
    assert any("发送完成" in t for t in core.texts_to(BOSS))
    # Nobody twice: the same chunk run again sends nothing.
    ids = sorted(d["_id"] for d in docs)
    assert await core.core.campaigns.send_chunk(bid, 0, ids) == {
        "sent": 0, "skipped": 0, "failed": 0, "waiting": 0}
    assert len(core.wechat.delivered()) == len(sent) + len(core.texts_to(BOSS))


async def test_the_channels_outcomes_pause_on_quota_and_skip_a_closed_window(core):
    await seed(core, [member_doc(i, tags=["会员"]) for i in range(1, 5)])
    core.wechat.errcode_for["o_m0002"] = 45015  # WeChat: outside her window after all
    core.wechat.errcode_for["o_m0004"] = 45009  # WeChat: the day's quota is spent
    bid = bid_in(await core.say(BOSS, "/broadcast tag:会员 | 你好"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    doc = await core.store.campaigns.get(bid)
    tally = await core.store.campaigns.tally(bid)
    assert doc["status"] == "paused" and doc["paused_reason"] == "quota"
    # The one the quota stopped, and any after her, wait: not dropped, not sent.
    assert tally["queued"] >= 1 and "o_m0004" not in {
        c.body["touser"] for c in core.wechat.delivered()}
    assert [j.job for j in core.queue.jobs] == ["campaign_resume"]  # tomorrow, by itself
    del core.wechat.errcode_for["o_m0004"]
    assert "已恢复发送" in await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    tally = await core.store.campaigns.tally(bid)
    assert (tally["sent"], tally["skipped:window_closed"]) == (3, 1)
    assert (await core.store.campaigns.get(bid))["status"] == "done"


async def test_a_poll_is_answered_once_and_earns_its_points_once(core):
    await seed(core, [member_doc(1, tags=["会员"])])
    bid = bid_in(await core.say(BOSS, "/poll tag:会员 | 想听哪个讲座？ | 辅食 | 睡眠"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    assert "想听哪个讲座" in core.texts_to("o_m0001")[0]
    assert "睡眠" in await core.say("o_m0001", "2")
    await core.say("o_m0001", "2")  # asked again: no second answer
    assert await core.store.campaigns.results(bid) == {2: 1}
    p = await core.profile("o_m0001")
    assert await core.store.ledger.balance(p["_id"]) == (2, 2)


async def test_a_life_stage_moment_reaches_each_member_once_ever(core):
    # Week 12 of pregnancy: 189 to 196 days before the due date.
    today = core.calendar.today(datetime.now(UTC))
    await seed(core, [member_doc(1, due=today + timedelta(days=193)),
                      member_doc(2, due=today + timedelta(days=100))])
    await core.core.campaigns.run_moments()
    await core.core.campaigns.run_moments()  # the daily job ran twice
    await core.queue.run(core.core)
    assert [c.body["touser"] for c in core.wechat.delivered()] == ["o_m0001"]


async def test_chunks_that_start_while_planning_are_sent_and_the_campaign_finishes():
    """60 members in 60 one-member chunks, each chunk job starting the moment it is queued,
    long before planning is over: every member is messaged once and the marketer gets the
    final tally (before the fix, early chunks found the campaign not yet running)."""
    core = await core_harness(marketing={"admins": [BOSS], "chunk_size": 1})
    await core.say(BOSS, "你好")
    await seed(core, [member_doc(i, tags=["会员"]) for i in range(1, 61)])
    bid = bid_in(await core.say(BOSS, "/broadcast tag:会员 | 周末活动"))
    core.queue.eager = core.core
    await core.say(BOSS, f"/confirm {bid}")
    sent = [c.body["touser"] for c in core.wechat.delivered() if c.body["touser"] != BOSS]
    assert len(sent) == len(set(sent)) == 60
    doc = await core.store.campaigns.get(bid)
    assert doc["status"] == "done" and (doc["total"], doc["chunks"]) == (60, 60)
    assert sum("发送完成" in t for t in core.texts_to(BOSS)) == 1


async def test_a_planner_that_dies_midway_is_run_again_and_every_member_is_reached():
    """The plan job dies after three of six chunks (its worker killed): arq runs it again;
    the second run plans the rest, the chunks already queued are not queued twice, and
    every member is messaged once."""
    core = await core_harness(marketing={"admins": [BOSS], "chunk_size": 5})
    await core.say(BOSS, "你好")
    await seed(core, [member_doc(i, tags=["会员"]) for i in range(1, 31)])
    bid = bid_in(await core.say(BOSS, "/broadcast tag:会员 | 周末活动"))
    real_plan, calls = core.store.campaigns.plan, {"n": 0}

    async def dying_plan(docs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("worker killed")
        return await real_plan(docs)

    core.store.campaigns.plan = dying_plan
    await core.say(BOSS, f"/confirm {bid}")
    with pytest.raises(RuntimeError):
        await core.queue.run(core.core)  # the plan job, dying
    core.store.campaigns.plan = real_plan
    await core.core.campaigns.plan(bid)  # arq's retry of the same job
    await core.queue.run(core.core)
    sent = [c.body["touser"] for c in core.wechat.delivered() if c.body["touser"] != BOSS]
    assert len(sent) == len(set(sent)) == 30
    assert (await core.store.campaigns.get(bid))["status"] == "done"
