"""Member step actions (`action: complete_signup` ...) and life-stage upkeep.

Each action reads the member's collected slots and profile, writes the profile, and puts
what templates show into `ctx.vars`. Sensitive data (mobile, pregnancy and baby dates) is
written only with the matching consent, and the consent itself is recorded with the policy
version and time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from bot.brand_calendar import BrandCalendar
from bot.consents import consented, record_consent
from bot.flow_engine.actions import Say, StepContext, step_action
from bot.members.lifestage import is_stage_tag, stage_of
from bot.members.orders import recompute_totals
from bot.members.points import Points
from bot.members.referrals import Referrals
from bot.privacy import mask_phones
from bot.settings import MembersSettings
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

REDEEM_WORDS = ("兑换", "redeem", "exchange")


def match_reward(text: str, catalogue: dict[str, tuple[str, ...]]) -> str | None:
    """The catalogue code a member means, from its code, its name or an alias (by code:
    the name first): "兑换 湿巾" and "帮我换包湿巾" find 婴儿湿巾; None if unclear."""
    query = text.casefold()
    for word in REDEEM_WORDS:
        query = query.replace(word, "")
    query = query.strip(" :：，,。.!！")
    if not query:
        return None
    hits = [code for code, words in catalogue.items()
            if query == code.casefold()
            or any(query in w.casefold() or w.casefold() in query for w in words if w)]
    return hits[0] if len(hits) == 1 else None


def new_member_id() -> str:
    """A new member id: M and 10 hex digits (sign-up and the member import make them)."""
    return f"M{uuid.uuid4().hex[:10].upper()}"


async def profile_of(store: Store, ctx: StepContext) -> Profile:
    """The member whose turn this is (the orchestrator creates her before the flows run)."""
    profile = await store.profiles.get(ctx.turn.profile_id)
    if profile is None:
        raise LookupError(ctx.turn.profile_id)
    return profile


class LifeStages:
    """Keeps each member's life-stage tags and stage in step with her dates."""

    def __init__(self, store: Store, calendar: BrandCalendar) -> None:
        self._store = store
        self._calendar = calendar

    async def refresh(self, profile: Profile, today: date) -> list[str]:
        """Recompute life-stage tags from the dates (never frozen at sign-up)."""
        summary = stage_of(profile, today)
        current = [t for t in profile.get("tags", []) if is_stage_tag(t)]
        stale = [t for t in current if t not in summary.tags]
        new = [t for t in summary.tags if t not in current]
        if stale or new:
            await self._store.profiles.update_tags(profile["_id"], new, stale)
        await self._store.profiles.update(profile["_id"], {"member.stage": summary.stage})
        return summary.tags

    async def refresh_all(self) -> int:
        """The daily job: every member's stage, as of today at the brand."""
        today = self._calendar.today(datetime.now(UTC))
        count = 0
        async for profile in self._store.profiles.members():
            await self.refresh(profile, today)
            count += 1
        return count


# Fields a member may correct in the chat (one flow each, flows/profile.yml).
CORRECTABLE = ("due_date", "baby_birthday", "city", "nickname", "mobile")


class MemberListener(Protocol):
    async def member_updated(self, profile: Profile) -> None:
        """Her profile changed (sign-up, a correction): derived data follows."""
        ...


