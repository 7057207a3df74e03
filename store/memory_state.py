"""The in-memory implementation of the shared state (store/state.py), for one process.

It keeps the Redis implementation's contract (tests/contract/test_state_contract.py runs one
suite over both), so the core (flow engine, campaigns, matching, commands) can be tested in
milliseconds without a server. Nothing here is shared between processes: production and the
multi-process tests use Redis.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import itertools
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

from store.state import State, T, card_scopes


class _Expiring:
    """A dict whose entries vanish `ttl` seconds after they were set (monotonic clock)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._data[key]
            return None
        return entry[1]

    def set(self, key: str, value: Any, ttl: float, only_new: bool = False) -> bool:
        if only_new and self.get(key) is not None:
            return False
        self._data[key] = (time.monotonic() + ttl, value)
        return True

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


class MemoryDedupe:
    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._marks = _Expiring()
        self._results = _Expiring()
        self._published = asyncio.Event()

    async def claim(self, key: str) -> bool:
        return self._marks.set(key, "1", self._ttl, only_new=True)

    async def publish(self, key: str, result: str) -> None:
        self._results.set(key, result, self._ttl)
        self._published.set()
        self._published = asyncio.Event()

    async def wait_result(self, key: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            value = self._results.get(key)
            if value is not None:
                return str(value)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), left)


class MemoryRequestNonces:
    def __init__(self) -> None:
        self._seen = _Expiring()

    async def remember(self, key: str, digest: str, ttl_seconds: int) -> bool:
        if self._seen.set(key, digest, ttl_seconds, only_new=True):
            return True
        return bool(self._seen.get(key) == digest)


class MemoryFollowerOrder:
    def __init__(self) -> None:
        self._next: dict[str, int] = defaultdict(int)
        self._done: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()

    async def ticket(self, follower: str) -> int:
        self._next[follower] += 1
        return self._next[follower]

    async def wait_turn(self, follower: str, ticket: int, max_wait: float) -> bool:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: self._done[follower] >= ticket - 1), max_wait)
            return self._done[follower] >= ticket - 1

    async def done(self, follower: str, ticket: int) -> None:
        async with self._changed:
            self._done[follower] = max(self._done[follower], ticket)
            self._changed.notify_all()


class MemoryTokenCache:
    def __init__(self) -> None:
        self._values = _Expiring()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def get(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None else str(value)

    async def set(self, name: str, value: str, ttl_seconds: float) -> None:
        self._values.set(name, value, max(0.001, ttl_seconds))

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0
                   ) -> AsyncIterator[None]:
        lock = self._locks[name]
        try:
            await asyncio.wait_for(lock.acquire(), wait)
        except TimeoutError:
            raise TimeoutError(f"lock {name!r} not acquired within {wait} s") from None
        try:
            yield
        finally:
            lock.release()


class MemoryFlowStates:
    def __init__(self, ttl_seconds: int = 7 * 86400) -> None:
        self._ttl = ttl_seconds
        self._states = _Expiring()
        self._inbox: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def get(self, profile_id: str) -> dict[str, Any] | None:
        state = self._states.get(profile_id)
        return copy.deepcopy(state) if state is not None else None  # as if read from JSON

    async def set(self, profile_id: str, state: dict[str, Any]) -> None:
        self._states.set(profile_id, copy.deepcopy(state), self._ttl)

    async def clear(self, profile_id: str) -> None:
        self._states.delete(profile_id)

    async def deliver(self, profile_id: str, frame: dict[str, Any]) -> None:
        self._inbox[profile_id].append(copy.deepcopy(frame))

    async def peek_inbox(self, profile_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._inbox.get(profile_id, []))

    async def ack_inbox(self, profile_id: str, n: int) -> None:
        del self._inbox[profile_id][:n]


class MemorySendMarks:
    def __init__(self, ttl_seconds: int = 7 * 86400) -> None:
        self._ttl = ttl_seconds
        self._marks = _Expiring()

    async def claim(self, key: str) -> bool:
        return self._marks.set(key, "1", self._ttl, only_new=True)

    async def release(self, key: str) -> None:
        self._marks.delete(key)


