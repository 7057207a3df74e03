"""Points: awarding by the rules in config.yml, tiers, and the member's summary.

The ledger (store) guarantees one entry per idempotency key and a balance kept by atomic
$inc; this module decides the keys: a `once` rule is keyed by member, a `day` rule by
member and calendar day in the brand's calendar, an `event` rule by the source event.
A `yuan` rule (orders) is credited by the amount paid (`credit`, `take_back`), never by a
flow's `award:` step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.brand_calendar import BrandCalendar
from bot.settings import PointsSettings, Tier
from store.ledger import Award
from store.protocols import Store


@dataclass(frozen=True)
class TakeBack:
    applied: bool  # False: this key was already taken back (or nothing could be)
    taken: int
    shortfall: int  # what her balance could not cover: points are never below zero


def award_rules(settings: PointsSettings) -> list[str]:
    """The rules a flow's `award:` step may name: not those paid per yuan."""
    return [name for name, r in settings.rules.items() if r.per != "yuan"]


@dataclass(frozen=True)
class TierStatus:
    tier: str
    next_tier: str | None
    to_next: int  # points still to earn; 0 at the top tier


def tier_status(earned: int, tiers: list[Tier]) -> TierStatus:
    current = tiers[0]
    for t in tiers:
        if earned >= t.min:
            current = t
    later = [t for t in tiers if t.min > earned]
    if not later:
        return TierStatus(current.name, None, 0)
    return TierStatus(current.name, later[0].name, later[0].min - earned)


class Points:
    def __init__(self, store: Store, settings: PointsSettings, calendar: BrandCalendar) -> None:
        self._store = store
        self._cfg = settings
        self._calendar = calendar

    def key(self, rule: str, profile_id: str, now: datetime, source: str | None) -> str:
        per = self._cfg.rules[rule].per
        if per == "once":
            return f"{rule}:{profile_id}"
        if per == "day":
            return f"{rule}:{profile_id}:{self._calendar.today(now).isoformat()}"
        return f"{rule}:{profile_id}:{source or now.isoformat()}"

    async def award(self, profile_id: str, rule: str, now: datetime, source: str | None = None
                    ) -> dict[str, Any]:
        """Apply a rule once per its key; the result is what templates show."""
        if self._cfg.rules[rule].per == "yuan":
            raise ValueError(f"points rule {rule!r} is paid per yuan: use credit()")
        points = self._cfg.rules[rule].points
        result = await self._store.ledger.award(
            profile_id, self.key(rule, profile_id, now, source), points, rule, source, now=now)
        status = await self.refresh_tier(profile_id, result.earned)
        return {"rule": rule, "applied": result.applied, "points": points,
                "balance": result.balance, "tier": status.tier}

    async def credit(self, profile_id: str, reason: str, points: int, key: str, source: str,
                     now: datetime) -> Award:
        """Credit `points` once per `key` (an order's points, worked out by the caller)."""
        award = await self._store.ledger.award(profile_id, key, points, reason, source,
                                               now=now)
        if award.applied:
            await self.refresh_tier(profile_id, award.earned)
        return award

    async def take_back(self, profile_id: str, reason: str, points: int, key: str,
                        source: str, now: datetime) -> TakeBack:
        """Debit `points` once per `key`, or as much of them as her balance holds.

        The ledger never lets a balance below zero (its repair relies on that): what a
        refund cannot take back, because she spent the points meanwhile, is returned as
        the shortfall for the caller to note; nothing is owed later.
        """
        take = points  # usually she still has them: no balance read first
        for _ in range(20):  # each round loses only to another debit of hers
            if take > 0:
                spend = await self._store.ledger.spend(profile_id, key, take, reason, source,
                                                       now=now)
                if spend.applied:
                    return TakeBack(applied=True, taken=take, shortfall=points - take)
                if spend.reason == "duplicate":
                    return TakeBack(applied=False, taken=0, shortfall=0)
                balance = spend.balance
            else:
                balance, _earned = await self._store.ledger.balance(profile_id)
            take = min(points, max(balance, 0))
            if take <= 0:
                return TakeBack(applied=True, taken=0, shortfall=points)
        raise RuntimeError(f"could not take back points for {key}")

    async def refresh_tier(self, profile_id: str, earned: int) -> TierStatus:
        status = tier_status(earned, self._cfg.tiers)
        await self._store.profiles.update(profile_id, {"member.tier": status.tier})
        return status

    async def summary(self, profile_id: str) -> dict[str, Any]:
        balance, earned = await self._store.ledger.balance(profile_id)
        status = tier_status(earned, self._cfg.tiers)
        entries = await self._store.ledger.entries(profile_id, 5)
        return {
            "balance": balance, "earned": earned, "tier": status.tier,
            "next_tier": status.next_tier, "to_next": status.to_next,
            "entries": [{"points": e["points"], "reason": e["reason"],
                         "date": self._calendar.today(e["ts"]).isoformat()} for e in entries],
        }

    def rules(self) -> dict[str, int]:
        """Points per rule, for templates."""
        return {name: r.points for name, r in self._cfg.rules.items()}

    def reward_words(self, catalogue: dict[str, str]) -> dict[str, tuple[str, ...]]:
        """Each catalogue item's name and the aliases config.yml gives it, by code."""
        configured = self._cfg.rewards
        return {code: (name, *(configured[code].aliases if code in configured else ()))
                for code, name in catalogue.items()}

    async def load_rewards(self) -> None:
        """Create catalogue items from config.yml; stock of existing items is left alone."""
        for code, r in self._cfg.rewards.items():
            if await self._store.ledger.reward(code) is None:
                await self._store.ledger.set_reward(code, r.name, r.cost, r.stock)
