"""Admin API for exporting members (CSV) and interactions (JSON lines)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    return None
