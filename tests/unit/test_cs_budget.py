"""WeChat's customer-service budget, counted by the app (bot/allowance.py through the WeChat
outlet) against the fake, which keeps WeChat's own count: 5 sends within 48 h of her
message, 3 within a minute of a follow; a late answer always has the send its turn held;
pushes beyond the budget wait for her next message; broadcasts tell "no budget left"
from "outside 48 h"; life-stage moments wait or use their template message; 45047 from
WeChat is believed. The fake never has to refuse a send the app tried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.flow_engine.actions import Say
from bot.settings import TemplateMessage
from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import BOSS, bid_in, member_doc, seed

SHE = "o_m0001"


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness(marketing={"admins": [BOSS]})
    await harness.say(BOSS, "你好")
    return harness


async def note(core: CoreHarness, openid: str, text: str) -> None:
    """A push to her (as a sister's relay or an invitation goes): at most once per key."""
    profile = await core.profile(openid)
    assert profile is not None
    await core.core.outbound.notify(profile["_id"], [Say("staff_text", {"text": text})],
                                    f"note:{openid}:{text}")


async def outcomes(core: CoreHarness, openid: str) -> list[str]:
    profile = await core.profile(openid)
    assert profile is not None
    return [i["outcome"] for i in reversed(await core.store.interactions.latest(
        profile["_id"], 50)) if i["dedupe_key"].startswith("push:note:")]


async def test_five_pushes_after_her_message_then_the_rest_wait_for_the_next(core):
    await core.say(SHE, "你好")  # answered in its own reply: all 5 remain
    for i in range(7):
        await note(core, SHE, f"留言{i}")
    assert core.texts_to(SHE) == [f"留言{i}" for i in range(5)]
    assert await outcomes(core, SHE) == ["sent"] * 5 + ["waiting"] * 2
    assert core.wechat.refusals == []  # the app never tried the sixth
    await core.say(SHE, "在吗")  # her next message opens a new budget: the two go now
    assert core.texts_to(SHE)[5:] == ["留言5", "留言6"]
    assert await outcomes(core, SHE) == ["sent"] * 7
    assert core.wechat.refusals == []


async def test_a_late_answer_has_the_send_its_turn_held(core):
    await core.say(SHE, "你好")
    msg = core.message(SHE, text="签到")
    await core.outlet.heard(msg)  # as the WeChat channel does when her message arrives
    turn = core.core.orchestrator.start(msg)
    for i in range(6):  # pushes of the same moment spend what they may: 4
        await note(core, SHE, f"留言{i}")
    assert await turn.answer(0.0) is None  # not answered within the reply's time: late
    assert turn.task is not None
    await turn.task  # the answer goes by customer service, with the held send
    texts = core.texts_to(SHE)
    assert texts[:4] == [f"留言{i}" for i in range(4)] and len(texts) == 5
    assert "签到" in texts[4] or "积分" in texts[4]
    assert core.wechat.refusals == []


async def test_a_follow_opens_three_sends_within_a_minute(core):
    await core.event("o_new", "subscribe")
    for i in range(4):
        await note(core, "o_new", f"欢迎{i}")
    assert core.texts_to("o_new") == ["欢迎0", "欢迎1", "欢迎2"]
    assert await outcomes(core, "o_new") == ["sent"] * 3 + ["waiting"]
    await core.event("o_new", "unsubscribe")  # nothing may reach her now, nothing waits
    await note(core, "o_new", "再见")
    await core.event("o_new", "subscribe")
    assert core.texts_to("o_new") == ["欢迎0", "欢迎1", "欢迎2"]
    assert core.wechat.refusals == []


async def test_a_broadcast_counts_no_budget_apart_from_outside_48_hours(core):
    await seed(core, [member_doc(i, tags=["会员"]) for i in (1, 2)]
               + [member_doc(3, tags=["会员"], last_seen=timedelta(hours=72))])
    await core.outlet.budget.exhausted(core.outlet.address("o_m0002"))  # spent already
    core.wechat.budgets["o_m0002"].message[1] = 0  # WeChat counts the same
    preview = await core.say(BOSS, "/broadcast tag:会员 | 你好，{{ nickname }}")
    assert "客服消息 1" in preview and "48 小时外且无模板消息 1" in preview
    assert "客服消息额度已用完 1" in preview
    bid = bid_in(preview)
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    tally = await core.store.campaigns.tally(bid)
    assert (tally["sent"], tally["skipped:no_budget"], tally["skipped:outside_window"]) == \
        (1, 1, 1)
    status = await core.say(BOSS, f"/status {bid}")
    assert "no_budget 1" in status and "outside_window 1" in status
    assert core.wechat.refusals == []


async def test_45047_from_wechat_is_believed_over_the_apps_count(core):
    await seed(core, [member_doc(1, tags=["会员"])])
    core.wechat.budgets[SHE].message[1] = 0  # spent elsewhere (another tool on the account)
    bid = bid_in(await core.say(BOSS, "/broadcast tag:会员 | 你好"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    assert (await core.store.campaigns.tally(bid))["skipped:no_budget"] == 1
    await note(core, SHE, "姐妹留言")  # the app now knows: not tried, it waits
    assert core.wechat.refusals == [45047]
    assert await outcomes(core, SHE) == ["waiting"]


async def moment_member(core: CoreHarness) -> None:
    today = core.calendar.today(datetime.now(UTC))
    await seed(core, [member_doc(1, due=today + timedelta(days=193))])  # week 12
    await core.outlet.budget.exhausted(core.outlet.address(SHE))
    core.wechat.budgets[SHE].message[1] = 0


async def test_a_moment_waits_for_her_next_message_when_her_budget_is_spent(core):
    await moment_member(core)
    await core.core.campaigns.run_moments()
    await core.queue.run(core.core)
    assert core.texts_to(SHE) == []
    [bid] = [d["_id"] for d in await core.store.campaigns.recent(20)
             if d["_id"].startswith("mot-week_12-")]
    assert (await core.store.campaigns.tally(bid)).get("waiting") == 1
    assert (await core.store.campaigns.get(bid))["status"] == "done"
    await core.say(SHE, "你好")
    assert len(core.texts_to(SHE)) == 1 and "12" in core.texts_to(SHE)[0]
    assert core.wechat.refusals == []


async def test_a_moment_with_a_template_message_uses_it_when_her_budget_is_spent():
    core = await core_harness(marketing={"template_messages": {"mot_week_12": TemplateMessage(
        template_id="TPL-12", data={"thing1": "{{ nickname }}"})}})
    await moment_member(core)
    await core.core.campaigns.run_moments()
    await core.queue.run(core.core)
    assert core.texts_to(SHE) == ["[模板消息 TPL-12] 妈妈1"]
    assert core.wechat.refusals == []