class MemberActions:
    def __init__(self, store: Store, points: Points, members: MembersSettings,
                 referrals: Referrals, stages: LifeStages,
                 listeners: Sequence[MemberListener] = ()) -> None:
        self._store = store
        self._points = points
        self._members = members
        self._referrals = referrals
        self._stages = stages
        self._listeners = tuple(listeners)

    @step_action("profile_summary")
    async def profile_summary(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ctx.vars["summary"] = {
            "first_seen": profile["first_seen"].date().isoformat(),
            "messages": await self._store.interactions.count(profile["_id"]),
            "tags": list(profile.get("tags", [])),
            "member": dict(profile.get("member") or {}),
        }
        return []

    @step_action("complete_signup")
    async def complete_signup(self, ctx: StepContext) -> list[Say]:
        """Write the sign-up slots to the profile; make the member; refresh life stage."""
        profile = await profile_of(self._store, ctx)
        s, now = ctx.slots, ctx.turn.now
        version = self._members.privacy_policy_version
        sensitive = bool(s.get("consent_sensitive"))
        city = s.get("city") or {}
        member = dict(profile.get("member") or {})
        first_time = "id" not in member
        linked = None
        if first_time and s.get("mobile"):
            # A member the brand imported with this mobile before she wrote here: she is
            # that member from now on (her member id, tags, fields and points).
            linked = await self._store.imports.link_mobile(profile["_id"], str(s["mobile"]))
            if linked is not None:
                profile, member = linked, dict(linked.get("member") or {})
                await recompute_totals(self._store, profile["_id"])
        updates: dict[str, Any] = {
            "fields.nickname": s.get("nickname"),
            "fields.mobile": s.get("mobile"),
            "fields.role": s.get("role"),
            "fields.city": city.get("city") if isinstance(city, dict) else city,
            "fields.province": city.get("province") if isinstance(city, dict) else None,
            "member.id": member.get("id") or new_member_id(),
            "member.since": member.get("since") or now,
            "member.updated": now,
        }
        unset: list[str] = []
        for slot, path in (("due_date", "fields.due_date"),
                           ("baby_birthday", "fields.baby_birthday")):
            # Pregnancy and baby data only with the separate, explicit consent (PIPL).
            if sensitive and s.get(slot):
                updates[path] = s[slot]
            else:
                unset.append(path)
        await self._store.profiles.update(profile["_id"], updates, unset)
        for kind, accepted in (("privacy", bool(s.get("consent_privacy"))),
                               ("sensitive", sensitive)):
            await record_consent(self._store, profile["_id"], kind, accepted, version, now)
        if linked is not None:
            await self._points.refresh_tier(profile["_id"],
                                            (await self._store.ledger.balance(profile["_id"]))[1])
        fresh = await self._store.profiles.get(profile["_id"])
        assert fresh is not None
        await self._stages.refresh(fresh, ctx.turn.today)
        await self._referrals.on_signup(fresh, now)  # the referrer's points, once
        for listener in self._listeners:
            await listener.member_updated(fresh)  # e.g. new dates move her in matching
        ctx.vars["member"] = {"id": updates["member.id"], "first_time": first_time}
        return []

    @step_action("profile_can_update")
    async def profile_can_update(self, ctx: StepContext) -> list[Say]:
        """Before asking for a correction: is she a member, and may dates be kept?"""
        profile = await profile_of(self._store, ctx)
        ctx.vars["can"] = {"member": bool((profile.get("member") or {}).get("id")),
                           "dates": consented(profile, "sensitive")}
        return []

    @step_action("update_profile")
    async def update_profile(self, ctx: StepContext) -> list[Say]:
        """A correction of one field (the slot her correction flow collected), checked by
        the same validator as at sign-up; what depends on it follows (stage tags, her
        place in matching)."""
        profile = await profile_of(self._store, ctx)
        field = next((f for f in CORRECTABLE if ctx.slots.get(f) not in (None, "")), None)
        if field is None:
            ctx.vars["updated"] = {"ok": False}
            return []
        value = ctx.slots[field]
        if field in ("due_date", "baby_birthday") and not consented(profile, "sensitive"):
            ctx.vars["updated"] = {"ok": False, "why": "consent"}
            return []
        updates: dict[str, Any] = {f"fields.{field}": value, "member.updated": ctx.turn.now}
        if field == "city" and isinstance(value, dict):
            updates.update({"fields.city": value.get("city"),
                            "fields.province": value.get("province")})
        await self._store.profiles.update(profile["_id"], updates)
        fresh = await self._store.profiles.get(profile["_id"])
        assert fresh is not None
        await self._stages.refresh(fresh, ctx.turn.today)
        for listener in self._listeners:
            await listener.member_updated(fresh)
        shown = value.get("city") if isinstance(value, dict) else value
        ctx.vars["updated"] = {"ok": True, "field": field,
                               "value": mask_phones(str(shown)) if field == "mobile"
                               else str(shown)}
        return []

    @step_action("referral_qr")
    async def referral_qr(self, ctx: StepContext) -> list[Say]:
        """The member's own invitation QR code (vars.invite); non-members get ok: false."""
        try:
            qr = await self._referrals.qr_for(await profile_of(self._store, ctx))
        except Exception:
            log.exception("referral QR could not be created")
            ctx.vars["invite"] = {"ok": False, "unavailable": True}
            return []
        rules = self._points.rules()
        ctx.vars["invite"] = {"ok": qr is not None, "unavailable": False, **(qr or {}),
                              "share_points": rules.get("share", 0),
                              "referral_points": rules.get("referral", 0)}
        return []

    @step_action("points_summary")
    async def points_summary(self, ctx: StepContext) -> list[Say]:
        ctx.vars["points"] = await self._points.summary(ctx.turn.profile_id)
        return []

    @step_action("rewards_catalogue")
    async def rewards_catalogue(self, ctx: StepContext) -> list[Say]:
        """积分能换什么: every gift with its cost and stock beside her balance. Asking never
        redeems, even when the question names a gift."""
        balance, _ = await self._store.ledger.balance(ctx.turn.profile_id)
        ctx.vars["rewards"] = {"balance": balance, "gifts": [
            {"code": r["_id"], "name": r["name"], "cost": int(r.get("cost", 0)),
             "in_stock": int(r.get("stock", 0)) > 0,
             "affordable": balance >= int(r.get("cost", 0))}
            for r in await self._store.ledger.rewards()]}
        return []

    @step_action("redeem")
    async def redeem(self, ctx: StepContext) -> list[Say]:
        """`兑换 湿巾` / `redeem wipes`: the item is named by its code or name in the text."""
        catalogue = {r["_id"]: r["name"] for r in await self._store.ledger.rewards()}
        item = match_reward(ctx.turn.text, self._points.reward_words(catalogue))
        if not item:
            ctx.vars["redeem"] = {"applied": False, "reason": "unknown_item"}
            return []
        result = await self._store.ledger.redeem(
            ctx.turn.profile_id, item, f"redeem:{ctx.turn.source or uuid.uuid4().hex}",
            now=ctx.turn.now)
        reward = await self._store.ledger.reward(item) or {}
        ctx.vars["redeem"] = {"applied": result.applied, "reason": result.reason,
                              "balance": result.balance, "item": reward.get("name", item),
                              "cost": reward.get("cost")}
        return []
