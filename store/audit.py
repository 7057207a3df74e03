"""The staff audit: one record per command attempt (who, role, masked text, result)."""

from __future__ import annotations

from typing import Any, cast

from pymongo import DESCENDING

from store.errors import guarded


@guarded
class MongoAudit:
    def __init__(self, db: Any) -> None:
        self._col = db["audit"]

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("at", DESCENDING)])

    async def add(self, doc: dict[str, Any]) -> None:
        await self._col.insert_one(doc)

    async def latest(self, limit: int, actor: str | None = None) -> list[dict[str, Any]]:
        query = {"actor": actor} if actor else {}
        cursor = self._col.find(query).sort("at", DESCENDING).limit(limit)
        return cast(list[dict[str, Any]], await cursor.to_list(length=limit))
