"""The checked, immutable form of the flow files: what the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

END = "END"
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


@dataclass(frozen=True)
class Triggers:
    intents: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    menu: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flow:
    id: str
    description: str
    triggers: Triggers
    steps: tuple[Step, ...]
    cancellable: bool = True
    interrupts: bool = False  # may start while another flow waits for an answer
    file: str = ""

    def index(self, step_id: str) -> int:
        for i, s in enumerate(self.steps):
            if s.id == step_id:
                return i
        raise KeyError(step_id)


@dataclass(frozen=True)
class FlowSet:
    """Every flow, slot and trigger, as one version that is swapped in whole on reload."""

    flows: dict[str, Flow]
    slots: dict[str, Slot]
    version: str
    by_intent: dict[str, str] = field(default_factory=dict)
    by_keyword: dict[str, str] = field(default_factory=dict)
    by_menu: dict[str, str] = field(default_factory=dict)
    by_event: dict[str, str] = field(default_factory=dict)
