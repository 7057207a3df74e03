"""How the core reaches a member outside a passive reply: one Outlet per channel.

The channel knows its own rules (WeChat: the 48-hour customer-service window, template
messages, errcodes, which identity to use); the core only hears channel-free outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.messages import Reply
from store.records import Profile


class Delivery(StrEnum):
    SENT = "sent"
    WINDOW_CLOSED = "window_closed"  # the channel does not let us write to her now
    NO_BUDGET = "no_budget"  # inside her window, but her allowance of messages is spent
    QUOTA = "quota"  # the account's own daily quota is spent: pause, try tomorrow
    FAILED = "failed"  # refused for another reason (see code)
    UNCERTAIN = "uncertain"  # it may or may not have arrived: never retried


@dataclass(frozen=True)
class SendResult:
    outcome: Delivery
    code: int | None = None  # the platform's own code, for the record
    via: str = ""  # how it went, e.g. customer_service or template

    @property
    def sent(self) -> bool:
        return self.outcome is Delivery.SENT


@dataclass(frozen=True)
class Route:
    """How a message would reach her now: `via` (e.g. customer_service, template), or
    None with the reason it cannot (outside_window, no_budget)."""

    via: str | None
    skip: str | None = None


@dataclass(frozen=True)
class Fallback:
    """A pre-approved template message to use where free text may not go (WeChat's
    template messages outside the 48-hour window)."""

    template_id: str
    data: dict[str, str] = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True)
class ReachRules:
    """What a channel allows, as the core needs it for estimates and wording."""

    window: timedelta | None  # free text reaches her this long after her last message
    text_name: str  # what marketers call a free-text push there (客服消息)
    fallback_name: str  # and the pre-approved kind (模板消息)
    text_daily: int  # the account's daily limit of each
    fallback_daily: int


@dataclass(frozen=True)
class Recipient:
    """A member as her channel addresses her."""

    address: str  # the channel's id for her (an openid)
    last_seen: datetime | None  # her last message, for the channel's contact window


class Outlet(Protocol):
    """A channel's way to message a member who did not just write."""

    @property
    def channel(self) -> str: ...

    def recipient(self, profile: Profile) -> Recipient | None:
        """Her address on this channel's account, if she has one there."""
        ...

    @property
    def rules(self) -> ReachRules: ...

    async def reach_many(self, to: list[Recipient], has_fallback: bool, now: datetime
                         ) -> list[Route]:
        """How a campaign message would reach each of them now: the channel's rules
        (window, per-member allowance), asked before any quota is spent. A look only:
        `send_now` decides for real."""
        ...

    async def push(self, address: str, replies: list[Reply], keys: list[str],
                   answering: str | None = None) -> None:
        """Queue replies for durable delivery, at most once per key (late answers,
        invitations, staff notes); `answering` names the inbound they answer, whose turn
        may have room kept for them. Outcomes are recorded on the interactions `keys`;
        one the channel does not allow now waits for her next message."""
        ...

    async def send_now(self, to: Recipient, text: str, fallback: Fallback | None,
                       now: datetime) -> SendResult:
        """Send one campaign message at once (from a job); WINDOW_CLOSED or NO_BUDGET
        without trying when neither free text nor the fallback may go."""
        ...


def recipient_of(outlets: Iterable[Outlet], profile: Profile) -> tuple[Outlet, Recipient] | None:
    """The first channel that can reach her, and her address there."""
    for outlet in outlets:
        found = outlet.recipient(profile)
        if found is not None:
            return outlet, found
    return None
