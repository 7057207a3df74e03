"""Admin API for exporting members (CSV) and interactions (JSON lines), streamed.

`GET /admin/api/export/members?segment=&fields=&header=labels|names&unmasked=1&reason=
&by=` and `GET /admin/api/export/interactions?since=&until=&segment=
&unmasked=1&reason=&by=`. `X-SCRM-Rows` says how many rows to expect (for a progress bar;
members whose erasure is pending are counted there but left out). A bad parameter is a 400
with a message and exports nothing; an export cut short ends the chunked body without its
last chunk, so a client sees it as incomplete, never as a whole file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.core import Core
from bot.marketing.campaigns import CampaignError
from bot.members.export import Exporter, ExportError
from store.protocols import Store
from webhooks.services import SERVICES

log = logging.getLogger(__name__)

MEMBERS_PATH = "/admin/api/export/members"
INTERACTIONS_PATH = "/admin/api/export/interactions"
_YES = frozenset({"1", "true", "yes"})


def exporter_of(core: Core, store: Store) -> Exporter:
    """The exporter over the app's store, with segments compiled by the marketers' own
    rules (Campaigns.segment: tiers, custom fields), their errors as ExportError."""
    campaigns = core.campaigns

    def segments(query: str, now: datetime) -> dict[str, Any]:
        try:
            return campaigns.segment(query, now)
        except CampaignError as e:
            raise ExportError(f"segment: {e}") from None

    return Exporter(store, core.settings, core.calendar, segments)


def _exporter(request: web.Request) -> Exporter:
    svc = request.app[SERVICES]
    return exporter_of(svc.core, svc.store)


def _bad(e: ExportError) -> web.Response:
    return web.json_response({"error": e.message}, status=400)


async def _stream(request: web.Request, chunks: AsyncGenerator[bytes, None],
                  content_type: str, filename: str, rows: int, masked: bool
                  ) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-SCRM-Rows": str(rows),
        "X-SCRM-Masked": "yes" if masked else "no",
    })
    response.enable_chunked_encoding()
    async with contextlib.aclosing(chunks):
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionResetError:
            log.info("export: the client went away", extra={"path": request.path})
            return response
        except Exception as e:
            # The status line is gone: the only way left to say "failed" is to cut the
            # body short, so that no client takes half a file for the whole.
            log.warning("export failed mid-stream", extra={"path": request.path,
                                                           "error": type(e).__name__})
            if request.transport is not None:
                request.transport.abort()
            return response
    await response.write_eof()
    return response


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


async def export_members(request: web.Request) -> web.StreamResponse:
    """A segment's members as CSV (UTF-8 with BOM), masked unless unmasked=1 and a reason."""
    q = request.query
    exporter = _exporter(request)
    try:
        plan = await exporter.members(
            segment=q.get("segment"), fields=q.get("fields"), header=q.get("header", "labels"),
            unmasked=q.get("unmasked", "").lower() in _YES, reason=q.get("reason"),
            by=q.get("by"))
    except ExportError as e:
        return _bad(e)
    rows = await exporter.count_members(plan)
    return await _stream(request, exporter.members_csv(plan), "text/csv; charset=utf-8",
                         f"members-{_stamp()}.csv", rows, plan.masked)


async def export_interactions(request: web.Request) -> web.StreamResponse:
    """Interactions since (and until) a time as JSON lines, of a segment's members or all."""
    q = request.query
    exporter = _exporter(request)
    try:
        plan = await exporter.interactions(
            since=q.get("since"), until=q.get("until"), segment=q.get("segment"),
            unmasked=q.get("unmasked", "").lower() in _YES, reason=q.get("reason"),
            by=q.get("by"))
    except ExportError as e:
        return _bad(e)
    rows = await exporter.count_interactions(plan)
    return await _stream(request, exporter.interactions_jsonl(plan),
                         "application/x-ndjson; charset=utf-8",
                         f"interactions-{_stamp()}.jsonl", rows, plan.masked)


def add_routes(app: web.Application) -> None:
    app.router.add_get(MEMBERS_PATH, export_members)
    app.router.add_get(INTERACTIONS_PATH, export_interactions)
