"""One suite over both implementations of the shared state (store/state.py): Redis, which
every app process shares, and memory, which the fast tests use. What one does, the other
must do too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.allowance import ContactAllowance, Grant
from store.keys import Keys
from store.memory_state import memory_state
from store.redis_state import redis_state
from store.state import State

RATE = 50.0


@pytest.fixture(params=["memory", "redis"])
async def state(request, namespace) -> AsyncIterator[State]:
    if request.param == "memory":
        yield memory_state(dedupe_ttl=0.3, rate_per_second=RATE)
        return
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    yield redis_state(redis, Keys(namespace), dedupe_ttl=0.3, rate_per_second=RATE)
    await redis.aclose()


# -- dedupe -------------------------------------------------------------------------------
async def test_dedupe_first_claim_wins_and_the_result_reaches_the_retry(state):
    assert await state.dedupe.claim("m1") is True
    assert await state.dedupe.claim("m1") is False
    assert await state.dedupe.wait_result("m1", 0.05) is None  # not published yet
    waiting = asyncio.create_task(state.dedupe.wait_result("m1", 2.0))
    await asyncio.sleep(0.05)
    await state.dedupe.publish("m1", "<xml>answer</xml>")
    assert await waiting == "<xml>answer</xml>"


async def test_dedupe_markers_expire(state):
    assert await state.dedupe.claim("m2")
    await asyncio.sleep(0.45)  # past the 0.3 s marker lifetime
    assert await state.dedupe.claim("m2") is True


# -- signed requests ------------------------------------------------------------------------
async def test_a_nonce_comes_again_only_with_the_same_body(state):
    assert await state.nonces.remember("1700000000:abc", "digest-1", 2)
    assert await state.nonces.remember("1700000000:abc", "digest-1", 2)  # WeChat's retry
    assert not await state.nonces.remember("1700000000:abc", "digest-2", 2)  # a replay
    assert await state.nonces.remember("1700000000:xyz", "digest-2", 2)  # another request


# -- per-follower order -------------------------------------------------------------------
async def test_order_tickets_wait_for_the_one_before(state):
    order = state.order
    first, second = await order.ticket("f"), await order.ticket("f")
    assert second == first + 1
    assert await order.wait_turn("f", first, 1.0)
    waiter = asyncio.create_task(order.wait_turn("f", second, 5.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()  # the first is still running
    await order.done("f", first)
    assert await waiter is True
    assert await order.wait_turn("other", await order.ticket("other"), 0.1)  # independent


async def test_order_gives_up_after_max_wait_and_never_moves_back(state):
    order = state.order
    a, b, c = [await order.ticket("g") for _ in range(3)]
    started = time.monotonic()
    assert await order.wait_turn("g", b, 0.3) is False  # a never finished
    assert time.monotonic() - started >= 0.25
    await order.done("g", c)  # finished out of order
    await order.done("g", a)
    assert await order.wait_turn("g", c, 0.1)  # done is max(done, ticket), not the last call


# -- tokens -------------------------------------------------------------------------------
async def test_tokens_expire_and_the_lock_admits_one_holder(state):
    tokens = state.tokens
    assert await tokens.get("wx") is None
    await tokens.set("wx", "T1", 0.4)
    assert await tokens.get("wx") == "T1"
    inside: list[int] = []

    async def hold(n: int) -> None:
        async with tokens.lock("wx", timeout=5, wait=5):
            inside.append(n)
            assert len(inside) == 1
            await asyncio.sleep(0.05)
            inside.remove(n)

    await asyncio.gather(*(hold(n) for n in range(4)))
    await asyncio.sleep(0.6)
    assert await tokens.get("wx") is None


async def test_a_lock_held_too_long_times_the_waiter_out(state):
    async with state.tokens.lock("busy", timeout=5, wait=5):
        with pytest.raises(TimeoutError):
            async with state.tokens.lock("busy", timeout=5, wait=0.2):
                pass


# -- journeys in progress -------------------------------------------------------------------
async def test_flow_state_round_trips_and_the_inbox_is_acknowledged_in_order(state):
    flows = state.flows
    assert await flows.get("p") is None
    value = {"stack": [{"flow": "signup", "step": "s1", "slots": {"name": "小美", "n": 2}}],
             "version": "v1"}
    await flows.set("p", value)
    got = await flows.get("p")
    assert got == value
    got["stack"].clear()  # a copy: changing it changes nothing stored
    assert await flows.get("p") == value
    await flows.clear("p")
    assert await flows.get("p") is None
    for i in range(3):
        await flows.deliver("p", {"flow": "invite", "n": i})
    assert [f["n"] for f in await flows.peek_inbox("p")] == [0, 1, 2]
    await flows.ack_inbox("p", 2)
    await flows.deliver("p", {"flow": "invite", "n": 3})
    assert [f["n"] for f in await flows.peek_inbox("p")] == [2, 3]


# -- sends -------------------------------------------------------------------------------
async def test_send_marks_are_claimed_once_until_released(state):
    assert await state.marks.claim("k") and not await state.marks.claim("k")
    await state.marks.release("k")
    assert await state.marks.claim("k")


async def test_send_rate_spaces_every_send(state):
    started = time.monotonic()
    for _ in range(11):
        await state.rate.acquire()
    # Ten gaps of 1/50 s: never faster, however fast the machine.
    assert time.monotonic() - started >= 10 / RATE - 0.01


async def test_campaign_stop_flags(state):
    assert await state.stops.reason("B1") is None
    await state.stops.stop("B1", "cancelled")
    assert await state.stops.reason("B1") == "cancelled"
    await state.stops.clear("B1")
    assert await state.stops.reason("B1") is None


# -- the matching index -------------------------------------------------------------------
def card(anchor: int, city: str = "上海", province: str = "上海") -> dict:
    return {"nickname": f"n{anchor}", "anchor": anchor, "city": city, "province": province,
            "interests": ["瑜伽"]}


async def test_matching_index_finds_the_nearest_within_the_window(state):
    idx = state.matches
    assert await idx.empty()
    await idx.put_many({f"p{a}": card(a) for a in (100, 104, 110, 90, 300)})
    await idx.put("far", card(105, city="成都", province="四川"))
    assert not await idx.empty()
    assert set(await idx.nearby("city:上海", 100, 15, 10)) == {"p100", "p104", "p110", "p90"}
    assert set(await idx.nearby("all", 100, 15, 10)) == {"p100", "p104", "p110", "p90", "far"}
    assert await idx.nearby("prov:四川", 100, 15, 10) == ["far"]
    limited = await idx.nearby("all", 100, 300, 2)  # half on each side, nearest first
    assert "p300" not in limited and len(limited) <= 4
    got = await idx.card("p104")
    assert got == {"profile_id": "p104", "nickname": "n104", "anchor": 104, "city": "上海",
                   "province": "上海", "interests": ["瑜伽"], "active": 0, "fb_sum": 0,
                   "fb_n": 0}
    assert await idx.cards(["p90", "nobody"]) == [await idx.card("p90"), None]


async def test_matching_index_keeps_counters_across_a_move_and_forgets_on_remove(state):
    idx = state.matches
    await idx.put("p", card(100))
    await idx.add_load("p", 2)
    await idx.add_feedback("p", True)
    await idx.add_feedback("p", False)
    await idx.put("p", card(200, city="北京", province="北京"))  # new dates, new city
    got = await idx.card("p")
    assert (got["anchor"], got["city"], got["active"], got["fb_sum"], got["fb_n"]) == (
        200, "北京", 2, 1, 2)
    assert await idx.nearby("city:上海", 100, 50, 10) == []
    assert await idx.nearby("city:北京", 200, 5, 10) == ["p"]
    await idx.mark_seen("p", "q")
    await idx.mark_seen("p", "r")
    assert await idx.seen("p") == {"q", "r"}
    await idx.remove("p")
    assert await idx.card("p") is None and await idx.nearby("all", 200, 5, 10) == []


# -- the outbox -----------------------------------------------------------------------------
async def test_outbox_keeps_arrival_order_until_done(state):
    box = state.outbox
    for i in range(3):
        await box.add({"msg": {"n": i}})
    pending = await box.pending(10)
    assert [e["msg"]["n"] for _, e in pending] == [0, 1, 2] and await box.size() == 3
    await box.done(pending[0][0])
    assert [e["msg"]["n"] for _, e in await box.pending(1)] == [1]
    assert await box.size() == 2


# -- contact allowances ---------------------------------------------------------------------
async def test_allowance_changes_are_atomic_across_concurrent_callers(state):
    """Twenty callers take from a budget of 5 at once (as sends in several processes do):
    exactly five get one, and the record says none is left."""
    allowance = ContactAllowance(state.allowances, {"message": Grant(5, 3600)})
    await allowance.heard("wechat:wx:o1", "message")
    taken = await asyncio.gather(*(allowance.take("wechat:wx:o1") for _ in range(20)))
    assert taken.count("message") == 5 and taken.count(None) == 15
    assert await allowance.status(["wechat:wx:o1", "wechat:wx:nobody"]) == [(True, 0),
                                                                           (False, 0)]


async def test_allowance_records_expire_with_their_last_grant(state):
    allowance = ContactAllowance(state.allowances, {"event": Grant(3, 0.3)})
    await allowance.heard("wechat:wx:o2", "event")
    assert await allowance.status(["wechat:wx:o2"]) == [(True, 3)]
    await asyncio.sleep(0.6)  # past the grant, and the record's own expiry
    assert await state.allowances.get_many(["wechat:wx:o2"]) == [None]


# -- a member's traces (export and erasure) --------------------------------------------
async def test_traces_find_and_erase_everything_that_names_her_and_nothing_else(state):
    her, other, openid, match = "p-her", "p-other", "o_her_openid", "match-77"
    await state.flows.set(her, {"flow": "signup", "slots": {"mobile": "13900001111"}})
    await state.flows.set(other, {"flow": "greet"})
    await state.flows.deliver(other, {"flow": "sister_invitation",
                                      "slots": {"invitation": match}})
    await state.flows.deliver(other, {"flow": "poll", "slots": {"poll": "B1"}})
    card = {"anchor": 739000, "nickname": "x", "city": "上海"}
    await state.matches.put(her, card)
    await state.matches.put(other, {**card, "nickname": "y"})
    await state.matches.mark_seen(other, her)
    await state.marks.claim(f"in:wechat:msg:acct:{openid}:1:out:0")
    await state.outbox.add({"msg": {"sender": openid, "text": "hi"}})
    await state.outbox.add({"msg": {"sender": "o_someone", "text": "hello"}})
    allowance = ContactAllowance(state.allowances, {"message": Grant(5, 3600)})
    await allowance.heard(f"wechat:wx:{openid}", "message")
    needles = [her, openid, match]
    found = await state.traces.find(needles)
    assert found and all(found.values())
    assert await state.traces.erase(needles) >= 6
    assert await state.traces.find(needles) == {}
    # Everyone else's entries are untouched.
    assert (await state.flows.get(other))["flow"] == "greet"
    assert [f["flow"] for f in await state.flows.peek_inbox(other)] == ["poll"]
    assert await state.matches.card(other) is not None and await state.matches.card(her) is None
    assert await state.matches.nearby("all", 739000, 10, 10) == [other]
    assert [e["msg"]["sender"] for _, e in await state.outbox.pending()] == ["o_someone"]