class MemorySendRate:
    def __init__(self, per_second: float) -> None:
        self._step = 1.0 / per_second
        self._last = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(now, self._last + self._step)
        self._last = slot
        if slot > now:
            await asyncio.sleep(slot - now)


class MemoryCampaignStops:
    def __init__(self) -> None:
        self._flags: dict[str, str] = {}

    async def stop(self, campaign_id: str, why: str) -> None:
        self._flags[campaign_id] = why

    async def clear(self, campaign_id: str) -> None:
        self._flags.pop(campaign_id, None)

    async def reason(self, campaign_id: str) -> str | None:
        return self._flags.get(campaign_id)


class MemoryMatchIndex:
    def __init__(self) -> None:
        self._scopes: dict[str, list[tuple[int, str]]] = defaultdict(list)  # sorted
        self._cards: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, set[str]] = defaultdict(set)

    def _unlink(self, profile_id: str, card: dict[str, Any]) -> None:
        for scope in card_scopes(card):
            entries = self._scopes[scope]
            i = bisect.bisect_left(entries, (card["anchor"], profile_id))
            if i < len(entries) and entries[i] == (card["anchor"], profile_id):
                del entries[i]

    async def put(self, profile_id: str, card: dict[str, Any]) -> None:
        old = self._cards.get(profile_id)
        if old is not None:
            self._unlink(profile_id, old)
        counters = {k: old[k] for k in ("active", "fb_sum", "fb_n")} if old else \
            {"active": 0, "fb_sum": 0, "fb_n": 0}
        new = {"profile_id": profile_id, "nickname": card["nickname"],
               "anchor": int(card["anchor"]), "city": card.get("city") or "",
               "province": card.get("province") or "",
               "interests": list(card.get("interests", [])), **counters}
        self._cards[profile_id] = new
        for scope in card_scopes(new):
            bisect.insort(self._scopes[scope], (new["anchor"], profile_id))

    async def put_many(self, cards: dict[str, dict[str, Any]]) -> None:
        for profile_id, card in cards.items():
            await self.put(profile_id, card)

    async def empty(self) -> bool:
        return not self._scopes.get("all")

    async def remove(self, profile_id: str) -> None:
        old = self._cards.pop(profile_id, None)
        if old is not None:
            self._unlink(profile_id, old)

    async def card(self, profile_id: str) -> dict[str, Any] | None:
        return (await self.cards([profile_id]))[0]

    async def cards(self, profile_ids: list[str]) -> list[dict[str, Any] | None]:
        return [copy.deepcopy(self._cards.get(pid)) for pid in profile_ids]

    async def nearby(self, scope: str, anchor: int, window: int, limit: int) -> list[str]:
        entries = self._scopes.get(scope, [])
        half = limit // 2 + 1
        lo = bisect.bisect_left(entries, (anchor, ""))
        hi = bisect.bisect_right(entries, (anchor + window, "\U0010ffff"))
        later = [pid for _, pid in entries[lo:hi][:half]]
        start = bisect.bisect_left(entries, (anchor - window, ""))
        end = bisect.bisect_right(entries, (anchor, "\U0010ffff"))
        earlier = [pid for _, pid in reversed(entries[start:end])][:half]
        return list(dict.fromkeys([*earlier, *later]))

    def _counters(self, profile_id: str) -> dict[str, Any]:
        # As Redis's HINCRBY does, counting for a member not in the index makes a blank card.
        return self._cards.setdefault(profile_id, {
            "profile_id": profile_id, "nickname": "", "anchor": 0, "city": "", "province": "",
            "interests": [], "active": 0, "fb_sum": 0, "fb_n": 0})

    async def add_load(self, profile_id: str, n: int) -> None:
        self._counters(profile_id)["active"] += n

    async def add_feedback(self, profile_id: str, helpful: bool) -> None:
        card = self._counters(profile_id)
        card["fb_n"] += 1
        card["fb_sum"] += int(helpful)

    async def mark_seen(self, profile_id: str, other: str) -> None:
        self._seen[profile_id].add(other)

    async def seen(self, profile_id: str) -> set[str]:
        return set(self._seen.get(profile_id, set()))


