"""The Redis implementation of the shared state (store/state.py): dedupe markers,
per-follower order, cached tokens, journeys in progress, send marks and rate, stop flags.

Redis is the one place shared by every app process, so anything that must hold across
processes (a retry landing on another process, two messages of one follower) lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import LockError, WatchError

from store.keys import Keys
from store.state import State, T

# Sets `done` to max(done, ticket) atomically: finishing out of order never moves it back.
_MARK_DONE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


class RedisDedupe:
    """First-writer-wins marker per inbound message, plus the result for retries."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: float) -> None:
        self._r = redis
        self._k = keys
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    async def claim(self, key: str) -> bool:
        """True for the first attempt only; set before any work starts."""
        return bool(await self._r.set(self._k.dedupe(key), "1", nx=True, px=self._ttl_ms))

    async def publish(self, key: str, result: str) -> None:
        await self._r.set(self._k.result(key), result, px=self._ttl_ms)

    async def wait_result(self, key: str, timeout: float) -> str | None:
        """The first attempt's result, polled until `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self._r.get(self._k.result(key))
            if value is not None:
                return value.decode() if isinstance(value, bytes) else str(value)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


class RedisRequestNonces:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def remember(self, key: str, digest: str, ttl_seconds: int) -> bool:
        name = self._k.nonce(key)
        if await self._r.set(name, digest, nx=True, ex=max(1, ttl_seconds)):
            return True
        seen = await self._r.get(name)
        # Gone meanwhile (expired): this request is the first of its key again.
        return seen is None or seen.decode() == digest


class RedisFollowerOrder:
    """Tickets in arrival order per follower; each waits for the one before to finish.

    Works across processes. A ticket whose holder died is skipped after `max_wait`.
    """

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int = 86400) -> None:
        self._r = redis
        self._k = keys
        self._ttl = ttl_seconds
        self._mark_done: Any = redis.register_script(_MARK_DONE)

    async def ticket(self, follower: str) -> int:
        pipe = self._r.pipeline(transaction=True)
        pipe.incr(self._k.order_next(follower))
        pipe.expire(self._k.order_next(follower), self._ttl)
        n, _ = await pipe.execute()
        return int(n)

    async def wait_turn(self, follower: str, ticket: int, max_wait: float) -> bool:
        """Wait until every earlier ticket is done. False if it gave up after max_wait."""
        done = await self._r.get(self._k.order_done(follower))
        if int(done or 0) >= ticket - 1:
            return True
        # The finisher of ticket-1 pushes to our turn list; BLPOP wakes us without polling.
        # In slices shorter than the client's socket timeout (5 s): one long BLPOP would
        # fail as a socket timeout while a slow earlier turn (Rasa at its limit) runs.
        deadline = time.monotonic() + max_wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            pending = cast(Awaitable[Any], self._r.blpop(
                [self._k.order_turn(follower, ticket)],
                timeout=max(1, min(3, int(left)))))
            if await pending is not None:
                return True
            done = await self._r.get(self._k.order_done(follower))
            if int(done or 0) >= ticket - 1:
                return True
        done = await self._r.get(self._k.order_done(follower))
        return int(done or 0) >= ticket - 1

    async def done(self, follower: str, ticket: int) -> None:
        await self._mark_done(
            keys=[self._k.order_done(follower), self._k.order_turn(follower, ticket + 1)],
            args=[ticket, self._ttl],
        )


class RedisTokenCache:
    """A shared secret value (e.g. an access_token) with expiry and a refresh lock."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def get(self, name: str) -> str | None:
        value = await self._r.get(self._k.token(name))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set(self, name: str, value: str, ttl_seconds: float) -> None:
        await self._r.set(self._k.token(name), value, px=max(1, int(ttl_seconds * 1000)))

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0
                   ) -> AsyncIterator[None]:
        lock = self._r.lock(self._k.token_lock(name), timeout=timeout, blocking_timeout=wait)
        if not await lock.acquire():
            raise TimeoutError(f"lock {name!r} not acquired within {wait} s")
        try:
            yield
        finally:
            with contextlib.suppress(LockError):  # expired meanwhile: nothing to release
                await lock.release()


