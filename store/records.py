"""Typed shapes of the documents kept in MongoDB, and the keys that make each write
idempotent: one helper per kind of record, so a key is spelled in one place."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

Direction = Literal["in", "out"]
FollowState = Literal["subscribed", "unsubscribed", "unknown"]


class Identity(TypedDict):
    """One channel account of a person; a profile may hold several (WeChat, WeCom, JSON)."""

    channel: str
    app_id: str
    openid: str
    unionid: str | None


class Follow(TypedDict):
    state: FollowState
    changed_at: datetime | None


class Profile(TypedDict):
    """One small document per person. Interactions are never embedded here."""

    _id: str
    identity_keys: list[str]
    identities: list[Identity]
    first_seen: datetime
    last_seen: datetime
    follow: Follow
    counters: dict[str, int]
    tags: list[str]
    fields: dict[str, Any]
    lang: NotRequired[str]
    member: NotRequired[dict[str, Any]]  # id, since, tier, stage: set at sign-up
    consents: NotRequired[dict[str, Any]]  # privacy / sensitive / matching: the latest
    consent_history: NotRequired[list[dict[str, Any]]]  # every grant and withdrawal
    erasure: NotRequired[dict[str, Any]]  # a deletion she (or staff) asked for: due, by
    role: NotRequired[str]  # consumer, kol, employee, manager, marketer, admin
    staff: NotRequired[dict[str, Any]]  # on duty, the ticket she is answering (转人工)
    referral: NotRequired[dict[str, Any]]  # by (profile id), scene, event, at: set once
    source: NotRequired[dict[str, Any]]  # where she came from: kind, scene, campaign, by, at
    social: NotRequired[dict[str, Any]]  # social value: score, parts, at (bot/members/social)
    orders: NotRequired[dict[str, Any]]  # aggregates of her orders (bot/members/orders.py)
    imported: NotRequired[dict[str, Any]]  # source, id, at: a member from an import
    qr_codes: NotRequired[dict[str, Any]]  # her campaign QR codes, by campaign


class Interaction(TypedDict):
    """One inbound or outbound message, append-only, unique on dedupe_key."""

    _id: str
    profile_id: str
    channel: str
    direction: Direction
    type: str
    text: str | None
    payload: dict[str, Any]
    intent: str | None
    confidence: float | None
    latency_ms: float | None
    outcome: str
    dedupe_key: str
    ts: datetime
    # Nanosecond clock when the record was made: orders records that share a ts (BSON
    # keeps milliseconds; one follower's turns are serialized, so it only grows).
    seq: NotRequired[int]
    delivery: NotRequired[str]


def identity_key(channel: str, app_id: str, openid: str) -> str:
    """The unique string under which a channel identity is indexed."""
    return f"{channel}:{app_id}:{openid}"


def inbound_key(channel: str, dedupe_key: str) -> str:
    """An inbound message's interaction (and the source of what it earns or starts)."""
    return f"in:{channel}:{dedupe_key}"


def reply_key(inbound: str, index: int) -> str:
    """The `index`-th reply to an inbound message."""
    return f"{inbound}:out:{index}"


def push_key(key: str, index: int) -> str:
    """The `index`-th message of a push the bot starts itself (an invitation, a relay)."""
    return f"push:{key}:{index}"


def delivery_id(campaign: str, profile_id: str) -> str:
    """One member's delivery of a campaign (a broadcast, or `mot:<moment>` once ever)."""
    return f"{campaign}:{profile_id}"


def delivery_record_key(delivery: str) -> str:
    """The outbound interaction of a campaign delivery that was sent."""
    return f"bc:{delivery}"


def new_interaction(profile_id: str, channel: str, direction: Direction, kind: str,
                    text: str | None, payload: dict[str, Any], ts: datetime) -> Interaction:
    """A fresh interaction record (inbound "received", outbound "queued"; no dedupe key)."""
    return {
        "_id": uuid.uuid4().hex, "profile_id": profile_id, "channel": channel,
        "direction": direction, "type": kind, "text": text, "payload": payload,
        "intent": None, "confidence": None, "latency_ms": None,
        "outcome": "received" if direction == "in" else "queued", "dedupe_key": "",
        "ts": ts, "seq": time.time_ns(),
    }
