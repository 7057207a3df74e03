"""The shop's order webhook: orders and refunds, signed with HMAC-SHA256 over the body.

POST /admin/api/orders with one order (a JSON object, shape in bot/members/orders.py) or
a batch (a JSON list of up to MAX_BATCH). The answer: 200 {"ok": true, "result":
"created"|"updated"|"unchanged", "points": n, ...}; 409 when the order id is already
recorded with other content; 400 for bad input (the message names the field); 422 when no
member matches; 401 for a missing or wrong signature; 403 when no secret is configured;
413 for a body over MAX_BODY. A batch is checked whole first: one bad order or unknown
member and nothing of it is kept; its answer is 200 with one result per order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.members.orders import (
    Order,
    OrderBook,
    OrderError,
    RecordResult,
    UnknownMember,
    order_from_json,
)
from store.errors import StoreUnavailable
from webhooks.json_channel import strict_json
from webhooks.services import SERVICES, Services
from webhooks.signing import signed

log = logging.getLogger(__name__)

ORDERS_PATH = "/admin/api/orders"
MAX_BODY: Final = 512 * 1024
MAX_BATCH: Final = 500


def order_book(svc: Services) -> OrderBook:
    """The app's OrderBook: an order's openid is one of this WeChat account's."""
    return OrderBook(svc.store, svc.core.points, svc.settings,
                     ("wechat", svc.settings.wechat.app_id))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error": message, **extra}, status=status)


async def _body(request: web.Request) -> bytes | None:
    """The body, or None when it is longer than MAX_BODY (read no further than that)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(r: RecordResult) -> dict[str, Any]:
    out: dict[str, Any] = {"order_id": r.order_id, "result": r.outcome, "points": r.points}
    if r.shortfall:
        out["shortfall"] = r.shortfall
    if r.reason:
        out["error"] = r.reason
    return out


async def receive_orders(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    cfg = svc.settings.shop
    if not cfg.secret:
        return _error(403, "order webhook disabled: set SCRM_SHOP_SECRET (shop.secret)")
    body = await _body(request)
    if body is None:
        return _error(413, f"body over {MAX_BODY // 1024} KB: send fewer orders per post")
    if not signed(cfg.secret, body, request.headers.get(cfg.header, "")):
        log.info("order post refused: bad signature")
        return _error(401, f"missing or wrong signature ({cfg.header}: hex HMAC-SHA256 of "
                      "the body with the shop secret)")
    try:
        data = strict_json(body)
    except ValueError as e:
        return _error(400, str(e))
    batch = isinstance(data, list)
    docs = data if isinstance(data, list) else [data]
    if batch and not 1 <= len(docs) <= MAX_BATCH:
        return _error(400, f"a batch holds 1 to {MAX_BATCH} orders")
    orders: list[Order] = []
    for i, doc in enumerate(docs):
        try:
            orders.append(order_from_json(doc))
        except OrderError as e:
            # The field, not the value, is logged: a value may be her mobile.
            log.info("order post refused: bad input", extra={"field": e.field, "index": i})
            where = f"[{i}]." if batch else ""
            return _error(400, f"{where}{e}", field=f"{where}{e.field}")
    book = order_book(svc)
    now = datetime.now(UTC)
    try:
        if batch:
            for i, order in enumerate(orders):
                if await book.resolve(order.member) is None:
                    log.info("order post refused: unknown member", extra={"index": i})
                    return _error(422, f"[{i}].member: no member with {order.member}",
                                  field=f"[{i}].member")
            results = [await book.record(order, now) for order in orders]
            return web.json_response({"ok": all(r.outcome != "conflict" for r in results),
                                      "results": [_answer(r) for r in results]})
        result = await book.record(orders[0], now)
    except UnknownMember as e:
        log.info("order post refused: unknown member")
        return _error(422, str(e), field=e.field)
    except StoreUnavailable:
        log.warning("order post failed: store unavailable")
        return _error(503, "database unavailable: post the order again later")
    if result.outcome == "conflict":
        return web.json_response({"ok": False, **_answer(result)}, status=409)
    return web.json_response({"ok": True, **_answer(result)})


def add_routes(app: web.Application) -> None:
    app.router.add_post(ORDERS_PATH, receive_orders)
