"""Recording orders (bot/members/orders.py `OrderBook`) on the embedded store: once per
order id, refunds once per refund id, conflicts refused with nothing changed, the
member's aggregates, and points per yuan credited and taken back with a clean ledger.
(Concurrent posts: tests/contract/test_orders_contract.py; over HTTP:
tests/integration/test_orders_webhook.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.brand_calendar import BrandCalendar
from bot.members.orders import OrderBook, UnknownMember, order_from_json
from bot.members.points import Points, award_rules
from store.mongo import MongoStore
from tests.conftest import APP_ID
from tests.support.core import settings

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
MOBILE = "13912345678"


async def new_member(store: MongoStore, openid: str, member_id: str, mobile: str | None = None,
                     unionid: str | None = None) -> str:
    profile = await store.profiles.touch({"channel": "wechat", "app_id": APP_ID,
                                          "openid": openid, "unionid": unionid}, NOW, "zh")
    await store.profiles.update(profile["_id"], {"member.id": member_id,
                                                 **({"fields.mobile": mobile} if mobile else {})})
    return profile["_id"]


class Shop:
    def __init__(self, store: MongoStore, points: Points, book: OrderBook) -> None:
        self.store, self.points, self.book = store, points, book

    async def post(self, doc: dict[str, Any]) -> Any:
        return await self.book.record(order_from_json(doc), NOW)

    async def profile(self, pid: str) -> dict[str, Any]:
        found = await self.store.profiles.get(pid)
        assert found is not None
        return dict(found)


@pytest.fixture
async def shop() -> Shop:
    cfg = settings()
    store = await MongoStore.open(None, f"orders_{uuid.uuid4().hex[:8]}")
    points = Points(store, cfg.points, BrandCalendar(cfg.app.timezone))
    return Shop(store, points, OrderBook(store, points, cfg, ("wechat", APP_ID)))


def order(order_id: str = "TM-1", member: Any = "M0000000001", amount: str = "199.90",
          refunds: tuple[tuple[str, str], ...] = (), **over: Any) -> dict[str, Any]:
    return {"order_id": order_id, "member": member, "at": "2026-11-20T10:00:00+08:00",
            "amount": amount, "channel": "tmall",
            "items": [{"name": "纸尿裤", "category": "diapers", "qty": 1, "amount": amount}],
            "refunds": [{"refund_id": rid, "amount": a, "at": "2026-11-22T10:00:00+08:00"}
                        for rid, a in refunds], **over}


async def test_an_order_is_kept_once_and_earns_a_point_per_whole_yuan(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    first = await shop.post(order())
    assert (first.outcome, first.profile_id, first.points) == ("created", pid, 199)
    again = await shop.post(order())
    assert (again.outcome, again.points) == ("unchanged", 0)
    p = await shop.profile(pid)
    assert p["points"] == {"balance": 199, "earned": 199}
    assert p["orders"]["count"] == 1 and p["orders"]["spent"] == 199.9
    assert p["orders"]["spent_fen"] == 19990
    assert p["orders"]["top_category"] == "diapers"
    assert p["orders"]["categories"] == {"diapers": 199.9}
    assert p["orders"]["last_at"] == datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    [entry] = await shop.store.ledger.entries(pid, 5)
    assert (entry["points"], entry["reason"], entry["source"]) == (199, "order", "TM-1")
    assert await shop.store.ledger.check() == []


async def test_refunds_take_points_back_per_yuan_and_a_full_refund_takes_all(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    await shop.post(order())
    part = await shop.post(order(refunds=(("R1", "50.40"),)))
    # 199.90 kept 199 points; 149.50 keeps 149: the refund takes back 50.
    assert (part.outcome, part.points) == ("updated", -50)
    assert (await shop.post(order(refunds=(("R1", "50.40"),)))).outcome == "unchanged"
    p = await shop.profile(pid)
    assert p["orders"]["spent"] == 149.5 and p["orders"]["count"] == 1
    assert p["points"]["balance"] == 149
    rest = await shop.post(order(refunds=(("R1", "50.40"), ("R2", "149.50"))))
    assert (rest.outcome, rest.points) == ("updated", -149)
    p = await shop.profile(pid)
    assert p["points"]["balance"] == 0
    # A fully refunded order counts as not bought.
    assert p["orders"]["count"] == 0 and p["orders"]["spent"] == 0.0
    assert "last_at" not in p["orders"] and "top_category" not in p["orders"]
    doc = await shop.store.orders.get("TM-1")
    assert doc["status"] == "refunded" and doc["refunded_fen"] == 19990
    assert await shop.store.ledger.check() == []


async def test_an_older_post_arriving_late_changes_nothing(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    await shop.post(order(refunds=(("R1", "99.90"),)))  # first seen already refunded in part
    late = await shop.post(order())  # the "paid" post, delivered after
    assert (late.outcome, late.points) == ("unchanged", 0)
    p = await shop.profile(pid)
    assert p["orders"]["spent"] == 100.0 and p["points"]["balance"] == 100
    # A refund she was told of separately, then the full list: R1 counts once.
    both = await shop.post(order(refunds=(("R2", "10"), ("R1", "99.90"))))
    assert (both.outcome, both.points) == ("updated", -10)
    assert (await shop.profile(pid))["orders"]["spent"] == 90.0


@pytest.mark.parametrize(("change", "says"), [
    ({"amount": "299.00"}, "different member, time, amount"),
    ({"channel": "jd"}, "different member, time, amount"),
    ({"at": "2026-11-21T10:00:00+08:00"}, "different member, time, amount"),
    ({"member": "M0000000002"}, "different member"),
])
async def test_the_same_order_id_with_other_content_is_refused_and_changes_nothing(
        shop, change, says):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    await new_member(shop.store, "o_b", "M0000000002")
    await shop.post(order())
    before = await shop.store.orders.get("TM-1")
    result = await shop.post(order(**change))
    assert result.outcome == "conflict" and says in result.reason
    assert await shop.store.orders.get("TM-1") == before
    assert (await shop.profile(pid))["points"]["balance"] == 199


async def test_a_refund_id_reused_with_another_amount_or_too_much_refunded_is_a_conflict(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    await shop.post(order(refunds=(("R1", "100"),)))
    other = await shop.post(order(refunds=(("R1", "90"),)))
    assert other.outcome == "conflict" and "refund 'R1'" in other.reason
    over = await shop.post(order(refunds=(("R2", "150"),)))  # 100 + 150 > 199.90
    assert over.outcome == "conflict" and "more than the 199.90 paid" in over.reason
    doc = await shop.store.orders.get("TM-1")
    assert [r["refund_id"] for r in doc["refunds"]] == ["R1"]
    assert (await shop.profile(pid))["orders"]["spent"] == 99.9


async def test_members_are_found_by_member_id_mobile_openid_or_unionid(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001", mobile=MOBILE, unionid="u_a")
    for i, member in enumerate(["M0000000001", f"+86 {MOBILE}", "o_a", {"unionid": "u_a"}]):
        assert (await shop.post(order(f"T{i}", member=member))).profile_id == pid
    assert (await shop.profile(pid))["orders"]["count"] == 4


async def test_an_unknown_member_is_an_error_and_nothing_is_kept(shop):
    with pytest.raises(UnknownMember) as e:
        await shop.post(order(member=MOBILE))
    assert MOBILE not in str(e.value) and "139****5678" in str(e.value)
    assert await shop.store.orders.get("TM-1") is None


async def test_points_she_spent_meanwhile_are_not_taken_below_zero(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    await shop.post(order(amount="100"))
    await shop.store.ledger.spend(pid, "redeem:x", 80, "redeem:wipes", now=NOW)
    back = await shop.post(order(amount="100", refunds=(("R1", "100"),)))
    assert (back.points, back.shortfall) == (-20, 80)
    p = await shop.profile(pid)
    assert p["points"]["balance"] == 0
    assert (await shop.store.orders.get("TM-1"))["refunds"][0]["shortfall"] == 80
    assert await shop.store.ledger.check() == []


async def test_points_per_yuan_are_not_a_flow_award(shop):
    cfg = settings()
    assert "order" not in award_rules(cfg.points) and "signup" in award_rules(cfg.points)
    pid = await new_member(shop.store, "o_a", "M0000000001")
    with pytest.raises(ValueError, match="per yuan"):
        await shop.points.award(pid, "order", NOW, "x")


async def test_orders_earn_nothing_without_an_order_rule_and_aggregates_still_count():
    cfg = settings()
    cfg = cfg.model_copy(update={"points": cfg.points.model_copy(update={
        "rules": {k: v for k, v in cfg.points.rules.items() if k != "order"}})})
    store = await MongoStore.open(None, f"orders_{uuid.uuid4().hex[:8]}")
    points = Points(store, cfg.points, BrandCalendar(cfg.app.timezone))
    pid = await new_member(store, "o_a", "M0000000001")
    book = OrderBook(store, points, cfg, ("wechat", APP_ID))
    result = await book.record(order_from_json(order()), NOW)
    assert (result.outcome, result.points) == ("created", 0)
    assert (await store.profiles.get(pid))["orders"]["count"] == 1  # type: ignore[index]


async def test_the_shops_retry_finishes_an_order_whose_first_post_died_midway(shop):
    pid = await new_member(shop.store, "o_a", "M0000000001")
    # The first post stored the order and died holding its lease, before any points.
    assert await shop.store.orders.insert(
        shop.book._new_doc(order_from_json(order()), pid, NOW))
    assert await shop.store.orders.claim("TM-1", "dead", NOW, NOW)  # a lease run out
    retry = await shop.post(order())
    assert (retry.outcome, retry.points) == ("unchanged", 199)
    p = await shop.profile(pid)
    assert p["points"]["balance"] == 199 and p["orders"]["count"] == 1
    assert (await shop.post(order())).points == 0
