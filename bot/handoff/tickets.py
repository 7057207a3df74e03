"""转人工: a person behind the bot.

"转人工" (or the flow an FAQ or a second misunderstanding offers) opens a ticket. A member
of staff on duty (role manager, employee or admin; `/duty on|off`) gets her message with
short context (stage, her last messages, the phone masked) in her own WeChat; the one
with the fewest open tickets is chosen, and tickets wait for whoever comes on duty next.
While the ticket is open the bot says nothing to her: her messages go to that staff
member, whose replies (`/reply <ticket> text`, or plain text right after a notification)
go back to her. `/done` closes it, as does `handoff.idle_minutes` without a message
either way; the bot is back then. Every message is on both timelines (pushes are
interactions), the ticket keeps its timings (first response, resolution) for `/stats`.
All of it within WeChat's customer-service budget (bot/allowance.py via the outlet).
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.brand_calendar import BrandCalendar, window_end
from bot.flow_engine.actions import Say, StepContext, step_action
from bot.jobs import JobQueue
from bot.members.actions import profile_of
from bot.members.lifestage import stage_of
from bot.privacy import mask_name, mask_phones
from bot.settings import HandoffSettings
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)
IDLE_JOB = "handoff_idle"
STAFF_ROLES = frozenset({"manager", "employee", "admin"})
MAX_RELAY = 1000  # characters relayed per message (WeChat's text limit is far above)


def _nickname(member: Profile) -> str | None:
    """Her nickname as staff see it (小*); None without one, so each language's template
    names her in its own words (会员 / a member)."""
    name = (member.get("fields") or {}).get("nickname")
    return mask_name(name) if name else None


class Notifier(Protocol):
    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool: ...


class HandoffError(ValueError):
    """A staff action that cannot be done (no such ticket, not hers); the text says why
    (a ValueError, so staff commands show it without knowing this module)."""


class Handoff:
    def __init__(self, store: Store, notifier: Notifier, queue: JobQueue,
                 calendar: BrandCalendar, settings: HandoffSettings) -> None:
        self._store = store
        self._notifier = notifier
        self._queue = queue
        self._calendar = calendar
        self._cfg = settings

    # -- the member -----------------------------------------------------------------------
    @step_action("open_ticket")
    async def open_ticket_step(self, ctx: StepContext) -> list[Say]:
        profile = await profile_of(self._store, ctx)
        ticket, staffed = await self.open(profile, ctx.turn.now, ctx.turn.source or "")
        ctx.vars["ticket"] = {"id": ticket["_id"], "staffed": staffed,
                              "in_hours": self.in_hours(ctx.turn.now),
                              "hours": self._cfg.service_hours or "全天"}
        return []

    def in_hours(self, now: datetime) -> bool:
        window = self._cfg.window()
        return window is None or window_end(self._calendar.local(now), window) is not None

    async def open(self, profile: Profile, now: datetime, source: str
                   ) -> tuple[dict[str, Any], bool]:
        """Her ticket (a new one, or the one still open) and whether a person has it."""
        existing = await self._store.tickets.open_for(profile["_id"])
        if existing is not None:
            return existing, existing.get("staff") is not None
        ticket_id = "T" + secrets.token_hex(3).upper()
        doc: dict[str, Any] = {"_id": ticket_id, "member": profile["_id"],
               "staff": None, "opened_at": now, "last_at": now, "messages": 0,
               "source": source}
        if not await self._store.tickets.create(doc):  # opened meanwhile by a retry
            again = await self._store.tickets.open_for(profile["_id"])
            assert again is not None
            return again, again.get("staff") is not None
        await self._idle_later(ticket_id, now)
        staff = await self._assign(doc, profile, now)
        log.info("ticket opened", extra={"ticket": ticket_id, "staffed": staff is not None})
        return doc, staff is not None

    async def _on_duty(self) -> list[Profile]:
        found = self._store.profiles.fields_where(
            {"staff.duty": True, "role": {"$in": sorted(STAFF_ROLES)}}, ["_id", "role"])
        return [p async for p in found]

    async def _assign(self, ticket: dict[str, Any], member: Profile, now: datetime
                      ) -> str | None:
        staff = await self._on_duty()
        if not staff:
            return None
        loads = {s["_id"]: len(await self._store.tickets.open_tickets(s["_id"]))
                 for s in staff}
        chosen = min(loads, key=lambda sid: (loads[sid], sid))
        moved = await self._store.tickets.update_open(ticket["_id"], {"staff": chosen})
        if moved is None:
            return None
        await self._store.profiles.update(chosen, {"staff.replying_to": ticket["_id"]})
        await self._notifier.notify(chosen, [Say("handoff_to_staff", await self._context(
            ticket, member, now))], f"ticket:{ticket['_id']}:assigned")
        return chosen

    async def _context(self, ticket: dict[str, Any], member: Profile, now: datetime
                       ) -> dict[str, Any]:
        fields = member.get("fields") or {}
        latest = await self._store.interactions.latest(member["_id"],
                                                       self._cfg.context_messages * 2)
        said = [mask_phones(str(i.get("text") or ""))[:120] for i in reversed(latest)
                if i.get("direction") == "in" and i.get("text")]
        return {"ticket": ticket["_id"], "nickname": _nickname(member),
                "stage": "、".join(stage_of(member, self._calendar.today(now)).tags),
                "phone": mask_phones(str(fields.get("mobile") or "")) or "",
                "said": said[-self._cfg.context_messages:] if self._cfg.context_messages
                else []}

    # -- every message while a ticket is open -----------------------------------------------
    async def intercept(self, profile: Profile, text: str, now: datetime, source: str
                        ) -> str | None:
        """What the bot says instead of its usual answer: "" for nothing (her message went
        to a person), a short note for staff whose text went to a member; None when no
        ticket is involved and the bot answers as usual."""
        ticket = await self._store.tickets.open_for(profile["_id"])
        if ticket is not None:
            await self._member_said(ticket, profile, text, now, source)
            return ""
        replying = (profile.get("staff") or {}).get("replying_to")
        if replying and profile.get("role") in STAFF_ROLES:
            try:
                return await self.reply(profile, str(replying), text, now, source)
            except HandoffError:
                return None  # that ticket is over: her text is ordinary chat again
        return None

    async def _member_said(self, ticket: dict[str, Any], member: Profile, text: str,
                           now: datetime, source: str) -> None:
        await self._store.tickets.update_open(ticket["_id"], {"last_at": now},
                                              inc={"messages": 1})
        await self._idle_later(ticket["_id"], now)
        if ticket.get("staff"):
            await self._notifier.notify(str(ticket["staff"]), [Say("handoff_from_member", {
                "ticket": ticket["_id"], "nickname": _nickname(member),
                "text": mask_phones(text)[:MAX_RELAY]})], f"ticket:{ticket['_id']}:{source}")

    # -- staff ------------------------------------------------------------------------------
    async def reply(self, staff: Profile, ticket_id: str, text: str, now: datetime,
                    source: str) -> str:
        ticket = await self._store.tickets.get(ticket_id.strip().upper())
        if ticket is None or ticket.get("status") != "open":
            raise HandoffError(f"没有进行中的工单 {ticket_id[:12]}。")
        if ticket.get("staff") not in (staff["_id"], None):
            raise HandoffError(f"{ticket['_id']} 由其他同事处理中。")
        if not text.strip():
            raise HandoffError("请写上要回复的内容。")
        if ticket.get("staff") is None:
            await self._store.tickets.update_open(ticket["_id"], {"staff": staff["_id"]})
        await self._store.tickets.update_open(ticket["_id"], {"first_response_at": now},
                                              only_if_unset="first_response_at")
        await self._store.tickets.update_open(ticket["_id"], {"last_at": now},
                                              inc={"replies": 1})
        await self._store.profiles.update(staff["_id"], {"staff.replying_to": ticket["_id"]})
        await self._idle_later(ticket["_id"], now)
        # Her colleague's own chosen name (not a member's data): shown as it is.
        name = str((staff.get("fields") or {}).get("nickname") or "")[:12] or "同事"
        await self._notifier.notify(str(ticket["member"]), [Say("handoff_from_staff", {
            "staff": name, "text": text.strip()[:MAX_RELAY]})],
            f"ticket:{ticket['_id']}:{source}")
        return f"✓ 已转达（{ticket['_id']}）"

    async def done(self, staff: Profile | None, ticket_id: str | None, now: datetime,
                   why: str = "done") -> str:
        if ticket_id is None and staff is not None:
            ticket_id = (staff.get("staff") or {}).get("replying_to")
        ticket = await self._store.tickets.get(str(ticket_id or "").strip().upper())
        if ticket is None or ticket.get("status") != "open":
            raise HandoffError("没有进行中的工单。格式: /done [工单号]")
        if staff is not None and ticket.get("staff") not in (staff["_id"], None):
            raise HandoffError(f"{ticket['_id']} 由其他同事处理中。")
        closed = await self._store.tickets.close(ticket["_id"], now, why)
        if closed is None:
            raise HandoffError("这个工单已经结束了。")
        if closed.get("staff"):
            await self._store.profiles.update(str(closed["staff"]), {}, ["staff.replying_to"])
        await self._notifier.notify(str(closed["member"]), [Say("handoff_closed", {
            "idle": why == "idle"})], f"ticket:{closed['_id']}:closed")
        log.info("ticket closed", extra={"ticket": closed["_id"], "why": why})
        return f"{closed['_id']} 已结束，小助手继续为她服务。"

    async def duty(self, staff: Profile, on: bool, now: datetime) -> str:
        if staff.get("role") not in STAFF_ROLES:
            raise HandoffError("只有客服、社群经理或管理员可以值班。")
        await self._store.profiles.update(staff["_id"], {"staff.duty": on})
        if not on:
            return "已下班：新的转人工不会再分给你（进行中的工单仍由你处理）。"
        waiting = await self._store.tickets.open_tickets(unassigned=True)
        for ticket in waiting:
            member = await self._store.profiles.get(str(ticket["member"]))
            if member is not None:
                await self._assign(ticket, member, now)
        return f"已上班，{len(waiting)} 个等待中的工单已分配。" if waiting else "已上班。"

    async def idle_close(self, ticket_id: str, stamp: str) -> bool:
        """The job `idle_minutes` after the last message: close it if nothing came since."""
        ticket = await self._store.tickets.get(ticket_id)
        if ticket is None or ticket.get("status") != "open" or \
                _stamp(ticket["last_at"]) != stamp:
            return False
        try:
            await self.done(None, ticket_id, datetime.now(UTC), "idle")
        except HandoffError:
            return False
        return True

    async def _idle_later(self, ticket_id: str, at: datetime) -> None:
        stamp = _stamp(at)
        await self._queue.enqueue(IDLE_JOB, [ticket_id, stamp], f"{IDLE_JOB}:{ticket_id}:{stamp}",
                                  at=at + timedelta(minutes=self._cfg.idle_minutes))

    async def stats(self, now: datetime) -> str:
        """One line for /stats: open, closed in 7 days, average first response and
        resolution in minutes."""
        recent = await self._store.tickets.since(now - timedelta(days=7))
        open_now = len(await self._store.tickets.open_tickets())
        closed = [t for t in recent if t.get("status") == "closed"]

        def minutes(pairs: list[tuple[datetime, datetime]]) -> str:
            if not pairs:
                return "-"
            return f"{sum((b - a).total_seconds() for a, b in pairs) / len(pairs) / 60:.1f}"
        first = [(t["opened_at"], t["first_response_at"]) for t in recent
                 if t.get("first_response_at")]
        done = [(t["opened_at"], t["closed_at"]) for t in closed]
        return (f"人工服务: 进行中 {open_now} · 7 天结束 {len(closed)} · 平均首次响应 "
                f"{minutes(first)} 分钟 · 平均解决 {minutes(done)} 分钟")


def _stamp(at: datetime) -> str:
    # Milliseconds, as BSON keeps them: a stamp written and read back compares equal.
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S") + f"{at.microsecond // 1000:03d}"
