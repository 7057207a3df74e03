"""Referrals: a member's parametric QR code, and who brought whom.

A newcomer is linked to the first member whose QR brought them (scene `ref_<member id>`),
once, never to themselves. The referrer earns `share` points when the QR brings a new
follower (not an unfollow-refollow) and `referral` points when that newcomer completes
sign-up; each once per newcomer, enforced by the ledger's idempotency keys.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from bot.members.points import Points
from bot.messages import InboundMessage
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

SCENE_PREFIX = "ref_"


class QrIssuer(Protocol):
    """Creates a permanent parametric QR code for a scene (WeChat's qrcode/create)."""

    async def create_qr(self, scene: str) -> dict[str, str]:
        """{"ticket": ..., "url": ...}; raises on failure."""
        ...


class Referrals:
    name = "referral"  # an event hook of the orchestrator: the outcome is recorded under it

    def __init__(self, store: Store, points: Points, qr: QrIssuer | None) -> None:
        self._store = store
        self._points = points
        self._qr = qr

    async def qr_for(self, profile: Profile) -> dict[str, Any] | None:
        """The member's QR (created once and kept on the profile); None for non-members."""
        member = profile.get("member") or {}
        if "id" not in member:
            return None
        if member.get("qr"):
            return dict(member["qr"])
        if self._qr is None:
            raise RuntimeError("no QR issuer configured for this channel")
        scene = f"{SCENE_PREFIX}{member['id']}"
        qr = {"scene": scene, **await self._qr.create_qr(scene)}
        await self._store.profiles.update(profile["_id"], {"member.qr": qr})
        return qr

    async def on_event(self, profile: Profile, msg: InboundMessage, now: datetime
                       ) -> str | None:
        """A follow or scan by a member's QR code links the newcomer to her (EventHook)."""
        if msg.event not in ("subscribe", "scan"):
            return None
        # New only on the very first contact: an unfollow-refollow earns nobody points.
        is_new = msg.event == "subscribe" and profile.get("counters", {}).get("inbound") == 1
        return await self.on_scene(profile, msg.event_key, msg.event, is_new, now,
                                   msg.record_key)

    async def on_scene(self, newcomer: Profile, scene: str | None, event: str,
                       is_new_follower: bool, now: datetime, source: str) -> str | None:
        """Link a follower who came by a member's QR; award share points. The outcome."""
        if not scene or not scene.startswith(SCENE_PREFIX):
            return None
        referrer = await self._store.profiles.find_by_member(scene[len(SCENE_PREFIX):])
        if referrer is None:
            return "unknown_referrer"
        if referrer["_id"] == newcomer["_id"]:
            return "self_referral"
        if "id" in (newcomer.get("member") or {}):
            return "already_member"
        linked = await self._store.profiles.link_referrer(
            newcomer["_id"], {"by": referrer["_id"], "scene": scene, "event": event, "at": now})
        if not linked:
            return "already_referred"
        if is_new_follower:
            await self._points.award(referrer["_id"], "share", now,
                                     source=f"share:{newcomer['_id']}")
        log.info("referral linked", extra={"event": event, "new_follower": is_new_follower})
        return "linked"

    async def on_signup(self, newcomer: Profile, now: datetime) -> bool:
        """The referrer's points when the newcomer they brought completes sign-up: only
        for a person new to the brand, so not for a mobile number another profile already
        has (the referrer's own, signing up again from other accounts)."""
        referral = newcomer.get("referral") or {}
        if not referral.get("by"):
            return False
        mobile = (newcomer.get("fields") or {}).get("mobile")
        if mobile and await self._store.profiles.count_where(
                {"fields.mobile": mobile, "_id": {"$ne": newcomer["_id"]}}):
            log.info("referral points refused: mobile already on another profile")
            await self._store.profiles.update(newcomer["_id"],
                                              {"referral.refused": "mobile_in_use"})
            return False
        result = await self._points.award(str(referral["by"]), "referral", now,
                                          source=f"referral:{newcomer['_id']}")
        return bool(result["applied"])