class RedisFlowStates:
    """Each member's journey in progress, as JSON, forgotten after `ttl` of silence."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int = 7 * 86400) -> None:
        self._r = redis
        self._k = keys
        self._ttl = ttl_seconds

    async def get(self, profile_id: str) -> dict[str, Any] | None:
        raw = await self._r.get(self._k.flow_state(profile_id))
        return cast(dict[str, Any], json.loads(raw)) if raw else None

    async def set(self, profile_id: str, state: dict[str, Any]) -> None:
        await self._r.set(self._k.flow_state(profile_id), json.dumps(state, ensure_ascii=False),
                          ex=self._ttl)

    async def clear(self, profile_id: str) -> None:
        await self._r.delete(self._k.flow_state(profile_id))

    async def deliver(self, profile_id: str, frame: dict[str, Any]) -> None:
        """Hand a started flow to a member without touching her state: only her own turn
        (serialized per follower) writes that, so nothing she does at the moment is lost."""
        key = self._k.flow_inbox(profile_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(frame, ensure_ascii=False))
        pipe.expire(key, self._ttl)
        await pipe.execute()

    async def peek_inbox(self, profile_id: str) -> list[dict[str, Any]]:
        """Every delivered frame, oldest first, left in place until `ack_inbox`."""
        raw = await cast(Awaitable[list[bytes]],
                         self._r.lrange(self._k.flow_inbox(profile_id), 0, -1))
        return [cast(dict[str, Any], json.loads(r)) for r in raw]

    async def ack_inbox(self, profile_id: str, n: int) -> None:
        """Drop the first n frames, once the turn that took them saved her state (a failed
        turn leaves them for the next one; frames delivered meanwhile stay)."""
        await cast(Awaitable[Any], self._r.ltrim(self._k.flow_inbox(profile_id), n, -1))


class RedisSendMarks:
    """SET NX markers that make an outbound push at-most-once across job re-runs."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int = 7 * 86400) -> None:
        self._r = redis
        self._k = keys
        self._ttl = ttl_seconds

    async def claim(self, key: str) -> bool:
        return bool(await self._r.set(self._k.sent(key), "1", nx=True, ex=self._ttl))

    async def release(self, key: str) -> None:
        """Undo a claim when the send provably did not reach the platform."""
        await self._r.delete(self._k.sent(key))


# Reserves the next send slot: slots are 1/rate seconds apart, on Redis's clock, for
# every process together. Returns how long the caller waits (microseconds) for its slot.
_NEXT_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + step)
redis.call('SET', KEYS[1], tostring(slot), 'PX', 60000)
return slot - now
"""


class RedisSendRate:
    """A global send rate shared by every process, without bursts: each send reserves the
    next slot, 1/rate seconds after the previous one, and waits for it."""

    def __init__(self, redis: Redis, keys: Keys, per_second: float) -> None:
        self._r = redis
        self._k = keys
        self._step_us = int(1_000_000 / per_second)
        self._next_slot: Any = redis.register_script(_NEXT_SLOT)

    async def acquire(self) -> None:
        wait_us = int(await self._next_slot(keys=[self._k.send_rate(0)], args=[self._step_us]))
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1_000_000)


class RedisCampaignStops:
    """Cancel/pause flags of running broadcasts, read before every send (cheap, shared)."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int = 40 * 86400) -> None:
        self._r = redis
        self._k = keys
        self._ttl = ttl_seconds

    async def stop(self, broadcast_id: str, why: str) -> None:
        await self._r.set(self._k.campaign_stop(broadcast_id), why, ex=self._ttl)

    async def clear(self, broadcast_id: str) -> None:
        await self._r.delete(self._k.campaign_stop(broadcast_id))

    async def reason(self, broadcast_id: str) -> str | None:
        value = await self._r.get(self._k.campaign_stop(broadcast_id))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)


