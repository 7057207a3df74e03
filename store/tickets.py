"""转人工 tickets: one document per conversation with a person, at most one open per member
(a unique index on `open_for`, which only an open ticket carries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.errors import guarded


@guarded
class MongoTickets:
    def __init__(self, db: Any) -> None:
        self._col = db["tickets"]

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("open_for", ASCENDING)], unique=True, sparse=True)
        await self._col.create_index([("staff", ASCENDING), ("status", ASCENDING)])
        await self._col.create_index([("opened_at", DESCENDING)])

    async def create(self, doc: dict[str, Any]) -> bool:
        """Open it; False if she already has an open ticket."""
        try:
            await self._col.insert_one({**doc, "open_for": doc["member"], "status": "open"})
        except DuplicateKeyError:
            return False
        return True

    async def open_for(self, profile_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._col.find_one({"open_for": profile_id}))

    async def get(self, ticket_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._col.find_one({"_id": ticket_id}))

    async def update_open(self, ticket_id: str, set_fields: dict[str, Any],
                          inc: dict[str, int] | None = None,
                          only_if_unset: str | None = None) -> dict[str, Any] | None:
        """Change an open ticket (None if it is closed); `only_if_unset`: only while that
        field is not set yet (the first response is recorded once)."""
        query: dict[str, Any] = {"_id": ticket_id, "status": "open"}
        if only_if_unset:
            query[only_if_unset] = {"$exists": False}
        update: dict[str, Any] = {"$set": set_fields}
        if inc:
            update["$inc"] = inc
        return cast(dict[str, Any] | None, await self._col.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER))

    async def close(self, ticket_id: str, now: datetime, by: str) -> dict[str, Any] | None:
        """Close it once; None if it was closed already."""
        return cast(dict[str, Any] | None, await self._col.find_one_and_update(
            {"_id": ticket_id, "status": "open"},
            {"$set": {"status": "closed", "closed_at": now, "closed_by": by},
             "$unset": {"open_for": ""}}, return_document=ReturnDocument.AFTER))

    async def open_tickets(self, staff: str | None = None, unassigned: bool = False
                           ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"status": "open"}
        if staff is not None:
            query["staff"] = staff
        if unassigned:
            query["staff"] = None
        docs = await self._col.find(query).sort("opened_at", ASCENDING).to_list(None)
        return cast(list[dict[str, Any]], docs)

    async def since(self, when: datetime) -> list[dict[str, Any]]:
        docs = await self._col.find({"opened_at": {"$gte": when}}).to_list(None)
        return cast(list[dict[str, Any]], docs)
