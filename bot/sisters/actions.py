"""Sister-matching step actions: consent, suggestions, the double opt-in invitation, relayed
messages, ending or blocking a match, and the "was this helpful?" question a week later.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.consents import record_consent
from bot.flow_engine.actions import FlowStarter, Say, StepContext, step_action
from bot.jobs import JobQueue
from bot.members.actions import profile_of
from bot.members.social import Social
from bot.privacy import mask_phones
from bot.settings import MembersSettings
from bot.sisters.matching import Matcher, shown_stage
from store.protocols import Store

FEEDBACK_AFTER = 7 * 86400  # seconds after an introduction to ask "was this helpful?"
FEEDBACK_JOB = "match_feedback"
RELAY_WORDS = ("对姐妹说", "tell my sister")
RELAY_MAX = 500  # characters one relayed message may carry to a sister


class Notifier(Protocol):
    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool: ...


class SisterActions:
    def __init__(self, store: Store, matcher: Matcher, members: MembersSettings,
                 notifier: Notifier, jobs: JobQueue, social: Social | None = None) -> None:
        self._store = store
        self._matcher = matcher
        self._members = members
        self._notifier = notifier
        self._jobs = jobs
        self._social = social

    async def _tell(self, profile_id: str, template: str, variables: dict[str, Any],
                    key: str) -> bool:
        return await self._notifier.notify(profile_id, [Say(template, variables)], key)

    @step_action("matching_status")
    async def matching_status(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        consents = profile.get("consents") or {}
        ctx.vars["match"] = {
            "member": "id" in (profile.get("member") or {}),
            "has_date": Matcher.card(profile) is not None
            and bool(consents.get("sensitive", {}).get("accepted")),
            "opted_in": bool(consents.get("matching", {}).get("accepted")),
        }
        return []

    @step_action("matching_opt_in")
    async def matching_opt_in(self, ctx: StepContext) -> list[Say]:
        """Record the consent to be matched (either answer); join the index if yes."""
        accepted = bool(ctx.slots.get("matching_consent"))
        profile = await profile_of(self._store, ctx)
        await record_consent(self._store, profile["_id"], "matching", accepted,
                             self._members.privacy_policy_version, ctx.turn.now)
        if accepted:
            await self._matcher.refresh(profile)
        else:
            await self._matcher.forget(profile["_id"])
        return []

    @step_action("find_sisters")
    async def find_sisters(self, ctx: StepContext) -> list[Say]:
        found = await self._matcher.find(ctx.turn.profile_id)
        ctx.slots["sister_ids"] = [c.profile_id for c in found]
        ctx.vars["sisters"] = [{"nickname": c.nickname,
                                "stage": shown_stage(c.anchor, ctx.turn.today)}
                               for c in found]
        return []

    @step_action("invite_sister")
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
            await ctx.flows.start_for(sister, "sister_invitation", {
                "invitation": invitation, "from_nickname": my_card["nickname"],
                "from_stage": shown_stage(my_card["anchor"], ctx.turn.today)},
                f"invite:{invitation}", ctx.turn.now)
        return []

    @step_action("answer_invitation")
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
        # Job id per match: asking twice schedules once.
        await self._jobs.enqueue(FEEDBACK_JOB, [match_id], f"{FEEDBACK_JOB}:{match_id}",
                                 delay=FEEDBACK_AFTER)
        return []

    async def _partner(self, ctx: StepContext) -> tuple[dict[str, Any] | None, str]:
        match = await self._store.matches.active_for(ctx.turn.profile_id)
        if match is None:
            return None, ""
        partner = match["to"] if match["from"] == ctx.turn.profile_id else match["from"]
        return match, partner

    @step_action("relay_to_sister")
    async def relay_to_sister(self, ctx: StepContext) -> list[Say]:
        """"对姐妹说 …": the text goes to her matched sister; numbers never do."""
        match, partner = await self._partner(ctx)
        text = ctx.turn.text
        for word in RELAY_WORDS:
            text = text.replace(word, "")
        text = mask_phones(text.strip(" :：，,"))
        if len(text) > RELAY_MAX:
            text = text[:RELAY_MAX] + "…"
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

    async def leave(self, profile_id: str, now: datetime) -> dict[str, int]:
        """She withdrew her consent to matching: out of the index; an open match ends with
        a kind note to her sister (no reason given); invitations to or from her are
        withdrawn (answering one later is told it was already handled)."""
        await self._matcher.forget(profile_id)
        out = {"ended": 0, "withdrawn": 0}
        for match in await self._store.matches.for_profile(profile_id):
            other = match["to"] if match["from"] == profile_id else match["from"]
            if match["status"] == "accepted" and await self._store.matches.set_status(
                    match["_id"], "accepted", "ended", now):
                await self._matcher.add_load(match["from"], -1)
                await self._matcher.add_load(match["to"], -1)
                await self._tell(other, "sisters_ended_by_other", {},
                                 f"ended:{match['_id']}:withdrawn")
                out["ended"] += 1
            elif match["status"] == "invited" and await self._store.matches.set_status(
                    match["_id"], "invited", "withdrawn", now):
                out["withdrawn"] += 1
        return out

    @step_action("end_match")
    async def end_match(self, ctx: StepContext) -> list[Say]:
        ok, partner = await self._close(ctx, "ended")
        if ok:
            await self._tell(partner, "sisters_ended_by_other", {}, f"ended:{partner}:"
                             f"{ctx.turn.source or uuid.uuid4().hex}")
        ctx.vars["closed"] = {"ok": ok}
        return []

    @step_action("block_match")
    async def block_match(self, ctx: StepContext) -> list[Say]:
        ok, _ = await self._close(ctx, "blocked")  # the blocked sister is not told
        ctx.vars["closed"] = {"ok": ok}
        return []

    @step_action("record_feedback")
    async def record_feedback(self, ctx: StepContext) -> list[Say]:
        helpful = bool(ctx.slots.get("feedback_answer"))
        match_id, partner = str(ctx.slots.get("match_id", "")), str(ctx.slots.get("partner"))
        if await self._store.matches.add_feedback(match_id, ctx.turn.profile_id, helpful):
            await self._matcher.add_feedback(partner, helpful)  # feeds her future ranking
            if self._social is not None:
                await self._social.feedback_given(match_id, ctx.turn.profile_id, helpful,
                                                  ctx.turn.now)
        ctx.vars["feedback"] = {"helpful": helpful}
        return []


class SisterFeedback:
    """The job a week after an introduction: ask both sisters whether it helped."""

    def __init__(self, store: Store, matcher: Matcher, flows: FlowStarter) -> None:
        self._store = store
        self._matcher = matcher
        self._flows = flows

    async def ask(self, match_id: str, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        match = await self._store.matches.get(match_id)
        if match is None or match["status"] != "accepted":
            return 0
        asked = 0
        for me, other in ((match["from"], match["to"]), (match["to"], match["from"])):
            card = await self._matcher.card_of(other)
            asked += await self._flows.start_for(me, "match_feedback", {
                "match_id": match_id, "partner": other,
                "partner_nickname": card["nickname"] if card else ""},
                f"feedback:{match_id}:{me}", now)
        return asked
