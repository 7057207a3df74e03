"""The one list of store backends every contract suite runs over, and how to open each.

- `embedded`: the in-process engine (mongomock-motor with store/embedded.py's indexes);
- `mongodb`: a real server at MONGODB_URL, when that is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from store.mongo import MongoStore

BACKENDS = ["embedded"] + (["mongodb"] if os.environ.get("MONGODB_URL") else [])


def url_of(backend: str) -> str | None:
    """The server URL of a backend; None for the embedded engine."""
    if backend == "embedded":
        return None
    if backend == "mongodb":
        return os.environ["MONGODB_URL"]
    raise ValueError(f"unknown backend {backend!r}")


@asynccontextmanager
async def open_store(backend: str, prefix: str = "contract") -> AsyncIterator[MongoStore]:
    """A fresh, empty store on `backend`, dropped again afterwards."""
    store = await MongoStore.open(url_of(backend), f"{prefix}_{uuid.uuid4().hex[:8]}")
    assert store.embedded == (backend == "embedded")
    try:
        yield store
    finally:
        if not store.embedded:
            await store.drop()
        await store.close()


@asynccontextmanager
async def open_client(backend: str) -> AsyncIterator[Any]:
    """A bare driver client on `backend` (for suites below the repositories)."""
    url = url_of(backend)
    if url is None:
        from mongomock_motor import AsyncMongoMockClient

        client: Any = AsyncMongoMockClient(tz_aware=True)
    else:
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(url, tz_aware=True, serverSelectionTimeoutMS=3000)
    try:
        yield client
    finally:
        client.close()
