"""The aiohttp application: channels, Rasa's action endpoint, admin API, health, metrics.

Exceptions become responses here, once: channel routes never answer 5xx (WeChat would show
the follower "该公众号暂时无法提供服务"), and no response body carries a stack trace.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException

from bot.flow_engine.loader import FlowsInvalid
from bot.flow_engine.registry import FlowRegistry
from bot.logs import request_id
from bot.members.fields import FieldBook
from bot.members.lookup import find_member
from bot.privacy import mask_phones
from store.protocols import Store
from store.records import Profile
from webhooks import admin_export, admin_import, shop
from webhooks.config import Settings
from webhooks.services import SERVICES, open_services

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # WeChat messages are a few KB; anything near this is hostile
CHANNEL_PATHS = ("/wechat", "/webhooks/")
INTERNAL_PATHS = ("/admin/", "/rasa/")
# Called by the brand's own systems from outside and signed (HMAC over the body) instead of
# the admin token: the handler checks the signature (webhooks/shop.py).
SIGNED_PATHS = (shop.ORDERS_PATH,)
EXPORT_PATH = "/me/export/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _channel_of(path: str) -> str:
    if path.startswith("/wechat"):
        return "wechat"
    if path.startswith("/webhooks/"):
        return path.split("/")[2] or "webhooks"
    return "other"


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, access log, metrics; and the one place errors become responses."""
    rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as e:
            status = e.status
            raise
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            if request.path.startswith(CHANNEL_PATHS):
                # The follower sees nothing rather than WeChat's "cannot serve" page.
                status = 200
                return web.Response(text="success")
            status = 500
            return web.json_response({"error": "internal error", "request_id": rid},
                                     status=500)
        response.headers["X-Request-Id"] = rid
        return response
    finally:
        elapsed = time.perf_counter() - started
        if request.path.startswith(CHANNEL_PATHS) and SERVICES in request.app:
            metrics = request.app[SERVICES].metrics
            channel = _channel_of(request.path)
            metrics.requests.labels(channel, str(status)).inc()
            metrics.latency.labels(channel).observe(elapsed)
        log.info("request", extra={"method": request.method, "path": _logged(request.path),
                                   "status": status, "ms": round(elapsed * 1000, 1)})
        request_id.reset(token)


def _logged(path: str) -> str:
    """The path as the log may show it: an export link is a secret, like a password."""
    return EXPORT_PATH + "…" if path.startswith(EXPORT_PATH) else path


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


@web.middleware
async def internal_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin API and Rasa's action endpoint: loopback only unless configured otherwise."""
    if request.path.startswith(INTERNAL_PATHS) and request.path not in SIGNED_PATHS:
        settings = request.app[SERVICES].settings
        if not settings.admin.allow_remote and not _loopback(request.remote):
            raise web.HTTPForbidden(text="internal endpoint: loopback only")
        if request.path.startswith("/rasa/") and settings.rasa.action_token:
            given_token = request.query.get("token", "")
            if not hmac.compare_digest(given_token.encode("utf-8", "surrogateescape"),
                                       settings.rasa.action_token.encode()):
                raise web.HTTPForbidden(text="missing or wrong action token")
        if request.path.startswith("/admin/"):
            expected = settings.admin.token
            if not expected:
                raise web.HTTPForbidden(text="admin API disabled: set SCRM_ADMIN_TOKEN")
            # "Bearer <token>" only; undecodable bytes compare as bytes (never a 500).
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode("utf-8", "surrogateescape"), expected.encode()):
                raise web.HTTPUnauthorized(text="missing or wrong admin token")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, Any] = {}
    try:
        await svc.store.ping()
        checks["mongo"] = "embedded" if svc.store.embedded else "ok"
    except Exception as e:
        checks["mongo"] = f"down: {type(e).__name__}"
    try:
        await svc.redis.ping()
        checks["redis"] = "ok"
    except Exception as e:
        checks["redis"] = f"down: {type(e).__name__}"
    checks["rasa"] = "ok" if await svc.rasa.healthy() else "down"
    ok = all(v in ("ok", "embedded") for v in checks.values())
    return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICES].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def rasa_actions(request: web.Request) -> web.Response:
    """Rasa's action endpoint, served by rasa-sdk's executor (no Sanic, same process)."""
    try:
        call = await request.json()
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=400)
    executor = request.app[SERVICES].core.executor
    try:
        result = await executor.run(call)
    except ActionNotFoundException as e:
        return web.json_response({"error": e.message, "action_name": e.action_name}, status=404)
    except ActionExecutionRejection as e:
        return web.json_response({"error": e.message, "action_name": e.action_name}, status=400)
    return web.json_response(result.model_dump() if result else None)


