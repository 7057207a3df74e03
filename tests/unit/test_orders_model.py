"""Reading the shop's order JSON (bot/members/orders.py `order_from_json`): what is
accepted, how amounts and times are kept exactly, and that every refusal names its field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bot.members.orders import MemberRef, OrderError, aggregates, order_from_json


def order(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "order_id": "TM-1001", "member": "M0123456789", "at": "2026-11-25T10:30:00+08:00",
        "amount": "199.90", "channel": "tmall",
        "items": [{"sku": "D-1", "name": "纸尿裤 L", "category": "diapers", "qty": 2,
                   "amount": 150},
                  {"name": "湿巾", "category": "wipes", "qty": 1, "amount": "49.90"}],
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def test_an_order_is_read_exactly():
    o = order_from_json(order(amount=199.9))  # a JSON float: its shortest decimal
    assert o.order_id == "TM-1001" and o.channel == "tmall"
    assert o.amount == Decimal("199.90") and o.items[1].amount == Decimal("49.90")
    assert o.at == datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
    assert o.member == MemberRef("member_id", "M0123456789")
    assert o.status == "paid" and o.refunds == ()
    assert o.items[0].sku == "D-1" and o.items[1].sku is None


@pytest.mark.parametrize(("member", "ref"), [
    ("m0123456789", MemberRef("member_id", "M0123456789")),
    ("138 1234 5678", MemberRef("mobile", "13812345678")),
    ("+86 13812345678", MemberRef("mobile", "13812345678")),
    ("oAbC_123", MemberRef("openid", "oAbC_123")),
    ({"unionid": "uX1"}, MemberRef("unionid", "uX1")),
    ({"openid": "13812345678"}, MemberRef("openid", "13812345678")),  # said so: an openid
])
def test_a_member_is_named_by_member_id_mobile_openid_or_unionid(member, ref):
    assert order_from_json(order(member=member)).member == ref


def test_refunds_set_the_status_and_one_refund_twice_counts_once():
    r = {"refund_id": "R1", "amount": "49.90", "at": "2026-11-26T09:00:00Z"}
    o = order_from_json(order(refunds=[r, r], status="partially_refunded"))
    assert len(o.refunds) == 1 and o.refunded == Decimal("49.90")
    full = order_from_json(order(refunds=[r, {**r, "refund_id": "R2", "amount": 150}]))
    assert full.status == "refunded"


@pytest.mark.parametrize(("over", "field", "says"), [
    ({"order_id": None}, "order_id", "required"),
    ({"order_id": "a b"}, "order_id", "only letters"),
    ({"member": None}, "member", "required"),
    ({"member": {"mobile": "12345"}}, "member.mobile", "not a mainland"),
    ({"member": {"mobile": "13812345678", "openid": "o"}}, "member", "exactly one"),
    ({"member": {"member_id": "M12"}}, "member.member_id", "10 hex"),
    ({"at": "2026-11-25 10:30"}, "at", "time zone"),
    ({"at": "yesterday"}, "at", "ISO 8601"),
    ({"amount": "19.999"}, "amount", "2 decimal places"),
    ({"amount": -1}, "amount", "negative"),
    ({"amount": True}, "amount", "amount in yuan"),
    ({"amount": "NaN"}, "amount", "not an amount"),
    ({"amount": "1e9"}, "amount", "at most"),
    ({"items": []}, "items", "non-empty"),
    ({"items": [{"name": "x", "qty": 1, "amount": 1}]}, "items[0].category", "required"),
    ({"items": [{"name": "x", "category": "a.b", "amount": 1}]}, "items[0].category", "'.'"),
    ({"items": [{"name": "x", "category": "c", "qty": 0, "amount": 1}]}, "items[0].qty",
     "whole number"),
    ({"items": [{"name": "x", "category": "c", "amount": 1, "price": 2}]}, "items[0].price",
     "unknown field"),
    ({"channel": "天猫"}, "channel", "only letters"),
    ({"status": "shipped"}, "status", "one of"),
    ({"status": "refunded"}, "status", "does not fit"),
    ({"refunds": [{"refund_id": "R1", "amount": 0, "at": "2026-11-26T09:00:00Z"}]},
     "refunds[0].amount", "more than 0"),
    ({"refunds": [{"refund_id": "R1", "amount": "200", "at": "2026-11-26T09:00:00Z"}]},
     "refunds", "more than the 199.90 paid"),
    ({"refunds": [{"refund_id": "R1", "amount": 1, "at": "2026-11-26T09:00:00Z"},
                  {"refund_id": "R1", "amount": 2, "at": "2026-11-26T09:00:00Z"}]},
     "refunds[1].refund_id", "appears twice"),
    ({"coupon": "X"}, "coupon", "unknown field"),
])
def test_bad_input_names_the_field(over, field, says):
    with pytest.raises(OrderError) as e:
        order_from_json(order(**over))
    assert e.value.field == field
    assert says in e.value.message


def test_an_error_never_shows_a_whole_mobile():
    # A mobile that finds nobody is reported by OrderBook with the MemberRef's text.
    assert str(MemberRef("mobile", "13812345678")) == "mobile '138****5678'"


def stored(amount: int, refunded: int = 0, at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
           lines: tuple[tuple[str, int, int], ...] = (("a", 1, 0),)) -> dict[str, Any]:
    status = "paid" if not refunded else "refunded" if refunded == amount else "partial"
    return {"amount_fen": amount, "refunded_fen": refunded, "status": status, "at": at,
            "items": [{"category": c, "qty": q, "amount_fen": f} for c, q, f in lines]}


def test_aggregates_split_what_was_paid_over_categories_to_the_fen():
    fields, unset = aggregates([
        stored(1000, lines=(("a", 1, 1), ("b", 1, 1), ("c", 1, 1))),  # 333/333/334 fen
        stored(500, refunded=500, at=datetime(2026, 6, 1, tzinfo=UTC)),  # as if not bought
        stored(2000, refunded=500, lines=(("b", 3, 0), ("c", 1, 0))),  # free lines: by qty
    ])
    assert fields["orders.count"] == 2 and fields["orders.spent_fen"] == 2500
    assert fields["orders.spent"] == 25.0
    assert fields["orders.categories"] == {"a": 3.34, "b": 14.58, "c": 7.08}
    assert sum(round(v * 100) for v in fields["orders.categories"].values()) == 2500
    assert fields["orders.top_category"] == "b"
    assert fields["orders.last_at"] == datetime(2026, 1, 1, tzinfo=UTC)  # not the refunded
    assert unset == []
    assert aggregates([])[1] == ["orders.last_at", "orders.top_category"]
