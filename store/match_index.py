"""The sister-matching index in Redis (the MatchIndex of store/state.py): members open to
matching, by birth-date ordinal.

Sorted sets per scope (all, city, province) answer "who is near this date" in O(log n);
a hash per member holds the few fields ranking needs, so a match request never scans the
profile store. The index is derived from profiles and can be rebuilt from them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, cast

from redis.asyncio import Redis

from store.keys import Keys
from store.state import card_scopes


class RedisMatchIndex:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def put(self, profile_id: str, card: dict[str, Any]) -> None:
        """Add or refresh a member; her load and feedback counters are kept."""
        old = await self.card(profile_id)
        pipe = self._r.pipeline(transaction=True)
        if old is not None:
            for scope in card_scopes(old):
                pipe.zrem(self._k.match_index(scope), profile_id)
        fields = {"nickname": card["nickname"], "anchor": int(card["anchor"]),
                  "city": card.get("city") or "", "province": card.get("province") or "",
                  "interests": json.dumps(card.get("interests", []), ensure_ascii=False)}
        pipe.hset(self._k.match_card(profile_id), mapping=fields)
        for scope in card_scopes(card):
            pipe.zadd(self._k.match_index(scope), {profile_id: int(card["anchor"])})
        await pipe.execute()

    async def put_many(self, cards: dict[str, dict[str, Any]], chunk: int = 1000) -> None:
        """Bulk load for a rebuild: members not yet in the index, pipelined in chunks."""
        items = list(cards.items())
        for start in range(0, len(items), chunk):
            pipe = self._r.pipeline(transaction=False)
            for profile_id, card in items[start:start + chunk]:
                pipe.hset(self._k.match_card(profile_id), mapping={
                    "nickname": card["nickname"], "anchor": int(card["anchor"]),
                    "city": card.get("city") or "", "province": card.get("province") or "",
                    "interests": json.dumps(card.get("interests", []), ensure_ascii=False)})
                for scope in card_scopes(card):
                    pipe.zadd(self._k.match_index(scope), {profile_id: int(card["anchor"])})
            await pipe.execute()

    async def empty(self) -> bool:
        return not await self._r.exists(self._k.match_index("all"))

    async def remove(self, profile_id: str) -> None:
        old = await self.card(profile_id)
        if old is None:
            return
        pipe = self._r.pipeline(transaction=True)
        for scope in card_scopes(old):
            pipe.zrem(self._k.match_index(scope), profile_id)
        pipe.delete(self._k.match_card(profile_id))
        await pipe.execute()

    async def card(self, profile_id: str) -> dict[str, Any] | None:
        return (await self.cards([profile_id]))[0]

    async def cards(self, profile_ids: list[str]) -> list[dict[str, Any] | None]:
        pipe = self._r.pipeline(transaction=False)
        for pid in profile_ids:
            pipe.hgetall(self._k.match_card(pid))
        out: list[dict[str, Any] | None] = []
        for pid, raw in zip(profile_ids, await pipe.execute(), strict=True):
            if not raw:
                out.append(None)
                continue
            d = {k.decode(): v.decode() for k, v in raw.items()}
            out.append({"profile_id": pid, "nickname": d.get("nickname", ""),
                        "anchor": int(d.get("anchor", 0)), "city": d.get("city", ""),
                        "province": d.get("province", ""),
                        "interests": json.loads(d.get("interests", "[]")),
                        "active": int(d.get("active", 0)), "fb_sum": int(d.get("fb_sum", 0)),
                        "fb_n": int(d.get("fb_n", 0))})
        return out

    async def nearby(self, scope: str, anchor: int, window: int, limit: int) -> list[str]:
        """Up to `limit` members nearest to `anchor` (half on each side) within `window`."""
        key = self._k.match_index(scope)
        pipe = self._r.pipeline(transaction=False)
        pipe.zrangebyscore(key, anchor, anchor + window, start=0, num=limit // 2 + 1)
        pipe.zrevrangebyscore(key, anchor, anchor - window, start=0, num=limit // 2 + 1)
        later, earlier = await pipe.execute()
        seen: dict[str, None] = {}
        for raw in [*earlier, *later]:
            seen[raw.decode() if isinstance(raw, bytes) else str(raw)] = None
        return list(seen)

    async def add_load(self, profile_id: str, n: int) -> None:
        await cast(Awaitable[int], self._r.hincrby(self._k.match_card(profile_id), "active", n))

    async def add_feedback(self, profile_id: str, helpful: bool) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hincrby(self._k.match_card(profile_id), "fb_n", 1)
        pipe.hincrby(self._k.match_card(profile_id), "fb_sum", int(helpful))
        await pipe.execute()

    async def mark_seen(self, profile_id: str, other: str) -> None:
        await cast(Awaitable[int], self._r.sadd(self._k.match_seen(profile_id), other))

    async def seen(self, profile_id: str) -> set[str]:
        raw = await cast(Awaitable[set[Any]], self._r.smembers(self._k.match_seen(profile_id)))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}
