"""The orchestrator: one inbound message in, a list of replies out, inside a time budget.

Per message: wait for this follower's earlier messages (order across processes), record the
inbound interaction, ask Rasa what the text means (NLU), let the flow engine decide what to
say (in this process, next to the store), render the templates, record the replies. The
channel awaits the `Turn` for at most its budget; when it gives up, the replies go to the
channel's Outlet (a durable push) instead. Staff commands and event hooks (referral scans)
are handed in at construction, like everything else it uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.brand_calendar import BrandCalendar
from bot.conversation.outbound import Outbound
from bot.conversation.rasa import Parsed, RasaUnavailable
from bot.flow_engine.actions import Say, TurnInput
from bot.flow_engine.engine import FlowEngine
from bot.flow_engine.templates import detect_lang
from bot.messages import InboundMessage, Reply, is_command
from bot.metrics import Metrics
from bot.tags import TESTER_TAG
from store.errors import StoreUnavailable
from store.protocols import Store
from store.records import (
    Direction,
    FollowState,
    Identity,
    Interaction,
    Profile,
    new_interaction,
    reply_key,
)
from store.state import FollowerOrder, Outbox

log = logging.getLogger(__name__)

# Channel events the flows can be triggered by (flow `triggers: events:` and `menu:`).
FLOW_EVENTS = ("subscribe", "click", "scan")


def _spoken_lang(text: str | None) -> str | None:
    """The language her message is written in, to answer in (None: keep the one we know).
    A staff command's words are Latin by design ("/duty on"), so only Chinese after them
    counts: a colleague writing Chinese is not switched to English by her commands."""
    if is_command(text):
        return "zh" if detect_lang(text, "") == "zh" else None
    return detect_lang(text, "") or None


class Nlu(Protocol):
    async def parse(self, text: str, follower: str = "") -> Parsed: ...


# What the bot says when it did not understand: sorry, or no common question matched.
MISSED = (["fallback"], ["faq_unknown"])


class CommandHandler(Protocol):
    async def handle(self, profile: Profile, text: str, now: datetime, source: str
                     ) -> str | None:
        """The reply to a staff command; None when it is ordinary chat."""
        ...


class EventHook(Protocol):
    """Something a channel event means besides the flows (a referral QR scan)."""

    name: str

    async def on_event(self, profile: Profile, msg: InboundMessage, now: datetime
                       ) -> str | None:
        """An outcome to record on the inbound interaction under `name`, or None."""
        ...


class Interceptor(Protocol):
    """Something that takes a member's text before the bot answers it (a person handling
    her conversation: bot/handoff/)."""

    async def intercept(self, profile: Profile, text: str, now: datetime, source: str
                        ) -> str | None:
        """What to say instead ("" for nothing), or None to let the bot answer."""
        ...


class Turn:
    """The answer to one inbound message, as the channel waits for it."""

    def __init__(self) -> None:
        self._answer: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self.late = False
        self.task: asyncio.Task[None] | None = None

    async def answer(self, timeout: float) -> list[Reply] | None:
        """The replies if ready within `timeout`; else None, and the turn becomes late."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._answer), max(0.0, timeout))
        except TimeoutError:
            # The answer may have landed while the timeout was being delivered.
            if self._answer.done():
                return self._answer.result()
            self.late = True
            return None

    def resolve(self, replies: list[Reply]) -> None:
        if not self._answer.done():
            self._answer.set_result(replies)


