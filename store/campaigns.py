"""Marketing records: broadcasts, one delivery per (campaign, member), poll answers.

Exactly-once comes from keys, not hope: a delivery's `_id` is `<campaign>:<profile id>`
(a broadcast's id, or `mot:<moment>` for a life-stage message, which a member gets once
ever), and a send happens only after one atomic queued -> sending claim. A worker killed
after its claim leaves the delivery in `sending`: it is never sent again (at most once) and
is reported as interrupted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from store.errors import guarded

# What a delivery can end as; `sending` is the claim, `queued` the start.
DELIVERY_STATES = ("queued", "sending", "sent", "failed", "skipped")


@guarded
class MongoCampaigns:
    def __init__(self, db: Any) -> None:
        self._broadcasts = db["broadcasts"]
        self._deliveries = db["deliveries"]
        self._answers = db["poll_answers"]

    async def ensure_indexes(self) -> None:
        await self._deliveries.create_index([("broadcast", ASCENDING), ("status", ASCENDING)])
        await self._broadcasts.create_index([("created_at", DESCENDING)])
        await self._answers.create_index([("poll", ASCENDING)])

    # -- broadcasts ---------------------------------------------------------------------
    async def create(self, doc: dict[str, Any]) -> bool:
        """Insert a broadcast; False if one with this _id exists (a MOT run repeated)."""
        try:
            await self._broadcasts.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, broadcast_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None,
                    await self._broadcasts.find_one({"_id": broadcast_id}))

    async def move(self, broadcast_id: str, expected: list[str], status: str,
                   fields: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Change the status only from one of `expected` (one atomic update): the document
        after the change, or None when it was in another state."""
        doc = await self._broadcasts.find_one_and_update(
            {"_id": broadcast_id, "status": {"$in": expected}},
            {"$set": {"status": status, **(fields or {})}},
            return_document=ReturnDocument.AFTER)
        return cast(dict[str, Any] | None, doc)

    async def update(self, broadcast_id: str, fields: dict[str, Any],
                     inc: dict[str, int] | None = None) -> dict[str, Any] | None:
        update: dict[str, Any] = {}
        if fields:
            update["$set"] = fields
        if inc:
            update["$inc"] = inc
        doc = await self._broadcasts.find_one_and_update(
            {"_id": broadcast_id}, update, return_document=ReturnDocument.AFTER)
        return cast(dict[str, Any] | None, doc)

    async def chunk_done(self, broadcast_id: str, chunk: int) -> dict[str, Any] | None:
        """Record a finished chunk (a set: a chunk run twice counts once)."""
        doc = await self._broadcasts.find_one_and_update(
            {"_id": broadcast_id}, {"$addToSet": {"chunks_finished": chunk}},
            return_document=ReturnDocument.AFTER)
        return cast(dict[str, Any] | None, doc)

    async def recent(self, limit: int, kinds: list[str] | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"status": {"$ne": "draft"}}
        if kinds:
            query["kind"] = {"$in": kinds}
        cursor = self._broadcasts.find(query).sort("created_at", DESCENDING).limit(limit)
        return cast(list[dict[str, Any]], await cursor.to_list(length=limit))

    # -- deliveries ---------------------------------------------------------------------
    async def plan(self, docs: list[dict[str, Any]]) -> int:
        """Insert queued deliveries; existing ones (same _id) are left as they are.
        Returns how many were new."""
        if not docs:
            return 0
        try:
            result = await self._deliveries.insert_many(docs, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as e:
            return int(e.details.get("nInserted", 0))

    async def claim(self, delivery: str, now: datetime) -> dict[str, Any] | None:
        """queued -> sending, atomically: the delivery if this caller may send it."""
        doc = await self._deliveries.find_one_and_update(
            {"_id": delivery, "status": "queued"},
            {"$set": {"status": "sending", "claimed_at": now}},
            return_document=ReturnDocument.AFTER)
        return cast(dict[str, Any] | None, doc)

    async def queued_among(self, ids: list[str]) -> set[str]:
        """Which of these deliveries are still queued (the rest are settled or claimed)."""
        cursor = self._deliveries.find({"_id": {"$in": ids}, "status": "queued"}, {"_id": 1})
        return {str(d["_id"]) async for d in cursor}

    async def finish(self, delivery: str, status: str, fields: dict[str, Any]) -> None:
        await self._deliveries.update_one({"_id": delivery},
                                          {"$set": {"status": status, **fields}})

    async def release(self, delivery: str) -> None:
        """sending -> queued: nothing was sent (a quota pause), so it may be sent later."""
        await self._deliveries.update_one({"_id": delivery, "status": "sending"},
                                          {"$set": {"status": "queued"}})

    async def interrupted(self, ids: list[str], now: datetime) -> int:
        """Deliveries among `ids` left in `sending` by a worker that died: failed, never
        resent (the send may have reached WeChat, and a mother is not messaged twice)."""
        result = await self._deliveries.update_many(
            {"_id": {"$in": ids}, "status": "sending"},
            {"$set": {"status": "failed", "reason": "interrupted", "at": now}})
        return int(result.modified_count)

    async def queued_by_chunk(self, broadcast_id: str) -> dict[int, list[str]]:
        """Members still to send to, by the chunk they were planned in."""
        out: dict[int, list[str]] = {}
        cursor = self._deliveries.find({"broadcast": broadcast_id, "status": "queued"},
                                       {"chunk": 1, "profile_id": 1}).sort("_id", ASCENDING)
        async for doc in cursor:
            out.setdefault(int(doc["chunk"]), []).append(str(doc["profile_id"]))
        return out

    async def cancel_queued(self, broadcast_id: str, now: datetime) -> int:
        """Deliveries of a cancelled broadcast not yet started: skipped, reason cancelled."""
        result = await self._deliveries.update_many(
            {"broadcast": broadcast_id, "status": "queued"},
            {"$set": {"status": "skipped", "reason": "cancelled", "at": now}})
        return int(result.modified_count)

    async def tally(self, broadcast_id: str) -> dict[str, int]:
        """Deliveries by status, and skipped/failed by reason (`skipped:<reason>`)."""
        counts: dict[str, int] = {}
        cursor = self._deliveries.aggregate([
            {"$match": {"broadcast": broadcast_id}},
            {"$group": {"_id": {"s": "$status", "r": "$reason"}, "n": {"$sum": 1}}}])
        async for row in cursor:
            status, reason, n = row["_id"]["s"], row["_id"].get("r"), int(row["n"])
            counts[status] = counts.get(status, 0) + n
            if reason and status in ("skipped", "failed"):
                key = f"{status}:{reason}"
                counts[key] = counts.get(key, 0) + n
        return counts

    async def delivery(self, delivery: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._deliveries.find_one({"_id": delivery}))

    # -- polls --------------------------------------------------------------------------
    async def answer(self, poll_id: str, profile_id: str, option: int, now: datetime
                     ) -> bool:
        """Store her answer once; False if she had answered this poll already."""
        try:
            await self._answers.insert_one({"_id": f"{poll_id}:{profile_id}", "poll": poll_id,
                                            "profile_id": profile_id, "option": option,
                                            "at": now})
        except DuplicateKeyError:
            return False
        return True

    async def results(self, poll_id: str) -> dict[int, int]:
        out: dict[int, int] = {}
        cursor = self._answers.aggregate([{"$match": {"poll": poll_id}},
                                          {"$group": {"_id": "$option", "n": {"$sum": 1}}}])
        async for row in cursor:
            out[int(row["_id"])] = int(row["n"])
        return out
