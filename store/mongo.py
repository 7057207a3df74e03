"""MongoDB repositories over motor, or over the embedded engine (mongomock-motor).

Every motor call of the application lives in this module, so moving to PyMongo's own
AsyncMongoClient (motor is deprecated upstream) is a change here and nowhere else.
No operation needs a transaction: idempotency comes from unique indexes and
single-document atomic updates.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.audit import MongoAudit
from store.campaigns import MongoCampaigns
from store.errors import guarded
from store.exports import MongoExports
from store.imports import MongoMemberImports
from store.knowledge import MongoFaqFeedback
from store.ledger import MongoLedger
from store.member_data import MongoMemberData
from store.orders import MongoOrders
from store.records import FollowState, Identity, Interaction, Profile, identity_key
from store.snapshot import load, save
from store.tickets import MongoTickets

log = logging.getLogger(__name__)

EMBEDDED_WARNING = (
    "MONGODB_URL is not set: using the embedded in-memory MongoDB engine. "
    "Profiles and interactions are lost when the process stops."
)
EMBEDDED_SNAPSHOT_WARNING = (
    "MONGODB_URL is not set: using the embedded in-memory MongoDB engine, kept between runs "
    "in a snapshot file (for development: set MONGODB_URL in production)"
)


@guarded
class MongoProfiles:
    def __init__(self, db: Any) -> None:
        self._col = db["profiles"]

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("identity_keys", ASCENDING)], unique=True)
        # A referral QR names the member id; /points and /tag name it too.
        await self._col.create_index([("member.id", ASCENDING)], sparse=True)
        await self._col.create_index([("referral.by", ASCENDING)], sparse=True)
        # A mobile already on another profile earns no referral points (and imports match
        # people by it).
        await self._col.create_index([("fields.mobile", ASCENDING)], sparse=True)
        # Social value counts the followers each member's QR code brought.
        await self._col.create_index([("source.by", ASCENDING)], sparse=True)

    async def touch(self, identity: Identity, now: datetime, lang: str | None) -> Profile:
        key = identity_key(identity["channel"], identity["app_id"], identity["openid"])
        update: dict[str, Any] = {
            "$setOnInsert": {
                "_id": uuid.uuid4().hex,
                "identity_keys": [key],
                "identities": [identity],
                "first_seen": now,
                "follow": {"state": "unknown", "changed_at": None},
                "tags": [],
                "fields": {},
            },
            "$set": {"last_seen": now, **({"lang": lang} if lang else {})},
            "$inc": {"counters.inbound": 1},
        }
        # $elemMatch (not equality) so the upsert does not seed identity_keys with a string.
        query = {"identity_keys": {"$elemMatch": {"$eq": key}}}
        for _ in range(2):
            try:
                doc = await self._col.find_one_and_update(
                    query, update, upsert=True, return_document=ReturnDocument.AFTER
                )
                if doc is None:
                    # An upsert always has a document after it; under concurrent first
                    # messages SecantusDB has answered null for an update it did apply
                    # (tests/contract, 4 of 10 racers once): read it, do not apply it again.
                    doc = await self._col.find_one(query)
                return cast(Profile, doc)
            except DuplicateKeyError:
                # Two first messages raced to create the profile; the loser now finds it.
                continue
        raise RuntimeError(f"could not create or find profile for {key}")

    async def get(self, profile_id: str) -> Profile | None:
        return cast(Profile | None, await self._col.find_one({"_id": profile_id}))

    async def find_by_identity(self, channel: str, app_id: str, openid: str) -> Profile | None:
        doc = await self._col.find_one({"identity_keys": identity_key(channel, app_id, openid)})
        return cast(Profile | None, doc)

    async def set_follow(self, profile_id: str, state: FollowState, now: datetime) -> None:
        await self._col.update_one(
            {"_id": profile_id}, {"$set": {"follow": {"state": state, "changed_at": now}}}
        )

    async def count_outbound(self, profile_id: str, n: int) -> None:
        await self._col.update_one({"_id": profile_id}, {"$inc": {"counters.outbound": n}})

    async def update(self, profile_id: str, set_paths: dict[str, Any],
                     unset_paths: list[str] | None = None,
                     push: dict[str, Any] | None = None) -> None:
        update: dict[str, Any] = {}
        if set_paths:
            update["$set"] = set_paths
        if unset_paths:
            update["$unset"] = {p: "" for p in unset_paths}
        if push:
            update["$push"] = push
        if update:
            await self._col.update_one({"_id": profile_id}, update)

    async def update_tags(self, profile_id: str, add: list[str], remove: list[str]) -> None:
        # Two updates: MongoDB refuses $addToSet and $pull on one field in one update.
        stale = [t for t in remove if t not in add]
        if stale:
            await self._col.update_one({"_id": profile_id}, {"$pull": {"tags": {"$in": stale}}})
        if add:
            await self._col.update_one({"_id": profile_id},
                                       {"$addToSet": {"tags": {"$each": add}}})

    async def find_by_mobile(self, mobile: str) -> Profile | None:
        return cast(Profile | None, await self._col.find_one({"fields.mobile": mobile}))

    async def find_by_member(self, member_id: str) -> Profile | None:
        return cast(Profile | None, await self._col.find_one({"member.id": member_id}))

    async def link_referrer(self, profile_id: str, referral: dict[str, Any]) -> bool:
        # One conditional update: two scans racing can never both link.
        result = await self._col.update_one(
            {"_id": profile_id, "referral": {"$exists": False}}, {"$set": {"referral": referral}})
        return bool(result.modified_count)

    async def referred_by(self, profile_id: str) -> list[Profile]:
        cursor = self._col.find({"referral.by": profile_id}).sort("first_seen", ASCENDING)
        return cast(list[Profile], await cursor.to_list(length=None))

    async def members(self) -> AsyncIterator[Profile]:
        async for doc in self._col.find({"member.id": {"$exists": True}}):
            yield cast(Profile, doc)

    # -- segments: filters come only from bot.marketing.segments (a whitelist), never from users ---
    async def count_where(self, query: dict[str, Any]) -> int:
        return int(await self._col.count_documents(query))

    async def sample_where(self, query: dict[str, Any], n: int) -> list[Profile]:
        # Newest first: a preview shows members a marketer is likely to recognise. The
        # sort reads two fields per member; only the n chosen are read whole.
        cursor = self._col.find(query, {"_id": 1, "last_seen": 1})
        newest = await cursor.sort("last_seen", DESCENDING).limit(n).to_list(length=n)
        found = {p["_id"]: p for p in await self.get_many([d["_id"] for d in newest])}
        return [found[d["_id"]] for d in newest if d["_id"] in found]

    async def ids_where(self, query: dict[str, Any]) -> AsyncIterator[str]:
        """Profile ids matching `query`, in _id order (a stable order for chunking)."""
        async for doc in self._col.find(query, {"_id": 1}).sort("_id", ASCENDING):
            yield str(doc["_id"])

    async def fields_where(self, query: dict[str, Any], fields: list[str], limit: int = 0
                           ) -> AsyncIterator[Profile]:
        """Just `fields` of the profiles matching `query` (one scan, not one per id); at
        most `limit` of them (0: all)."""
        async for doc in self._col.find(query, {f: 1 for f in fields}, limit=limit):
            yield cast(Profile, doc)

    async def get_many(self, ids: list[str]) -> list[Profile]:
        return cast(list[Profile],
                    await self._col.find({"_id": {"$in": ids}}).to_list(length=None))

    async def tag_where(self, query: dict[str, Any], add: list[str], remove: list[str]) -> int:
        """Add/remove tags on every matching profile; how many were changed."""
        changed = 0
        if remove:
            r = await self._col.update_many({"$and": [query, {"tags": {"$in": remove}}]},
                                            {"$pull": {"tags": {"$in": remove}}})
            changed += int(r.modified_count)
        if add:
            r = await self._col.update_many({"$and": [query, {"tags": {"$nin": add}}]},
                                            {"$addToSet": {"tags": {"$each": add}}})
            changed += int(r.modified_count)
        return changed

    async def sum_where(self, query: dict[str, Any], path: str) -> int:
        cursor = self._col.aggregate([{"$match": query},
                                      {"$group": {"_id": None, "n": {"$sum": f"${path}"}}}])
        async for row in cursor:
            return int(row["n"] or 0)
        return 0

    async def reserve(self, profile_id: str, path: str, amount: int, cap: int) -> bool:
        result = await self._col.update_one(
            {"_id": profile_id, "$or": [{path: {"$exists": False}},
                                        {path: {"$lte": cap - amount}}]},
            {"$inc": {path: amount}})
        return bool(result.modified_count)

    async def release(self, profile_id: str, path: str, amount: int) -> None:
        await self._col.update_one({"_id": profile_id, path: {"$gte": amount}},
                                   {"$inc": {path: -amount}})

    async def set_fields(self, profile_id: str, fields: dict[str, Any]) -> None:
        await self._col.update_one(
            {"_id": profile_id}, {"$set": {f"fields.{k}": v for k, v in fields.items()}}
        )


@guarded
class MongoInteractions:
    def __init__(self, db: Any) -> None:
        self._col = db["interactions"]

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("profile_id", ASCENDING), ("ts", DESCENDING)])
        await self._col.create_index([("ts", ASCENDING)])  # exports by time
        await self._col.create_index([("dedupe_key", ASCENDING)], unique=True)

    async def add(self, doc: Interaction) -> bool:
        try:
            await self._col.insert_one(dict(doc))
        except DuplicateKeyError:
            return False
        return True

    async def update(self, dedupe_key: str, fields: dict[str, Any]) -> None:
        await self._col.update_one({"dedupe_key": dedupe_key}, {"$set": fields})

    async def get(self, dedupe_key: str) -> Interaction | None:
        return cast(Interaction | None, await self._col.find_one({"dedupe_key": dedupe_key}))

    async def latest(self, profile_id: str, limit: int) -> list[Interaction]:
        # BSON keeps milliseconds: records can share a ts (a reply and the next message
        # too). seq breaks the tie; for records without one, a reply sorts after its
        # message ("out" > "in") and out:1 after out:0.
        order = [("ts", DESCENDING), ("seq", DESCENDING), ("direction", DESCENDING),
                 ("dedupe_key", DESCENDING)]
        cursor = self._col.find({"profile_id": profile_id}).sort(order).limit(limit)
        return cast(list[Interaction], await cursor.to_list(length=limit))

    async def count(self, profile_id: str | None = None) -> int:
        query = {"profile_id": profile_id} if profile_id else {}
        return int(await self._col.count_documents(query))


@guarded
class MongoMatches:
    """Sister matches: one document per invitation, its status, and the feedback."""

    def __init__(self, db: Any) -> None:
        self._col = db["matches"]

    async def ensure_indexes(self) -> None:
        # One open invitation per pair, whoever asks twice.
        await self._col.create_index([("pair", ASCENDING)], unique=True)
        await self._col.create_index([("to", ASCENDING), ("status", ASCENDING)])

    async def invite(self, from_id: str, to_id: str, now: datetime) -> str | None:
        """Record an invitation; None if this pair already has one."""
        doc = {"_id": uuid.uuid4().hex, "pair": ":".join(sorted((from_id, to_id))),
               "from": from_id, "to": to_id, "status": "invited", "at": now}
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            return None
        return str(doc["_id"])

    async def for_profile(self, profile_id: str) -> list[dict[str, Any]]:
        cursor = self._col.find({"$or": [{"from": profile_id}, {"to": profile_id}]})
        return cast(list[dict[str, Any]], await cursor.to_list(length=None))

    async def get(self, match_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._col.find_one({"_id": match_id}))

    async def set_status(self, match_id: str, expected: str, status: str, now: datetime
                         ) -> bool:
        """Move expected -> status; False if it was not in `expected` (already answered)."""
        result = await self._col.update_one({"_id": match_id, "status": expected},
                                            {"$set": {"status": status, f"at_{status}": now}})
        return bool(result.modified_count)

    async def active_for(self, profile_id: str) -> dict[str, Any] | None:
        """Her latest accepted match, if any."""
        cursor = self._col.find({"status": "accepted",
                                 "$or": [{"from": profile_id}, {"to": profile_id}]})
        docs = await cursor.sort("at_accepted", DESCENDING).limit(1).to_list(length=1)
        return cast(dict[str, Any], docs[0]) if docs else None

    async def count(self, status: str) -> int:
        return int(await self._col.count_documents({"status": status}))

    async def add_feedback(self, match_id: str, profile_id: str, helpful: bool) -> bool:
        """Record one member's answer once; False if she had answered already."""
        result = await self._col.update_one(
            {"_id": match_id, f"feedback.{profile_id}": {"$exists": False}},
            {"$set": {f"feedback.{profile_id}": helpful}})
        return bool(result.modified_count)


