"""POST /admin/api/orders over real HTTP (the app on the embedded store and real Redis):
the shop's signature, the answers it gets, and that whatever is refused changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ADMIN, APP_ID, SHOP_SECRET, closed_port_url, make_settings
from webhooks.shop import MAX_BODY, ORDERS_PATH

SECRET = SHOP_SECRET
MOBILE = "13912345678"


def sign(body: Any, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else (
        body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()
    sig = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-SCRM-Signature": sig, "Content-Type": "application/json"}


def order(order_id: str = "YZ-1", member: Any = "M0000000001", amount: str = "88.80",
          refunds: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return {"order_id": order_id, "member": member, "at": "2026-11-20T10:00:00+08:00",
            "amount": amount, "channel": "youzan",
            "items": [{"sku": "W-50", "name": "湿巾", "category": "wipes", "qty": 2,
                       "amount": amount}],
            "refunds": [{"refund_id": rid, "amount": a, "at": "2026-11-21T10:00:00+08:00"}
                        for rid, a in refunds]}


@pytest.fixture
async def app(start_app, namespace):
    harness = await start_app(make_settings(namespace, closed_port_url(),
                                            shop={"secret": SECRET}), run_worker=False)
    profile = await harness.store.profiles.touch(
        {"channel": "wechat", "app_id": APP_ID, "openid": "o_shop", "unionid": None},
        datetime.now(UTC), "zh")
    await harness.store.profiles.update(profile["_id"], {"member.id": "M0000000001",
                                                         "fields.mobile": MOBILE})
    harness.pid = profile["_id"]
    return harness


async def post(app: Any, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw, signed = sign(body)
    resp = await app.client.post(ORDERS_PATH, data=raw, headers=signed if headers is None
                                 else headers)
    return resp.status, await resp.json()


async def nothing_kept(app: Any) -> bool:
    profile = await app.store.profiles.get(app.pid)
    return "orders" not in profile and "points" not in profile and \
        await app.store.orders.get("YZ-1") is None


async def test_a_signed_order_is_recorded_once_and_a_refund_takes_its_points_back(app):
    status, body = await post(app, order())
    assert (status, body) == (200, {"ok": True, "order_id": "YZ-1", "result": "created",
                                    "points": 88})
    assert await post(app, order()) == (200, {"ok": True, "order_id": "YZ-1",
                                              "result": "unchanged", "points": 0})
    status, body = await post(app, order(refunds=(("RF-1", "44.40"),)))
    assert (status, body["result"], body["points"]) == (200, "updated", -44)
    profile = await app.store.profiles.get(app.pid)
    assert profile["orders"]["spent"] == 44.4 and profile["orders"]["count"] == 1
    assert profile["orders"]["top_category"] == "wipes"
    assert profile["points"]["balance"] == 44
    # The admin API's own check agrees with the ledger.
    resp = await app.client.post("/admin/api/points/check",
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    assert (await resp.json())["ok"] is True


async def test_without_a_shop_secret_every_post_is_refused(start_app, namespace):
    bare = await start_app(make_settings(namespace, closed_port_url()), run_worker=False)
    status, body = await post(bare, order())
    assert status == 403 and "SCRM_SHOP_SECRET" in body["error"]
    assert await bare.store.orders.get("YZ-1") is None


@pytest.mark.parametrize("headers", [
    {},
    {"X-SCRM-Signature": "0" * 64},
    {"X-SCRM-Signature": sign(order(), "another-secret")[1]["X-SCRM-Signature"]},
    {"X-SCRM-Signature": sign(order(amount="1.00"))[1]["X-SCRM-Signature"]},  # other body
    {"Authorization": f"Bearer {ADMIN}"},  # the admin token is no signature
])
async def test_a_missing_or_wrong_signature_is_401_and_keeps_nothing(app, headers):
    status, body = await post(app, order(), headers)
    assert status == 401 and "X-SCRM-Signature" in body["error"]
    assert await nothing_kept(app)


@pytest.mark.parametrize(("body", "says"), [
    ("{not json", "bad JSON"),
    ('{"order_id": "YZ-1", "order_id": "YZ-2"}', "duplicate key 'order_id'"),
    ("[]", "1 to 500"),
    ('"YZ-1"', "an order is a JSON object"),
    ({**order(), "amount": "88.888"}, "amount: at most 2 decimal places"),
    ({**order(), "at": "2026-11-20 10:00"}, "at: needs a time zone"),
    ([order(), order("YZ-2"), {**order("YZ-3"), "items": []}], "[2].items: required"),
])
async def test_bad_input_is_400_says_what_and_keeps_nothing(app, body, says):
    status, answer = await post(app, body)
    assert status == 400 and says in answer["error"]
    assert await nothing_kept(app) and await app.store.orders.get("YZ-2") is None


async def test_an_unknown_member_is_422_without_her_number(app):
    status, body = await post(app, order(member="13800001111"))
    assert status == 422 and "138****1111" in body["error"] and "13800001111" not in body["error"]
    status, body = await post(app, [order(), order("YZ-2", member={"openid": "o_nobody"})])
    assert status == 422 and body["field"] == "[1].member"
    assert await nothing_kept(app)


async def test_the_same_order_id_with_other_content_is_409_and_changes_nothing(app):
    await post(app, order())
    before = await app.store.orders.get("YZ-1")
    status, body = await post(app, order(amount="99.00"))
    assert status == 409 and body["result"] == "conflict" and "different" in body["error"]
    assert await app.store.orders.get("YZ-1") == before
    assert (await app.store.profiles.get(app.pid))["points"]["balance"] == 88


async def test_a_batch_records_each_order(app):
    status, body = await post(app, [order(), order("YZ-2", member=MOBILE, amount="10.00"),
                                    order()])
    assert status == 200 and body["ok"] is True
    assert [(r["order_id"], r["result"], r["points"]) for r in body["results"]] == [
        ("YZ-1", "created", 88), ("YZ-2", "created", 10), ("YZ-1", "unchanged", 0)]
    assert (await app.store.profiles.get(app.pid))["orders"]["count"] == 2


async def test_a_body_over_the_limit_is_413(app):
    status, body = await post(app, b"[" + b" " * MAX_BODY + b"]")
    assert status == 413 and "KB" in body["error"]
    assert await nothing_kept(app)