class MemoryOutbox:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    async def add(self, entry: dict[str, Any]) -> None:
        self._entries[f"{next(self._ids)}-0"] = copy.deepcopy(entry)

    async def pending(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        return [(k, copy.deepcopy(v)) for k, v in itertools.islice(self._entries.items(), count)]

    async def done(self, entry_id: str) -> None:
        self._entries.pop(entry_id, None)

    async def size(self) -> int:
        return len(self._entries)


class MemoryAllowances:
    def __init__(self) -> None:
        self._records: dict[str, tuple[float, dict[str, Any]]] = {}

    async def change(self, address: str,
                     fn: Callable[[dict[str, Any] | None], tuple[dict[str, Any], T, float]]
                     ) -> T:
        entry = self._records.get(address)
        current = entry[1] if entry is not None and entry[0] > time.time() else None
        # A copy in, a copy stored: no caller holds a live reference (as with Redis).
        record, out, until = fn(copy.deepcopy(current))
        self._records[address] = (until, copy.deepcopy(record))
        return out

    async def get_many(self, addresses: list[str]) -> list[dict[str, Any] | None]:
        now = time.time()
        out: list[dict[str, Any] | None] = []
        for a in addresses:
            entry = self._records.get(a)
            out.append(copy.deepcopy(entry[1]) if entry is not None and entry[0] > now
                       else None)
        return out


class MemoryOneTimeLinks:
    def __init__(self) -> None:
        self._values = _Expiring()

    async def put(self, nonce: str, value: str, ttl_seconds: int) -> None:
        self._values.set(nonce, value, ttl_seconds)

    async def take(self, nonce: str) -> str | None:
        value = self._values.get(nonce)
        self._values.delete(nonce)
        return value if value is None else str(value)


class MemoryTraces:
    """Traces (store/state.py) over every container the other memory parts hold, with the
    Redis rule: an entry keyed by her goes; in a list or set, an element that names her
    goes; any other value that names her goes whole."""

    def __init__(self, parts: list[object]) -> None:
        self._parts = parts

    @staticmethod
    def _names(value: Any, needles: list[str]) -> bool:
        blob = json.dumps(value, default=str, ensure_ascii=False)
        return any(n in blob for n in needles)

    def _containers(self) -> list[tuple[str, dict[Any, Any]]]:
        out = []
        for part in self._parts:
            family = type(part).__name__.removeprefix("Memory")
            for value in vars(part).values():
                if isinstance(value, _Expiring):
                    value = value._data
                if isinstance(value, dict):
                    out.append((family, value))
        return out

    def _walk(self, needles: list[str], erase: bool) -> tuple[dict[str, list[Any]], int]:
        found: dict[str, list[Any]] = {}
        gone = 0
        needles = [n for n in needles if n]
        for family, table in self._containers():
            for key in list(table):
                value = table[key]
                if self._names(key, needles):
                    hits = [key]
                elif isinstance(value, list | set):
                    hits = [e for e in value if self._names(e, needles)]
                    if hits and erase:
                        kept = [e for e in value if e not in hits]
                        table[key] = set(kept) if isinstance(value, set) else kept
                        gone += len(hits)
                    if hits:
                        found.setdefault(family, []).extend(hits)
                    continue
                else:
                    hits = [key] if self._names(value, needles) else []
                if hits:
                    found.setdefault(family, []).append(value)
                    if erase:
                        del table[key]
                        gone += 1
        return found, gone

    async def find(self, needles: list[str]) -> dict[str, list[Any]]:
        return self._walk(needles, erase=False)[0]

    async def erase(self, needles: list[str]) -> int:
        return self._walk(needles, erase=True)[1]


def memory_state(*, dedupe_ttl: float = 300, rate_per_second: float = 1000.0) -> State:
    """A fresh state for one process (tests, tools)."""
    parts = dict(dedupe=MemoryDedupe(dedupe_ttl), nonces=MemoryRequestNonces(),
                 order=MemoryFollowerOrder(),
                 tokens=MemoryTokenCache(), flows=MemoryFlowStates(), marks=MemorySendMarks(),
                 rate=MemorySendRate(rate_per_second), stops=MemoryCampaignStops(),
                 matches=MemoryMatchIndex(), outbox=MemoryOutbox(),
                 allowances=MemoryAllowances(), links=MemoryOneTimeLinks())
    return State(**parts, traces=MemoryTraces(list(parts.values())))  # type: ignore[arg-type]
