"""Orders from the brand's shop (`orders` collection): one document per order id, its
refunds, and the aggregates kept on the member's profile.

Every write is one single-document atomic update: an order moves only from the version
its writer read (`add_refunds`), and a member's aggregates are written only by the
recomputation that holds her latest `orders.rev` (`bump`, then `set_aggregates`), so a
slower recomputation never overwrites a newer one. What follows from an order (its points)
is settled by one holder of its lease at a time (`claim`, `release`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, cast

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from store.errors import guarded
from store.records import Profile

COLLECTION = "orders"


class OrderRepo(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def insert(self, doc: dict[str, Any]) -> bool:
        """Add a new order; False (nothing written) if its order id is already there."""
        ...

    async def get(self, order_id: str) -> dict[str, Any] | None: ...

    async def add_refunds(self, order_id: str, version: int, refunds: list[dict[str, Any]],
                          fields: dict[str, Any]) -> bool:
        """Append refunds and set `fields` (the next version) only if the order is still
        at `version`; False if another post moved it on first."""
        ...

    async def claim(self, order_id: str, token: str, now: datetime, until: datetime
                    ) -> dict[str, Any] | None:
        """Take the order's lease (who settles its points and aggregates) unless another
        holder's lease runs until after `now`; the order as it is then, or None."""
        ...

    async def release(self, order_id: str, token: str, settled: int
                      ) -> dict[str, Any] | None:
        """Give the lease back, the order settled up to version `settled`; the order as
        it is then (a newer version may have come meanwhile)."""
        ...

    async def note_refund(self, order_id: str, refund_id: str, taken: int, shortfall: int
                          ) -> None:
        """Keep, on the refund, the points it took back and those her balance lacked."""
        ...

    async def for_profile(self, profile_id: str) -> list[dict[str, Any]]: ...

    async def bump(self, profile_id: str) -> int | None:
        """Her next aggregates revision (None: no such profile)."""
        ...

    async def set_aggregates(self, profile_id: str, rev: int, fields: dict[str, Any],
                             unset: list[str]) -> bool:
        """Write her aggregates if `rev` is still her latest revision."""
        ...

    async def find_by_unionid(self, unionid: str) -> Profile | None: ...


@guarded
class MongoOrders:
    def __init__(self, db: Any) -> None:
        self._orders = db[COLLECTION]
        self._profiles = db["profiles"]

    async def ensure_indexes(self) -> None:
        # The order id is the _id, unique by itself; her orders are read after each change.
        await self._orders.create_index([("profile_id", ASCENDING)])
        await self._profiles.create_index([("identities.unionid", ASCENDING)], sparse=True)

    async def insert(self, doc: dict[str, Any]) -> bool:
        try:
            await self._orders.insert_one(dict(doc))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, order_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._orders.find_one({"_id": order_id}))

    async def add_refunds(self, order_id: str, version: int, refunds: list[dict[str, Any]],
                          fields: dict[str, Any]) -> bool:
        # $push, not a replacement: notes the lease holder writes meanwhile are kept.
        result = await self._orders.update_one(
            {"_id": order_id, "version": version},
            {"$push": {"refunds": {"$each": refunds}}, "$set": fields})
        return bool(result.modified_count)

    async def claim(self, order_id: str, token: str, now: datetime, until: datetime
                    ) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._orders.find_one_and_update(
            {"_id": order_id, "$or": [{"lease": {"$exists": False}},
                                      {"lease.until": {"$lt": now}}]},
            {"$set": {"lease": {"token": token, "until": until}}},
            return_document=ReturnDocument.AFTER))

    async def release(self, order_id: str, token: str, settled: int
                      ) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self._orders.find_one_and_update(
            {"_id": order_id, "lease.token": token},
            {"$unset": {"lease": ""}, "$max": {"settled": settled}},
            return_document=ReturnDocument.AFTER))

    async def note_refund(self, order_id: str, refund_id: str, taken: int, shortfall: int
                          ) -> None:
        await self._orders.update_one(
            {"_id": order_id, "refunds.refund_id": refund_id},
            {"$set": {"refunds.$.taken": taken, "refunds.$.shortfall": shortfall}})

    async def for_profile(self, profile_id: str) -> list[dict[str, Any]]:
        cursor = self._orders.find({"profile_id": profile_id})
        return cast(list[dict[str, Any]], await cursor.to_list(length=None))

    async def bump(self, profile_id: str) -> int | None:
        doc = await self._profiles.find_one_and_update(
            {"_id": profile_id}, {"$inc": {"orders.rev": 1}},
            projection={"orders.rev": 1}, return_document=ReturnDocument.AFTER)
        return None if doc is None else int(doc["orders"]["rev"])

    async def set_aggregates(self, profile_id: str, rev: int, fields: dict[str, Any],
                             unset: list[str]) -> bool:
        update: dict[str, Any] = {"$set": fields}
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        result = await self._profiles.update_one({"_id": profile_id, "orders.rev": rev},
                                                 update)
        return bool(result.matched_count)

    async def find_by_unionid(self, unionid: str) -> Profile | None:
        return cast(Profile | None,
                    await self._profiles.find_one({"$or": [{"identities.unionid": unionid},
                                                           {"imported.unionid": unionid}]}))
