"""The shared, short-lived state behind small Protocols: dedupe markers, per-follower order,
tokens, journeys in progress, send marks and rates, campaign stop flags, the matching index,
the outbox and contact allowances.

Two implementations keep the same contract (tests/contract/test_state_contract.py): Redis
(`store/redis_state.py`, `store/match_index.py`, `store/outbox.py`), shared by every app
process, and memory (`store/memory_state.py`), one process only, for tests and tools that
need the core without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Dedupe(Protocol):
    """First-writer-wins marker per inbound message, plus the result for retries."""

    async def claim(self, key: str) -> bool:
        """True for the first attempt only; set before any work starts."""
        ...

    async def publish(self, key: str, result: str) -> None: ...

    async def wait_result(self, key: str, timeout: float) -> str | None:
        """The first attempt's result, waited for at most `timeout` seconds."""
        ...


class RequestNonces(Protocol):
    """Signed requests seen recently: a captured (timestamp, nonce) must not carry another
    body (WeChat's plain-mode signature does not cover the body; its retries repeat it)."""

    async def remember(self, key: str, digest: str, ttl_seconds: int) -> bool:
        """True if `key` is new, or came before with this same `digest`; False if it came
        before with another body."""
        ...


class FollowerOrder(Protocol):
    """Tickets in arrival order per follower; each waits for the one before to finish."""

    async def ticket(self, follower: str) -> int: ...

    async def wait_turn(self, follower: str, ticket: int, max_wait: float) -> bool:
        """Wait until every earlier ticket is done. False if it gave up after max_wait."""
        ...

    async def done(self, follower: str, ticket: int) -> None: ...


class TokenCache(Protocol):
    """A shared secret value (an access_token) with expiry, and a lock for refreshing it."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str, ttl_seconds: float) -> None: ...

    def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0
             ) -> AbstractAsyncContextManager[None]:
        """Held by one caller at a time; TimeoutError after `wait` seconds of waiting."""
        ...


class FlowStates(Protocol):
    """Each member's journey in progress, and the inbox of flows started for her."""

    async def get(self, profile_id: str) -> dict[str, Any] | None: ...

    async def set(self, profile_id: str, state: dict[str, Any]) -> None: ...

    async def clear(self, profile_id: str) -> None: ...

    async def deliver(self, profile_id: str, frame: dict[str, Any]) -> None:
        """Hand a started flow to a member without touching her state: only her own turn
        (serialized per follower) writes that, so nothing she does at the moment is lost."""
        ...

    async def peek_inbox(self, profile_id: str) -> list[dict[str, Any]]:
        """Every delivered frame, oldest first, left in place until `ack_inbox`."""
        ...

    async def ack_inbox(self, profile_id: str, n: int) -> None:
        """Drop the first n frames, once the turn that took them saved her state."""
        ...


class SendMarks(Protocol):
    """Markers that make an outbound push at-most-once across job re-runs."""

    async def claim(self, key: str) -> bool: ...

    async def release(self, key: str) -> None:
        """Undo a claim when the send provably did not reach the platform."""
        ...


class SendRate(Protocol):
    """A global send rate without bursts: each send waits for its own slot."""

    async def acquire(self) -> None: ...


class CampaignStops(Protocol):
    """Cancel/pause flags of running campaigns, read before every send."""

    async def stop(self, campaign_id: str, why: str) -> None: ...

    async def clear(self, campaign_id: str) -> None: ...

    async def reason(self, campaign_id: str) -> str | None: ...


class Allowances(Protocol):
    """Small JSON records per address, each changed atomically by whichever process
    (a channel's contact allowance: bot/allowance.py)."""

    async def change(self, address: str,
                     fn: Callable[[dict[str, Any] | None], tuple[dict[str, Any], T, float]]
                     ) -> T:
        """Apply `fn` to the record as one step: it returns the new record, the result,
        and the epoch time after which the record may be forgotten. `fn` may run more
        than once (on a conflicting write), so it must not have side effects."""
        ...

    async def get_many(self, addresses: list[str]) -> list[dict[str, Any] | None]: ...


class MatchIndex(Protocol):
    """Members open to sister matching, by birth-date ordinal, with what ranking needs."""

    async def put(self, profile_id: str, card: dict[str, Any]) -> None:
        """Add or refresh a member; her load and feedback counters are kept."""
        ...

    async def put_many(self, cards: dict[str, dict[str, Any]]) -> None: ...

    async def empty(self) -> bool: ...

    async def remove(self, profile_id: str) -> None: ...

    async def card(self, profile_id: str) -> dict[str, Any] | None: ...

    async def cards(self, profile_ids: list[str]) -> list[dict[str, Any] | None]: ...

    async def nearby(self, scope: str, anchor: int, window: int, limit: int) -> list[str]:
        """Up to `limit` members nearest to `anchor` (half on each side) within `window`."""
        ...

    async def add_load(self, profile_id: str, n: int) -> None: ...

    async def add_feedback(self, profile_id: str, helpful: bool) -> None: ...

    async def mark_seen(self, profile_id: str, other: str) -> None: ...

    async def seen(self, profile_id: str) -> set[str]: ...


class Outbox(Protocol):
    """Inbound messages kept while the database is down, in arrival order."""

    async def add(self, entry: dict[str, Any]) -> None: ...

    async def pending(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]: ...

    async def done(self, entry_id: str) -> None: ...

    async def size(self) -> int: ...


class OneTimeLinks(Protocol):
    """Values behind single-use, expiring links (a member's export): taken at most once."""

    async def put(self, nonce: str, value: str, ttl_seconds: int) -> None: ...

    async def take(self, nonce: str) -> str | None:
        """The value, and it is gone; None if unknown, expired or already taken."""
        ...


class Traces(Protocol):
    """Whatever the shared state holds that names a member (her profile id, openids), for
    her export and her erasure. One rule over every kind of entry, so a new kind of key is
    covered the day it is added: an entry named by her goes; in a list, set, sorted set or
    stream, an element that names her goes; any other value that names her goes whole (a
    journey of someone else's that carries her invitation, a queued job with her text)."""

    async def find(self, needles: list[str]) -> dict[str, list[Any]]:
        """Her entries by key family (store/keys.py FAMILIES)."""
        ...

    async def erase(self, needles: list[str]) -> int:
        """Remove them; how many entries or elements went."""
        ...


@dataclass(frozen=True)
class State:
    """Every piece of shared state one app process uses."""

    dedupe: Dedupe
    nonces: RequestNonces
    order: FollowerOrder
    tokens: TokenCache
    flows: FlowStates
    marks: SendMarks
    rate: SendRate
    stops: CampaignStops
    matches: MatchIndex
    outbox: Outbox
    allowances: Allowances
    links: OneTimeLinks
    traces: Traces


def card_scopes(card: dict[str, Any]) -> list[str]:
    """The matching-index scopes a member is found in: all, her province, her city."""
    out = ["all"]
    if card.get("province"):
        out.append(f"prov:{card['province']}")
    if card.get("city"):
        out.append(f"city:{card['city']}")
    return out
