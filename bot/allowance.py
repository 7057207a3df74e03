"""A member's contact allowance on a channel: how many messages the platform still lets the
brand push to her, opened by her own messages and events (WeChat: 5 within 48 h of her
message, 3 within a minute of a follow, a menu tap or a scan; the numbers are the channel's).

Pure functions over one small JSON record per address; `store.state.Allowances` applies
them atomically for every process. A turn holds one message of a fresh allowance for its
own late answer, so pushes of the same moment (a broadcast, a sister's relay) cannot spend
what her answer needs. Pushes that found nothing left wait in the record for her next
message.

Record: {"grants": {kind: [until, left]}, "holds": {turn: [kind, until]},
         "waiting": [[reply, key], ...], "gone": unfollowed}, times as epoch seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from store.state import Allowances

T = TypeVar("T")
Allowance = dict[str, Any]
HOLD_SECONDS = 900  # a turn's late answer goes out well within this, or not at all
MAX_WAITING = 20  # pushes kept for her next message; older ones are dropped first


def live(record: Allowance | None, now: float) -> Allowance:
    """The record without expired grants and holds (a copy)."""
    record = record or {}
    grants = {k: list(v) for k, v in record.get("grants", {}).items() if v[0] > now}
    holds = {t: list(h) for t, h in record.get("holds", {}).items()
             if h[1] > now and h[0] in grants}
    return {"grants": grants, "holds": holds, "waiting": list(record.get("waiting", [])),
            "gone": bool(record.get("gone"))}


def _held(record: Allowance, kind: str) -> int:
    return sum(1 for h in record["holds"].values() if h[0] == kind)


def free(record: Allowance | None, now: float) -> int:
    """Messages anyone may still send her now (her turns' holds set aside)."""
    rec = live(record, now)
    return sum(max(0, left - _held(rec, kind)) for kind, (_, left) in rec["grants"].items())


def is_open(record: Allowance | None, now: float) -> bool:
    """Whether any allowance is running at all (else she is outside every window)."""
    return bool(live(record, now)["grants"])


def opened(record: Allowance | None, now: float, kind: str, size: int, seconds: float,
           hold: str | None = None) -> Allowance:
    """She wrote (or tapped): a fresh allowance of `kind` replaces the last one; `hold`
    keeps one of it for this turn's own answer."""
    rec = live(record, now)
    rec["gone"] = False
    rec["grants"][kind] = [now + seconds, size]
    if hold is not None and _held(rec, kind) < size:
        rec["holds"][hold] = [kind, now + min(seconds, HOLD_SECONDS)]
    return rec


def taken(record: Allowance | None, now: float, hold: str | None = None
          ) -> tuple[Allowance, str | None]:
    """One message spent: the turn's hold if it has one, else the allowance that ends
    first. The kind spent, or None when nothing is left."""
    rec = live(record, now)
    if hold is not None and hold in rec["holds"]:
        kind = rec["holds"].pop(hold)[0]
        rec["grants"][kind][1] -= 1
        return rec, kind
    for kind, grant in sorted(rec["grants"].items(), key=lambda kv: kv[1][0]):
        if grant[1] - _held(rec, kind) > 0:
            grant[1] -= 1
            return rec, kind
    return rec, None


def given_back(record: Allowance | None, now: float, kind: str) -> Allowance:
    """A spent message the platform refused for another reason: it still counts as unsent."""
    rec = live(record, now)
    if kind in rec["grants"]:
        rec["grants"][kind][1] += 1
    return rec


def released(record: Allowance | None, now: float, hold: str) -> Allowance:
    """The turn was answered in its own reply: its hold is free again."""
    rec = live(record, now)
    rec["holds"].pop(hold, None)
    return rec


def exhausted(record: Allowance | None, now: float, kind: str | None = None) -> Allowance:
    """The platform says none is left (WeChat 45047), or, for `kind`, that its window is
    shut (45015): believe it over our own count."""
    rec = live(record, now)
    for k in list(rec["grants"]):
        if kind is None:
            rec["grants"][k][1] = 0
        elif k == kind:
            del rec["grants"][k]
    rec["holds"] = {t: h for t, h in rec["holds"].items() if h[0] in rec["grants"]
                    and rec["grants"][h[0]][1] > 0}
    return rec


def closed(record: Allowance | None, now: float) -> Allowance:
    """She unfollowed: nothing may be sent, nothing waits, until she comes back."""
    return {"grants": {}, "holds": {}, "waiting": [], "gone": True}


def waiting_added(record: Allowance | None, now: float, reply: dict[str, Any], key: str
                  ) -> tuple[Allowance, bool]:
    """Keep a push for her next message; False if she is gone (it is not kept)."""
    rec = live(record, now)
    if rec["gone"]:
        return rec, False
    if all(k != key for _, k in rec["waiting"]):
        rec["waiting"] = (rec["waiting"] + [[reply, key]])[-MAX_WAITING:]
    return rec, True


def waiting_taken(record: Allowance | None, now: float
                  ) -> tuple[Allowance, list[tuple[dict[str, Any], str]]]:
    rec = live(record, now)
    out = [(reply, key) for reply, key in rec["waiting"]]
    rec["waiting"] = []
    return rec, out


def expires(record: Allowance, now: float, keep_waiting: float) -> float:
    """When the record may go: its last grant ends, or later while pushes wait."""
    ends = [g[0] for g in record["grants"].values()]
    if record["waiting"] or record.get("gone"):
        ends.append(now + keep_waiting)
    return max(ends, default=now + 1)


@dataclass(frozen=True)
class Grant:
    """What one kind of interaction opens: `size` messages within `seconds`."""

    size: int
    seconds: float


class ContactAllowance:
    """The allowances of one channel's members, shared by every process."""

    def __init__(self, records: Allowances, grants: dict[str, Grant],
                 keep_waiting: float = 30 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self._records = records
        self._grants = grants
        self._keep = keep_waiting
        self._clock = clock

    async def _change(self, address: str,
                      fn: Callable[[Allowance | None, float], tuple[Allowance, T]]) -> T:
        def step(record: Allowance | None) -> tuple[Allowance, T, float]:
            now = self._clock()
            rec, out = fn(record, now)
            return rec, out, expires(rec, now, self._keep)
        return await self._records.change(address, step)

    async def heard(self, address: str, kind: str, hold: str | None = None
                    ) -> list[tuple[dict[str, Any], str]]:
        """She wrote: her allowance of `kind` opens afresh (a hold for this turn's answer);
        the pushes that waited for it are handed back to be sent."""
        grant = self._grants[kind]

        def step(rec: Allowance | None, now: float
                 ) -> tuple[Allowance, list[tuple[dict[str, Any], str]]]:
            return waiting_taken(opened(rec, now, kind, grant.size, grant.seconds, hold), now)
        return await self._change(address, step)

    async def take(self, address: str, hold: str | None = None) -> str | None:
        return await self._change(address, lambda rec, now: taken(rec, now, hold))

    async def give_back(self, address: str, kind: str) -> None:
        await self._change(address, lambda rec, now: (given_back(rec, now, kind), None))

    async def release(self, address: str, hold: str) -> None:
        await self._change(address, lambda rec, now: (released(rec, now, hold), None))

    async def exhausted(self, address: str, kind: str | None = None) -> None:
        await self._change(address, lambda rec, now: (exhausted(rec, now, kind), None))

    async def close(self, address: str) -> None:
        await self._change(address, lambda rec, now: (closed(rec, now), None))

    async def wait(self, address: str, reply: dict[str, Any], key: str) -> bool:
        """Keep a push for her next message; False when she unfollowed (not kept)."""
        return await self._change(address,
                                  lambda rec, now: waiting_added(rec, now, reply, key))

    async def status(self, addresses: list[str]) -> list[tuple[bool, int]]:
        """For each: whether a window is open at all, and how many may still be sent."""
        now = self._clock()
        return [(is_open(rec, now), free(rec, now))
                for rec in await self._records.get_many(addresses)]
