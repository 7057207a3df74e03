"""Step actions: the Python a flow calls by name (`action: complete_signup`).

A feature marks its methods with `@step_action("name")`; `action_names` lists a class's
names without building it (what `scrm flows check` and the loader need), `actions_of` binds
an instance's. So each name is written once, next to the code it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True)
class Say:
    """One template to say, with its variables."""

    template: str
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnInput:
    profile_id: str
    text: str
    intent: str | None
    confidence: float | None
    now: datetime
    today: date  # in the brand's calendar
    event: str | None = None  # subscribe, click, scan ...
    event_key: str | None = None  # menu key or QR scene
    source: str | None = None  # the inbound interaction's key, for ledger entries
    tester: bool = False  # sees draft flows


class FlowStarter(Protocol):
    async def start_for(self, profile_id: str, flow: str, slots: dict[str, Any], key: str,
                        now: datetime) -> bool:
        """Open `flow` for another member and send her its first question (at most once
        per `key`); False if her channel cannot be reached."""
        ...


@dataclass
class StepContext:
    """What a step action sees and may change."""

    turn: TurnInput
    slots: dict[str, Any]
    vars: dict[str, Any]
    flows: FlowStarter  # to open a flow for another member (a sister's invitation)


StepAction = Callable[[StepContext], Awaitable[list[Say]]]
F = TypeVar("F", bound=Callable[..., Awaitable[list[Say]]])
_MARK = "_step_action"


def step_action(name: str) -> Callable[[F], F]:
    """Mark a method as the flow action `name`."""

    def mark(fn: F) -> F:
        setattr(fn, _MARK, name)
        return fn

    return mark


def action_names(*classes: type) -> frozenset[str]:
    names = [getattr(member, _MARK) for cls in classes for member in vars(cls).values()
             if hasattr(member, _MARK)]
    if len(names) != len(set(names)):
        raise ValueError(f"a flow action name is used twice: {sorted(names)}")
    return frozenset(names)


def actions_of(providers: Iterable[object]) -> Mapping[str, StepAction]:
    """Every marked method of the given objects, bound, by action name."""
    out: dict[str, StepAction] = {}
    for obj in providers:
        for attr, member in vars(type(obj)).items():
            name = getattr(member, _MARK, None)
            if name is not None:
                if name in out:
                    raise ValueError(f"flow action {name!r} is provided twice")
                out[name] = getattr(obj, attr)
    return out