# Identifiers are shown as they are: a hex id may hold a digit run that looks like a
# mobile number, and a masked id no longer finds its record.
_IDENTIFIERS = frozenset({"_id", "profile_id", "dedupe_key", "identity_keys", "openid",
                          "unionid", "app_id", "by", "from", "to", "broadcast", "id"})


def _jsonable(doc: Any, key: str = "") -> Any:
    if isinstance(doc, dict):
        return {k: _jsonable(v, k) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_jsonable(v, key) for v in doc]
    if hasattr(doc, "isoformat"):
        return doc.isoformat()
    if isinstance(doc, str) and key not in _IDENTIFIERS:
        return mask_phones(doc)  # mobile numbers are never shown whole
    return doc


async def admin_profile(request: web.Request) -> web.Response:
    """A profile and its latest interactions, by id or by channel identity (openid)."""
    svc = request.app[SERVICES]
    q = request.query
    profile_id = request.match_info.get("profile_id")
    if profile_id:
        profile = await svc.store.profiles.get(profile_id)
    elif q.get("openid"):
        channel = q.get("channel", "wechat")
        app_id = q.get("app_id") or (svc.settings.wechat.app_id if channel == "wechat"
                                     else "default")
        profile = await svc.store.profiles.find_by_identity(channel, app_id, q["openid"])
    else:
        return web.json_response({"error": "give a profile id or ?openid="}, status=400)
    if profile is None:
        return web.json_response({"error": "no such profile"}, status=404)
    try:
        limit = min(max(int(q.get("limit", "20")), 1), 200)
    except ValueError:
        return web.json_response({"error": "limit must be a number"}, status=400)
    interactions = await svc.store.interactions.latest(profile["_id"], limit)
    shown = {**profile, "fields": FieldBook(svc.settings.members.fields).masked(
        profile.get("fields") or {})}
    return web.json_response(_jsonable({"profile": shown, "interactions": interactions}))


async def admin_referrals(request: web.Request) -> web.Response:
    """Whom a member brought (one level of the referral tree), masked like profiles."""
    svc = request.app[SERVICES]
    profile_id = request.match_info["profile_id"]
    if await svc.store.profiles.get(profile_id) is None:
        return web.json_response({"error": "no such profile"}, status=404)
    referred = await svc.store.profiles.referred_by(profile_id)
    return web.json_response(_jsonable({"profile_id": profile_id, "referred": [
        {"profile_id": p["_id"], "member": p.get("member", {}).get("id"),
         "referral": p.get("referral")} for p in referred]}))


async def admin_qrcode(request: web.Request) -> web.Response:
    """A member's referral QR code (`?openid=`, or `?for=` a member id, openid or mobile),
    or with `&campaign=NAME` the campaign code of a member, KOL or member of staff; each
    made once through WeChat, then kept."""
    svc = request.app[SERVICES]
    campaign = request.query.get("campaign")
    who = request.query.get("for", "").strip()
    if who:
        profile = await find_member(svc.store, who, [("wechat", svc.settings.wechat.app_id)])
    else:
        profile = await svc.store.profiles.find_by_identity(
            "wechat", svc.settings.wechat.app_id, request.query.get("openid", ""))
    if profile is None:
        return web.json_response({"error": "no such follower"}, status=404)
    referrals = svc.core.referrals
    try:
        qr = await (referrals.qr_for(profile) if campaign is None
                    else referrals.campaign_qr(profile, campaign.strip()))
    except ValueError as e:  # a campaign name that cannot be a QR scene
        return web.json_response({"error": str(e)}, status=400)
    except Exception as e:
        log.warning("qrcode/create failed", extra={"error": str(e)[:200]})
        return web.json_response({"error": "WeChat could not create the code"}, status=502)
    if qr is None:
        return web.json_response({"error": "not a member yet"}, status=409)
    return web.json_response(qr)


async def admin_flows(request: web.Request) -> web.Response:
    """The live flows: version, and each flow's description and triggers."""
    current = request.app[SERVICES].core.flows.current
    return web.json_response({"version": current.version, "flows": [
        {"id": f.id, "description": f.description, "file": f.file,
         "triggers": {"intents": f.triggers.intents, "keywords": f.triggers.keywords,
                      "menu": f.triggers.menu, "events": f.triggers.events}}
        for f in current.flows.values()]})


async def admin_flows_reload(request: web.Request) -> web.Response:
    """Check flows/ again and swap it in; a broken file leaves the running version."""
    registry = request.app[SERVICES].core.flows
    before = registry.current.version
    try:
        current = registry.reload()
    except FlowsInvalid as e:
        return web.json_response({"ok": False, "version": before,
                                  "errors": [str(x) for x in e.errors]}, status=422)
    return web.json_response({"ok": True, "version": current.version, "previous": before,
                              "flows": sorted(current.flows)})


