"""FAQ feedback: how often each common question was answered, and whether the answer
helped, in one collection (`faq_feedback`).

No member id is kept: per-entry counters, a counter of questions without an answer, and one
marker per answer (a random key the flow holds) so that a feedback counts once per answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, cast

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from store.errors import guarded

COLLECTION = "faq_feedback"


class FaqFeedbackRepo(Protocol):
    async def asked(self, entry: str, now: datetime) -> None:
        """One more answer given from `entry`."""
        ...

    async def unanswered(self, now: datetime) -> None:
        """One more question the knowledge base had no confident answer for."""
        ...

    async def record(self, answer: str, entry: str, helpful: bool, now: datetime) -> bool:
        """Count her feedback on the answer `answer` (a key made when it was given) once;
        False, and nothing counted, if that answer had its feedback already."""
        ...

    async def top(self, limit: int) -> list[dict[str, Any]]:
        """The most-answered entries: {entry, asked, helpful, not_helpful}, most first."""
        ...

    async def unanswered_count(self) -> int: ...


@guarded
class MongoFaqFeedback:
    def __init__(self, db: Any) -> None:
        self._col = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("kind", ASCENDING), ("asked", DESCENDING)])

    async def asked(self, entry: str, now: datetime) -> None:
        await self._col.update_one(
            {"_id": f"entry:{entry}"},
            {"$inc": {"asked": 1}, "$set": {"last_at": now},
             "$setOnInsert": {"kind": "entry", "entry": entry}}, upsert=True)

    async def unanswered(self, now: datetime) -> None:
        await self._col.update_one(
            {"_id": "unanswered"},
            {"$inc": {"count": 1}, "$set": {"last_at": now},
             "$setOnInsert": {"kind": "total"}}, upsert=True)

    async def record(self, answer: str, entry: str, helpful: bool, now: datetime) -> bool:
        try:  # the unique _id makes the marker the once-only guard
            await self._col.insert_one({"_id": f"answer:{answer}", "kind": "answer",
                                        "entry": entry, "helpful": helpful, "at": now})
        except DuplicateKeyError:
            return False
        await self._col.update_one(
            {"_id": f"entry:{entry}"},
            {"$inc": {"helpful" if helpful else "not_helpful": 1},
             "$setOnInsert": {"kind": "entry", "entry": entry, "asked": 0}}, upsert=True)
        return True

    async def top(self, limit: int) -> list[dict[str, Any]]:
        cursor = self._col.find({"kind": "entry"}).sort(
            [("asked", DESCENDING), ("_id", ASCENDING)]).limit(limit)
        docs = cast(list[dict[str, Any]], await cursor.to_list(length=limit))
        return [{"entry": d["entry"], "asked": int(d.get("asked", 0)),
                 "helpful": int(d.get("helpful", 0)),
                 "not_helpful": int(d.get("not_helpful", 0))} for d in docs]

    async def unanswered_count(self) -> int:
        doc = await self._col.find_one({"_id": "unanswered"})
        return int(doc.get("count", 0)) if doc else 0
