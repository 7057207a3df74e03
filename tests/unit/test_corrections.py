"""Corrections at any time (flows/profile.yml): one field asked again with sign-up's own
validator, written, and what depends on it recomputed (life-stage tags, matching)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.core import CoreHarness, core_harness

SHE = "o_fix"


@pytest.fixture
async def core() -> CoreHarness:
    return await core_harness()


async def sign_up(core: CoreHarness, sensitive: str = "同意", due_in_days: int = 200) -> None:
    today = core.calendar.today(datetime.now(UTC))
    answers = ["我要注册", "同意", sensitive, "小安", "13812340000", "1"]
    if sensitive == "同意":
        answers.append((today + timedelta(days=due_in_days)).isoformat())
    for text in [*answers, "上海"]:
        await core.say(SHE, text)
    assert (await core.profile(SHE))["member"]["id"]


async def test_a_wrong_due_date_is_corrected_and_her_stage_follows(core):
    await sign_up(core)
    await core.say(SHE, "找姐妹")
    await core.say(SHE, "同意")  # in matching: her card moves with the date
    before = await core.profile(SHE)
    card = await core.core.matcher.card_of(before["_id"])
    assert "预产期" in await core.say(SHE, "预产期写错了")
    assert "对吗" in await core.say(SHE, "孕30周")  # an estimate: confirmed first
    done = await core.say(SHE, "对")
    assert "已更新预产期" in done and "姐妹匹配已按新的日期更新" in done
    after = await core.profile(SHE)
    today = core.calendar.today(datetime.now(UTC))
    assert after["fields"]["due_date"] == (today + timedelta(days=280 - 210)).isoformat()
    assert "孕30周" in after["tags"] and "孕30周" not in before["tags"]
    moved = await core.core.matcher.card_of(after["_id"])
    assert moved is not None and card is not None and moved["anchor"] != card["anchor"]


async def test_city_and_nickname_corrections_use_sign_ups_checks(core):
    await sign_up(core)
    assert "城市" in await core.say(SHE, "改一下城市")
    assert "已更新城市：北京" in await core.say(SHE, "北京市")
    assert (await core.profile(SHE))["fields"]["city"] == "北京"
    assert "称呼" in await core.say(SHE, "改昵称")
    assert "已更新昵称：安安" in await core.say(SHE, "安安")
    # Sign-up's question, asked outside sign-up: no nickname was just given.
    assert await core.say(SHE, "修改手机号") == "请留一个手机号，方便寄送会员礼（我们不会公开它）。"
    reply = await core.say(SHE, "+86 139-1234-5678")
    assert "已更新手机号" in reply and "13912345678" not in reply  # masked even to her
    assert (await core.profile(SHE))["fields"]["mobile"] == "13912345678"


async def test_no_correction_for_a_non_member_and_no_dates_without_consent(core):
    assert "还不是会员" in await core.say("o_new", "改昵称")
    await sign_up(core, sensitive="不同意")
    reply = await core.say(SHE, "修改预产期")
    assert "单独同意" in reply
    assert "due_date" not in (await core.profile(SHE))["fields"]
