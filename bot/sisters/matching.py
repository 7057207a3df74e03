"""Sister-community matching (姐妹社区): who to suggest to a member, best first.

Each member open to matching has an anchor: her baby's birth date, expected or actual, as
a day number. Closeness of anchors is life-stage proximity and never needs recomputing; a
sister with an earlier anchor is further along and can help. The ranking adds same city,
then province, shared interests, experience, room in the sister's schedule and how helpful
her past matches were, with weights from config.yml. Only nickname and stage are shown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.brand_calendar import parse_day
from bot.members.lifestage import stage_label
from bot.settings import MatchingSettings
from bot.tags import is_system_tag
from store.records import Profile
from store.state import MatchIndex


def anchor_of(profile: Profile) -> int | None:
    """The member's baby's birth date (expected or actual) as a day number, if known."""
    fields = profile.get("fields", {})
    for key in ("baby_birthday", "due_date"):
        day = parse_day(fields.get(key))
        if day is not None:
            return day.toordinal()
    return None


def shown_stage(anchor: int, today: date, lang: str = "zh") -> str:
    """What another member sees of a sister's stage (the life-stage module's label)."""
    return stage_label(date.fromordinal(anchor), today, lang)


@dataclass(frozen=True)
class Candidate:
    profile_id: str
    nickname: str
    anchor: int
    score: float


class Matcher:
    def __init__(self, index: MatchIndex, settings: MatchingSettings) -> None:
        self._index = index
        self._cfg = settings

    @staticmethod
    def card(profile: Profile) -> dict[str, Any] | None:
        anchor = anchor_of(profile)
        fields = profile.get("fields", {})
        if anchor is None or not fields.get("nickname"):
            return None
        return {"nickname": fields["nickname"], "anchor": anchor, "city": fields.get("city"),
                "province": fields.get("province"),
                "interests": sorted(t for t in profile.get("tags", [])
                                    if not is_system_tag(t))}

    async def refresh(self, profile: Profile) -> bool:
        """Put (or move) a consenting member in the index; False if she has no date yet."""
        card = self.card(profile)
        if card is None:
            await self._index.remove(profile["_id"])
            return False
        await self._index.put(profile["_id"], card)
        return True

    async def member_updated(self, profile: Profile) -> None:
        """New dates or a new city move a consenting member in the index."""
        if (profile.get("consents") or {}).get("matching", {}).get("accepted"):
            await self.refresh(profile)

    async def rebuild(self, profiles: AsyncIterator[Profile]) -> int:
        """Load every consenting member with a date into an empty index (after a Redis
        restart, or for a new deployment). Returns how many were loaded."""
        cards: dict[str, dict[str, Any]] = {}
        async for profile in profiles:
            if (profile.get("follow") or {}).get("state") == "unsubscribed":
                continue  # she left the official account: nobody can reach her
            if (profile.get("consents") or {}).get("matching", {}).get("accepted"):
                card = self.card(profile)
                if card is not None:
                    cards[profile["_id"]] = card
        await self._index.put_many(cards)
        return len(cards)

    async def ensure_built(self, profiles: AsyncIterator[Profile]) -> int:
        """Rebuild only if the index is empty (Redis here keeps nothing on disk)."""
        if not await self._index.empty():
            return 0
        return await self.rebuild(profiles)

    async def forget(self, profile_id: str) -> None:
        await self._index.remove(profile_id)

    async def mark_seen(self, profile_id: str, other: str) -> None:
        await self._index.mark_seen(profile_id, other)

    async def add_load(self, profile_id: str, n: int) -> None:
        """Open matches count against a sister's capacity."""
        if await self._index.card(profile_id) is not None:
            await self._index.add_load(profile_id, n)

    async def add_feedback(self, profile_id: str, helpful: bool) -> None:
        if await self._index.card(profile_id) is not None:
            await self._index.add_feedback(profile_id, helpful)

    async def card_of(self, profile_id: str) -> dict[str, Any] | None:
        return await self._index.card(profile_id)

    async def find(self, profile_id: str) -> list[Candidate]:
        """The best candidates for a member who is in the index; [] if she is not."""
        me = await self._index.card(profile_id)
        if me is None:
            return []
        cfg = self._cfg
        excluded = await self._index.seen(profile_id) | {profile_id}
        pool: dict[str, None] = {}
        for scope in [f"city:{me['city']}" if me["city"] else "",
                      f"prov:{me['province']}" if me["province"] else "", "all"]:
            if scope:
                for pid in await self._index.nearby(scope, me["anchor"], cfg.window_days,
                                                    cfg.pool):
                    if pid not in excluded:
                        pool[pid] = None
        scored = [Candidate(c["profile_id"], c["nickname"], c["anchor"], self.score(me, c))
                  for c in await self._index.cards(list(pool))
                  if c is not None and c["active"] < cfg.mentor_capacity]
        scored.sort(key=lambda c: (-c.score, abs(c.anchor - me["anchor"]), c.profile_id))
        return scored[: cfg.candidates]

    def score(self, me: dict[str, Any], other: dict[str, Any]) -> float:
        w, cfg = self._cfg.weights, self._cfg
        gap = abs(other["anchor"] - me["anchor"])
        stage = max(0.0, 1.0 - gap / cfg.window_days)
        same_city = float(bool(me["city"]) and other["city"] == me["city"])
        same_province = float(bool(me["province"]) and other["province"] == me["province"])
        mine, theirs = set(me["interests"]), set(other["interests"])
        interests = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0
        experience = 1.0 if other["anchor"] < me["anchor"] else 0.0  # she is further along
        feedback = (other["fb_sum"] + 1) / (other["fb_n"] + 2)  # helpful rate, with a prior
        load = 1.0 - other["active"] / cfg.mentor_capacity
        total = float(w.stage * stage + w.city * same_city + w.province * same_province
                      + w.interests * interests + w.experience * experience
                      + w.feedback * feedback) * (0.8 + 0.2 * float(load))
        return round(total, 6)
