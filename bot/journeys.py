"""Step actions the flows call by name (`action: complete_signup`), and life-stage upkeep.

Each action reads the member's collected slots and profile, writes the profile, and returns
what to say. Sensitive data (mobile, pregnancy and baby dates) is written only with the
matching consent, and the consent itself is recorded with the policy version and time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Any

from bot.flows.engine import FlowEngine, Say, StepAction, StepContext, TurnInput
from bot.lifestage import is_stage_tag, stage_summary
from bot.logs import mask_phones
from bot.matching import Matcher, stage_label
from bot.points import Points
from bot.referrals import Referrals
from bot.settings import MembersSettings
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

Notify = Callable[[str, list[Say], str], Awaitable[bool]]  # profile, says, idempotency key
Schedule = Callable[[str, str, int], Awaitable[None]]  # job name, argument, delay seconds


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


REDEEM_WORDS = ("兑换", "redeem", "exchange")


def match_reward(text: str, catalogue: dict[str, str]) -> str | None:
    """The catalogue code a member means: "兑换 湿巾" finds 婴儿湿巾; None if unclear."""
    query = text.casefold()
    for word in REDEEM_WORDS:
        query = query.replace(word, "")
    query = query.strip(" :：，,。.!！")
    if not query:
        return None
    hits = [code for code, name in catalogue.items()
            if query == code.casefold() or query in name.casefold()
            or name.casefold() in query]
    return hits[0] if len(hits) == 1 else None


class Journeys:
    ACTION_NAMES = ("profile_summary", "complete_signup", "points_summary", "redeem",
                    "referral_qr", "matching_status", "matching_opt_in", "find_sisters",
                    "invite_sister", "answer_invitation", "relay_to_sister", "end_match",
                    "block_match", "record_feedback")
    FEEDBACK_AFTER = 7 * 86400  # seconds after an introduction to ask "was this helpful?"

    def __init__(self, store: Store, points: Points, members: MembersSettings,
                 referrals: Referrals, matcher: Matcher) -> None:
        self._store = store
        self._points = points
        self._members = members
        self._referrals = referrals
        self._matcher = matcher
        self._engine: FlowEngine | None = None
        self._notify: Notify | None = None
        self._schedule: Schedule | None = None

    def bind(self, engine: FlowEngine, notify: Notify, schedule: Schedule) -> None:
        """What matching needs to reach the other sister (set once the app is built)."""
        self._engine, self._notify, self._schedule = engine, notify, schedule

    async def _start_for(self, profile_id: str, flow: str, slots: dict[str, Any],
                         key: str, now: datetime) -> bool:
        """Open a flow for another member and send her its first question."""
        assert self._engine is not None and self._notify is not None
        inp = TurnInput(profile_id=profile_id, text="", intent=None, confidence=None,
                        now=now, today=self._points.today(now), source=key)
        says = await self._engine.begin(inp, flow, slots)
        return await self._notify(profile_id, says, key)

    async def _tell(self, profile_id: str, template: str, variables: dict[str, Any],
                    key: str) -> bool:
        assert self._notify is not None
        return await self._notify(profile_id, [Say(template, variables)], key)

    def actions(self) -> Mapping[str, StepAction]:
        return {name: getattr(self, name) for name in self.ACTION_NAMES}

    async def _profile(self, ctx: StepContext) -> Profile:
        profile = await self._store.profiles.get(ctx.turn.profile_id)
        if profile is None:  # the orchestrator creates it before Rasa runs
            raise LookupError(ctx.turn.profile_id)
        return profile

    async def profile_summary(self, ctx: StepContext) -> list[Say]:
        profile = await self._profile(ctx)
        ctx.vars["summary"] = {
            "first_seen": profile["first_seen"].date().isoformat(),
            "messages": await self._store.interactions.count(profile["_id"]),
            "tags": list(profile.get("tags", [])),
            "member": dict(profile.get("member") or {}),
        }
        return []

    async def complete_signup(self, ctx: StepContext) -> list[Say]:
        """Write the sign-up slots to the profile; make the member; refresh life stage."""
        profile = await self._profile(ctx)
        s, now = ctx.slots, ctx.turn.now
        version = self._members.privacy_policy_version
        sensitive = bool(s.get("consent_sensitive"))
        city = s.get("city") or {}
        member = dict(profile.get("member") or {})
        first_time = "id" not in member
        updates: dict[str, Any] = {
            "consents.privacy": {"accepted": bool(s.get("consent_privacy")),
                                 "version": version, "at": now},
            "consents.sensitive": {"accepted": sensitive, "version": version, "at": now},
            "fields.nickname": s.get("nickname"),
            "fields.mobile": s.get("mobile"),
            "fields.role": s.get("role"),
            "fields.city": city.get("city") if isinstance(city, dict) else city,
            "fields.province": city.get("province") if isinstance(city, dict) else None,
            "member.id": member.get("id") or f"M{uuid.uuid4().hex[:10].upper()}",
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
        fresh = await self._store.profiles.get(profile["_id"])
        assert fresh is not None
        await self.refresh_stage(fresh, self._points.today(now))
        await self._referrals.on_signup(fresh, now)  # the referrer's points, once
        if (fresh.get("consents") or {}).get("matching", {}).get("accepted"):
            await self._matcher.refresh(fresh)  # new dates or city move her in the index
        ctx.vars["member"] = {"id": updates["member.id"], "first_time": first_time}
        return []

    async def referral_qr(self, ctx: StepContext) -> list[Say]:
        """The member's own invitation QR code (vars.invite); non-members get ok: false."""
        try:
            qr = await self._referrals.qr_for(await self._profile(ctx))
        except Exception:
            log.exception("referral QR could not be created")
            ctx.vars["invite"] = {"ok": False, "unavailable": True}
            return []
        rules = self._points.rules()
        ctx.vars["invite"] = {"ok": qr is not None, "unavailable": False, **(qr or {}),
                              "share_points": rules.get("share", 0),
                              "referral_points": rules.get("referral", 0)}
        return []

    async def refresh_stage(self, profile: Profile, today: date) -> list[str]:
        """Recompute life-stage tags from the dates (never frozen at sign-up)."""
        fields = profile.get("fields", {})
        summary = stage_summary(fields.get("role"), _date(fields.get("due_date")),
                                _date(fields.get("baby_birthday")), today)
        current = [t for t in profile.get("tags", []) if is_stage_tag(t)]
        stale = [t for t in current if t not in summary.tags]
        new = [t for t in summary.tags if t not in current]
        if stale or new:
            await self._store.profiles.update_tags(profile["_id"], new, stale)
        await self._store.profiles.update(profile["_id"], {"member.stage": summary.stage})
        return summary.tags

    async def points_summary(self, ctx: StepContext) -> list[Say]:
        ctx.vars["points"] = await self._points.summary(ctx.turn.profile_id)
        return []

    async def redeem(self, ctx: StepContext) -> list[Say]:
        """`兑换 湿巾` / `redeem wipes`: the item is named by its code or name in the text."""
        catalogue = {r["_id"]: r["name"] for r in await self._store.ledger.rewards()}
        item = match_reward(ctx.turn.text, catalogue)
        if not item:
            ctx.vars["redeem"] = {"applied": False, "reason": "unknown_item",
                                  "catalogue": [f"{n} ({c})" for c, n in catalogue.items()]}
            return []
        result = await self._store.ledger.redeem(
            ctx.turn.profile_id, item, f"redeem:{ctx.turn.source or uuid.uuid4().hex}",
            now=ctx.turn.now)
        reward = await self._store.ledger.reward(item) or {}
        ctx.vars["redeem"] = {"applied": result.applied, "reason": result.reason,
                              "balance": result.balance, "item": reward.get("name", item),
                              "cost": reward.get("cost")}
        return []

    # -- sister matching --------------------------------------------------------------
    async def matching_status(self, ctx: StepContext) -> list[Say]:
        profile = await self._profile(ctx)
        consents = profile.get("consents") or {}
        ctx.vars["match"] = {
            "member": "id" in (profile.get("member") or {}),
            "has_date": Matcher.card(profile) is not None
            and bool(consents.get("sensitive", {}).get("accepted")),
            "opted_in": bool(consents.get("matching", {}).get("accepted")),
        }
        return []

    async def matching_opt_in(self, ctx: StepContext) -> list[Say]:
        """Record the consent to be matched (either answer); join the index if yes."""
        accepted = bool(ctx.slots.get("matching_consent"))
        profile = await self._profile(ctx)
        await self._store.profiles.update(profile["_id"], {"consents.matching": {
            "accepted": accepted, "version": self._members.privacy_policy_version,
            "at": ctx.turn.now}})
        if accepted:
            await self._matcher.refresh(profile)
        else:
            await self._matcher.forget(profile["_id"])
        return []

    async def find_sisters(self, ctx: StepContext) -> list[Say]:
        found = await self._matcher.find(ctx.turn.profile_id)
        ctx.slots["sister_ids"] = [c.profile_id for c in found]
        ctx.vars["sisters"] = [{"nickname": c.nickname,
                                "stage": stage_label(c.anchor, ctx.turn.today)}
                               for c in found]
        return []

    async def invite_sister(self, ctx: StepContext) -> list[Say]:
        ids = list(ctx.slots.get("sister_ids") or [])
        choice = ctx.slots.get("sister_choice")
        if not isinstance(choice, int) or not 1 <= choice <= len(ids):
            ctx.vars["invite"] = {"ok": False, "count": len(ids)}
            return []
        sister = ids[choice - 1]
        me = ctx.turn.profile_id
        invitation = await self._store.matches.invite(me, sister, ctx.turn.now)
        await self._matcher.mark_seen(me, sister)
        card, my_card = await self._matcher.card_of(sister), await self._matcher.card_of(me)
        ctx.vars["invite"] = {"ok": invitation is not None,
                              "nickname": card["nickname"] if card else ""}
        if invitation is not None and my_card is not None:
            # Double opt-in: she is asked; nothing about either is shared before both say yes.
            await self._start_for(sister, "sister_invitation", {
                "invitation": invitation, "from_nickname": my_card["nickname"],
                "from_stage": stage_label(my_card["anchor"], ctx.turn.today)},
                f"invite:{invitation}", ctx.turn.now)
        return []

    async def answer_invitation(self, ctx: StepContext) -> list[Say]:
        match_id = str(ctx.slots.get("invitation", ""))
        match = await self._store.matches.get(match_id)
        accepted = bool(ctx.slots.get("invite_answer"))
        status = "accepted" if accepted else "declined"
        if match is None or match["to"] != ctx.turn.profile_id or not \
                await self._store.matches.set_status(match_id, "invited", status, ctx.turn.now):
            ctx.vars["answer"] = {"ok": False}
            return []
        inviter, me = match["from"], match["to"]
        inviter_card, my_card = await self._matcher.card_of(inviter), \
            await self._matcher.card_of(me)
        inviter_name = inviter_card["nickname"] if inviter_card else ""
        my_name = my_card["nickname"] if my_card else ""
        await self._matcher.mark_seen(me, inviter)
        ctx.vars["answer"] = {"ok": True, "accepted": accepted, "nickname": inviter_name}
        if not accepted:
            await self._tell(inviter, "sisters_declined_by", {"nickname": my_name},
                             f"declined:{match_id}")
            return []
        await self._matcher.add_load(inviter, 1)
        await self._matcher.add_load(me, 1)
        await self._tell(inviter, "sisters_introduced", {"nickname": my_name},
                         f"accepted:{match_id}")
        assert self._schedule is not None
        await self._schedule("match_feedback", match_id, self.FEEDBACK_AFTER)
        return []

    async def _partner(self, ctx: StepContext) -> tuple[dict[str, Any] | None, str]:
        match = await self._store.matches.active_for(ctx.turn.profile_id)
        if match is None:
            return None, ""
        partner = match["to"] if match["from"] == ctx.turn.profile_id else match["from"]
        return match, partner

    async def relay_to_sister(self, ctx: StepContext) -> list[Say]:
        """"对姐妹说 …": the text goes to her matched sister; numbers never do."""
        match, partner = await self._partner(ctx)
        text = ctx.turn.text
        for word in ("对姐妹说", "tell my sister"):
            text = text.replace(word, "")
        text = mask_phones(text.strip(" :：，,"))
        if match is None or not text:
            ctx.vars["relay"] = {"ok": False, "matched": match is not None}
            return []
        me = await self._matcher.card_of(ctx.turn.profile_id)
        await self._tell(partner, "sisters_relay", {
            "nickname": me["nickname"] if me else "", "text": text},
            f"relay:{ctx.turn.source or uuid.uuid4().hex}")
        partner_card = await self._matcher.card_of(partner)
        ctx.vars["relay"] = {"ok": True, "nickname": partner_card["nickname"]
                             if partner_card else ""}
        return []

    async def _close(self, ctx: StepContext, status: str) -> tuple[bool, str]:
        match, partner = await self._partner(ctx)
        if match is None or not await self._store.matches.set_status(
                match["_id"], "accepted", status, ctx.turn.now):
            return False, ""
        await self._matcher.add_load(match["from"], -1)
        await self._matcher.add_load(match["to"], -1)
        await self._matcher.mark_seen(partner, ctx.turn.profile_id)
        return True, partner

    async def end_match(self, ctx: StepContext) -> list[Say]:
        ok, partner = await self._close(ctx, "ended")
        if ok:
            await self._tell(partner, "sisters_ended_by_other", {}, f"ended:{partner}:"
                             f"{ctx.turn.source or uuid.uuid4().hex}")
        ctx.vars["closed"] = {"ok": ok}
        return []

    async def block_match(self, ctx: StepContext) -> list[Say]:
        ok, _ = await self._close(ctx, "blocked")  # the blocked sister is not told
        ctx.vars["closed"] = {"ok": ok}
        return []

    async def ask_feedback(self, match_id: str, now: datetime) -> int:
        """Seven days after an introduction: ask both whether it helped."""
        match = await self._store.matches.get(match_id)
        if match is None or match["status"] != "accepted":
            return 0
        asked = 0
        for me, other in ((match["from"], match["to"]), (match["to"], match["from"])):
            card = await self._matcher.card_of(other)
            asked += await self._start_for(me, "match_feedback", {
                "match_id": match_id, "partner": other,
                "partner_nickname": card["nickname"] if card else ""},
                f"feedback:{match_id}:{me}", now)
        return asked

    async def record_feedback(self, ctx: StepContext) -> list[Say]:
        helpful = bool(ctx.slots.get("feedback_answer"))
        match_id, partner = str(ctx.slots.get("match_id", "")), str(ctx.slots.get("partner"))
        if await self._store.matches.add_feedback(match_id, ctx.turn.profile_id, helpful):
            await self._matcher.add_feedback(partner, helpful)  # feeds her future ranking
        ctx.vars["feedback"] = {"helpful": helpful}
        return []
