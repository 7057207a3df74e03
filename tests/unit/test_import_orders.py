"""`scrm import orders` through the core: rows of one order id become one order of the
shop webhook's shape (lines, refunds), recorded by the shop's OrderBook: points and the
member's order aggregates follow, a re-run changes nothing, and bad rows stop it all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.members.importer import ImportOptions, ImportReport, OrderImporter
from bot.members.orders import OrderBook
from tests.conftest import APP_ID
from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import member_doc, seed

HEADER = "订单号,手机号,下单时间,实付金额,商品名称,品类,数量,商品金额,退款单号,退款金额,退款时间\n"
ORDERS = HEADER + (
    "O1,13900000001,2026-11-20 10:00,199.00,婴儿奶粉,奶粉,1,150.00,,,\n"
    "O1,13900000001,2026-11-20 10:00,199.00,湿巾,日用,1,49.00,R1,49.00,2026-11-21 09:00\n"
    "O2,13900000001,2026/11/22 10:00,,纸尿裤,日用,2,88.00,,,\n"
)


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness()
    await seed(harness, [member_doc(1)])
    return harness


async def run(core: CoreHarness, text: str, **options: bool) -> ImportReport:
    c = core.core
    book = OrderBook(c.store, c.points, c.settings, ("wechat", APP_ID))
    return await OrderImporter(c.store, book, c.settings).run(
        text.encode("utf-8"), ImportOptions("shop", **options))


async def test_order_rows_become_orders_with_points_and_aggregates_once(core):
    dry = await run(core, ORDERS, dry_run=True)
    assert (dry.created, dry.rows, dry.problems, dry.written) == (2, 3, [], False)
    assert await core.store.orders.get("O1") is None

    done = await run(core, ORDERS)
    assert (done.created, done.points) == (2, 199 - 49 + 88)
    o1 = await core.store.orders.get("O1")
    assert [i["name"] for i in o1["items"]] == ["婴儿奶粉", "湿巾"]
    assert [r["refund_id"] for r in o1["refunds"]] == ["R1"]
    # A spreadsheet's time without a zone is the brand's (Asia/Shanghai) time.
    assert o1["at"].replace(tzinfo=UTC) == datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    member = await core.profile("o_m0001")
    assert (member["orders"]["count"], member["orders"]["spent"]) == (2, 238.0)
    assert await core.store.ledger.balance(member["_id"]) == (238, 287)

    again = await run(core, ORDERS)
    assert (again.unchanged, again.points) == (2, 0)
    assert await core.store.ledger.balance(member["_id"]) == (238, 287)


async def test_bad_order_rows_are_reported_by_line_and_column_and_nothing_is_kept(core):
    bad = ORDERS + (
        "O3,13900000077,2026-11-23 10:00,10.00,围兜,日用,1,10.00,,,\n"   # line 5: nobody's
        "O4,13900000001,2026-11-23 10:00,10.00,围兜,日用,1,1O.00,,,\n"   # line 6: not money
        "O1,13900000001,2026-11-25 10:00,199.00,湿巾,日用,1,49.00,,,\n"  # line 7: O1's time
    )
    report = await run(core, bad)
    assert [(p.line, p.column) for p in report.problems] == [
        (7, "下单时间"), (5, "手机号"), (6, "商品金额")]
    assert "differs from line 2" in report.problems[0].reason
    assert "no member with mobile '139****0077'" == report.problems[1].reason
    assert not report.written and await core.store.orders.get("O2") is None
