"""Sister-matching ranking, over the in-memory index and the real Redis one (a private
namespace per test): the same answers from both."""

from __future__ import annotations

from datetime import date

import pytest
from redis.asyncio import Redis

from bot.settings import MatchingSettings
from bot.sisters.matching import Matcher, anchor_of, shown_stage
from store.keys import Keys
from store.match_index import RedisMatchIndex
from store.memory_state import MemoryMatchIndex

TODAY = date(2026, 11, 25)


def profile(pid: str, nickname: str, *, due: int | None = None, born: int | None = None,
            city: str = "上海", province: str = "上海", tags: tuple[str, ...] = ()) -> dict:
    fields: dict = {"nickname": nickname, "city": city, "province": province}
    if due is not None:
        fields["due_date"] = date.fromordinal(TODAY.toordinal() + due).isoformat()
    if born is not None:
        fields["baby_birthday"] = date.fromordinal(TODAY.toordinal() - born).isoformat()
    return {"_id": pid, "fields": fields, "tags": list(tags)}


@pytest.fixture(params=["memory", "redis"])
async def matcher(request, namespace):
    if request.param == "memory":
        yield Matcher(MemoryMatchIndex(), MatchingSettings())
        return
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    yield Matcher(RedisMatchIndex(redis, Keys(namespace)), MatchingSettings())
    await redis.aclose()


async def names(matcher: Matcher, pid: str) -> list[str]:
    return [c.nickname for c in await matcher.find(pid)]


def test_anchor_and_the_stage_others_see():
    assert anchor_of(profile("p", "a", due=100)) == TODAY.toordinal() + 100
    assert anchor_of(profile("p", "a")) is None
    assert shown_stage(TODAY.toordinal() + 100, TODAY) == "孕25周"
    assert shown_stage(TODAY.toordinal() - 100, TODAY) == "宝宝3个月"
    assert shown_stage(TODAY.toordinal() - 500, TODAY, "en") == "child 1y4m"


async def test_close_stage_same_city_and_further_along_rank_first(matcher):
    me = profile("me", "我", due=100, tags=("瑜伽",))
    others = [
        profile("a", "同城更早", due=60, tags=("瑜伽",)),   # same city, ahead, shared tag
        profile("b", "同城稍晚", due=150),                 # same city, behind, 50 days apart
        profile("d", "外地相近", due=90, city="苏州", province="江苏"),  # close, ahead
        profile("c", "外地较远", due=70, city="成都", province="四川"),  # 30 days, ahead
        profile("e", "太远", due=100 + 120),              # outside the 90-day window
    ]
    for p in [me, *others]:
        assert await matcher.refresh(p)
    # Same city outweighs a closer date elsewhere; only 3 are shown; 太远 never is.
    assert await names(matcher, "me") == ["同城更早", "同城稍晚", "外地相近"]


async def test_self_seen_and_full_sisters_are_never_suggested(matcher):
    for p in [profile("me", "我", due=100), profile("a", "A", due=90),
              profile("b", "B", due=95), profile("c", "C", due=99)]:
        await matcher.refresh(p)
    await matcher.mark_seen("me", "a")               # already invited
    await matcher._index.add_load("b", 3)            # at mentor capacity (3)
    assert await names(matcher, "me") == ["C"]


async def test_helpful_feedback_lifts_a_sister(matcher):
    for p in [profile("me", "我", due=100), profile("a", "A", due=80),
              profile("b", "B", due=80)]:
        await matcher.refresh(p)
    for _ in range(5):
        await matcher._index.add_feedback("b", helpful=True)
        await matcher._index.add_feedback("a", helpful=False)
    assert await names(matcher, "me") == ["B", "A"]


async def test_moving_city_or_date_moves_her_in_the_index(matcher):
    await matcher.refresh(profile("me", "我", due=100))
    await matcher.refresh(profile("a", "A", due=90, city="北京", province="北京"))
    assert await names(matcher, "me") == ["A"]
    await matcher.refresh(profile("a", "A", due=400))  # a new due date, far away
    assert await names(matcher, "me") == []
    assert not await matcher.refresh(profile("a", "A"))  # no date: out of the index
    assert await matcher.card_of("a") is None


async def test_without_a_card_nobody_is_found(matcher):
    assert await matcher.find("nobody") == []


async def test_an_empty_index_is_rebuilt_from_consenting_profiles(matcher):
    async def members():
        gone = profile("d", "D", due=85)
        gone["follow"] = {"state": "unsubscribed"}
        for p in [profile("a", "A", due=90), profile("b", "B", due=80), profile("c", "C"), gone]:
            p["consents"] = {"matching": {"accepted": p["_id"] != "b"}}
            yield p

    # b said no, c has no date, d unfollowed
    assert await matcher.ensure_built(members()) == 1
    assert await matcher.card_of("a") is not None and await matcher.card_of("b") is None
    assert await matcher.ensure_built(members()) == 0  # not empty any more: left alone
