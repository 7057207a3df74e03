"""What importing members needs of `profiles`: people matched by unionid, openid or
mobile, members created before they have a WeChat identity, and the one rule by which such
a member becomes the follower she turns out to be (`merge`, called on sign-up with her
mobile and when her unionid or openid first writes).

An imported member has no `identities`; her `identity_keys` hold `import:<source>:<id>`
(unique: one profile per source row, so a re-run or a concurrent run creates no second
one), and `imported` keeps the source, its row id and the WeChat ids the file named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from store.errors import guarded
from store.records import Profile, identity_key

IMPORT_CHANNEL: Final = "import"
BATCH: Final = 200  # values per $in: the embedded engine checks each candidate against all
# Above this many unionids, one pass over the followers who have one is cheaper than $in
# batches on the embedded engine (a unionid sits inside the `identities` array, which its
# hash index cannot answer); a real server answers either from its index.
UNIONID_SCAN: Final = 50
# What the import compares and the merge moves (not interactions or counters).
FIELDS: Final = ("identity_keys", "identities.unionid", "fields", "tags", "member", "imported",
                 "source")


_UNLINKED: Final = {"imported": {"$exists": True}, "identities": {"$size": 0}}


def import_key(source: str, row_id: str) -> str:
    """The identity key of a source row's member (one profile per source and row id)."""
    return identity_key(IMPORT_CHANNEL, source, row_id)


