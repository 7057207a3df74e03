"""The member journeys through the core, without Rasa or servers: sign-up with its consents,
an interruption, cancel, check-in, a referral QR code, sister matching with its double
opt-in and the week-later question. (The same journeys through real Rasa and HTTP:
tests/integration/test_journeys.py and test_sisters.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.core import CoreHarness, core_harness


@pytest.fixture
async def core() -> CoreHarness:
    return await core_harness()


async def sign_up(core: CoreHarness, openid: str, nickname: str = "小美",
                  due_in_days: int = 100) -> str:
    today = core.calendar.today(datetime.now(UTC))
    assert "隐私政策" in await core.say(openid, "我要注册")
    assert "敏感个人信息" in await core.say(openid, "同意")
    assert "怎么称呼" in await core.say(openid, "同意")
    assert "手机号" in await core.say(openid, nickname)
    assert "准妈妈" in await core.say(openid, "13812345678")
    assert "预产期" in await core.say(openid, "1")
    assert "城市" in await core.say(openid, (today + timedelta(days=due_in_days)).isoformat())
    return await core.say(openid, "上海")


async def test_sign_up_writes_the_profile_with_consents_and_points(core):
    done = await sign_up(core, "o1")
    assert "小美，注册成功！" in done and "获得 100 积分" in done
    p = await core.profile("o1")
    assert p is not None
    assert (p["fields"]["nickname"], p["fields"]["mobile"], p["fields"]["city"]) == (
        "小美", "13812345678", "上海")
    assert p["consents"]["sensitive"]["accepted"] is True and "due_date" in p["fields"]
    assert {"会员", "孕中期"} <= set(p["tags"]) and p["member"]["stage"] == "pregnant"
    assert await core.store.ledger.balance(p["_id"]) == (100, 100)
    # Every message and reply is on her timeline.
    log = await core.store.interactions.latest(p["_id"], 100)
    assert len([i for i in log if i["direction"] == "in"]) == 8
    assert all(i["outcome"] in ("replied", "sent") for i in log)


async def test_a_question_mid_form_is_answered_and_the_form_resumes(core):
    await core.say("o2", "我要注册")
    await core.say("o2", "同意")
    await core.say("o2", "同意")
    reply = await core.say("o2", "我的积分")
    assert "你的积分：0" in reply and "怎么称呼你" in reply
    assert "手机号" in await core.say("o2", "小美")


async def test_cancel_leaves_no_member_and_no_points(core):
    await core.say("o3", "我要注册")
    assert "已取消" in await core.say("o3", "算了")
    p = await core.profile("o3")
    assert p is not None and "member" not in p
    assert await core.store.ledger.balance(p["_id"]) == (0, 0)


async def test_check_in_once_a_day_and_what_nlu_does_not_know_falls_back(core):
    assert "签到成功，+5 积分" in await core.say("o4", "签到")
    assert "今天已经签到过啦" in await core.say("o4", "签到")
    # Nothing understood and no common question close: it says so and offers a person.
    assert "不太会回答" in await core.say("o4", "这句话训练数据里没有")


async def test_a_member_gets_her_referral_qr_code_once(core):
    await sign_up(core, "o5")
    first = await core.say("o5", "邀请好友")
    member_id = (await core.profile("o5"))["member"]["id"]
    assert f"ticket=TICKET-ref_{member_id}" in first
    assert await core.say("o5", "邀请好友") == first  # created once, then kept


async def test_sisters_double_opt_in_then_the_week_later_question(core):
    await sign_up(core, "o_lin", nickname="小林", due_in_days=60)
    await core.say("o_lin", "找姐妹")
    assert "暂时没有找到合适的姐妹" in await core.say("o_lin", "同意")
    await sign_up(core, "o_mei", nickname="小美", due_in_days=100)
    await core.say("o_mei", "找姐妹")
    listing = await core.say("o_mei", "同意")
    assert "1. 小林（孕31周）" in listing and "138" not in listing
    assert "已记录你对 小林 的邀请" in await core.say("o_mei", "1")
    [invitation] = core.texts_to("o_lin")  # pushed to her, nickname and stage only
    assert "姐妹 小美（孕25周）想认识你" in invitation
    assert "你和 小美 已经认识啦" in await core.say("o_lin", "同意")
    assert "小林 同意认识你啦" in core.texts_to("o_mei")[0]
    [job] = core.queue.named("match_feedback")
    assert job.at is not None and job.at - datetime.now(UTC) > timedelta(days=6)
    assert await core.queue.run(core.core, until=job.at + timedelta(seconds=1)) == 1
    assert "认识一周啦" in core.texts_to("o_lin")[-1]
    assert "谢谢你的反馈" in await core.say("o_lin", "是")
    mei_id = (await core.profile("o_mei"))["_id"]
    card = await core.core.matcher.card_of(mei_id)
    assert card is not None and (card["fb_n"], card["fb_sum"]) == (1, 1)


async def test_no_referral_points_for_a_mobile_another_profile_has(core):
    await sign_up(core, "o_ref", nickname="推荐人")
    referrer = await core.profile("o_ref")
    scene = f"ref_{referrer['member']['id']}"
    today = core.calendar.today(datetime.now(UTC))

    async def follow_and_join(openid: str, nickname: str, mobile: str) -> str:
        assert "隐私政策" in await core.event(openid, "subscribe", scene)  # the form starts
        for answer in ("同意", "同意", nickname, mobile, "2",
                       (today - timedelta(days=30)).isoformat()):
            await core.say(openid, answer)
        return await core.say(openid, "上海")

    # A second account of hers (or anyone) joining with a mobile already on record...
    assert "注册成功" in await follow_and_join("o_alt", "小号", "13812345678")
    # ...and a real newcomer.
    assert "注册成功" in await follow_and_join("o_new", "新人", "13900001111")
    entries = await core.store.ledger.entries(referrer["_id"], 10)
    assert sorted(e["reason"] for e in entries) == ["referral", "share", "share", "signup"]
    assert (await core.profile("o_alt"))["referral"]["refused"] == "mobile_in_use"
