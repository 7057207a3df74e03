"""Orders from the brand's shop (`orders` collection): one document per order id, its
refunds, and the aggregates kept on the member's profile."""

from __future__ import annotations

from typing import Any, Protocol

from store.errors import guarded

COLLECTION = "orders"


class OrderRepo(Protocol):
    async def ensure_indexes(self) -> None: ...


@guarded
class MongoOrders:
    def __init__(self, db: Any) -> None:
        self._orders = db[COLLECTION]
        self._profiles = db["profiles"]

    async def ensure_indexes(self) -> None:
        return None
