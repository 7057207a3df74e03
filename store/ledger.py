"""Loyalty points: an append-only ledger, the balance cached on the profile, reward stock.

No operation needs a transaction. Each write is one single-document atomic update, the
ledger's unique `key` makes every operation idempotent, and balances only ever move by
conditional `$inc`. Because an operation is two or three writes, a crash between them can
leave the cached balance and the ledger apart; every step is ordered so that the balance
is then *lower* than the ledger sum (never higher, never negative), which `check()` reports
and `repair()` fixes by crediting the difference.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.errors import guarded


@dataclass(frozen=True)
class Award:
    applied: bool
    balance: int
    earned: int


@dataclass(frozen=True)
class Spend:
    applied: bool
    balance: int
    reason: str | None = None  # "insufficient" or "duplicate" when not applied


@dataclass(frozen=True)
class Redemption:
    applied: bool
    balance: int
    # "unknown_item", "out_of_stock", "insufficient_points" or "duplicate" when not applied
    reason: str | None = None


@dataclass(frozen=True)
class Mismatch:
    profile_id: str
    balance: int
    ledger_sum: int
    earned: int
    ledger_earned: int


@guarded
class MongoLedger:
    """Points ledger and reward catalogue over the database that holds `profiles`."""

    def __init__(self, db: Any) -> None:
        self._profiles = db["profiles"]
        self._ledger = db["ledger"]
        self._rewards = db["rewards"]

    async def ensure_indexes(self) -> None:
        await self._ledger.create_index([("key", ASCENDING)], unique=True)
        await self._ledger.create_index([("profile_id", ASCENDING), ("ts", DESCENDING)])

    async def award(
        self,
        profile_id: str,
        key: str,
        points: int,
        reason: str,
        source: str | None = None,
        *,
        now: datetime,
    ) -> Award:
        """Credit `points` once per `key`; a repeated key changes nothing (applied=False)."""
        if points <= 0:
            raise ValueError(f"award needs positive points, got {points}")
        # Ledger first: the unique key is what makes the credit happen at most once. A crash
        # before the $inc leaves balance < ledger sum, which repair() credits.
        entry = self._entry(profile_id, key, points, reason, source, now)
        try:
            await self._ledger.insert_one(entry)
        except DuplicateKeyError:
            balance, earned = await self.balance(profile_id)
            return Award(applied=False, balance=balance, earned=earned)
        doc = await self._profiles.find_one_and_update(
            {"_id": profile_id},
            {"$inc": {"points.balance": points, "points.earned": points}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            # No upsert: a bare {"_id", "points"} document is not a profile. Undo the entry
            # so the ledger only ever refers to existing profiles.
            await self._ledger.delete_one({"_id": entry["_id"]})
            raise LookupError(f"no profile {profile_id!r}")
        return Award(applied=True, balance=_points(doc)[0], earned=_points(doc)[1])

    async def spend(
        self,
        profile_id: str,
        key: str,
        points: int,
        reason: str,
        source: str | None = None,
        *,
        now: datetime,
    ) -> Spend:
        """Debit `points` once per `key` unless that would make the balance negative."""
        if points <= 0:
            raise ValueError(f"spend needs positive points, got {points}")
        if await self._ledger.find_one({"key": key}, {"_id": 1}) is not None:
            return Spend(applied=False, balance=(await self.balance(profile_id))[0],
                         reason="duplicate")
        # Debit first, ledger second (the opposite of award). Debiting first means an
        # insufficient balance leaves nothing to undo in the ledger, and a crash before the
        # insert leaves balance < ledger sum: the same direction as an interrupted award, so
        # repair() only ever credits and can never push a balance below zero. A retry with
        # the same key then simply performs the spend again.
        balance = await self._debit(profile_id, points)
        if balance is None:
            return Spend(applied=False, balance=(await self.balance(profile_id))[0],
                         reason="insufficient")
        try:
            await self._ledger.insert_one(
                self._entry(profile_id, key, -points, reason, source, now))
        except DuplicateKeyError:
            # A concurrent call with the same key won between our check and insert.
            refunded = await self._refund(profile_id, points)
            return Spend(applied=False, balance=refunded, reason="duplicate")
        return Spend(applied=True, balance=balance)

    async def redeem(self, profile_id: str, item: str, key: str, *, now: datetime) -> Redemption:
        """Exchange one unit of `item` for its cost in points, once per `key`."""
        if await self._ledger.find_one({"key": key}, {"_id": 1}) is not None:
            return Redemption(applied=False, balance=(await self.balance(profile_id))[0],
                              reason="duplicate")
        # Stock, then points, then ledger. Each step that fails undoes the earlier ones with
        # an opposite $inc. A crash after taking stock loses one unit (undersold, never
        # oversold); a crash after the debit also leaves balance < ledger sum (see spend).
        reward = await self._rewards.find_one_and_update(
            {"_id": item, "stock": {"$gt": 0}}, {"$inc": {"stock": -1}},
            return_document=ReturnDocument.BEFORE,
        )
        if reward is None:
            exists = await self._rewards.find_one({"_id": item}, {"_id": 1}) is not None
            return Redemption(applied=False, balance=(await self.balance(profile_id))[0],
                              reason="out_of_stock" if exists else "unknown_item")
        cost = int(reward["cost"])
        balance = await self._debit(profile_id, cost)
        if balance is None:
            await self._rewards.update_one({"_id": item}, {"$inc": {"stock": 1}})
            return Redemption(applied=False, balance=(await self.balance(profile_id))[0],
                              reason="insufficient_points")
        try:
            await self._ledger.insert_one(
                self._entry(profile_id, key, -cost, f"redeem:{item}", None, now))
        except DuplicateKeyError:
            refunded = await self._refund(profile_id, cost)
            await self._rewards.update_one({"_id": item}, {"$inc": {"stock": 1}})
            return Redemption(applied=False, balance=refunded, reason="duplicate")
        return Redemption(applied=True, balance=balance)

    async def set_reward(self, item: str, name: str, cost: int, stock: int) -> None:
        """Create or overwrite a catalogue entry (called at start-up from config)."""
        if cost <= 0 or stock < 0:
            raise ValueError(f"reward {item!r}: cost must be > 0 and stock >= 0")
        await self._rewards.update_one(
            {"_id": item}, {"$set": {"name": name, "cost": cost, "stock": stock}}, upsert=True
        )

    async def rewards(self) -> list[dict[str, Any]]:
        """The whole catalogue, by code."""
        cursor = self._rewards.find({}).sort("_id", 1)
        items: list[dict[str, Any]] = await cursor.to_list(length=None)
        return items

    async def reward(self, item: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self._rewards.find_one({"_id": item})
        return doc

    async def entries(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` ledger entries of a profile, newest first."""
        # _id breaks ties between entries written in the same millisecond (BSON precision),
        # so the order is at least stable.
        order = [("ts", DESCENDING), ("_id", DESCENDING)]
        cursor = self._ledger.find({"profile_id": profile_id}).sort(order).limit(limit)
        docs: list[dict[str, Any]] = await cursor.to_list(length=limit)
        return docs

    async def balance(self, profile_id: str) -> tuple[int, int]:
        """(balance, earned) of a profile; (0, 0) when it has none or does not exist."""
        doc = await self._profiles.find_one({"_id": profile_id}, {"points": 1})
        return _points(doc)

    async def check(self) -> list[Mismatch]:
        """Profiles whose cached balance or earned total differs from their ledger.

        Meant for a quiet moment (start-up, maintenance): an operation in flight between
        its two writes shows up here as a mismatch, as a crashed one would.
        """
        sums: dict[str, tuple[int, int]] = {}
        pipeline = [{"$group": {
            "_id": "$profile_id",
            "sum": {"$sum": "$points"},
            "earned": {"$sum": {"$cond": [{"$gt": ["$points", 0]}, "$points", 0]}},
        }}]
        for row in await self._ledger.aggregate(pipeline).to_list(None):
            sums[str(row["_id"])] = (int(row["sum"]), int(row["earned"]))
        cached: dict[str, tuple[int, int]] = {}
        cursor = self._profiles.find({"points": {"$exists": True}}, {"points": 1})
        for doc in await cursor.to_list(None):
            cached[str(doc["_id"])] = _points(doc)
        mismatches = []
        for pid in sorted(sums.keys() | cached.keys()):
            if pid.startswith("erased:"):
                continue  # an erased member's entries, kept anonymised for the brand's sums
            balance, earned = cached.get(pid, (0, 0))
            ledger_sum, ledger_earned = sums.get(pid, (0, 0))
            if (balance, earned) != (ledger_sum, ledger_earned):
                mismatches.append(Mismatch(pid, balance, ledger_sum, earned, ledger_earned))
        return mismatches

    async def repair(self) -> int:
        """Set cached balances to their ledger sums; returns how many profiles were fixed."""
        fixed = 0
        for m in await self.check():
            # Only if the profile still holds what check() saw: a balance that moved in the
            # meantime is left for the next check rather than overwritten blindly.
            query: dict[str, Any] = {"_id": m.profile_id}
            if (m.balance, m.earned) == (0, 0):
                query["$or"] = [{"points": {"$exists": False}},
                                {"points.balance": 0, "points.earned": 0}]
            else:
                query.update({"points.balance": m.balance, "points.earned": m.earned})
            result = await self._profiles.update_one(
                query, {"$set": {"points": {"balance": m.ledger_sum, "earned": m.ledger_earned}}}
            )
            fixed += int(result.modified_count)
        return fixed

    async def _debit(self, profile_id: str, points: int) -> int | None:
        """Take `points` if the balance covers them; the new balance, or None if it did not."""
        doc = await self._profiles.find_one_and_update(
            {"_id": profile_id, "points.balance": {"$gte": points}},
            {"$inc": {"points.balance": -points}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _points(doc)[0]

    async def _refund(self, profile_id: str, points: int) -> int:
        doc = await self._profiles.find_one_and_update(
            {"_id": profile_id}, {"$inc": {"points.balance": points}},
            return_document=ReturnDocument.AFTER,
        )
        return _points(doc)[0]

    @staticmethod
    def _entry(
        profile_id: str, key: str, points: int, reason: str, source: str | None, now: datetime
    ) -> dict[str, Any]:
        if now.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware (UTC)")
        return {"_id": uuid.uuid4().hex, "profile_id": profile_id, "key": key,
                "points": points, "reason": reason, "source": source, "ts": now.astimezone(UTC)}


def _points(doc: dict[str, Any] | None) -> tuple[int, int]:
    points = (doc or {}).get("points") or {}
    return int(points.get("balance", 0)), int(points.get("earned", 0))