async def admin_points_check(request: web.Request) -> web.Response:
    """Every member's balance against their ledger sum; ?repair=1 fixes the differences."""
    ledger = request.app[SERVICES].store.ledger
    mismatches = await ledger.check()
    repaired = await ledger.repair() if request.query.get("repair") == "1" else 0
    return web.json_response({"ok": not mismatches, "repaired": repaired, "mismatches": [
        {"profile_id": m.profile_id, "balance": m.balance, "ledger_sum": m.ledger_sum,
         "earned": m.earned, "ledger_earned": m.ledger_earned} for m in mismatches]})


_GONE = {"error": "此链接已失效或已使用。请在聊天中重新发送「我的数据」获取新链接。 / "
                  "This link has expired or was already used: send \"my data\" in the chat "
                  "for a new one."}


async def my_export(request: web.Request) -> web.Response:
    """A member's copy of her data, behind the single-use link the chat gave her."""
    token = request.match_info["token"]
    if len(token) > 400:
        return web.json_response(_GONE, status=404)
    doc = await request.app[SERVICES].core.rights.open_export(token)
    if doc is None:
        return web.json_response(_GONE, status=404)
    return web.json_response(doc, dumps=_dumps, headers={
        "Content-Disposition": 'attachment; filename="my-data.json"',
        "Cache-Control": "no-store"})


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1)


async def _member(request: web.Request) -> Profile:
    """The member an admin call names: profile id, member id (M…), mobile, or openid."""
    svc = request.app[SERVICES]
    who = request.match_info["who"].strip()
    profile = await find_member(svc.store, who, [("wechat", svc.settings.wechat.app_id)])
    if profile is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no member {who!r}"}),
                               content_type="application/json")
    return profile


async def admin_member_export(request: web.Request) -> web.Response:
    """Everything about one member, unmasked (it is her data, for her); audited."""
    svc = request.app[SERVICES]
    doc = await svc.core.rights.export(await _member(request), "admin")
    return web.json_response(doc, dumps=_dumps)


async def admin_member_erase(request: web.Request) -> web.Response:
    """Erase a member after the cooling-off period, or at once with "now": true. A reason
    is required; audited; a tombstone says when and by whom."""
    svc = request.app[SERVICES]
    try:
        body = await request.json()
        reason, now = str(body["reason"]).strip(), bool(body.get("now", False))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'JSON body {"reason": "...", "now": false}'},
                                 status=400)
    if not reason:
        return web.json_response({"error": "a reason is required"}, status=400)
    profile = await _member(request)
    rights = svc.core.rights
    when = datetime.now(UTC)
    if now:
        counts = await rights.erase(profile, "staff:admin-api", reason, when)
        return web.json_response({"ok": True, "erased": counts})
    due = await rights.request_erasure(profile, "staff:admin-api", reason, when)
    return web.json_response({"ok": True, "due": due.isoformat()})


async def admin_retention(request: web.Request) -> web.Response:
    """Run retention now (?dry_run=1: only say what it would do)."""
    dry = request.query.get("dry_run") == "1"
    out = await request.app[SERVICES].core.rights.retention(datetime.now(UTC), dry)
    return web.json_response({"dry_run": dry, **out})


def create_app(settings: Settings, store: Store | None = None, run_worker: bool = True,
               flows: FlowRegistry | None = None) -> web.Application:
    """The web application; `store` lets tests and benchmarks share one embedded store,
    `flows` one checked registry of the flows."""
    app = web.Application(middlewares=[edge, internal_guard], client_max_size=MAX_BODY)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, store=store, run_worker=run_worker,
                                 flows=flows) as svc:
            app[SERVICES] = svc
            for channel in svc.channels:
                app.router.add_routes(channel.routes())
            yield

    app.cleanup_ctx.append(services_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/rasa/webhook", rasa_actions)
    app.router.add_get("/admin/api/profiles", admin_profile)
    app.router.add_get("/admin/api/profiles/{profile_id}", admin_profile)
    app.router.add_get("/admin/api/profiles/{profile_id}/referrals", admin_referrals)
    app.router.add_post("/admin/api/qrcode", admin_qrcode)
    app.router.add_get("/admin/api/flows", admin_flows)
    app.router.add_post("/admin/api/flows/reload", admin_flows_reload)
    app.router.add_post("/admin/api/points/check", admin_points_check)
    app.router.add_get("/admin/api/members/{who}/export", admin_member_export)
    app.router.add_post("/admin/api/members/{who}/erase", admin_member_erase)
    app.router.add_post("/admin/api/retention", admin_retention)
    app.router.add_get(EXPORT_PATH + "{token}", my_export)
    admin_import.add_routes(app)
    admin_export.add_routes(app)
    shop.add_routes(app)
    return app
