"""Referrals and channel attribution: a member's parametric QR code, staff/KOL/member
campaign codes, who brought whom, and where every follower came from.

A newcomer is linked to the first member whose QR brought them (scene `ref_<member id>`),
once, never to themselves. The referrer earns `share` points when the QR brings a new
follower (not an unfollow-refollow) and `referral` points when that newcomer completes
sign-up; each once per newcomer, enforced by the ledger's idempotency keys.

Campaign codes (scene `cq_<member id or profile id>_<campaign>`, `scrm qr --for ... --campaign`)
attribute followers to their owner and campaign only: no points, no referral link (points
are the members' referral programme; a member's own code stays `ref_`).

Every follower's `source` is set at her first follow or scan and never again (first wins):
`{"kind": "referral"|"qr"|"organic", "scene", "campaign", "by", "at"}`; a follow without a
scene is organic, and any other scene (a code the brand made elsewhere) is its own campaign.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import datetime
from typing import Any, Final, Protocol

from bot.members.points import Points
from bot.members.social import Social
from bot.messages import InboundMessage
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

SCENE_PREFIX = "ref_"
CAMPAIGN_PREFIX = "cq_"
SCENE_MAX: Final = 64  # WeChat's limit on qrcode/create scene_str
# ASCII only: a scene is counted in bytes by some of WeChat's clients; with a profile id
# (32) as owner the longest scene is cq_ + 32 + _ + 24 = 60.
CAMPAIGN_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")
_MEMBER_ID: Final = re.compile(r"^M[0-9A-F]{10}$")


class QrIssuer(Protocol):
    """Creates a permanent parametric QR code for a scene (WeChat's qrcode/create)."""

    async def create_qr(self, scene: str) -> dict[str, str]:
        """{"ticket": ..., "url": ...}; raises on failure."""
        ...


class CampaignNameError(ValueError):
    """A campaign name that cannot go into a QR scene (the message says what can)."""


def campaign_scene(owner: Profile, campaign: str) -> str:
    """The scene of `owner`'s code for `campaign` (CampaignNameError if the name is bad)."""
    if not CAMPAIGN_NAME.match(campaign):
        raise CampaignNameError(
            f"campaign name {campaign[:40]!r}: 1-24 letters, digits, '-' or '_', starting "
            "with a letter or digit")
    ref = (owner.get("member") or {}).get("id") or owner["_id"]
    scene = f"{CAMPAIGN_PREFIX}{ref}_{campaign}"
    assert len(scene) <= SCENE_MAX, scene
    return scene


class Referrals:
    name = "referral"  # an event hook of the orchestrator: the outcome is recorded under it

    def __init__(self, store: Store, points: Points, qr: QrIssuer | None,
                 social: Social | None = None) -> None:
        self._store = store
        self._points = points
        self._qr = qr
        self._social = social

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

    async def campaign_qr(self, owner: Profile, campaign: str) -> dict[str, Any]:
        """`owner`'s code for `campaign` (a member, KOL or member of staff), made once
        through WeChat and kept on her profile (`qr_codes.<campaign>`)."""
        scene = campaign_scene(owner, campaign)
        kept = (owner.get("qr_codes") or {}).get(campaign)
        if kept:
            return dict(kept)
        if self._qr is None:
            raise RuntimeError("no QR issuer configured for this channel")
        qr = {"scene": scene, "campaign": campaign, **await self._qr.create_qr(scene)}
        await self._store.profiles.update(owner["_id"], {f"qr_codes.{campaign}": qr})
        return qr

    async def on_event(self, profile: Profile, msg: InboundMessage, now: datetime
                       ) -> str | None:
        """A follow or scan: where she came from (once), and a member's QR code links the
        newcomer to her (EventHook)."""
        if msg.event not in ("subscribe", "scan"):
            return None
        # New only on the very first contact: an unfollow-refollow earns nobody points.
        is_new = msg.event == "subscribe" and profile.get("counters", {}).get("inbound") == 1
        first = profile.get("counters", {}).get("inbound") == 1
        brought_by = await self.attribute(profile, msg.event_key, now, first)
        outcome, referrer = await self._link(profile, msg.event_key, msg.event, is_new, now,
                                             msg.record_key)
        if self._social is not None:
            await self._social.brought([brought_by, referrer], msg.record_key)
        return outcome

    async def attribute(self, profile: Profile, scene: str | None, now: datetime,
                        first: bool = True) -> str | None:
        """Set her `source` unless she has one; the profile id it credits, if any. Only
        her first contact says where she came from: someone who wrote before sources were
        kept is recorded as `unknown`, not credited to the next code she scans."""
        if profile.get("source"):
            return None  # first wins: a later code, a refollow or an import change nothing
        source = await self._source(profile, scene or None, now) if first else {
            "kind": "unknown", "scene": None, "campaign": None, "by": None, "at": now}
        # One follower's events are handled one at a time (the orchestrator's order), so
        # reading `source` from the profile just touched and writing it cannot race.
        await self._store.profiles.update(profile["_id"], {"source": source})
        log.info("source recorded", extra={"kind": source["kind"],
                                           "campaign": source["campaign"]})
        return str(source["by"]) if source["by"] else None

    async def _source(self, profile: Profile, scene: str | None, now: datetime
                      ) -> dict[str, Any]:
        kind = "organic" if scene is None else "qr"
        campaign: str | None = None
        owner: Profile | None = None
        if scene and scene.startswith(SCENE_PREFIX):
            owner = await self._store.profiles.find_by_member(scene[len(SCENE_PREFIX):])
            kind = "referral" if owner is not None else "qr"
        elif scene and scene.startswith(CAMPAIGN_PREFIX):
            ref, _, campaign = scene[len(CAMPAIGN_PREFIX):].partition("_")
            profiles = self._store.profiles
            owner = await (profiles.find_by_member(ref) if _MEMBER_ID.match(ref)
                           else profiles.get(ref))
            campaign = campaign or None
        elif scene:
            campaign = scene  # a code the brand made elsewhere (a flow's `scenes:`, an expo)
        by = owner["_id"] if owner is not None and owner["_id"] != profile["_id"] else None
        if kind == "referral" and by is None:
            kind = "qr"  # her own code: it brought nobody
        return {"kind": kind, "scene": scene, "campaign": campaign, "by": by, "at": now}

    async def on_scene(self, newcomer: Profile, scene: str | None, event: str,
                       is_new_follower: bool, now: datetime, source: str) -> str | None:
        """Link a follower who came by a member's QR; award share points. The outcome."""
        outcome, _ = await self._link(newcomer, scene, event, is_new_follower, now, source)
        return outcome

    async def _link(self, newcomer: Profile, scene: str | None, event: str,
                    is_new_follower: bool, now: datetime, source: str
                    ) -> tuple[str | None, str | None]:
        """The outcome, and the referrer's profile id when the newcomer was linked now."""
        if not scene or not scene.startswith(SCENE_PREFIX):
            return None, None
        referrer = await self._store.profiles.find_by_member(scene[len(SCENE_PREFIX):])
        if referrer is None:
            return "unknown_referrer", None
        if referrer["_id"] == newcomer["_id"]:
            return "self_referral", None
        if "id" in (newcomer.get("member") or {}):
            return "already_member", None
        linked = await self._store.profiles.link_referrer(
            newcomer["_id"], {"by": referrer["_id"], "scene": scene, "event": event, "at": now})
        if not linked:
            return "already_referred", None
        if is_new_follower:
            await self._points.award(referrer["_id"], "share", now,
                                     source=f"share:{newcomer['_id']}")
        log.info("referral linked", extra={"event": event, "new_follower": is_new_follower})
        return "linked", referrer["_id"]

    async def on_signup(self, newcomer: Profile, now: datetime) -> bool:
        """The referrer's points when the newcomer they brought completes sign-up: only
        for a person new to the brand, so not for a mobile number another profile already
        has (the referrer's own, signing up again from other accounts)."""
        referral = newcomer.get("referral") or {}
        if not referral.get("by") or newcomer.get("imported"):
            return False  # an imported member was the brand's before she followed the code
        applied = await self._referral_points(newcomer, str(referral["by"]), now)
        if self._social is not None:
            await self._social.brought([str(referral["by"])], f"signup:{newcomer['_id']}")
        return applied

    async def _referral_points(self, newcomer: Profile, referrer: str, now: datetime
                               ) -> bool:
        mobile = (newcomer.get("fields") or {}).get("mobile")
        if mobile and await self._store.profiles.count_where(
                {"fields.mobile": mobile, "_id": {"$ne": newcomer["_id"]}}):
            log.info("referral points refused: mobile already on another profile")
            await self._store.profiles.update(newcomer["_id"],
                                              {"referral.refused": "mobile_in_use"})
            return False
        result = await self._points.award(referrer, "referral", now,
                                          source=f"referral:{newcomer['_id']}")
        return bool(result["applied"])

    async def source_counts(self) -> dict[str, tuple[int, int]]:
        """Profiles by where they came from: kind (or `campaign:<name>` for campaign
        codes, and `unknown` for those seen before attribution) -> (all, members)."""
        counts: Counter[str] = Counter()
        members: Counter[str] = Counter()
        async for d in self._store.profiles.fields_where(
                {}, ["source.kind", "source.campaign", "member.id"]):
            source = d.get("source") or {}
            keys = [str(source.get("kind") or "unknown")]
            if source.get("campaign"):
                keys.append(f"campaign:{source['campaign']}")
            for key in keys:
                counts[key] += 1
                members[key] += "id" in (d.get("member") or {})
        return {k: (n, members[k]) for k, n in counts.most_common()}
