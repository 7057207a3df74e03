"""The checked, immutable form of the flow files: what the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

END = "END"
# `collect: field.baby_gender` asks for a custom member field and stores the answer on her
# profile; `set: {field.baby_gender: girl}` stores a value. The slot's name is the field's.
FIELD_PREFIX = "field."


class CustomFields(Protocol):
    """The brand's member fields as the flows see them (bot/members/fields.py FieldBook)."""

    @property
    def names(self) -> list[str]: ...

    @property
    def sensitive(self) -> list[str]: ...

    def __contains__(self, name: object) -> bool: ...

    def parse(self, name: str, raw: Any, today: date | None = None) -> Any:
        """The stored value, or a ValueError whose `message` says why, for her."""
        ...

    def labels(self, name: str) -> dict[str, str]:
        """{"zh": ..., "en": ...}"""
        ...
StepKind = Literal["collect", "say", "action", "tag", "award", "link", "set"]


@dataclass(frozen=True)
class Branch:
    condition: str | None  # a Jinja2 expression; None for `else`
    target: str  # a step id or END


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    arg: Any  # slot name, template, action name, tag spec, award rule, flow id, or slot map
    ask: str | None = None
    reask: str | None = None
    branches: tuple[Branch, ...] = ()  # empty: the next step in order
    line: int = 0


@dataclass(frozen=True)
class Slot:
    name: str
    validator: str
    ask: str | None
    reask: str | None
    sensitive: bool = False
    confirm: str | None = None  # the yes/no asked when the validator's value is an estimate
    # A question she may ignore ("有帮助吗？"): an answer that does not fit drops it, and
    # the message is read as a new one instead of re-asking.
    optional: bool = False


@dataclass(frozen=True)
class Triggers:
    intents: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    menu: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()  # QR scenes (scene_str): a follow or scan by that code


@dataclass(frozen=True)
class Flow:
    id: str
    description: str
    triggers: Triggers
    steps: tuple[Step, ...]
    cancellable: bool = True
    interrupts: bool = False  # may start while another flow waits for an answer
    draft: bool = False  # triggers only for testers, so it can be tried before going live
    file: str = ""

    def index(self, step_id: str) -> int:
        for i, s in enumerate(self.steps):
            if s.id == step_id:
                return i
        raise KeyError(step_id)


@dataclass(frozen=True)
class Moment:
    """A life-stage message (MOT): sent once to each member reaching a milestone."""

    id: str
    template: str  # a broadcast template (flows/templates/)
    week: int | None = None  # pregnancy week reached
    baby_months: int | None = None  # baby's age in completed months reached
    description: str = ""
    file: str = ""


TriggerKind = Literal["intents", "keywords", "menu", "events", "scenes"]


@dataclass(frozen=True)
class FlowSet:
    """Every flow, slot and trigger, as one version that is swapped in whole on reload."""

    flows: dict[str, Flow]
    slots: dict[str, Slot]
    version: str
    live: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, key) -> flow id
    drafts: dict[tuple[str, str], str] = field(default_factory=dict)
    moments: dict[str, Moment] = field(default_factory=dict)
    broadcast_templates: frozenset[str] = frozenset()  # names under flows/templates/
    templates: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> lang -> text
    _keywords_live: tuple[str, ...] = field(default=(), init=False, repr=False)
    _keywords_all: tuple[str, ...] = field(default=(), init=False, repr=False)

    def route(self, kind: TriggerKind, key: str, tester: bool = False) -> str | None:
        """The flow a trigger starts; a tester gets the draft version where there is one."""
        key = key.casefold() if kind == "keywords" else key
        if tester and (kind, key) in self.drafts:
            return self.drafts[(kind, key)]
        return self.live.get((kind, key))

    def keywords(self, tester: bool = False) -> tuple[str, ...]:
        """Keywords to look for in a message, longest first (the most specific wins)."""
        return self._keywords_all if tester else self._keywords_live

    def __post_init__(self) -> None:
        # Sorted once per version, not on every message.
        def ordered(*tables: dict[tuple[str, str], str]) -> tuple[str, ...]:
            found = {key for table in tables for (kind, key) in table if kind == "keywords"}
            return tuple(sorted(found, key=len, reverse=True))

        object.__setattr__(self, "_keywords_live", ordered(self.live))
        object.__setattr__(self, "_keywords_all", ordered(self.live, self.drafts))
