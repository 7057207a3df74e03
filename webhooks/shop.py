"""The shop's order webhook: orders and refunds, signed with HMAC-SHA256 over the body."""

from __future__ import annotations

from aiohttp import web

ORDERS_PATH = "/admin/api/orders"


def add_routes(app: web.Application) -> None:
    return None