class Orchestrator:
    def __init__(
        self,
        store: Store,
        nlu: Nlu,
        engine: FlowEngine,
        calendar: BrandCalendar,
        outbound: Outbound,
        order: FollowerOrder,
        outbox: Outbox,
        metrics: Metrics,
        commands: CommandHandler | None = None,
        event_hooks: Sequence[EventHook] = (),
        interceptor: Interceptor | None = None,
        order_wait: float = 30.0,
        testers: Collection[str] = (),  # identity keys (channel:account:id)
        max_text: int = 2000,
        # Called with her profile id when her first message linked an imported member to
        # her (her order totals are then recomputed: bot/members/orders.py).
        after_link: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._after_link = after_link
        self._store = store
        self._nlu = nlu
        self._engine = engine
        self._calendar = calendar
        self._out = outbound
        self._order = order
        self._outbox = outbox
        self._metrics = metrics
        self._commands = commands
        self._hooks = tuple(event_hooks)
        self._interceptor = interceptor
        self._order_wait = order_wait
        self._testers = set(testers)
        self._max_text = max_text
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, msg: InboundMessage, received: float | None = None) -> Turn:
        """Begin handling `msg` in the background; the caller awaits `turn.answer()`."""
        turn = Turn()
        task = asyncio.create_task(self._run(msg, turn, received or time.monotonic()))
        turn.task = task
        # Tracked so shutdown can wait for them; a bare task could be garbage-collected.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return turn

    async def replay_outbox(self, batch: int = 100) -> int:
        """Write what the outbox holds, oldest first, each exactly once (a message already
        on record is skipped). Stops at the first failure, to keep the order."""
        written = 0
        for entry_id, entry in await self._outbox.pending(batch):
            msg = InboundMessage.model_validate(entry["msg"])
            try:
                await self._record_late(msg, datetime.fromisoformat(entry["received_at"]))
            except StoreUnavailable:
                break
            await self._outbox.done(entry_id)
            written += 1
        if written:
            log.info("outbox written", extra={"count": written})
        return written

    async def _record_late(self, msg: InboundMessage, received_at: datetime) -> None:
        """Record a message (and the apology it got) that arrived while the store was down."""
        key = msg.record_key
        if await self._store.interactions.get(key) is not None:
            return  # written before the failure, or by an earlier replay
        profile = await self._store.profiles.touch(_identity(msg), received_at,
                                                   _spoken_lang(msg.text))
        inbound = _interaction(profile, msg, "in", _kind(msg), msg.text, msg.payload,
                               received_at)
        inbound.update({"dedupe_key": key, "outcome": "store_unavailable"})
        if not await self._store.interactions.add(inbound):
            return
        apology = self._out.apology(self._out.lang_of(profile))
        out = _interaction(profile, msg, "out", "text", apology.text,
                           apology.model_dump(mode="json"), received_at)
        out.update({"dedupe_key": reply_key(key, 0), "outcome": "sent", "delivery": "passive"})
        await self._store.interactions.add(out)
        await self._store.profiles.count_outbound(profile["_id"], 1)

    async def drain(self, timeout: float) -> None:
        """Let in-flight turns finish (called on shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _run(self, msg: InboundMessage, turn: Turn, received: float) -> None:
        ticket = await self._order.ticket(msg.follower)
        try:
            if not await self._order.wait_turn(msg.follower, ticket, self._order_wait):
                log.warning("order wait gave up", extra={"ticket": ticket})
            await self._handle(msg, turn, received)
        except StoreUnavailable as e:
            # The database is down: keep the message in the durable outbox, written in
            # order when it is back; the follower gets the apology now.
            turn.resolve([self._out.apology()])
            log.warning("store unavailable, message kept in the outbox",
                        extra={"error": str(e)[:200]})
            await self._outbox.add({"msg": msg.model_dump(mode="json"),
                                    "received_at": datetime.now(UTC).isoformat()})
        except Exception:
            log.exception("turn failed", extra={"dedupe_key": msg.dedupe_key})
            turn.resolve([self._out.apology()])
        finally:
            await self._order.done(msg.follower, ticket)

    async def _handle(self, msg: InboundMessage, turn: Turn, received: float) -> None:
        now = datetime.now(UTC)
        profile = await self._store.profiles.touch(_identity(msg), now,
                                                   _spoken_lang(msg.text))
        if profile.get("counters", {}).get("inbound") == 1:
            # Her first message: a member the brand imported for her unionid (or openid)
            # before she wrote is her, from now on one profile.
            linked = await self._store.imports.link_new(profile)
            if linked is not None:
                profile = linked
                if self._after_link is not None:
                    await self._after_link(profile["_id"])
        lang = self._out.lang_of(profile)
        text, payload = msg.text, msg.payload
        if text is not None and len(text) > self._max_text:
            # Kept as far as it is read; the record says how long it was.
            text, payload = text[:self._max_text], {**payload, "length": len(text)}
        inbound = _interaction(profile, msg, "in", _kind(msg), text, payload, now)
        inbound["dedupe_key"] = msg.record_key
        if not await self._store.interactions.add(inbound):
            # Already handled (the Redis marker expired but the record exists): say nothing.
            turn.resolve([])
            return

        if msg.kind == "event" and msg.event in ("subscribe", "unsubscribe"):
            state: FollowState = "subscribed" if msg.event == "subscribe" else "unsubscribed"
            await self._store.profiles.set_follow(profile["_id"], state, now)
        hooks: dict[str, str] = {}
        if msg.kind == "event":
            for hook in self._hooks:
                outcome = await hook.on_event(profile, msg, now)
                if outcome is not None:
                    hooks[hook.name] = outcome

        replies, outcome, intent, confidence = await self._dialogue(msg, profile, lang)
        latency_ms = (time.monotonic() - received) * 1000
        turn.resolve(replies)
        late = turn.late and bool(replies)
        keys = [reply_key(msg.record_key, i) for i in range(len(replies))]
        if late:
            self._metrics.late_replies.labels(msg.channel).inc()
            outlet = self._out.outlet(msg.channel)
            if outlet is not None:
                await outlet.push(msg.sender, replies, keys, answering=msg.record_key)

        delivery = "none" if not replies else ("push" if late else "passive")
        await self._store.interactions.update(msg.record_key, {
            "intent": intent, "confidence": confidence, "outcome": outcome,
            "latency_ms": round(latency_ms, 2), "delivery": delivery, **hooks,
        })
        out_time = datetime.now(UTC)
        for key, reply in zip(keys, replies, strict=True):
            out = _interaction(profile, msg, "out", reply.kind, reply.as_text(),
                               reply.model_dump(mode="json"), out_time)
            out.update({"dedupe_key": key, "delivery": delivery,
                        "outcome": "queued" if late else "sent",
                        "latency_ms": round(latency_ms, 2)})
            await self._store.interactions.add(out)
        if replies:
            await self._store.profiles.count_outbound(profile["_id"], len(replies))
        log.info("turn done", extra={
            "kind": msg.kind, "outcome": outcome, "delivery": delivery,
            "latency_ms": round(latency_ms, 1), "intent": intent,
        })

    async def _dialogue(
        self, msg: InboundMessage, profile: Profile, lang: str
    ) -> tuple[list[Reply], str, str | None, float | None]:
        """What to say; the outcome, intent and confidence to record on the inbound."""
        text = ""
        intent: str | None = None
        confidence: float | None = None
        event: str | None = None
        nlu_down = False
        if msg.kind == "text" or (msg.kind == "voice" and msg.text):
            text = (msg.text or "").strip()
            if not text:
                return [self._out.text("help", lang, profile)], "replied", None, None
            if len(text) > self._max_text:
                return [self._out.text("too_long", lang, profile, {
                    "length": len(text), "limit": self._max_text})], "too_long", None, None
            if self._commands is not None and msg.kind == "text":
                # Staff commands never reach Rasa; from anyone else they are ordinary chat.
                answer = await self._commands.handle(profile, text, datetime.now(UTC),
                                                     msg.record_key)
                if answer is not None:
                    return [Reply(kind="text", text=answer)], "command", None, None
            if self._interceptor is not None and msg.kind == "text":
                said = await self._interceptor.intercept(profile, text, datetime.now(UTC),
                                                         msg.record_key)
                if said is not None:  # a person has her conversation: the bot is silent
                    return ([Reply(kind="text", text=said)] if said else []), "handoff", \
                        None, None
            try:
                parsed = await self._nlu.parse(text, msg.follower)
                intent, confidence = parsed.intent, parsed.confidence
            except RasaUnavailable as e:
                # Answering a question she was asked needs no NLU: the flows still run,
                # and only what needs Rasa gets the apology.
                self._metrics.rasa_errors.inc()
                log.warning("rasa unavailable", extra={"error": str(e)})
                nlu_down = True
        elif msg.kind == "event" and msg.event in FLOW_EVENTS:
            event = msg.event  # follows, menu taps and QR scans start flows directly
        elif msg.kind == "event":
            return [], "no_reply", None, None  # unsubscribe, view, location: recorded only
        elif msg.kind == "unknown":
            return [self._out.text("unsupported", lang, profile)], "unsupported", None, None
        else:
            return [self._out.text("media_received", lang, profile)], "replied", None, None

        now = datetime.now(UTC)
        try:
            says = await self._engine.turn(TurnInput(
                profile_id=profile["_id"], text=text, intent=intent, confidence=confidence,
                now=now, today=self._calendar.today(now), event=event,
                event_key=msg.event_key, source=msg.record_key,
                tester=msg.follower in self._testers or TESTER_TAG in profile.get("tags", []),
            ))
        except Exception:
            # A failing step must not leave the member without an answer or the record
            # without an outcome; the log gets the detail.
            log.exception("flow turn failed", extra={"intent": intent})
            return [self._out.apology(lang)], "error", intent, confidence
        if nlu_down and [s.template for s in says] in MISSED:
            return [self._out.apology(lang)], "rasa_unavailable", None, None
        says = await self._offer_a_person(profile, says)
        replies = self._out.say(says, lang, profile)
        outcome = "rasa_unavailable" if nlu_down else ("replied" if replies else "no_reply")
        return replies, outcome, intent, confidence


    async def _offer_a_person(self, profile: Profile, says: list[Say]) -> list[Say]:
        """A second misunderstanding in a row offers a person instead of a second
        "I didn't get that"; anything understood starts the count again."""
        missed = [s.template for s in says] in MISSED
        streak = int((profile.get("counters") or {}).get("misunderstood", 0))
        if missed:
            await self._store.profiles.update(profile["_id"],
                                              {"counters.misunderstood": streak + 1})
            if streak + 1 >= 2:
                return [Say("fallback_offer_person")]
        elif streak:
            await self._store.profiles.update(profile["_id"], {"counters.misunderstood": 0})
        return says


def _identity(msg: InboundMessage) -> Identity:
    return {"channel": msg.channel, "app_id": msg.app_id, "openid": msg.sender,
            "unionid": msg.unionid}


def _kind(msg: InboundMessage) -> str:
    return f"event:{msg.event}" if msg.kind == "event" else msg.kind


def _interaction(profile: Profile, msg: InboundMessage, direction: Direction, kind: str,
                 text: str | None, payload: dict[str, Any], ts: datetime) -> Interaction:
    return new_interaction(profile["_id"], msg.channel, direction, kind, text, payload, ts)
