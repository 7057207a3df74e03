"""A member's rights over her data (PIPL), in the chat and for the brand: see what is kept,
take a full copy, withdraw a consent, be forgotten; and retention of what is no longer
needed.

- 我的数据: a plain summary and a signed, single-use, expiring link to a full copy
  (`GET /me/export/<token>`), JSON with everything about her in every collection and in
  the shared state, field names a person can read.
- 撤回孕育信息授权: due date and baby birthday deleted, life-stage tags removed (so no
  life-stage message finds her), out of matching; points and membership stay.
- 退出姐妹匹配: out of the index; open matches end with a kind note; invitations withdrawn.
- 注销: a cooling-off period (`members.erasure_cooling_days`), 取消注销 stops it; then
  erasure (store/member_data.py, and store/state.py Traces for Redis and queued jobs).
Every step is audited; a consent change keeps its history (bot/consents.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.brand_calendar import BrandCalendar
from bot.consents import consented, history, record_consent
from bot.flow_engine.actions import Say, StepContext, step_action
from bot.jobs import JobQueue
from bot.members.actions import LifeStages, profile_of
from bot.members.fields import FieldBook
from bot.privacy import mask_phones
from bot.settings import MembersSettings
from bot.sisters.actions import SisterActions
from store.member_data import identifiers
from store.protocols import Store
from store.records import Profile
from store.state import State

log = logging.getLogger(__name__)
ERASE_JOB = "member_erase"
_SECRET = "export-link-secret"  # noqa: S105 - the name it is kept under, not a secret
_SECRET_TTL = 10 * 365 * 86400
_FIELD_NAMES = {"nickname": "昵称 nickname", "mobile": "手机号 mobile", "city": "城市 city",
                "province": "省份 province", "role": "身份 role",
                "due_date": "预产期 due date", "baby_birthday": "宝宝生日 baby's birthday"}


class RightsError(Exception):
    """A request about member data that cannot be done (unknown member, nothing pending)."""


def _readable(value: Any) -> Any:
    """Dates as ISO text, nested values alike: the export is for a person to read."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_readable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _channel(by: str) -> str:
    """Where a consent change came from, for its history: her chat, or who for her."""
    return "chat" if by == "member" else by