class MemberImportRepo(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def lookup(self, keys: Sequence[str], unionids: Sequence[str],
                     mobiles: Sequence[str]) -> list[Profile]:
        """The profiles (their FIELDS) that hold any of these identity keys (import keys
        and channel identities), unionids (of a WeChat identity or an imported member), or
        mobiles."""
        ...

    async def credited(self, keys: Sequence[str]) -> set[str]:
        """Which of these ledger keys have an entry already."""
        ...

    async def insert(self, docs: list[dict[str, Any]]) -> set[str]:
        """Add new profiles; the import keys that already had one (nothing written for
        those: another run got there first)."""
        ...

    async def apply(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        """One update document per profile id, written in bulk."""
        ...

    async def link_mobile(self, profile_id: str, mobile: str) -> Profile | None:
        """She signs up with `mobile`: the imported member not linked yet who has it is
        merged into her profile. The merged profile, or None (nobody to link)."""
        ...

    async def link_new(self, profile: Profile) -> Profile | None:
        """A new follower: the imported member not linked yet whom her identity names (by
        unionid, or by the channel identity of the file's openid) is merged into her
        profile. The merged profile, or None."""
        ...

    async def merge(self, into: str, imported: str) -> Profile | None:
        """`imported` becomes part of `into` (see MongoMemberImports.merge); the merged
        profile, or None when there was nothing to merge."""
        ...


@guarded
class MongoMemberImports:
    def __init__(self, db: Any) -> None:
        self._profiles = db["profiles"]
        self._ledger = db["ledger"]
        self._orders = db["orders"]
        # The embedded engine (mongomock) cannot run pymongo 4's bulk_write operations;
        # one update at a time costs it the same anyway (no round trips).
        self._bulk = not any(c.__module__.startswith("mongomock") for c in type(db).__mro__)

    async def ensure_indexes(self) -> None:
        # Matching an import's unionids to followers; linking a follower's first message
        # to the member imported for her unionid or openid.
        await self._profiles.create_index([("identities.unionid", ASCENDING)], sparse=True)
        await self._profiles.create_index([("imported.unionid", ASCENDING)], sparse=True)
        await self._profiles.create_index([("imported.identity_key", ASCENDING)], sparse=True)

    async def lookup(self, keys: Sequence[str], unionids: Sequence[str],
                     mobiles: Sequence[str]) -> list[Profile]:
        found: dict[str, Profile] = {}
        projection = dict.fromkeys(FIELDS, 1)
        queries: list[dict[str, Any]] = []
        # An import key is only ever in identity_keys; a channel identity key may also be
        # what an imported member's file named (imported.identity_key).
        channel_keys = [k for k in keys if not k.startswith(f"{IMPORT_CHANNEL}:")]
        for path, values in (("identity_keys", keys), ("fields.mobile", mobiles),
                             ("imported.identity_key", channel_keys),
                             ("imported.unionid", unionids)):
            unique = sorted(set(values))
            queries += [{path: {"$in": unique[i:i + BATCH]}}
                        for i in range(0, len(unique), BATCH)]
        wanted = set(unionids)
        if len(wanted) > UNIONID_SCAN:
            queries.append({"identities.unionid": {"$type": "string"}})
        elif wanted:
            queries.append({"identities.unionid": {"$in": sorted(wanted)}})
        for query in queries:
            await asyncio.sleep(0)  # on the embedded engine a batch holds the loop
            async for doc in self._profiles.find(query, projection):
                if "identities.unionid" in query and not wanted & _unionids(doc):
                    continue  # the pass over every follower with a unionid
                found[doc["_id"]] = cast(Profile, doc)
        return list(found.values())

    async def credited(self, keys: Sequence[str]) -> set[str]:
        out: set[str] = set()
        unique = sorted(set(keys))
        for i in range(0, len(unique), BATCH):
            cursor = self._ledger.find({"key": {"$in": unique[i:i + BATCH]}}, {"key": 1})
            out.update(str(d["key"]) for d in await cursor.to_list(None))
        return out

    async def insert(self, docs: list[dict[str, Any]]) -> set[str]:
        if not docs:
            return set()
        try:
            await self._profiles.insert_many(docs, ordered=False)
        except BulkWriteError as e:
            taken: set[str] = set()
            for err in e.details.get("writeErrors", []):
                if err.get("code") != 11000:
                    raise
                taken.update(k for k in docs[err["index"]]["identity_keys"]
                             if k.startswith(f"{IMPORT_CHANNEL}:"))
            return taken
        return set()

    async def apply(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        if not self._bulk:
            for pid, update in updates:
                if update:
                    await self._profiles.update_one({"_id": pid}, update)
            return
        ops = [UpdateOne({"_id": pid}, update) for pid, update in updates if update]
        if ops:
            await self._profiles.bulk_write(ops, ordered=False)

    async def link_mobile(self, profile_id: str, mobile: str) -> Profile | None:
        doc = await self._profiles.find_one({"fields.mobile": mobile, "_id": {"$ne": profile_id},
                                             **_UNLINKED}, {"_id": 1})
        return None if doc is None else await self.merge(profile_id, str(doc["_id"]))

    async def link_new(self, profile: Profile) -> Profile | None:
        for ident in profile.get("identities", []):
            queries: list[dict[str, Any]] = [{"imported.identity_key": identity_key(
                ident["channel"], ident["app_id"], ident["openid"])}]
            if ident.get("unionid"):
                queries.insert(0, {"imported.unionid": ident["unionid"]})
            for query in queries:
                doc = await self._profiles.find_one({**query, **_UNLINKED}, {"_id": 1})
                if doc is not None:
                    return await self.merge(profile["_id"], str(doc["_id"]))
        return None

    async def merge(self, into: str, imported: str) -> Profile | None:
        """The imported member `imported` (no WeChat identity yet) becomes part of `into`,
        the follower she is: `into` keeps its id, identities and conversation, and gains
        her member id, tags, the fields it lacks, her points (her ledger entries move with
        them, keys and all, so a re-import credits nothing twice), her orders, `imported`
        and the earlier `source`; then `imported` is deleted.

        Run again after a crash, it finishes the job. The points move as the ledger's own
        operations do: her cached balance goes to zero first and `into`'s rises last, so a
        crash in between leaves a balance below its ledger sum, which ledger.repair()
        credits, never one above it.
        """
        if into == imported:
            return None
        src = await self._profiles.find_one({"_id": imported, **_UNLINKED})
        dst = await self._profiles.find_one({"_id": into})
        if src is None or dst is None:
            return None
        src_member = src.get("member") or {}
        dst_member = dst.get("member") or {}
        if dst_member.get("id") and dst_member.get("id") != src_member.get("id"):
            return None  # two members: not this rule's to join
        # Claimed for `into`, so a second follower with the same mobile cannot take her too.
        claimed = await self._profiles.update_one(
            {"_id": imported, "$or": [{"merging": {"$exists": False}}, {"merging": into}]},
            {"$set": {"merging": into}})
        if not claimed.matched_count:
            return None
        await self._move_points(imported, into)
        await self._orders.update_many({"profile_id": imported}, {"$set": {"profile_id": into}})
        await self._profiles.update_one({"_id": into}, _absorb(dst, src))
        await self._profiles.delete_one({"_id": imported})
        keys = [k for k in src.get("identity_keys", []) if k.startswith(f"{IMPORT_CHANNEL}:")]
        if keys:
            # After the delete: the keys are unique, and now hers.
            await self._profiles.update_one({"_id": into},
                                            {"$addToSet": {"identity_keys": {"$each": keys}}})
        return cast(Profile | None, await self._profiles.find_one({"_id": into}))

    async def _move_points(self, src: str, dst: str) -> None:
        entries = await self._ledger.find({"profile_id": src}, {"points": 1}).to_list(None)
        total = sum(int(e["points"]) for e in entries)
        earned = sum(int(e["points"]) for e in entries if int(e["points"]) > 0)
        if not entries:
            return
        await self._profiles.update_one({"_id": src}, {"$set": {"points.balance": 0,
                                                                "points.earned": 0}})
        await self._ledger.update_many({"profile_id": src}, {"$set": {"profile_id": dst}})
        await self._profiles.update_one({"_id": dst}, {"$inc": {"points.balance": total,
                                                                "points.earned": earned}})


def _unionids(doc: dict[str, Any]) -> set[str]:
    return {str(i["unionid"]) for i in doc.get("identities") or [] if i.get("unionid")}


def _absorb(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """The update that gives `dst` what `src` brings: her own values win over the file's."""
    sets: dict[str, Any] = {}
    have = dst.get("fields") or {}
    for name, value in (src.get("fields") or {}).items():
        if have.get(name) in (None, "", []) and value not in (None, "", []):
            sets[f"fields.{name}"] = value
    for name, value in (src.get("member") or {}).items():
        if name in ("id", "since") or name not in (dst.get("member") or {}):
            sets[f"member.{name}"] = value
    sets["imported"] = src["imported"]
    mine, theirs = dst.get("source"), src.get("source")
    if theirs and (not mine or _at(theirs) < _at(mine)):
        sets["source"] = theirs  # where she came from: the first record of her wins
    # Her order totals are recomputed from the orders moved here by the caller
    # (bot.members.orders.recompute_totals); a social score is recomputed by its job.
    if src.get("social") and not dst.get("social"):
        sets["social"] = src["social"]
    if src.get("first_seen") and dst.get("first_seen") and src["first_seen"] < dst["first_seen"]:
        sets["first_seen"] = src["first_seen"]
    update: dict[str, Any] = {"$set": sets}
    if src.get("tags"):
        update["$addToSet"] = {"tags": {"$each": list(src["tags"])}}
    return update


def _at(source: dict[str, Any]) -> datetime:
    at = source.get("at")
    return at if isinstance(at, datetime) else datetime.max.replace(tzinfo=UTC)
