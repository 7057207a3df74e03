"""A durable outbox in a Redis stream: inbound messages that could not be recorded while the
database was down, kept in arrival order until they are written."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, cast

from redis.asyncio import Redis

from store.keys import Keys


class RedisOutbox:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._key = keys.outbox

    async def add(self, entry: dict[str, Any]) -> None:
        # Never trimmed: an entry leaves only once it is written.
        await self._r.xadd(self._key, {"data": json.dumps(entry, ensure_ascii=False)})

    async def pending(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """The oldest entries first."""
        rows = await cast(Awaitable[list[Any]], self._r.xrange(self._key, count=count))
        out = []
        for entry_id, fields in rows:
            raw = fields.get(b"data") or fields.get("data")
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append((eid, cast(dict[str, Any], json.loads(raw))))
        return out

    async def done(self, entry_id: str) -> None:
        await self._r.xdel(self._key, entry_id)

    async def size(self) -> int:
        return int(await self._r.xlen(self._key))
