"""The orchestrator: one inbound message in, a list of replies out, inside a time budget.

Per message: wait for this follower's earlier messages (order across processes), record the
inbound interaction, ask Rasa what the text means (NLU), let the flow engine decide what to
say (in this process, next to the store), render the templates, record the replies. The
channel awaits the `Turn` for at most its budget; when it gives up, the replies go to the
channel's `LateSender` (a durable job) instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

from bot.commands import Commands, is_command
from bot.flows.engine import FlowEngine, Say, TurnInput
from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from bot.rasa import RasaClient, RasaUnavailable
from bot.referrals import Referrals
from bot.templates import TemplateProblem, TemplateSource, detect_lang
from store.errors import StoreUnavailable
from store.outbox import Outbox
from store.protocols import Store
from store.records import FollowState, Identity, Interaction, Profile, new_interaction
from store.redis_state import FollowerOrder

log = logging.getLogger(__name__)

# Channel events the flows can be triggered by (flow `triggers: events:` and `menu:`).
FLOW_EVENTS = ("subscribe", "click", "scan")


class LateSender(Protocol):
    """Delivers replies outside a passive reply (a durable job): late answers, and messages
    the bot starts itself (a sister's invitation, a relayed message)."""

    async def send_late(self, msg: InboundMessage, replies: list[Reply], keys: list[str]) -> None:
        ...

    async def push(self, recipient: str, replies: list[Reply], keys: list[str]) -> None: ...


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


def outbound_key(inbound_key: str, index: int) -> str:
    return f"{inbound_key}:out:{index}"


class Orchestrator:
    def __init__(
        self,
        store: Store,
        rasa: RasaClient,
        engine: FlowEngine,
        today: Callable[[datetime], date],
        templates: TemplateSource,
        order: FollowerOrder,
        metrics: Metrics,
        late_senders: Mapping[str, LateSender],
        referrals: Referrals | None = None,
        outbox: Outbox | None = None,
        default_lang: str = "zh",
        order_wait: float = 30.0,
        testers: Collection[str] = (),
    ) -> None:
        self._store = store
        self._rasa = rasa
        self._engine = engine
        self._today = today
        self._templates = templates
        self._order = order
        self._metrics = metrics
        self._late = late_senders
        self._lang = default_lang
        self._order_wait = order_wait
        self._testers = set(testers)
        self._referrals = referrals
        self._outbox = outbox
        self.commands: Commands | None = None  # staff commands (set once they are built)
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
        if self._outbox is None:
            return 0
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
        key = f"in:{msg.channel}:{msg.dedupe_key}"
        if await self._store.interactions.get(key) is not None:
            return  # written before the failure, or by an earlier replay
        identity: Identity = {"channel": msg.channel, "app_id": msg.app_id,
                              "openid": msg.sender, "unionid": msg.unionid}
        profile = await self._store.profiles.touch(identity, received_at,
                                                   detect_lang(msg.text, "") or None)
        kind = f"event:{msg.event}" if msg.kind == "event" else msg.kind
        inbound = self._interaction(profile, msg.channel, "in", kind, msg.text, msg.payload,
                                    received_at)
        inbound.update({"dedupe_key": key, "outcome": "store_unavailable"})
        if not await self._store.interactions.add(inbound):
            return
        apology = Reply(kind="text", text=self._render_safe(
            "apology", profile.get("lang") or self._lang, {}))
        out = self._interaction(profile, msg.channel, "out", "text", apology.text,
                                apology.model_dump(mode="json"), received_at)
        out.update({"dedupe_key": outbound_key(key, 0), "outcome": "sent",
                    "delivery": "passive"})
        await self._store.interactions.add(out)
        await self._store.profiles.count_outbound(profile["_id"], 1)

    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool:
        """Say something to a member who did not just write (durable, at most once per key).

        Rendered in her language, recorded as outbound interactions, pushed through her
        channel's LateSender (WeChat: the customer-service API). False if her channel
        cannot push.
        """
        profile = await self._store.profiles.get(profile_id)
        if profile is None or not profile["identities"] or not says:
            return False
        ident = profile["identities"][0]
        sender = self._late.get(ident["channel"])
        if sender is None:
            return False
        lang = profile.get("lang") or self._lang
        replies = self._merge([self._text(s.template, lang, profile, s.vars) for s in says])
        keys = [f"push:{key}:{i}" for i in range(len(replies))]
        now = datetime.now(UTC)
        for k, reply in zip(keys, replies, strict=True):
            out = self._interaction(profile, ident["channel"], "out", reply.kind,
                                    reply.as_text(), reply.model_dump(mode="json"), now)
            out["dedupe_key"] = k
            out["delivery"] = "customer_service"
            await self._store.interactions.add(out)
        await sender.push(ident["openid"], replies, keys)
        await self._store.profiles.count_outbound(profile_id, len(replies))
        return True

    async def notify_text(self, profile_id: str, text: str, key: str) -> bool:
        """A message to staff (broadcast progress), through the same durable path."""
        return await self.notify(profile_id, [Say("staff_text", {"text": text})], key)

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
            turn.resolve([Reply(kind="text", text=self._render_safe("apology", self._lang, {}))])
            log.warning("store unavailable, message kept in the outbox",
                        extra={"error": str(e)[:200]})
            if self._outbox is not None:
                await self._outbox.add({"msg": msg.model_dump(mode="json"),
                                        "received_at": datetime.now(UTC).isoformat()})
        except Exception:
            log.exception("turn failed", extra={"dedupe_key": msg.dedupe_key})
            turn.resolve([Reply(kind="text", text=self._render_safe("apology", self._lang, {}))])
        finally:
            await self._order.done(msg.follower, ticket)

    async def _handle(self, msg: InboundMessage, turn: Turn, received: float) -> None:
        now = datetime.now(UTC)
        identity: Identity = {
            "channel": msg.channel, "app_id": msg.app_id,
            "openid": msg.sender, "unionid": msg.unionid,
        }
        lang_hint = detect_lang(msg.text, "") or None
        profile = await self._store.profiles.touch(identity, now, lang_hint)
        lang = profile.get("lang") or self._lang
        kind = f"event:{msg.event}" if msg.kind == "event" else msg.kind
        inbound = self._interaction(profile, msg.channel, "in", kind, msg.text, msg.payload, now)
        inbound["dedupe_key"] = f"in:{msg.channel}:{msg.dedupe_key}"
        if not await self._store.interactions.add(inbound):
            # Already handled (the Redis marker expired but the record exists): say nothing.
            turn.resolve([])
            return

        if msg.kind == "event" and msg.event in ("subscribe", "unsubscribe"):
            state: FollowState = "subscribed" if msg.event == "subscribe" else "unsubscribed"
            await self._store.profiles.set_follow(profile["_id"], state, now)
        referral = None
        if msg.kind == "event" and msg.event in ("subscribe", "scan") and self._referrals:
            # New only on the very first contact: an unfollow-refollow earns nobody points.
            is_new = msg.event == "subscribe" and profile.get("counters", {}).get("inbound") == 1
            referral = await self._referrals.on_scene(profile, msg.event_key, msg.event, is_new,
                                                      now, inbound["dedupe_key"])

        replies, outcome, intent, confidence = await self._dialogue(msg, profile, lang)
        latency_ms = (time.monotonic() - received) * 1000
        turn.resolve(replies)
        late = turn.late and bool(replies)
        keys = [outbound_key(inbound["dedupe_key"], i) for i in range(len(replies))]
        sender = self._late.get(msg.channel)
        if late:
            self._metrics.late_replies.labels(msg.channel).inc()
            if sender is not None:
                await sender.send_late(msg, replies, keys)

        delivery = "none" if not replies else ("customer_service" if late else "passive")
        await self._store.interactions.update(inbound["dedupe_key"], {
            "intent": intent, "confidence": confidence, "outcome": outcome,
            "latency_ms": round(latency_ms, 2), "delivery": delivery,
            **({"referral": referral} if referral else {}),
        })
        out_time = datetime.now(UTC)
        for key, reply in zip(keys, replies, strict=True):
            out = self._interaction(
                profile, msg.channel, "out", reply.kind, reply.as_text(),
                reply.model_dump(mode="json"), out_time,
            )
            out["dedupe_key"] = key
            out["delivery"] = delivery
            out["outcome"] = "queued" if late else "sent"
            out["latency_ms"] = round(latency_ms, 2)
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
                return [self._text("help", lang, profile)], "replied", None, None
            if self.commands is not None and msg.kind == "text" and is_command(text):
                # Staff commands never reach Rasa; from anyone else they are ordinary chat.
                answer = await self.commands.handle(profile, text, datetime.now(UTC),
                                                    f"in:{msg.channel}:{msg.dedupe_key}")
                if answer is not None:
                    return [Reply(kind="text", text=answer)], "command", None, None
            try:
                parsed = await self._rasa.parse(text, msg.follower)
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
            return [self._text("unsupported", lang, profile)], "unsupported", None, None
        else:
            return [self._text("media_received", lang, profile)], "replied", None, None

        now = datetime.now(UTC)
        try:
            says = await self._engine.turn(TurnInput(
                profile_id=profile["_id"], text=text, intent=intent, confidence=confidence,
                now=now, today=self._today(now), event=event, event_key=msg.event_key,
                source=f"in:{msg.channel}:{msg.dedupe_key}",
                tester=msg.sender in self._testers or "tester" in profile.get("tags", []),
            ))
        except Exception:
            # A failing step must not leave the member without an answer or the record
            # without an outcome; the log gets the detail.
            log.exception("flow turn failed", extra={"intent": intent})
            return [self._text("apology", lang, profile)], "error", intent, confidence
        if nlu_down and [s.template for s in says] == ["fallback"]:
            return [self._text("apology", lang, profile)], "rasa_unavailable", None, None
        replies = self._merge([self._text(s.template, lang, profile, s.vars) for s in says])
        outcome = "rasa_unavailable" if nlu_down else ("replied" if replies else "no_reply")
        return replies, outcome, intent, confidence

    @staticmethod
    def _merge(replies: list[Reply]) -> list[Reply]:
        """Consecutive texts become one message: a passive reply carries only one."""
        merged: list[Reply] = []
        for r in replies:
            if r.kind == "text" and merged and merged[-1].kind == "text":
                merged[-1] = Reply(kind="text", text=merged[-1].text + "\n\n" + r.text)
            else:
                merged.append(r)
        return merged

    def _text(
        self, name: str, lang: str, profile: Profile, variables: dict[str, Any] | None = None
    ) -> Reply:
        context = {"profile": profile.get("fields", {}), "lang": lang, **(variables or {})}
        return Reply(kind="text", text=self._render_safe(name, lang, context))

    def _render_safe(self, name: str, lang: str, context: dict[str, Any]) -> str:
        try:
            return self._templates.templates.render(name, lang, **context)
        except TemplateProblem:
            # A broken template must not leave the follower with nothing or a stack trace.
            log.exception("template failed", extra={"template": name})
            if name != "apology":
                return self._render_safe("apology", lang, {})
            if lang == "zh":
                return "抱歉，我暂时无法回答，请稍后再试。"
            return "Sorry, please try again later."

    @staticmethod
    def _interaction(
        profile: Profile, channel: str, direction: str, kind: str, text: str | None,
        payload: dict[str, Any], ts: datetime,
    ) -> Interaction:
        return new_interaction(profile["_id"], channel, "in" if direction == "in" else "out",
                               kind, text, payload, ts)
