"""Broadcasts, life-stage moments (MOT) and polls: preview, confirm, and the send jobs.

One pipeline for all three. A campaign is planned into one delivery per member (keyed
`<campaign>:<member>`) and chunks of members; each chunk is a durable job that any app
process may run. Before each send: the cancel/pause flag, an atomic claim of the delivery,
unsubscribed, whether her channel can reach her (its contact window and her allowance of
messages, else a mapped template message, else skipped with the reason), the monthly cap,
quiet hours (the chunk is deferred, never dropped) and the global send rate. The channel's
outcome decides the rest: a spent daily quota pauses the campaign until the next day; a
closed window or a spent allowance skips the member.
Progress and the final tally go to the marketer who confirmed it.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, TypeVar

from jinja2 import TemplateError

from bot.brand_calendar import BrandCalendar, window_end
from bot.consents import consented
from bot.flow_engine.model import FlowSet
from bot.flow_engine.templates import TemplateLibrary, TemplateProblem
from bot.jobs import JobQueue
from bot.marketing.polls import POLL_FLOW, poll_frame
from bot.marketing.segments import SegmentError, compile_segment
from bot.members.fields import FieldBook
from bot.members.variables import MEMBER_VARS, member_context
from bot.messages import Reply
from bot.outlets import Delivery, Fallback, Outlet, recipient_of
from bot.privacy import mask_name
from bot.settings import MarketingSettings
from store.protocols import Store
from store.records import Profile, delivery_id, delivery_record_key, new_interaction
from store.state import CampaignStops, FlowStates, SendRate

log = logging.getLogger(__name__)
T = TypeVar("T")
REACH_SAMPLE = 5000  # members in the window whose allowance a preview looks up, at most

_MISSING = re.compile(r"'(\w+)' is undefined")
LIVE = ["queued", "running", "paused"]
KIND_NAMES = {"broadcast": "群发", "poll": "投票", "mot": "生命周期消息"}


class CampaignError(Exception):
    """A marketer's request that cannot be done; the message says why (zh)."""


@dataclass(frozen=True)
class Preview:
    broadcast_id: str
    text: str


class FlowsAndTemplates(Protocol):
    @property
    def current(self) -> FlowSet: ...

    @property
    def templates(self) -> TemplateLibrary: ...


async def _batches(items: AsyncIterator[T], size: int) -> AsyncIterator[list[T]]:
    batch: list[T] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def monthly_path(month: str) -> str:
    """Where a member's broadcasts of `month` are counted on her profile (the monthly cap)."""
    return f"broadcasts.{month}"


