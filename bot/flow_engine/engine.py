"""The flow engine: one member turn in, the templates to say out.

State per member is a stack of frames {flow, step, slots} in Redis: the top frame may be
waiting for an answer (a `collect` step). A flow marked `interrupts` can run on top of a
waiting one (a points question in the middle of sign-up), after which the waiting question
is asked again. Cancel words or the `cancel` intent stop a cancellable flow.

When a validator's answer is an estimate (`Valid.confirm`, see validators.py), the frame
keeps it under `confirm` and asks the slot's `confirm:` yes/no; only a yes stores it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Protocol

from bot.brand_calendar import BrandCalendar
from bot.consents import consented
from bot.flow_engine.actions import Say, StepAction, StepContext, TurnInput
from bot.flow_engine.model import END, FIELD_PREFIX, CustomFields, Flow, FlowSet, Slot, Step
from bot.flow_engine.sandbox import bounded_environment
from bot.flow_engine.validators import Invalid, Result, Valid, get_validator, yes_no
from store.state import FlowStates

log = logging.getLogger(__name__)

CANCEL_WORDS = {"算了", "取消", "不要了", "不注册了", "退出", "cancel", "stop", "quit"}
MAX_STEPS = 100  # a loop in a flow must not hang a turn
_COMMAND_EDGES = " \t\n\u3000。.!！?？~～,，、"  # around a command typed on its own
_ARGUMENT_SEPARATORS = " \t\u3000:：,，"  # between a command and what follows it


class FlowSource(Protocol):
    @property
    def current(self) -> FlowSet: ...


class Awarder(Protocol):
    """The `award` step: a points rule applied once per its key (bot/members/points.py)."""

    async def award(self, profile_id: str, rule: str, now: datetime, source: str | None = None
                    ) -> dict[str, Any]: ...


class Profiles(Protocol):
    """What the engine reads and writes of a member: `tag` steps, conditions, fields."""

    async def update_tags(self, profile_id: str, add: list[str], remove: list[str]) -> None: ...

    async def get(self, profile_id: str) -> Any: ...

    async def update(self, profile_id: str, set_paths: dict[str, Any],
                     unset_paths: list[str] | None = None,
                     push: dict[str, Any] | None = None) -> None: ...


class Notifier(Protocol):
    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _push(stack: list[dict[str, Any]], frame: dict[str, Any]) -> None:
    """Put a frame on top, dropping any older frame of the same flow: a member is never
    two times inside one flow (a re-tapped menu, a re-sent invitation)."""
    stack[:] = [f for f in stack if f.get("flow") != frame.get("flow")]
    stack.append(frame)


class FlowEngine:
    def __init__(self, flows: FlowSource, states: FlowStates, actions: Mapping[str, StepAction],
                 awarder: Awarder, profiles: Profiles, notifier: Notifier,
                 calendar: BrandCalendar, fallback_threshold: float = 0.3,
                 fallback_flow: str | None = None, fields: CustomFields | None = None) -> None:
        self._flows = flows
        self._fields = fields
        # A message nothing else understood goes to this flow, when it exists (the FAQ:
        # flows/knowledge.yml), before the bot says it did not understand.
        self._fallback_flow = fallback_flow
        self._states = states
        self._actions = actions
        self._awarder = awarder
        self._profiles = profiles
        self._notifier = notifier
        self._calendar = calendar
        self._threshold = fallback_threshold
        self._env = bounded_environment(strict=False)  # a missing slot is false, not an error
        self._conditions: dict[str, Any] = {}  # compiled once per expression, not per turn

    async def turn(self, inp: TurnInput) -> list[Say]:
        fs = self._flows.current  # one version for the whole turn, even if reloaded meanwhile
        state = await self._states.get(inp.profile_id) or {}
        stack: list[dict[str, Any]] = [f for f in state.get("stack", [])
                                       if f.get("flow") in fs.flows and self._fresh(fs, f)]
        inbox = [f for f in await self._states.peek_inbox(inp.profile_id)
                 if f.get("flow") in fs.flows]
        out: list[Say] = []
        if inbox and not stack:
            # She is not in the middle of anything: the question the bot sent her (an
            # invitation) is the one this message answers.
            for frame in inbox:
                _push(stack, frame)
            inbox_done = True
        else:
            inbox_done = not inbox
        trigger = self._trigger(fs, inp)
        if stack and inp.event:
            # A tap or an event is never an answer: it starts its flow, or re-asks.
            if trigger:
                _push(stack, {"flow": trigger, "step": None, "slots": {}})
                await self._run(fs, stack, out, inp)
            else:
                await self._resume(fs, stack, out)
        elif stack:
            top = fs.flows[stack[-1]["flow"]]
            if self._is_cancel(inp) and top.cancellable:
                stack.pop()
                out.append(Say("flow_cancelled"))
                await self._resume(fs, stack, out)
            elif trigger and trigger != top.id and fs.flows[trigger].interrupts:
                _push(stack, {"flow": trigger, "step": None, "slots": {}})
                await self._run(fs, stack, out, inp)
            elif not await self._answer(fs, stack, out, inp):
                await self._new_message(fs, stack, out, inp, trigger)  # it was ignored
        else:
            await self._new_message(fs, stack, out, inp, trigger)
        if not inbox_done:
            # She was answering her own question; the bot's goes on top now, and is asked
            # in this reply, so she answers it knowingly with her next message.
            for frame in inbox:
                _push(stack, frame)
            await self._resume(fs, stack, out)
        if stack:
            await self._states.set(inp.profile_id, {"stack": stack, "version": fs.version})
        elif state:
            await self._states.clear(inp.profile_id)
        if inbox:
            await self._states.ack_inbox(inp.profile_id, len(inbox))  # only once saved
        return out

    @staticmethod
    def _fresh(fs: FlowSet, frame: dict[str, Any]) -> bool:
        """False if a reload changed the step this frame waits at (renumbered, or no
        longer asking for the same slot): the frame is then dropped, not misread."""
        if frame.get("step") is None:
            return True
        flow = fs.flows[frame["flow"]]
        try:
            step = flow.steps[flow.index(frame["step"])]
        except KeyError:
            return False
        return step.kind == "collect" and str(step.arg) in fs.slots and (
            frame.get("slot") in (None, str(step.arg)))

    async def begin(self, inp: TurnInput, flow_id: str, slots: dict[str, Any]) -> list[Say]:
        """Start a flow for a member who did not ask (an invitation to answer).

        It runs on a scratch stack up to its first question; if it then waits for her
        answer, the frame is delivered to her inbox, and her next turn puts it on top of
        whatever she is doing (which resumes after it). Her own state is never written here:
        that is her turn's, serialized per follower.
        """
        fs = self._flows.current
        stack: list[dict[str, Any]] = [
            {"flow": flow_id, "step": None, "slots": _jsonable(slots)}]
        out: list[Say] = []
        await self._run(fs, stack, out, inp)
        for frame in stack:
            await self._states.deliver(inp.profile_id, frame)
        return out

    async def start_for(self, profile_id: str, flow: str, slots: dict[str, Any], key: str,
                        now: datetime) -> bool:
        """Open a flow for another member and send her its first question (FlowStarter)."""
        inp = TurnInput(profile_id=profile_id, text="", intent=None, confidence=None,
                        now=now, today=self._calendar.today(now), source=key)
        return await self._notifier.notify(profile_id, await self.begin(inp, flow, slots), key)

    # -- choosing -----------------------------------------------------------------------
    def _trigger(self, fs: FlowSet, inp: TurnInput) -> str | None:
        if inp.event == "click":
            return fs.route("menu", inp.event_key or "", inp.tester)
        if inp.event in ("subscribe", "scan") and inp.event_key:
            # A QR code made for a campaign (store, event, leaflet) starts its own flow.
            by_scene = fs.route("scenes", inp.event_key, inp.tester)
            if by_scene:
                return by_scene
        if inp.event:
            return fs.route("events", inp.event, inp.tester)
        # A keyword is a command when it is the message ("签到"), opens it before a space or
        # colon ("对姐妹说 还在吗", "兑换 湿巾"), or is the only way into its flow. Otherwise it
        # is a fallback for when the NLU is unsure: "签到有积分吗" is a question, not a
        # check-in, and "积分能兑换湿巾吗" must not spend her points.
        text = inp.text.casefold()
        keyword = next((k for k in fs.keywords(inp.tester) if k and k in text), None)
        if keyword is not None and self._is_command(fs, keyword, text.strip(_COMMAND_EDGES),
                                                    inp.tester):
            return fs.route("keywords", keyword, inp.tester)
        if inp.intent and inp.intent != "nlu_fallback" and (
                inp.confidence is None or inp.confidence >= self._threshold):
            by_intent = fs.route("intents", inp.intent, inp.tester)
            if by_intent:
                return by_intent
        return fs.route("keywords", keyword, inp.tester) if keyword is not None else None

    @staticmethod
    def _is_command(fs: FlowSet, keyword: str, text: str, tester: bool) -> bool:
        if text == keyword or (text.startswith(keyword)
                               and text[len(keyword)] in _ARGUMENT_SEPARATORS):
            return True
        flow = fs.flows.get(fs.route("keywords", keyword, tester) or "")
        return flow is not None and not flow.triggers.intents

    @staticmethod
    def _is_cancel(inp: TurnInput) -> bool:
        return inp.intent == "cancel" or inp.text.strip().casefold() in CANCEL_WORDS

    # -- running ------------------------------------------------------------------------
    async def _profile_view(self, profile_id: str) -> dict[str, Any]:
        """What conditions see of the member: her fields, tags and membership."""
        profile = await self._profiles.get(profile_id) or {}
        return {**profile.get("fields", {}), "tags": list(profile.get("tags", [])),
                "member": dict(profile.get("member") or {})}

    @staticmethod
    def _waiting(fs: FlowSet, frame: dict[str, Any]) -> tuple[Flow, Step, Slot] | None:
        """The flow, step and slot a frame waits on; None if a reload took them away."""
        flow = fs.flows[frame["flow"]]
        try:
            step = flow.steps[flow.index(frame["step"])]
            return flow, step, fs.slots[str(step.arg)]
        except (KeyError, TypeError):
            return None

    async def _new_message(self, fs: FlowSet, stack: list[dict[str, Any]], out: list[Say],
                           inp: TurnInput, trigger: str | None) -> None:
        """A message that answers nothing: its flow, else the fallback flow, else sorry."""
        if trigger is None and not inp.event and self._fallback_flow in fs.flows:
            trigger = self._fallback_flow
        if trigger:
            _push(stack, {"flow": trigger, "step": None, "slots": {}})
            await self._run(fs, stack, out, inp)
        elif inp.event == "click":
            out.append(Say("menu_unknown"))
        elif not inp.event:  # other events without a flow (scan, ...) are only recorded
            out.append(Say("fallback"))

    async def _answer(self, fs: FlowSet, stack: list[dict[str, Any]], out: list[Say],
                      inp: TurnInput) -> bool:
        """Her message as the answer to the waiting question; False when the question was
        optional and the message does not answer it (dropped: the caller reads it anew)."""
        frame = stack[-1]
        waiting = self._waiting(fs, frame)
        if waiting is None:
            # The flow changed under this member (reload): start it again, cleanly.
            frame.update(step=None, slots={})
            frame.pop("confirm", None)
            await self._run(fs, stack, out, inp)
            return True
        _, step, slot = waiting
        pending = frame.get("confirm")
        if pending is not None:
            # She was asked to confirm our reading of her last answer: yes keeps it, no
            # asks again; anything else may be the right answer typed instead, read below.
            answer = yes_no(inp.text, inp.today)
            if isinstance(answer, Valid):
                del frame["confirm"]
                if answer.value:
                    await self._keep(fs, stack, out, inp, pending["value"])
                else:
                    out.append(Say(step.ask or slot.ask or "fallback", {"slots": frame["slots"]}))
                return True
        result = self._read(slot, inp.text, inp.today)
        if isinstance(result, Invalid):
            if slot.optional and pending is None:
                stack.pop()  # saved with the rest of the turn
                return False
            if pending is not None:
                out.append(self._confirm_say(slot, frame))
                return True
            template = step.reask or slot.reask or step.ask or slot.ask or "fallback"
            out.append(Say(template, self._ask_vars(slot, frame, reason=result.reason)))
            return True
        if result.confirm is not None:
            frame["confirm"] = {"value": _jsonable(result.value), "why": result.confirm}
            out.append(self._confirm_say(slot, frame))
            return True
        frame.pop("confirm", None)
        await self._keep(fs, stack, out, inp, _jsonable(result.value))
        return True

    async def _keep(self, fs: FlowSet, stack: list[dict[str, Any]], out: list[Say],
                    inp: TurnInput, value: Any) -> None:
        """Store the answer to the waiting step's slot and run on to the next question."""
        frame = stack[-1]
        flow = fs.flows[frame["flow"]]
        step = flow.steps[flow.index(frame["step"])]
        frame["slots"][str(step.arg)] = value
        if str(step.arg).startswith(FIELD_PREFIX):
            await self._store_fields(inp.profile_id,
                                     {str(step.arg).removeprefix(FIELD_PREFIX): value})
        frame["step"] = await self._next(fs, flow, flow.index(step.id), frame["slots"], {}, inp)
        await self._run(fs, stack, out, inp)

    @staticmethod
    def _confirm_say(slot: Slot, frame: dict[str, Any]) -> Say:
        """The yes/no on a value kept aside (the loader makes sure the slot has one)."""
        pending = frame["confirm"]
        return Say(slot.confirm or "fallback", {"value": pending["value"], "why": pending["why"],
                                                 "slots": frame["slots"]})

    async def _run(self, fs: FlowSet, stack: list[dict[str, Any]], out: list[Say],
                   inp: TurnInput) -> None:
        """Run the top frame from its current step until it waits for an answer or ends."""
        frame = stack[-1]
        flow = fs.flows[frame["flow"]]
        variables: dict[str, Any] = {}
        position: str | None = frame["step"] if frame["step"] else flow.steps[0].id
        for _ in range(MAX_STEPS):
            if position == END:
                stack.pop()
                await self._resume(fs, stack, out)
                return
            assert position is not None
            index = flow.index(position)
            step = flow.steps[index]
            if step.kind == "collect":
                frame.pop("confirm", None)  # a value kept aside belongs to the step before
                frame["step"] = step.id
                frame["slot"] = str(step.arg)
                slot = fs.slots[str(step.arg)]
                out.append(Say(step.ask or slot.ask or "fallback", self._ask_vars(slot, frame)))
                return
            if step.kind == "link":
                stack.pop()
                _push(stack, {"flow": str(step.arg), "step": None, "slots": {}})
                await self._run(fs, stack, out, inp)
                return
            await self._do(step, frame, variables, out, inp)
            position = await self._next(fs, flow, index, frame["slots"], variables, inp)
        log.error("flow ran too many steps", extra={"flow": flow.id})
        stack.pop()

    async def _do(self, step: Step, frame: dict[str, Any], variables: dict[str, Any],
                  out: list[Say], inp: TurnInput) -> None:
        slots = frame["slots"]
        if step.kind == "say":
            out.append(Say(str(step.arg), _jsonable({**variables, "slots": slots})))
        elif step.kind == "set":
            values = _jsonable(dict(step.arg))
            slots.update(values)
            if self._fields is not None:
                await self._store_fields(inp.profile_id, {
                    k.removeprefix(FIELD_PREFIX): self._fields.parse(
                        k.removeprefix(FIELD_PREFIX), v)
                    for k, v in values.items() if k.startswith(FIELD_PREFIX)})
        elif step.kind == "tag":
            await self._profiles.update_tags(inp.profile_id, list(step.arg.get("add", [])),
                                           list(step.arg.get("remove", [])))
        elif step.kind == "award":
            variables["award"] = await self._awarder.award(inp.profile_id, str(step.arg),
                                                           inp.now, inp.source)
        elif step.kind == "action":
            ctx = StepContext(turn=inp, slots=slots, vars=variables, flows=self)
            out.extend(await self._actions[str(step.arg)](ctx))

    async def _resume(self, fs: FlowSet, stack: list[dict[str, Any]], out: list[Say]) -> None:
        """After an interruption or a cancel, ask the waiting flow's question again."""
        if not stack:
            return
        frame = stack[-1]
        waiting = self._waiting(fs, frame)
        if waiting is None:
            stack.pop()  # nothing to resume here (changed by a reload): the one below, then
            await self._resume(fs, stack, out)
            return
        _, step, slot = waiting
        if frame.get("confirm") is not None:
            out.append(self._confirm_say(slot, frame))  # she was asked a yes/no: ask it again
            return
        out.append(Say(step.ask or slot.ask or "fallback", self._ask_vars(slot, frame)))

    def _ask_vars(self, slot: Slot, frame: dict[str, Any], **more: Any) -> dict[str, Any]:
        """What a question's template gets: the slots, and a field's label when it asks
        for a member field (the generic field_ask / field_reask say which)."""
        found: dict[str, Any] = {"slots": frame["slots"], **more}
        name = slot.name.removeprefix(FIELD_PREFIX)
        if slot.name.startswith(FIELD_PREFIX) and self._fields is not None and \
                name in self._fields:
            found["label"] = self._fields.labels(name)
        return found

    def _read(self, slot: Slot, text: str, today: date) -> Result:
        """Her answer through the slot's validator, or a member field's own rules."""
        if not slot.validator.startswith(FIELD_PREFIX):
            return get_validator(slot.validator)(text, today)
        if self._fields is None:
            return Invalid("no fields")  # the loader refuses such a flow; a reload raced
        try:
            value = self._fields.parse(slot.validator.removeprefix(FIELD_PREFIX), text, today)
        except ValueError as e:
            return Invalid(str(getattr(e, "message", e)))
        return Invalid("empty") if value is None else Valid(value)

    async def _store_fields(self, profile_id: str, values: dict[str, Any]) -> None:
        """Write member fields to her profile. A sensitive one (PIPL) is kept only with her
        consent to sensitive data: without it the flow goes on and nothing is stored."""
        if not values or self._fields is None:
            return
        sensitive = [n for n in values if n in self._fields.sensitive]
        if sensitive:
            profile = await self._profiles.get(profile_id)
            if profile is None or not consented(profile, "sensitive"):
                log.info("sensitive field not kept without consent",
                         extra={"fields": sensitive})
                values = {n: v for n, v in values.items() if n not in sensitive}
        if values:
            await self._profiles.update(profile_id, {f"fields.{n}": v for n, v in values.items()})

    async def _next(self, fs: FlowSet, flow: Flow, index: int, slots: dict[str, Any],
                    variables: dict[str, Any], inp: TurnInput) -> str:
        step = flow.steps[index]
        profile: dict[str, Any] | None = None
        for branch in step.branches:
            if branch.condition is not None and "profile" in branch.condition and \
                    profile is None:
                profile = await self._profile_view(inp.profile_id)  # only when asked for
            if branch.condition is None or self._true(branch.condition, slots, variables,
                                                      profile or {}):
                return branch.target
        return flow.steps[index + 1].id if index + 1 < len(flow.steps) else END

    def _true(self, expr: str, slots: dict[str, Any], variables: dict[str, Any],
              profile: dict[str, Any]) -> bool:
        try:
            test = self._conditions.get(expr)
            if test is None:
                test = self._conditions[expr] = self._env.compile_expression(expr)
            return bool(test(slots=slots, profile=profile, **variables))
        except Exception:
            log.exception("flow condition failed", extra={"condition": expr})
            return False
