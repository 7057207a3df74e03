"""Everything the database holds about one member, in one place: for her export, for her
erasure, and for retention (PIPL).

`COLLECTIONS` says, for every collection the app writes, how a member's data in it is
treated. A test lists the collections a full run creates and fails on one missing here,
so a new collection cannot be forgotten by export and erasure.

Erasure deletes what is hers, and anonymises what the brand must keep for accounting
(ledger entries, staff audit records, broadcasts she sent as staff): her ids are replaced
by a one-way hash (`erased:<digest>`), which no key the app holds can be mapped back to.
A tombstone without personal data records when and by whom.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Any, cast

from pymongo import ASCENDING

from store.errors import guarded
from store.records import Profile

# collection -> what export and erasure do with a member's records in it
COLLECTIONS: dict[str, str] = {
    "profiles": "erased (hers); referral links to her unset on others",
    "interactions": "erased (hers); her sisters' records that name her redacted",
    "ledger": "anonymised (kept for accounting: the brand's sums do not change)",
    "orders": "anonymised (kept for the brand's accounts: her profile id becomes the stand-in)",
    "matches": "erased (every match she is part of)",
    "broadcasts": "anonymised where she was the staff member who sent one",
    "deliveries": "erased (her deliveries of broadcasts and moments)",
    "poll_answers": "erased",
    "audit": "anonymised (kept: who did what, without her identity)",
    "tickets": "erased where she asked for a person; anonymised where she answered as staff",
    "rewards": "nothing of hers (the reward catalogue)",
    "faq_feedback": "nothing of hers (per-entry counts, per-answer markers; no member id)",
    "tombstones": "nothing of hers (when and by whom an erasure ran, no personal data)",
}
ERASED_PREFIX = "erased:"
REDACTED = "[已删除]"


def erased_id(value: str, salt: str) -> str:
    """The one-way stand-in for one of her ids (salted per store: not guessable from an
    openid or a phone number)."""
    return ERASED_PREFIX + hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()[:20]


def identifiers(profile: Profile) -> list[str]:
    """Every value that identifies her: ids, openids, unionids, member id, phone."""
    out = [str(profile["_id"])]
    for ident in profile.get("identities", []):
        out += [str(v) for v in (ident.get("openid"), ident.get("unionid")) if v]
    imported = profile.get("imported") or {}
    out += [str(v) for v in (imported.get("unionid"),) if v]
    out += [k for k in profile.get("identity_keys", []) if k.startswith("import:")]
    member_id = (profile.get("member") or {}).get("id")
    fields = profile.get("fields") or {}
    out += [str(v) for v in (member_id, fields.get("mobile")) if v]
    return list(dict.fromkeys(out))


@guarded
class MongoMemberData:
    def __init__(self, db: Any) -> None:
        self._db = db

    async def ensure_indexes(self) -> None:
        await self._db["deliveries"].create_index([("profile_id", ASCENDING)])
        await self._db["poll_answers"].create_index([("profile_id", ASCENDING)])
        await self._db["tombstones"].create_index([("at", ASCENDING)])
        await self._db["tombstones"].create_index([("ids", ASCENDING)], sparse=True)

    async def _all(self, name: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        docs = await self._db[name].find(query).to_list(length=None)
        return cast(list[dict[str, Any]], docs)

    async def collect(self, profile_id: str) -> dict[str, Any]:
        """Her records in every collection (the profile first)."""
        profile = await self._db["profiles"].find_one({"_id": profile_id})
        if profile is None:
            return {}
        mine = {"profile_id": profile_id}
        return {
            "profile": profile,
            "interactions": await self._all("interactions", mine),
            "ledger": await self._all("ledger", mine),
            "orders": await self._all("orders", mine),
            "matches": await self._all("matches", {"$or": [{"from": profile_id},
                                                           {"to": profile_id}]}),
            "deliveries": await self._all("deliveries", mine),
            "poll_answers": await self._all("poll_answers", mine),
            "audit": await self._all("audit", {"actor": profile_id}),
            "broadcasts": await self._all("broadcasts", {"by": profile_id}),
            "tickets": await self._all("tickets", {"$or": [{"member": profile_id},
                                                           {"staff": profile_id}]}),
            "referred": [{"_id": d["_id"], "at": (d.get("referral") or {}).get("at")}
                         for d in await self._all("profiles", {"referral.by": profile_id})],
        }

    async def _salt(self) -> str:
        doc = await self._db["tombstones"].find_one({"_id": "_salt"})
        if doc is None:
            await self._db["tombstones"].update_one(
                {"_id": "_salt"}, {"$setOnInsert": {"salt": secrets.token_hex(16)}},
                upsert=True)
            doc = await self._db["tombstones"].find_one({"_id": "_salt"})
        return str(doc["salt"])

    async def erase(self, profile: Profile, by: str, reason: str, now: datetime
                    ) -> dict[str, int]:
        """Erase her, anonymise what stays, leave a tombstone. Counts per collection.
        Running it again (a crash midway) finishes the job."""
        pid = str(profile["_id"])
        salt = await self._salt()
        ids = identifiers(profile)
        stand_in = erased_id(pid, salt)
        nickname = str((profile.get("fields") or {}).get("nickname") or "")
        db, out = self._db, {}
        # Her sisters' and her helpers' records name her (invitations, relays): redacted.
        matches = await self._all("matches", {"$or": [{"from": pid}, {"to": pid}]})
        sisters = sorted({m["to"] if m["from"] == pid else m["from"] for m in matches}
                         | {str(t["staff"]) for t in await self._all("tickets", {"member": pid})
                            if t.get("staff")})  # and the staff who answered her
        out["interactions_redacted"] = 0
        if nickname and sisters:
            out["interactions_redacted"] = (await db["interactions"].update_many(
                {"profile_id": {"$in": sisters}, "text": {"$regex": re.escape(nickname)}},
                {"$set": {"text": REDACTED, "payload": {}}})).modified_count
        out["interactions"] = (await db["interactions"].delete_many(
            {"profile_id": pid})).deleted_count
        out["matches"] = (await db["matches"].delete_many(
            {"$or": [{"from": pid}, {"to": pid}]})).deleted_count
        out["deliveries"] = (await db["deliveries"].delete_many({"profile_id": pid})
                             ).deleted_count
        out["poll_answers"] = (await db["poll_answers"].delete_many({"profile_id": pid})
                               ).deleted_count
        out["ledger"] = (await db["ledger"].update_many(
            {"profile_id": pid}, {"$set": {"profile_id": stand_in}})).modified_count
        out["orders"] = (await db["orders"].update_many(
            {"profile_id": pid}, {"$set": {"profile_id": stand_in}})).modified_count
        # Keys kept by others' records and the ledger are built from her messages' keys
        # (which name her openid) or her profile id: the same hash in their place.
        for name, fields in (("ledger", ("key", "source")), ("interactions", ("dedupe_key",))):
            named = [{f: {"$regex": re.escape(i)}} for i in ids for f in fields]
            for doc in await self._all(name, {"$or": named}):
                keys: dict[str, str] = {}
                for f in fields:
                    value = str(doc.get(f) or "")
                    for i in ids:
                        value = value.replace(i, erased_id(i, salt))
                    keys[f] = value
                await db[name].update_one({"_id": doc["_id"]}, {"$set": keys})
        out["audit"] = 0
        named = [{f: {"$regex": re.escape(i)}} for i in ids[1:] for f in ("text", "detail")]
        for doc in await self._all("audit", {"$or": [{"actor": pid}, *named]}):
            changes: dict[str, Any] = {}
            for field in ("text", "detail"):
                text = str(doc.get(field) or "")
                for value in ids:
                    text = text.replace(value, erased_id(value, salt))
                if nickname and doc.get("actor") == pid:
                    text = text.replace(nickname, REDACTED)
                changes[field] = text
            if doc.get("actor") == pid:
                changes.update(actor=stand_in, openid=None)
            await db["audit"].update_one({"_id": doc["_id"]}, {"$set": changes})
            out["audit"] += 1
        out["tickets"] = (await db["tickets"].delete_many({"member": pid})).deleted_count
        await db["tickets"].update_many({"staff": pid}, {"$set": {"staff": stand_in}})
        out["broadcasts"] = (await db["broadcasts"].update_many(
            {"by": pid}, {"$set": {"by": stand_in}})).modified_count
        out["referrals_unlinked"] = (await db["profiles"].update_many(
            {"referral.by": pid}, {"$unset": {"referral": ""}})).modified_count
        # Their QR scene names her member id (ref_M…, cq_M…_…): it goes with her.
        out["sources_unlinked"] = (await db["profiles"].update_many(
            {"source.by": pid}, {"$set": {"source.by": None}, "$unset": {"source.scene": ""}})
        ).modified_count
        out["profiles"] = (await db["profiles"].delete_many({"_id": pid})).deleted_count
        # Her ids only as their stand-ins: enough for an import to know not to bring her
        # back (erased_among), nothing that names her.
        await db["tombstones"].update_one({"_id": stand_in}, {"$set": {
            "at": now, "by": by, "reason": reason[:200],
            "ids": [erased_id(i, salt) for i in ids]}}, upsert=True)
        return out

    async def erased_among(self, values: list[str]) -> set[str]:
        """Those of `values` (import keys, mobiles, unionids) that named someone erased."""
        if not values:
            return set()
        salt = await self._salt()
        by_id = {erased_id(v, salt): v for v in values}
        found: set[str] = set()
        async for doc in self._db["tombstones"].find({"ids": {"$in": list(by_id)}},
                                                     {"ids": 1}):
            found |= {by_id[i] for i in doc.get("ids", []) if i in by_id}
        return found

    async def tombstone(self, profile_id: str) -> dict[str, Any] | None:
        salt = await self._salt()
        doc = await self._db["tombstones"].find_one({"_id": erased_id(profile_id, salt)})
        return cast(dict[str, Any] | None, doc)

    async def strip_texts(self, before: datetime, dry_run: bool) -> int:
        """Retention: interaction texts older than `before` become their type and outcome
        (dates and counts stay, for analytics)."""
        query = {"ts": {"$lt": before}, "text": {"$nin": [None, REDACTED]}}
        if dry_run:
            return int(await self._db["interactions"].count_documents(query))
        result = await self._db["interactions"].update_many(
            query, {"$set": {"text": None, "payload": {}, "retained": "type_only"}})
        return int(result.modified_count)

    async def never_joined_unfollowed(self, before: datetime) -> list[Profile]:
        """Retention: followers who unfollowed before `before` and never became members."""
        docs = await self._all("profiles", {"follow.state": "unsubscribed",
                                            "follow.changed_at": {"$lt": before},
                                            "member.id": {"$exists": False}})
        return cast(list[Profile], docs)

    async def collection_names(self) -> list[str]:
        return sorted(await self._db.list_collection_names())