class Campaigns:
    def __init__(self, store: Store, flows: FlowsAndTemplates, settings: MarketingSettings,
                 tiers: Sequence[str], calendar: BrandCalendar, default_lang: str,
                 stops: CampaignStops, rate: SendRate, states: FlowStates, queue: JobQueue,
                 notify: Callable[[str, str, str], Awaitable[bool]],
                 outlets: Sequence[Outlet],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 fields: FieldBook | None = None) -> None:
        self._store = store
        self._fields = fields or FieldBook({})
        self._flows = flows
        self._cfg = settings
        self._tiers = list(tiers)
        self._calendar = calendar
        self._lang = default_lang
        self._stops = stops
        self._rate = rate
        self._states = states
        self._queue = queue
        self._notify = notify
        self._outlets = list(outlets)
        self._compiled: dict[str, Any] = {}
        self.clock = clock

    # -- what marketers ask ---------------------------------------------------------------
    def segment(self, query: str, now: datetime) -> dict[str, Any]:
        try:
            return compile_segment(query, now=now, today=self._today(now),
                                   tiers=self._tiers, fields=self._fields).filter
        except SegmentError as e:
            raise CampaignError(str(e)) from e

    async def preview(self, actor: Profile, query: str, body: str, now: datetime,
                      poll: dict[str, Any] | None = None) -> Preview:
        """Render for three real members, estimate the reach, keep a draft to confirm."""
        flt = self.segment(query, now)
        content = self._content(body, poll)
        total = await self._store.profiles.count_where(flt)
        if total == 0:
            raise CampaignError("没有符合条件的成员，未创建群发。")
        lines = []
        for i, member in enumerate(await self._store.profiles.sample_where(flt, 3), 1):
            fields = member.get("fields") or {}
            try:
                self._render(content, member, self._today(now), poll=poll)
            except CampaignError as e:
                raise CampaignError(f"预览失败（样本 {i}，{mask_name(fields.get('nickname'))}）"
                                    f": {e}") from e
            # Shown with her name and life-stage figures masked: the text is checked on
            # her real data, but a marketer does not see a mother's pregnancy details.
            masked = {**member, "fields": {**fields, "nickname": mask_name(
                fields.get("nickname"))}} if fields.get("nickname") else member
            shown = self._render(content, masked, self._today(now), masked=True, poll=poll)
            lines.append(f"{i}. {shown}")
        reach = await self._reach(flt, total, now, content)
        bid = await self._new_draft(actor, query, content, total, now, poll)
        kind = "投票" if poll else "群发"
        text = (f"{kind}预览 {bid}（{self._cfg.confirm_minutes} 分钟内发送 /confirm {bid} 确认）\n"
                f"人群: {query} → {total} 人\n{reach}\n样本:\n" + "\n".join(lines))
        return Preview(bid, text)

    async def confirm(self, actor: Profile, is_admin: bool, bid: str, now: datetime) -> str:
        doc = await self._own(actor, is_admin, bid)
        if doc["status"] == "draft" and doc["expires_at"].replace(tzinfo=UTC) < now:
            await self._store.campaigns.move(bid, ["draft"], "expired")
            raise CampaignError(f"{bid} 已超过 {self._cfg.confirm_minutes} 分钟未确认，"
                                "已作废；请重新预览。")
        if doc["status"] == "paused":
            moved = await self._store.campaigns.move(bid, ["paused"], "running",
                                                     {"resumes": doc.get("resumes", 0) + 1})
            if moved:
                await self._stops.clear(bid)
                await self.requeue(bid, f"r{moved['resumes']}")
                return f"{bid} 已恢复发送。"
        moved = await self._store.campaigns.move(bid, ["draft"], "queued",
                                                 {"confirmed_at": now, "confirmed_by":
                                                  actor["_id"]})
        if moved is None:
            raise CampaignError(f"{bid} 当前状态为 {doc['status']}，无需确认。")
        await self._queue.enqueue("campaign_plan", [bid], f"plan:{bid}")
        note = ""
        end = window_end(self._calendar.local(now), self._cfg.quiet_window())
        if end is not None:
            note = f"（现在是免打扰时段，{end:%H:%M} 后开始发送）"
        return f"{bid} 已确认，开始排队发送{note}。用 /status {bid} 查看进度。"

    async def cancel(self, actor: Profile, is_admin: bool, bid: str, now: datetime) -> str:
        await self._own(actor, is_admin, bid)
        # The flag first: send loops read it before every send, so they stop at once.
        await self._stops.stop(bid, "cancelled")
        moved = await self._store.campaigns.move(bid, ["draft", *LIVE], "cancelled",
                                                 {"cancelled_at": now})
        if moved is None:
            doc = await self._store.campaigns.get(bid) or {}
            if doc.get("status") != "cancelled":
                await self._stops.clear(bid)
            raise CampaignError(f"{bid} 当前状态为 {doc.get('status')}，无法取消。")
        await self._store.campaigns.cancel_queued(bid, now)
        tally = await self._store.campaigns.tally(bid)
        return f"{bid} 已取消。{self._tally_text(tally)}"

    async def status(self, bid: str) -> str:
        doc = await self._store.campaigns.get(bid)
        if doc is None:
            raise CampaignError(f"没有群发 {bid}。")
        tally = await self._store.campaigns.tally(bid)
        kind = KIND_NAMES.get(doc.get("kind", ""), "")
        total = doc.get("total", doc.get("estimate", 0))
        head = f"{bid}（{kind}） 状态: {doc['status']} · 人群: {doc.get('query')} · 共 {total} 人"
        text = head + "\n" + self._tally_text(tally)
        if doc.get("poll"):
            results = await self._store.campaigns.results(bid)
            options = doc["poll"]["options"]
            answered = sum(results.values())
            text += f"\n投票「{doc['poll']['question']}」共 {answered} 人作答:"
            for i, option in enumerate(options, 1):
                text += f"\n{i}. {option}: {results.get(i, 0)}"
        return text

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return await self._store.campaigns.recent(limit)

    # -- jobs -------------------------------------------------------------------------------
    async def plan(self, bid: str) -> int:
        """Create the deliveries and the chunk jobs (idempotent: a re-run adds nothing).

        The campaign is running before the first chunk job exists, so a chunk that starts
        while planning goes on is sent, not dropped; whichever finishes last, the planner or
        a chunk, finishes the campaign."""
        doc = await self._store.campaigns.get(bid)
        if doc is None or doc["status"] not in ("queued", "running"):
            return 0
        now = self.clock()
        await self._store.campaigns.move(bid, ["queued"], "running", {"started_at": now})
        flt = self.segment(doc["query"], doc.get("confirmed_at") or now)
        campaign = doc.get("campaign", bid)
        total, chunk, batch = 0, 0, list[str]()

        async def flush() -> None:
            nonlocal chunk, batch
            await self._store.campaigns.plan([
                {"_id": delivery_id(campaign, pid), "broadcast": bid, "profile_id": pid,
                 "chunk": chunk, "status": "queued", "planned_at": now} for pid in batch])
            await self._queue.enqueue("campaign_send", [bid, chunk, batch],
                                      f"send:{bid}:{chunk}")
            chunk, batch = chunk + 1, []

        async for pid in self._store.profiles.ids_where(flt):
            batch.append(pid)
            total += 1
            if len(batch) >= self._cfg.chunk_size:
                await flush()
        if batch:
            await flush()
        planned = await self._store.campaigns.update(bid, {"total": total, "chunks": chunk})
        if planned is not None and planned["status"] == "cancelled":
            # Cancelled while planning: what was planned after the cancel is not sent.
            await self._store.campaigns.cancel_queued(bid, now)
        if doc.get("by"):
            await self._notify(doc["by"], f"{bid} 开始发送: {total} 人，分 {chunk} 批。",
                               f"{bid}:start")
        if planned is not None and len(planned.get("chunks_finished") or []) >= chunk:
            await self._finish(bid)  # every chunk was done before the planner was
        log.info("campaign planned", extra={"broadcast": bid, "total": total, "chunks": chunk})
        return total

    async def requeue(self, bid: str, suffix: str) -> None:
        """Enqueue again the chunks that still have queued deliveries (after a pause):
        from the planned deliveries, not the segment, which may have changed since."""
        doc = await self._store.campaigns.get(bid)
        if doc is None:
            return
        if not doc.get("chunks"):
            await self._queue.enqueue("campaign_plan", [bid], f"plan:{bid}:{suffix}")
            return
        pending = await self._store.campaigns.queued_by_chunk(bid)
        if not pending:
            await self._finish(bid)  # paused by its very last send: nothing left
        for chunk, ids in pending.items():
            await self._queue.enqueue("campaign_send", [bid, chunk, ids],
                                      f"send:{bid}:{chunk}:{suffix}")

    async def send_chunk(self, bid: str, chunk: int, ids: list[str]) -> dict[str, int]:
        """Send one chunk's deliveries. Safe to run again: claimed ones are skipped."""
        tally = {"sent": 0, "skipped": 0, "failed": 0, "waiting": 0}
        doc = await self._store.campaigns.get(bid)
        if doc is None or doc["status"] != "running":
            return tally
        now = self.clock()
        end = window_end(self._calendar.local(now), self._cfg.quiet_window())
        if end is not None:
            # Deferred, not dropped: the same chunk runs again when quiet hours end.
            await self._queue.enqueue("campaign_send", [bid, chunk, ids],
                                      f"send:{bid}:{chunk}:q{end:%Y%m%d%H%M}", at=end)
            log.info("campaign chunk deferred for quiet hours", extra={"broadcast": bid})
            return tally
        campaign = doc.get("campaign", bid)
        keys = [delivery_id(campaign, pid) for pid in ids]
        stale = await self._store.campaigns.interrupted(keys, now)
        if stale:
            log.warning("deliveries interrupted by a dead worker, not resent",
                        extra={"broadcast": bid, "count": stale})
        content: dict[str, Any] = {k: doc[k] for k in ("template", "text") if k in doc}
        profiles = {p["_id"]: p for p in await self._store.profiles.get_many(ids)}
        queued = await self._store.campaigns.queued_among(keys)  # an earlier run's are left
        for pid, key in zip(ids, keys, strict=True):
            if key not in queued:
                continue
            if await self._stops.reason(bid):
                return tally  # cancelled or paused: stop before the next send
            outcome = await self._deliver(doc, key, profiles.get(pid), content)
            if outcome in tally:
                tally[outcome] += 1
            if outcome == "paused":
                return tally
        await self._chunk_finished(bid, chunk)
        return tally

    async def resume(self, bid: str) -> None:
        """The day after a quota pause: carry on where it stopped."""
        moved = await self._store.campaigns.move(bid, ["paused"], "running")
        if moved is not None:
            await self._stops.clear(bid)
            await self.requeue(bid, f"d{self.clock():%Y%m%d%H%M}")

    async def run_moments(self, today: date | None = None) -> dict[str, int]:
        """The daily life-stage job: each moment's cohort gets its message, once ever."""
        now = self.clock()
        today = today or self._today(now)
        planned: dict[str, int] = {}
        for moment in self._flows.current.moments.values():
            mark = f"week:{moment.week}" if moment.week is not None else \
                f"baby_months:{moment.baby_months}"
            bid = f"mot-{moment.id}-{today:%Y%m%d}"
            await self._store.campaigns.create({
                "_id": bid, "kind": "mot", "campaign": f"mot:{moment.id}", "by": None,
                "query": f"{mark} member:yes", "template": moment.template,
                "status": "queued", "created_at": now, "confirmed_at": now})
            # Planned again if the job runs twice: existing deliveries are left alone.
            planned[moment.id] = await self.plan(bid)
        return planned

    # -- inside ---------------------------------------------------------------------------
    def _today(self, now: datetime) -> date:
        return self._calendar.today(now)

    def _inline(self, source: str) -> Any:
        """A marketer's text compiled once, not once per member (a few ms each)."""
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._flows.templates.compile_inline(source, MEMBER_VARS)
            if len(self._compiled) >= 64:
                self._compiled.clear()
            self._compiled[source] = compiled
        return compiled

    def _content(self, body: str, poll: dict[str, Any] | None) -> dict[str, Any]:
        fs = self._flows.current
        if poll is not None:
            if POLL_FLOW not in fs.flows:
                raise CampaignError(f"flows/ 中没有 {POLL_FLOW} 流程，无法收集投票答案。")
            return {"template": "poll_question"}
        body = body.strip()
        if not body:
            raise CampaignError("缺少内容：模板名或文字。")
        if body in fs.broadcast_templates:
            return {"template": body}
        try:
            self._inline(body)
        except TemplateProblem as e:
            raise CampaignError(str(e)) from e
        return {"text": body}

    def _render(self, content: dict[str, Any], profile: Mapping[str, Any], today: date,
                masked: bool = False, poll: dict[str, Any] | None = None) -> str:
        ctx = member_context(profile, today, self._fields, masked)
        if masked:
            ctx.update({k: "**" for k in ("week", "baby_months") if k in ctx})
        lang = ctx.get("lang") or self._lang
        library = self._flows.templates
        try:
            if "text" in content:
                inline = self._inline(content["text"])
                return str(inline.render(**ctx)).strip()
            if content["template"] == "poll_question":
                return library.render("poll_question", lang, slots=poll or {
                    "question": "…", "options": ["…"]})
            return library.render(content["template"], lang, **ctx)
        except (TemplateProblem, TemplateError) as e:
            missing = _MISSING.search(str(e))
            if missing:
                raise CampaignError(f"缺少变量 {missing.group(1)}") from e
            raise CampaignError(str(e)) from e

    async def _reach(self, flt: dict[str, Any], total: int, now: datetime,
                     content: dict[str, Any]) -> str:
        if not self._outlets:
            return "预计: 没有可发送的渠道，全部跳过。"
        outlet = self._outlets[0]
        rules = outlet.rules  # the main channel's rules phrase the estimate
        cap_path = monthly_path(self._calendar.month(now))
        count = self._store.profiles.count_where
        live: dict[str, Any] = {"follow.state": {"$ne": "unsubscribed"}}
        agreed: dict[str, Any] = {"consents.privacy.accepted": True,
                                  "erasure": {"$exists": False}}
        under_cap = {cap_path: {"$not": {"$gte": self._cfg.monthly_cap}}}
        unsub = await count({"$and": [flt, {"follow.state": "unsubscribed"}]})
        unconsented = await count({"$and": [flt, live, {"$nor": [agreed]}]})
        live = {**live, **agreed}
        capped = await count({"$and": [flt, live, {cap_path: {"$gte": self._cfg.monthly_cap}}]})
        mapped = self._template_message(content) is not None
        recent = [flt, live, under_cap]
        if rules.window is not None:
            recent.append({"last_seen": {"$gte": now - rules.window}})
        # Only members seen within the window can have an allowance: ask the channel
        # about those (a few, usually; past REACH_SAMPLE, the first so many, scaled up:
        # it is an estimate, and the preview must stay quick), the rest are outside it.
        seen = await count({"$and": recent})
        ways = {"customer_service": 0, "template": 0, "no_budget": 0, "outside_window": 0}
        asked = unaddressed = 0
        found = self._store.profiles.fields_where({"$and": recent}, ["identities", "last_seen"],
                                                  limit=REACH_SAMPLE)
        async for batch in _batches(found, 1000):
            tos = [to for p in batch if (to := outlet.recipient(p)) is not None]
            asked, unaddressed = asked + len(batch), unaddressed + len(batch) - len(tos)
            for route in await outlet.reach_many(tos, mapped, now):
                ways[route.via if route.via in ways else (route.skip or "outside_window")] += 1
        if asked and asked < seen:
            scale = seen / asked
            ways = {k: round(v * scale) for k, v in ways.items()}
            unaddressed = seen - sum(ways.values())
        outside = total - unsub - unconsented - capped - seen  # one scan fewer
        if mapped:
            ways["template"] += outside
        else:
            ways["outside_window"] += outside
        hours = f"{rules.window.total_seconds() / 3600:g} 小时外" if rules.window else "窗口外"
        skipped = (unsub + unconsented + capped + ways["no_budget"] + ways["outside_window"]
                   + unaddressed)
        text = (f"预计: {rules.text_name} {ways['customer_service']} · {rules.fallback_name} "
                f"{ways['template']} · 跳过 {skipped}（取关 {unsub}，未同意隐私政策 "
                f"{unconsented}，本月已达 "
                f"{self._cfg.monthly_cap} 条 {capped}，{hours}"
                f"{'' if mapped else '且无' + rules.fallback_name} {ways['outside_window']}，"
                f"{rules.text_name}额度已用完 {ways['no_budget']}）")
        end = window_end(self._calendar.local(now), self._cfg.quiet_window())
        if end is not None:
            text += f"\n现在是免打扰时段（{self._cfg.quiet_hours}），将于 {end:%H:%M} 开始发送。"
        if ways["customer_service"] > rules.text_daily or ways["template"] > rules.fallback_daily:
            text += "\n注意: 超过每日接口额度，发送会在额度用完时暂停、次日继续。"
        return text

    def _template_message(self, content: dict[str, Any]) -> Fallback | None:
        """The template message mapped to this broadcast template, its data unrendered."""
        mapping = self._cfg.template_messages.get(str(content.get("template")))
        if mapping is None or not mapping.template_id:
            return None
        return Fallback(mapping.template_id, dict(mapping.data), mapping.url)

    async def _new_draft(self, actor: Profile, query: str, content: dict[str, Any],
                         total: int, now: datetime, poll: dict[str, Any] | None) -> str:
        for _ in range(5):
            bid = "B" + secrets.token_hex(3).upper()
            doc = {"_id": bid, "kind": "poll" if poll else "broadcast", "campaign": bid,
                   "by": actor["_id"], "query": query, **content, "status": "draft",
                   "estimate": total, "created_at": now,
                   "expires_at": now + timedelta(minutes=self._cfg.confirm_minutes),
                   **({"poll": poll} if poll else {})}
            if await self._store.campaigns.create(doc):
                return bid
        raise CampaignError("无法创建群发编号，请重试。")

    async def _own(self, actor: Profile, is_admin: bool, bid: str) -> dict[str, Any]:
        doc = await self._store.campaigns.get(bid.strip().upper())
        if doc is None or (doc.get("kind") == "mot" and not is_admin):
            raise CampaignError(f"没有群发 {bid}。")
        if doc.get("by") != actor["_id"] and not is_admin:
            raise CampaignError(f"{bid} 不是你创建的，只有创建者或管理员可以操作。")
        return doc

    def _fallback(self, content: dict[str, Any], profile: Profile, today: date
                  ) -> Fallback | None:
        mapping = self._template_message(content)
        if mapping is None:
            return None
        ctx = member_context(profile, today, self._fields)
        return Fallback(mapping.template_id, {
            k: str(self._inline(v).render(**ctx))
            for k, v in mapping.data.items()}, mapping.url)

    async def _deliver(self, doc: dict[str, Any], key: str, profile: Profile | None,
                       content: dict[str, Any]) -> str:
        """One delivery: the checks, the send, the record. Returns the outcome.

        The delivery is claimed (queued -> sending) only right before the send, after the
        wait for a rate slot: a process killed while waiting leaves it queued, to be sent by
        whoever runs the chunk again; only one killed mid-send is left uncertain."""
        camp = self._store.campaigns
        now = self.clock()

        async def skip(reason: str) -> str:
            if await camp.claim(key, now) is None:
                return "settled"  # another run got there first
            await camp.finish(key, "skipped", {"reason": reason, "at": now})
            return "skipped"

        if profile is None:
            return await skip("gone")
        if profile.get("follow", {}).get("state") == "unsubscribed":
            return await skip("unsubscribed")
        if not consented(profile, "privacy") or profile.get("erasure"):
            # Never agreed here (an imported or legacy member), or asked to be deleted.
            return await skip("no_consent")
        found = recipient_of(self._outlets, profile)
        if found is None:
            return await skip("channel")
        outlet, to = found
        today = self._today(now)
        try:
            text = self._render(content, profile, today, poll=doc.get("poll") and {
                **doc["poll"], "id": doc["_id"]})
            fallback = self._fallback(content, profile, today)
        except (CampaignError, TemplateError, TemplateProblem) as e:
            return await skip(f"render: {e}"[:80])
        (route,) = await outlet.reach_many([to], fallback is not None, now)
        # A life-stage moment is hers once ever: with her allowance spent it waits for her
        # next message rather than being lost. A broadcast is skipped (it would be stale).
        waits = route.skip == "no_budget" and doc.get("kind") == "mot"
        if route.via is None and not waits:
            return await skip(route.skip or "outside_window")
        cap_path = monthly_path(self._calendar.month(now))
        if not await self._store.profiles.reserve(profile["_id"], cap_path, 1,
                                                  self._cfg.monthly_cap):
            return await skip("monthly_cap")
        if waits:
            if await camp.claim(key, now) is None:
                await self._store.profiles.release(profile["_id"], cap_path, 1)
                return "settled"
            await self._record(profile, outlet.channel, key, text, "push", doc["_id"],
                               outcome="waiting")
            await outlet.push(to.address, [Reply(kind="text", text=text)],
                              [delivery_record_key(key)])
            await camp.finish(key, "waiting", {"at": now})
            return "waiting"
        await self._rate.acquire()
        stop = await self._stops.reason(doc["_id"])
        if stop:
            # Stopped while waiting for the rate: not sent (a cancel settles it below).
            await self._store.profiles.release(profile["_id"], cap_path, 1)
            if stop == "cancelled":
                return await skip("cancelled")
            return "stopped"
        if await camp.claim(key, self.clock()) is None:
            await self._store.profiles.release(profile["_id"], cap_path, 1)
            return "settled"  # sent, skipped or claimed by another run meanwhile
        result = await outlet.send_now(to, text, fallback, self.clock())
        if result.outcome is Delivery.UNCERTAIN:
            # It may have arrived: never retried, so nobody gets it twice.
            await camp.finish(key, "failed", {"reason": "uncertain", "at": now})
            return "failed"
        if result.outcome is Delivery.QUOTA:
            await camp.release(key)
            await self._store.profiles.release(profile["_id"], cap_path, 1)
            await self._pause(doc)
            return "paused"
        if result.outcome in (Delivery.WINDOW_CLOSED, Delivery.NO_BUDGET):
            await self._store.profiles.release(profile["_id"], cap_path, 1)
            await camp.finish(key, "skipped", {"reason": result.outcome.value, "at": now})
            return "skipped"
        if result.outcome is not Delivery.SENT:
            await self._store.profiles.release(profile["_id"], cap_path, 1)
            await camp.finish(key, "failed", {"reason": f"code {result.code}",
                                              "code": result.code, "at": now})
            return "failed"
        await camp.finish(key, "sent", {"at": self.clock(), "via": result.via})
        await self._record(profile, outlet.channel, key, text, result.via, doc["_id"])
        if doc.get("poll"):
            # Her next message answers it (the flow inbox), only now that she has it.
            await self._states.deliver(profile["_id"], poll_frame(doc, now))
        return "sent"

    async def _record(self, profile: Profile, channel: str, key: str, text: str, via: str,
                      bid: str, outcome: str = "sent") -> None:
        record = new_interaction(profile["_id"], channel, "out", "text", text,
                                 {"broadcast": bid}, self.clock())
        record.update({"outcome": outcome, "dedupe_key": delivery_record_key(key),
                       "delivery": via})
        await self._store.interactions.add(record)
        await self._store.profiles.count_outbound(profile["_id"], 1)

    async def _pause(self, doc: dict[str, Any]) -> None:
        bid = doc["_id"]
        await self._stops.stop(bid, "paused")
        if await self._store.campaigns.move(bid, ["running"], "paused",
                                            {"paused_reason": "quota"}) is None:
            return  # another chunk paused it first
        local = self._calendar.local(self.clock())
        tomorrow = self._calendar.tomorrow_at(local, time(0, 10))
        await self._queue.enqueue("campaign_resume", [bid], f"resume:{bid}:{tomorrow:%Y%m%d}",
                                  at=tomorrow)
        tally = await self._store.campaigns.tally(bid)
        if doc.get("by"):
            await self._notify(doc["by"], f"{bid} 已暂停: 今日接口额度已用完，"
                               f"将于明天 00:10 自动继续，或发送 /confirm {bid} 立即继续。\n"
                               + self._tally_text(tally), f"{bid}:pause:{local:%Y%m%d%H%M}")
        log.warning("campaign paused: daily quota", extra={"broadcast": bid})

    async def _chunk_finished(self, bid: str, chunk: int) -> None:
        doc = await self._store.campaigns.chunk_done(bid, chunk)
        if doc is None or "chunks" not in doc:
            return  # still planning: the planner counts this chunk when it is done
        done, chunks = len(doc.get("chunks_finished") or []), int(doc["chunks"])
        if done >= chunks:
            await self._finish(bid)
            return
        quarter = done * 4 // chunks
        if doc.get("by") and quarter > int(doc.get("announced", 0)):
            moved = await self._store.campaigns.update(bid, {"announced": quarter})
            if moved is not None:
                tally = await self._store.campaigns.tally(bid)
                await self._notify(doc["by"], f"{bid} 进度 {quarter * 25}%: "
                                   + self._tally_text(tally), f"{bid}:progress:{quarter}")

    async def _finish(self, bid: str) -> None:
        doc = await self._store.campaigns.move(bid, ["running", "queued"], "done",
                                               {"finished_at": self.clock()})
        if doc is None:
            return
        tally = await self._store.campaigns.tally(bid)
        await self._store.campaigns.update(bid, {"tally": tally})
        if doc.get("by"):
            await self._notify(doc["by"], f"{bid} 发送完成。" + self._tally_text(tally),
                               f"{bid}:done")
        log.info("campaign done", extra={"broadcast": bid, **{
            k: v for k, v in tally.items() if ":" not in k}})

    @staticmethod
    def _tally_text(tally: dict[str, int]) -> str:
        names = {"sent": "已发送", "waiting": "等她下次留言后发送", "queued": "排队中",
                 "sending": "发送中", "failed": "失败", "skipped": "跳过"}
        parts = [f"{names[k]} {tally[k]}" for k in names if tally.get(k)]
        reasons = [f"{k.split(':', 1)[1]} {v}" for k, v in sorted(tally.items()) if ":" in k]
        text = " · ".join(parts) or "尚无发送记录"
        return text + (f"（{', '.join(reasons)}）" if reasons else "")
