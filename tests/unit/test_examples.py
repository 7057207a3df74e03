"""The sample files the README's walkthrough imports (examples/) import cleanly, members
first, then their orders."""

from __future__ import annotations

from pathlib import Path

from bot.members.fields import FieldBook
from bot.members.importer import ImportOptions, MemberImporter, OrderImporter
from bot.members.orders import OrderBook
from store.records import identity_key
from tests.conftest import APP_ID
from tests.support.core import core_harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_walkthroughs_members_and_orders_import_as_the_readme_says():
    core = await core_harness()
    c = core.core
    members = MemberImporter(c.store, FieldBook(c.settings.members.fields), c.settings,
                             openid_key=lambda o: identity_key("wechat", APP_ID, o))
    data = (EXAMPLES / "members.csv").read_bytes()
    dry = await members.run(data, ImportOptions("crm", dry_run=True))
    assert not dry.problems and dry.created == 3 and not dry.written
    done = await members.run(data, ImportOptions("crm"))
    assert not done.problems and done.created == 3 and done.points == 680
    book = OrderBook(c.store, c.points, c.settings, ("wechat", APP_ID))
    orders = await OrderImporter(c.store, book, c.settings).run(
        (EXAMPLES / "orders.csv").read_bytes(), ImportOptions("shop"))
    assert not orders.problems
    lily = await c.store.profiles.find_by_mobile("13800000003")
    assert lily is not None and lily["orders"]["count"] == 1
    assert lily["orders"]["spent"] == 268.0 and lily["fields"]["baby_gender"] == "boy"
