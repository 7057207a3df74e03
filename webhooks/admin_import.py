"""Admin API for importing the brand's data: members and orders from CSV."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    return None
