"""What starts a flow: a keyword typed on its own is a command; inside a longer message it
is only a fallback for an unsure NLU, so a question that mentions 签到 or 兑换 is answered
as a question. And 积分能换什么 lists the gifts beside her balance without spending."""

from __future__ import annotations

import pytest

from tests.support.core import CoreHarness, core_harness
from tests.unit.test_core_journeys import sign_up

SHE = "o_triggers"


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness()
    await sign_up(harness, SHE)
    return harness


async def balance(core: CoreHarness) -> int:
    profile = await core.profile(SHE)
    return int(profile["points"]["balance"])


async def test_a_keyword_on_its_own_is_a_command(core):
    core.nlu.intents["签到！"] = "greet"  # even when the NLU reads it otherwise
    assert "签到成功" in await core.say(SHE, "签到！")


async def test_a_question_mentioning_a_keyword_follows_the_nlu(core):
    core.nlu.intents["签到有积分吗"] = "points_query"
    before = await balance(core)
    reply = await core.say(SHE, "签到有积分吗")
    assert "签到成功" not in reply and "你的积分" in reply
    assert await balance(core) == before  # no check-in happened


async def test_a_keyword_inside_a_message_still_helps_when_the_nlu_is_unsure(core):
    assert "签到成功" in await core.say(SHE, "今天还没签到的说")  # not a training example


async def test_asking_what_points_buy_lists_gifts_and_spends_nothing(core):
    before = await balance(core)
    stock = {r["_id"]: r["stock"] for r in await core.store.ledger.rewards()}
    core.nlu.intents["积分能兑换湿巾吗"] = "rewards_list"  # a question naming a gift
    for question in ("积分能换什么", "积分能兑换湿巾吗"):
        reply = await core.say(SHE, question)
        assert f"你现在有 {before} 积分" in reply, reply
        assert "婴儿湿巾：50 积分 ✓ 可以换" in reply
        assert "纸尿裤试用装：200 积分（还差" in reply
        assert "兑换成功" not in reply
    assert await balance(core) == before
    assert {r["_id"]: r["stock"] for r in await core.store.ledger.rewards()} == stock
    assert "兑换成功：婴儿湿巾" in await core.say(SHE, "兑换 湿巾")  # doing it is one step


async def test_redeem_without_a_gift_we_have_shows_the_same_list(core):
    listing = await core.say(SHE, "积分能换什么")
    for text in ("兑换", "兑换 月球"):  # nothing named, or nothing of that name
        assert await core.say(SHE, text) == listing
    assert await balance(core) == 100


async def test_the_catalogue_in_english_says_what_is_missing(core):
    core.nlu.intents["what can my points buy"] = "rewards_list"
    await core.store.profiles.update((await core.profile(SHE))["_id"], {"lang": "en"})
    reply = await core.say(SHE, "what can my points buy")
    assert "Gifts for points (you have 100)" in reply
    assert "婴儿湿巾: 50 points ✓ you can redeem it" in reply
    assert "纸尿裤试用装: 200 points (100 more needed)" in reply


async def test_a_command_with_words_after_it_stays_a_command(core):
    core.nlu.intents["对姐妹说 还在吗"] = "greet"  # what follows reads like a greeting
    assert "还没有匹配的姐妹" in await core.say(SHE, "对姐妹说 还在吗")
    core.nlu.intents["对姐妹说还在吗"] = "greet"  # its flow has no intent: only the keyword
    assert "还没有匹配的姐妹" in await core.say(SHE, "对姐妹说还在吗")
    core.nlu.intents["兑换 湿巾"] = "rewards_list"
    assert "兑换成功：婴儿湿巾" in await core.say(SHE, "兑换 湿巾")
