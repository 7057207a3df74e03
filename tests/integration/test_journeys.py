"""Member journeys as scripted conversations through the real Rasa server and the flows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN, APP_PORT, make_settings
from tests.support.chat import TODAY, Chat, sign_up

pytestmark = pytest.mark.rasa

@pytest.fixture
async def app(start_app, namespace, rasa_proxy):
    return await start_app(make_settings(namespace, rasa_proxy.url), port=APP_PORT)


async def test_full_sign_up_in_chinese(app):
    chat = Chat(app, "o_signup")
    due = TODAY + timedelta(days=100)
    done = await sign_up(chat, date_answer=due.isoformat())
    assert "小美，注册成功！" in done and "获得 100 积分" in done and "当前积分 100" in done
    p = await chat.profile()
    f = p["fields"]
    assert (f["nickname"], f["mobile"], f["role"], f["city"], f["province"]) == (
        "小美", "13812345678", "expecting", "上海", "上海")
    assert f["due_date"] == due.isoformat()
    assert p["consents"]["privacy"]["accepted"] is True
    assert p["consents"]["sensitive"]["accepted"] is True
    assert p["consents"]["privacy"]["version"] == "2026-11"
    assert p["member"]["id"].startswith("M") and p["member"]["tier"] == "普通"
    assert p["member"]["stage"] == "pregnant"
    assert {"会员", "孕中期", "孕25周"} <= set(p["tags"])
    assert await app.store.ledger.balance(p["_id"]) == (100, 100)
    # What an operator sees: the mobile number is masked.
    resp = await app.client.get(f"/admin/api/profiles/{p['_id']}",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    shown = await resp.text()
    assert "13812345678" not in shown and "138****5678" in shown


async def test_sign_up_in_english_with_a_baby(app):
    chat = Chat(app, "o_signup_en")
    assert "privacy policy" in await chat.say("I want to join")
    assert "sensitive personal data" in await chat.say("yes")
    assert "What should we call you" in await chat.say("yes")
    assert "mobile number" in await chat.say("Amy")
    assert "expecting" in await chat.say("+86 139 1234 5678")
    assert "baby's birthday" in await chat.say("2")
    assert "which city" in await chat.say((TODAY - timedelta(days=200)).isoformat())
    done = await chat.say("Shanghai")
    assert "Amy, you're in!" in done and "You earned 100 points" in done
    p = await chat.profile()
    assert p["fields"]["mobile"] == "13912345678" and p["fields"]["role"] == "mother"
    assert "6-12月" in p["tags"] and p["member"]["stage"] == "baby"


async def test_invalid_phone_then_valid(app):
    chat = Chat(app, "o_phone")
    await chat.say("我要注册")
    await chat.say("同意")
    await chat.say("同意")
    await chat.say("小美")
    assert "11 位中国大陆手机号" in await chat.say("1234")
    assert "11 位中国大陆手机号" in await chat.say("23812345678")
    assert "准妈妈" in await chat.say("13812345678")


async def test_bad_dates_get_a_friendly_reask(app):
    chat = Chat(app, "o_dates")
    for answer in ("我要注册", "同意", "同意", "小美", "13812345678"):
        await chat.say(answer)
    assert "预产期是哪天" in await chat.say("1")
    assert "应该在今天之后" in await chat.say((TODAY - timedelta(days=3)).isoformat())
    assert "42 周以内" in await chat.say((TODAY + timedelta(days=400)).isoformat())
    # Not a date, and not a way of quitting ("等宝宝出来再说吧" reads as one now: it cancels).
    assert "没看懂这个日期" in await chat.say("大概是春暖花开的时候吧")
    assert "城市" in await chat.say((TODAY + timedelta(days=30)).isoformat())


async def test_points_question_mid_form_is_answered_and_the_form_resumes(app):
    chat = Chat(app, "o_interrupt")
    await chat.say("我要注册")
    await chat.say("同意")
    await chat.say("同意")
    reply = await chat.say("我有多少积分")
    assert "你的积分：0" in reply and "怎么称呼你" in reply  # answer, then the question again
    assert "手机号" in await chat.say("小美")  # the form goes on where it was


async def test_cancel_stops_the_form_cleanly(app):
    chat = Chat(app, "o_cancel")
    await chat.say("我要注册")
    await chat.say("同意")
    assert "已取消" in await chat.say("算了")
    assert "姐妹社区的小助手" in await chat.say("你好")  # no form is waiting any more
    p = await chat.profile()
    assert "member" not in p and await app.store.ledger.balance(p["_id"]) == (0, 0)


async def test_declining_the_privacy_policy_ends_sign_up(app):
    chat = Chat(app, "o_decline")
    await chat.say("我要注册")
    assert "无法注册会员" in await chat.say("不同意")
    assert "member" not in await chat.profile()


async def test_without_sensitive_consent_no_dates_are_asked_or_kept(app):
    chat = Chat(app, "o_nosens")
    done = await sign_up(chat, sensitive="不同意", role="1", date_answer=None)
    assert "注册成功" in done
    p = await chat.profile()
    assert p["consents"]["sensitive"]["accepted"] is False
    assert "due_date" not in p["fields"] and p["member"]["stage"] == "unknown"


async def test_signing_up_again_updates_the_profile_without_double_points(app):
    chat = Chat(app, "o_again")
    await sign_up(chat, date_answer=(TODAY + timedelta(days=100)).isoformat())
    again = await sign_up(chat, nickname="美美", role="2",
                          date_answer=(TODAY - timedelta(days=40)).isoformat(), city="北京")
    assert "美美，资料已更新！" in again and "获得" not in again and "当前积分 100" in again
    p = await chat.profile()
    assert p["fields"]["nickname"] == "美美" and p["fields"]["city"] == "北京"
    # Now a mother: the birthday replaces the due date, which is not kept.
    assert "due_date" not in p["fields"] and "baby_birthday" in p["fields"]
    assert "0-6月" in p["tags"] and "孕中期" not in p["tags"]  # stale stage tags removed
    entries = await app.store.ledger.entries(p["_id"], 10)
    assert [(e["points"], e["reason"]) for e in entries] == [(100, "signup")]


async def test_check_in_once_per_day(app):
    chat = Chat(app, "o_checkin")
    assert "签到成功，+5 积分，当前 5" in await chat.say("签到")
    assert "今天已经签到过啦" in await chat.say("签到")
    assert "Checked in" not in await chat.say("check in")  # same day, English
    p = await chat.profile()
    assert await app.store.ledger.balance(p["_id"]) == (5, 5)
    summary = await chat.say("我的积分")
    assert "你的积分：5" in summary and "+5 签到" in summary and "再得 495 分升级为银卡" in summary


async def test_twenty_concurrent_redemptions_of_five_in_stock(app):
    store = app.store
    await store.ledger.set_reward("crib", "婴儿床", 10, 5)
    chats = [Chat(app, f"o_redeem_{i}") for i in range(20)]
    await asyncio.gather(*(c.say("你好") for c in chats))  # profiles exist
    now = datetime.now(UTC)
    for c in chats:
        p = await c.profile()
        await store.ledger.award(p["_id"], f"test:{c.openid}", 50, "gift", now=now)
    replies = await asyncio.gather(*(c.say("兑换 婴儿床") for c in chats))
    assert sum("兑换成功" in r for r in replies) == 5
    assert sum("已兑完" in r for r in replies) == 15
    assert (await store.ledger.reward("crib"))["stock"] == 0
    assert await store.ledger.check() == []  # every balance equals its ledger sum


async def test_redeem_explains_the_catalogue_and_a_short_balance(app):
    chat = Chat(app, "o_shop")
    listing = await chat.say("兑换")  # no gift named: the list 积分能换什么 gives
    assert listing.startswith("积分可兑换的礼品（你现在有 0 积分）")
    assert "· 婴儿湿巾：50 积分（还差 50 分）" in listing
    assert await chat.say("兑换 月球") == listing  # nothing of that name: the same list
    assert "积分不够哦：婴儿湿巾 需要 50 积分，你有 0" in await chat.say("兑换 湿巾")


async def test_follow_welcomes_and_starts_sign_up_but_welcomes_members_back(app):
    chat = Chat(app, "o_follow")
    first = await chat.follow()
    assert "欢迎加入姐妹社区" in first and "隐私政策" in first
    await chat.say("算了")
    await sign_up(chat, date_answer=(TODAY + timedelta(days=100)).isoformat())
    chat.f.clock = datetime.now(UTC).timestamp() + 2  # a later follow event
    assert "欢迎回来，小美" in await chat.follow()