class DataRights:
    def __init__(self, store: Store, state: State, settings: MembersSettings,
                 calendar: BrandCalendar, stages: LifeStages, sisters: SisterActions,
                 queue: JobQueue) -> None:
        self._store = store
        self._state = state
        self._cfg = settings
        self._calendar = calendar
        self._stages = stages
        self._sisters = sisters
        self._queue = queue

    # -- in the chat --------------------------------------------------------------------
    @step_action("data_summary")
    async def data_summary(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ctx.vars["data"] = await self.summary(profile)
        ctx.vars["data"]["link"] = await self.export_link(profile, "chat")
        ctx.vars["data"]["minutes"] = self._cfg.export_minutes
        return []

    @step_action("withdraw_sensitive")
    async def withdraw_sensitive_step(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ctx.vars["withdrawn"] = await self.withdraw_sensitive(profile, ctx.turn.now, "member")
        return []

    @step_action("withdraw_matching")
    async def withdraw_matching_step(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ctx.vars["withdrawn"] = await self.withdraw_matching(profile, ctx.turn.now, "member")
        return []

    @step_action("erasure_request")
    async def erasure_request_step(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        due = await self.request_erasure(profile, "member", "her own request", ctx.turn.now)
        ctx.vars["erasure"] = {"due": self._calendar.local(due).strftime("%Y-%m-%d %H:%M"),
                               "days": self._cfg.erasure_cooling_days}
        return []

    @step_action("erasure_cancel")
    async def erasure_cancel_step(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ctx.vars["erasure"] = {"cancelled": await self.cancel_erasure(profile, ctx.turn.now)}
        return []

    # -- what is kept -------------------------------------------------------------------
    async def summary(self, profile: Profile) -> dict[str, Any]:
        """What the chat shows her: field names and masked values, consents with dates and
        policy version, tags, points, matches, how many messages since when."""
        fields = profile.get("fields") or {}
        book = FieldBook(self._cfg.fields)
        # Her own data, so not masked for her, except that a phone number in a chat is.
        shown = [{"name": _FIELD_NAMES.get(k) or self._label(book, k),
                  "value": mask_phones(book.get(k).show(v) if k in book else str(v))}
                 for k, v in fields.items() if v not in (None, "", [])]
        records = await self._store.member_data.collect(profile["_id"])
        balance, _ = await self._store.ledger.balance(profile["_id"])
        return {
            "fields": shown,
            "consents": [{"kind": c["kind"], "accepted": bool(c.get("accepted")),
                          "version": c.get("version", ""),
                          "at": self._day(c.get("at"))} for c in history(profile)],
            "tags": list(profile.get("tags") or []),
            "points": balance,
            "matches": len(records.get("matches", [])),
            "orders": len(records.get("orders", [])),
            "messages": len(records.get("interactions", [])),
            "since": self._day(profile.get("first_seen")),
            "erasure": self._day((profile.get("erasure") or {}).get("due")),
        }

    @staticmethod
    def _label(book: FieldBook, name: str) -> str:
        if name not in book:
            return name
        found = book.get(name)
        return f"{found.label_zh} {found.label_en}" if found.label_en != found.label_zh \
            else found.label_zh

    def _day(self, when: Any) -> str:
        if isinstance(when, datetime):
            return self._calendar.local(when).strftime("%Y-%m-%d")
        return str(when or "")

    async def export(self, profile: Profile, source: str) -> dict[str, Any]:
        """Everything about her: every collection, and the shared state's entries that
        name her. Audited."""
        records = await self._store.member_data.collect(profile["_id"])
        live = await self._state.traces.find(await self._needles(profile))
        fields = profile.get("fields") or {}
        doc = {
            "about": "你在本品牌社区的个人数据副本 / A copy of your personal data",
            "exported_at": datetime.now(UTC).isoformat(),
            "profile": {_FIELD_NAMES.get(k, k): v for k, v in fields.items()},
            "member": profile.get("member") or {},
            "tags": profile.get("tags") or [],
            "consent history": history(profile),
            "messages": [{"time": i.get("ts"), "direction": i.get("direction"),
                          "type": i.get("kind"), "text": i.get("text"),
                          "outcome": i.get("outcome")}
                         for i in records.get("interactions", [])],
            "points ledger": [{"time": e.get("ts"), "points": e.get("points"),
                               "reason": e.get("reason")} for e in records.get("ledger", [])],
            "records in every collection": {k: v for k, v in records.items()},
            "kept for a short time (Redis)": live,
        }
        await self._audit(profile["_id"], "export", source, "ok")
        return dict(_readable(doc))

    # -- the export link ----------------------------------------------------------------
    async def _secret(self) -> bytes:
        tokens = self._state.tokens
        value = await tokens.get(_SECRET)
        if value is None:
            async with tokens.lock(_SECRET):
                value = await tokens.get(_SECRET)
                if value is None:
                    value = secrets.token_hex(32)
                    await tokens.set(_SECRET, value, _SECRET_TTL)
        return value.encode()

    async def _sign(self, claim: str) -> str:
        return hmac.new(await self._secret(), claim.encode(), hashlib.sha256).hexdigest()[:32]

    async def export_link(self, profile: Profile, source: str) -> str:
        """A signed link to her copy that works once, for `members.export_minutes`."""
        nonce = secrets.token_urlsafe(18)
        expires = int((datetime.now(UTC) + timedelta(minutes=self._cfg.export_minutes))
                      .timestamp())
        claim = base64.urlsafe_b64encode(json.dumps(
            {"n": nonce, "e": expires, "p": profile["_id"]}).encode()).decode().rstrip("=")
        sig = await self._sign(claim)
        await self._state.links.put(nonce, profile["_id"], self._cfg.export_minutes * 60)
        await self._audit(profile["_id"], "export_link", source, "ok")
        return f"{self._cfg.public_url.rstrip('/')}/me/export/{claim}.{sig}"

    async def open_export(self, token: str) -> dict[str, Any] | None:
        """Her copy for a valid link, once; None for anything else (expired, used,
        tampered, guessed), without saying which."""
        claim, _, sig = token.partition(".")
        # The signature first: a forged or altered link is refused without spending the
        # real one; only then the single use is taken.
        if not sig.isascii() or not hmac.compare_digest(await self._sign(claim), sig):
            return None
        try:
            padded = claim + "=" * (-len(claim) % 4)
            body = json.loads(base64.urlsafe_b64decode(padded.encode()))
            nonce, expires, profile_id = str(body["n"]), int(body["e"]), str(body["p"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < datetime.now(UTC).timestamp():
            return None
        if await self._state.links.take(nonce) != profile_id:
            return None  # used already, or expired in Redis
        profile = await self._store.profiles.get(profile_id)
        return None if profile is None else await self.export(profile, "link")

    # -- withdrawals --------------------------------------------------------------------
    async def withdraw_sensitive(self, profile: Profile, now: datetime, by: str
                                 ) -> dict[str, Any]:
        """Pregnancy and baby data deleted, life-stage tags gone, out of matching (which
        needs those dates); points and membership stay."""
        sensitive = FieldBook(self._cfg.fields).all_sensitive
        had = any((profile.get("fields") or {}).get(f) for f in sensitive)
        await record_consent(self._store, profile["_id"], "sensitive", False,
                             self._cfg.privacy_policy_version, now, _channel(by),
                             unset=[f"fields.{f}" for f in sensitive])
        fresh = await self._store.profiles.get(profile["_id"])
        assert fresh is not None
        await self._stages.refresh(fresh, self._calendar.today(now))
        left = await self._sisters.leave(profile["_id"], now)
        await self._audit(profile["_id"], "withdraw_sensitive", by, "ok")
        return {"had": had, **left}

    async def withdraw_matching(self, profile: Profile, now: datetime, by: str
                                ) -> dict[str, Any]:
        was = consented(profile, "matching")
        await record_consent(self._store, profile["_id"], "matching", False,
                             self._cfg.privacy_policy_version, now, _channel(by))
        left = await self._sisters.leave(profile["_id"], now)
        await self._audit(profile["_id"], "withdraw_matching", by, "ok")
        return {"was": was, **left}

    # -- erasure ------------------------------------------------------------------------
    async def request_erasure(self, profile: Profile, by: str, reason: str, now: datetime,
                              immediately: bool = False) -> datetime:
        """Schedule her erasure after the cooling-off period (at once if `immediately`).
        Asking again keeps the first date."""
        pending = profile.get("erasure") or {}
        if immediately:
            await self.erase(profile, by, reason, now)
            return now
        if pending.get("due"):
            return pending["due"]  # type: ignore[no-any-return]
        due = now + timedelta(days=self._cfg.erasure_cooling_days)
        request = uuid.uuid4().hex[:12]
        await self._store.profiles.update(profile["_id"], {"erasure": {
            "requested_at": now, "due": due, "by": by, "reason": reason[:200],
            "request": request}})
        await self._queue.enqueue(ERASE_JOB, [profile["_id"], request],
                                  f"{ERASE_JOB}:{profile['_id']}:{request}", at=due)
        await self._audit(profile["_id"], "erasure_requested", by, "ok")
        return due

    async def cancel_erasure(self, profile: Profile, now: datetime) -> bool:
        if not profile.get("erasure"):
            return False
        await self._store.profiles.update(profile["_id"], {}, ["erasure"])
        await self._audit(profile["_id"], "erasure_cancelled", "member", "ok")
        return True

    async def erase_when_due(self, profile_id: str, request: str) -> bool:
        """The job at the end of the cooling-off period: erase unless she cancelled."""
        profile = await self._store.profiles.get(profile_id)
        if profile is None:
            return False  # already erased
        pending = profile.get("erasure") or {}
        if pending.get("request") != request:
            return False  # cancelled (or asked again since: that request's job decides)
        await self.erase(profile, str(pending.get("by", "member")),
                         str(pending.get("reason", "")), datetime.now(UTC))
        return True

    async def _needles(self, profile: Profile) -> list[str]:
        matches = await self._store.matches.for_profile(profile["_id"])
        return identifiers(profile) + [str(m["_id"]) for m in matches]

    async def erase(self, profile: Profile, by: str, reason: str, now: datetime
                    ) -> dict[str, int]:
        """Erase her everywhere; ledger and audit kept anonymised; a tombstone."""
        await self._sisters.leave(profile["_id"], now)  # her sisters are told kindly
        needles = await self._needles(profile)
        counts = await self._store.member_data.erase(profile, by, reason, now)
        counts["redis"] = await self._state.traces.erase(needles)
        await self._audit(None, "erased", by, "ok", {k: v for k, v in counts.items() if v})
        log.info("member erased", extra={"by": by.split(":", 1)[0], **counts})
        return counts

    async def retention(self, now: datetime, dry_run: bool) -> dict[str, int]:
        """The daily job (and `scrm retention`): old texts stripped, long-gone followers
        who never joined erased."""
        cfg = self._cfg.retention
        out = {"texts": 0, "erased": 0}
        if cfg.interaction_text_days is not None:
            out["texts"] = await self._store.member_data.strip_texts(
                now - timedelta(days=cfg.interaction_text_days), dry_run)
        if cfg.unfollowed_days is not None:
            gone = await self._store.member_data.never_joined_unfollowed(
                now - timedelta(days=cfg.unfollowed_days))
            out["erased"] = len(gone)
            if not dry_run:
                for profile in gone:
                    await self.erase(profile, "retention", "unfollowed, never joined", now)
        return out

    async def daily_retention(self) -> dict[str, int]:
        return await self.retention(datetime.now(UTC), dry_run=False)

    async def _audit(self, profile_id: str | None, command: str, source: str, result: str,
                     detail: dict[str, Any] | None = None) -> None:
        await self._store.audit.add({
            "_id": uuid.uuid4().hex, "at": datetime.now(UTC), "actor": profile_id,
            "role": "member" if source in ("member", "chat", "link") else "staff",
            "command": command, "text": f"/{command}", "result": result,
            "detail": json.dumps(detail or {}, ensure_ascii=False)[:300], "source": source})
