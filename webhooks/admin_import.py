"""Admin API for importing the brand's data: members and orders from CSV.

    POST /admin/api/import/members?source=NAME[&dry_run=1][&skip_invalid=1]
    POST /admin/api/import/orders?source=NAME[&dry_run=1][&skip_invalid=1]

The body is the CSV itself (UTF-8 or GBK), or multipart/form-data with a `file` part (the
CSV) and an optional `mapping` part (the YAML mapping; its filename names it in problems):

    curl -H "Authorization: Bearer $SCRM_ADMIN_TOKEN" -F file=@members.csv \
         -F mapping=@mapping.yml "http://127.0.0.1:8080/admin/api/import/members?source=crm"

At most MAX_UPLOAD bytes (the app's 1 MB request limit does not apply: the body is read
here, as a stream). The answer is JSON lines: `{"progress": {"phase", "done", "total"}}`
as the import goes, then one `{"summary": {...}}` (counts and problems by line and column),
or `{"error": "..."}` if it stopped.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from aiohttp import BodyPartReader, web

from bot.members.fields import FieldBook
from bot.members.importer import (
    ImportOptions,
    ImportReport,
    MemberImporter,
    OrderImporter,
    Progress,
    check_source,
)
from store.records import identity_key
from webhooks.services import SERVICES
from webhooks.shop import order_book

log = logging.getLogger(__name__)

MAX_UPLOAD: Final = 200 * 1024 * 1024
MAX_MAPPING: Final = 256 * 1024
MEMBERS_PATH: Final = "/admin/api/import/members"
ORDERS_PATH: Final = "/admin/api/import/orders"
READ_CHUNK: Final = 1 << 16


class _TooBig(Exception):
    pass


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes", "on")


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def _stream(read: Any, limit: int) -> bytes:
    """Everything `read(n)` gives until it gives b"", at most `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _TooBig
        chunks.append(chunk)


async def _upload(request: web.Request) -> tuple[bytes, str | None, str]:
    """(the CSV, the mapping YAML or None, the mapping's name)."""
    if request.content_type != "multipart/form-data":
        return await _stream(request.content.read, MAX_UPLOAD), None, ""
    data: bytes | None = None
    mapping: str | None = None
    name = "mapping.yml"
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            data = await _stream(part.read_chunk, MAX_UPLOAD)
        elif part.name == "mapping":
            raw = await _stream(part.read_chunk, MAX_MAPPING)
            try:
                mapping = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise web.HTTPBadRequest(text=json.dumps(
                    {"error": "the mapping file must be UTF-8 text"}),
                    content_type="application/json") from None
            name = part.filename or name
        else:
            await part.release()
    if data is None:
        raise web.HTTPBadRequest(text=json.dumps({"error": "no `file` part (the CSV)"}),
                                 content_type="application/json")
    return data, mapping, name


async def _run(request: web.Request, kind: str) -> web.StreamResponse:
    svc = request.app[SERVICES]
    try:
        source = check_source(request.query.get("source", ""))
    except ValueError as e:
        return _refuse(400, str(e))
    if (request.content_length or 0) > MAX_UPLOAD:
        return _refuse(413, f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    try:
        data, mapping, mapping_name = await _upload(request)
    except _TooBig:
        return _refuse(413, f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    options = ImportOptions(source, dry_run=_flag(request, "dry_run"),
                            skip_invalid=_flag(request, "skip_invalid"))
    settings = svc.settings
    fields = FieldBook(settings.members.fields)
    app_id = settings.wechat.app_id
    importer: MemberImporter | OrderImporter
    if kind == "members":
        importer = MemberImporter(svc.store, fields, settings,
                                  openid_key=lambda o: identity_key("wechat", app_id, o))
    else:
        importer = OrderImporter(svc.store, order_book(svc), settings)

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)

    async def line(doc: dict[str, Any]) -> None:
        await response.write((json.dumps(doc, ensure_ascii=False) + "\n").encode())

    async def progress(p: Progress) -> None:
        await line({"progress": {"phase": p.phase, "done": p.done, "total": p.total}})

    try:
        report: ImportReport = await importer.run(data, options, mapping, mapping_name,
                                                  progress)
    except (ConnectionResetError, OSError):
        raise  # the caller went away; nothing more to say
    except Exception:
        # The stream has begun: the error goes in its last line (the log has the detail).
        log.exception("import failed", extra={"kind": kind, "source": source})
        await line({"error": "the import stopped on an internal error; rows written so far "
                             "stay, and running the same file again finishes it"})
    else:
        await line({"summary": report.as_dict()})
    await response.write_eof()
    return response


async def import_members(request: web.Request) -> web.StreamResponse:
    return await _run(request, "members")


async def import_orders(request: web.Request) -> web.StreamResponse:
    return await _run(request, "orders")


def add_routes(app: web.Application) -> None:
    app.router.add_post(MEMBERS_PATH, import_members)
    app.router.add_post(ORDERS_PATH, import_orders)