class RedisAllowances:
    """One JSON value per address, changed with WATCH/MULTI: the change is computed in
    Python (bot/allowance.py, one copy of the rule) and written only if nobody wrote the
    key meanwhile; otherwise it runs again on the new value."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def change(self, address: str,
                     fn: Callable[[dict[str, Any] | None], tuple[dict[str, Any], T, float]]
                     ) -> T:
        key = self._k.allowance(address)
        async with self._r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    record, out, until = fn(json.loads(raw) if raw else None)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, json.dumps(record, ensure_ascii=False),
                             pxat=max(int(until * 1000) + 1, int(time.time() * 1000) + 1))
                    await pipe.execute()
                    return out
                except WatchError:
                    continue  # another process changed it: compute again on its value

    async def get_many(self, addresses: list[str]) -> list[dict[str, Any] | None]:
        if not addresses:
            return []
        raws = await self._r.mget([self._k.allowance(a) for a in addresses])
        return [json.loads(r) if r else None for r in raws]


class RedisOneTimeLinks:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def put(self, nonce: str, value: str, ttl_seconds: int) -> None:
        await self._r.set(self._k.link(nonce), value, ex=ttl_seconds)

    async def take(self, nonce: str) -> str | None:
        raw = await self._r.getdel(self._k.link(nonce))  # one atomic read-and-forget
        return raw.decode() if isinstance(raw, bytes) else raw


class RedisTraces:
    """Traces (store/state.py) over every key of this deployment: its namespace, and its
    arq jobs (kept under arq's own prefix, named with the namespace)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._r = redis
        self._k = keys

    async def _keys(self) -> list[bytes]:
        ns = self._k.namespace
        found = [k async for k in self._r.scan_iter(f"{ns}:*", count=1000)]
        return found + [k async for k in self._r.scan_iter(f"arq:*{ns}:*", count=1000)]

    @staticmethod
    def _names(raw: Any, needles: list[bytes]) -> bool:
        if isinstance(raw, dict):  # a hash: its fields and values
            raw = b"\0".join(x if isinstance(x, bytes) else str(x).encode()
                              for kv in raw.items() for x in kv)
        elif isinstance(raw, tuple):  # a stream entry: (id, fields)
            return RedisTraces._names(raw[1], needles)
        blob = raw if isinstance(raw, bytes) else json.dumps(raw, default=str).encode()
        return any(n in blob for n in needles)

    async def _walk(self, needles: list[str], erase: bool) -> tuple[dict[str, list[Any]], int]:
        found: dict[str, list[Any]] = {}
        gone = 0
        bneedles = [n.encode() for n in needles if n]
        r = self._r
        for key in await self._keys():
            name = key.decode()
            family = self._k.family(name)
            kind = (await r.type(key)).decode()
            if self._names(key, bneedles):
                hits: list[Any] = [name]
            elif kind in ("list", "set", "zset", "stream"):
                hits = [e for e in await self._elements(name, kind)
                        if self._names(e, bneedles)]
                if hits and erase:
                    gone += await self._remove(name, kind, hits)
                if hits:
                    found.setdefault(family, []).extend(_text(h) for h in hits)
                continue
            else:
                value: Any = (await r.get(name) if kind == "string" else
                              await cast(Awaitable[Any], r.hgetall(name)) if kind == "hash"
                              else None)
                hits = [name] if value and self._names(value, bneedles) else []
            if hits:
                found.setdefault(family, []).append(name)
                if erase:
                    gone += int(await r.delete(key))
                    if name.startswith("arq:job:"):
                        # A queued job of hers: out of the queue too, not only its payload.
                        await r.zrem(self._k.queue, name.removeprefix("arq:job:"))
        return found, gone

    async def _elements(self, key: str, kind: str) -> list[Any]:
        r = self._r
        if kind == "list":
            return list(await cast(Awaitable[list[Any]], r.lrange(key, 0, -1)))
        if kind == "set":
            return list(await cast(Awaitable[set[Any]], r.smembers(key)))
        if kind == "zset":
            return list(await r.zrange(key, 0, -1))
        return [(eid, fields) for eid, fields in await r.xrange(key)]

    async def _remove(self, key: str, kind: str, hits: list[Any]) -> int:
        r = self._r
        if kind == "list":
            removed = 0
            for h in hits:
                removed += int(await cast(Awaitable[int], r.lrem(key, 0, h)))
            return removed
        if kind == "set":
            return int(await cast(Awaitable[int], r.srem(key, *hits)))
        if kind == "zset":
            return int(await r.zrem(key, *hits))
        return int(await r.xdel(key, *[eid for eid, _ in hits]))

    async def find(self, needles: list[str]) -> dict[str, list[Any]]:
        return (await self._walk(needles, erase=False))[0]

    async def erase(self, needles: list[str]) -> int:
        return (await self._walk(needles, erase=True))[1]


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


def redis_state(redis: Redis, keys: Keys, *, dedupe_ttl: float, rate_per_second: float
                ) -> State:
    """The state of an app process, in the Redis every process shares."""
    from store.match_index import RedisMatchIndex
    from store.outbox import RedisOutbox

    return State(dedupe=RedisDedupe(redis, keys, dedupe_ttl),
                 nonces=RedisRequestNonces(redis, keys), order=RedisFollowerOrder(redis, keys),
                 tokens=RedisTokenCache(redis, keys),
                 flows=RedisFlowStates(redis, keys), marks=RedisSendMarks(redis, keys),
                 rate=RedisSendRate(redis, keys, rate_per_second),
                 stops=RedisCampaignStops(redis, keys), matches=RedisMatchIndex(redis, keys),
                 outbox=RedisOutbox(redis, keys), allowances=RedisAllowances(redis, keys),
                 links=RedisOneTimeLinks(redis, keys), traces=RedisTraces(redis, keys))