class MongoStore:
    """Both repositories over one database; `embedded` says whether data is in memory."""

    def __init__(self, client: Any, database: str, embedded: bool,
                 snapshot: Path | None = None) -> None:
        if embedded:
            from store import embedded as engine

            engine.install()  # hash indexes: without them every lookup scans
        self._client = client
        self._db = client[database]
        self.embedded = embedded
        self._snapshot = snapshot if embedded else None
        self.profiles = MongoProfiles(self._db)
        self.interactions = MongoInteractions(self._db)
        self.ledger = MongoLedger(self._db)
        self.matches = MongoMatches(self._db)
        self.campaigns = MongoCampaigns(self._db)
        self.audit = MongoAudit(self._db)
        self.member_data = MongoMemberData(self._db)
        self.tickets = MongoTickets(self._db)
        self.faq = MongoFaqFeedback(self._db)
        self.orders = MongoOrders(self._db)
        self.imports = MongoMemberImports(self._db)
        self.exports = MongoExports(self._db, embedded)

    @classmethod
    async def open(cls, url: str | None, database: str, snapshot: Path | None = None
                   ) -> MongoStore:
        """A store on the server at `url`, or the embedded engine (loaded from `snapshot`
        when one is given and exists)."""
        if url:
            from motor.motor_asyncio import AsyncIOMotorClient

            # Journaled writes (j: true): a message acknowledged to WeChat survives a crash
            # of the database process. Without it a SIGKILL of the server lost every write
            # of the last moments in one run of two (tests/reliability/test_database_kill.py).
            client: Any = AsyncIOMotorClient(url, tz_aware=True, serverSelectionTimeoutMS=3000,
                                             journal=True)
            store = cls(client, database, embedded=False)
        else:
            from mongomock_motor import AsyncMongoMockClient

            store = cls(AsyncMongoMockClient(tz_aware=True), database, embedded=True,
                        snapshot=snapshot)
            if snapshot is None:
                log.warning(EMBEDDED_WARNING)
            else:
                log.warning(EMBEDDED_SNAPSHOT_WARNING, extra={"path": str(snapshot)})
                await load(store._client, snapshot)
        await store.profiles.ensure_indexes()
        await store.interactions.ensure_indexes()
        await store.ledger.ensure_indexes()
        await store.matches.ensure_indexes()
        await store.campaigns.ensure_indexes()
        await store.audit.ensure_indexes()
        await store.member_data.ensure_indexes()
        await store.tickets.ensure_indexes()
        await store.faq.ensure_indexes()
        await store.orders.ensure_indexes()
        await store.imports.ensure_indexes()
        return store

    async def ping(self) -> None:
        await self._db.command("ping")

    async def drop(self) -> None:
        """Remove every collection (tests against a real server clean up with this)."""
        await self._client.drop_database(self._db.name)

    async def checkpoint(self) -> None:
        """Write the embedded engine's snapshot now (nothing to do on a real server)."""
        if self._snapshot is not None:
            written = await save(self._client, self._snapshot)
            log.debug("embedded snapshot written", extra={"documents": written})

    async def close(self) -> None:
        await self.checkpoint()
        self._client.close()
