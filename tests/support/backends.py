"""The one list of store backends every contract suite runs over, and how to open each.

- `embedded`: the in-process engine (mongomock-motor with store/embedded.py's indexes);
- `secantus`: a real MongoDB wire-protocol server process (SecantusDB over WiredTiger),
  started once per test session by the `secantus_url` fixture (tests/conftest.py);
- `mongodb`: a real mongod at MONGODB_URL, when that is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from store.mongo import MongoStore

BACKENDS = ["embedded", "secantus"] + (["mongodb"] if os.environ.get("MONGODB_URL") else [])


def url_of(backend: str, secantus: str | None = None) -> str | None:
    """The server URL of a backend; None for the embedded engine."""
    if backend == "embedded":
        return None
    if backend == "secantus":
        assert secantus is not None, "the secantus backend needs the session's server"
        return secantus
    if backend == "mongodb":
        return os.environ["MONGODB_URL"]
    raise ValueError(f"unknown backend {backend!r}")


@asynccontextmanager
async def open_store(backend: str, prefix: str = "contract", secantus: str | None = None
                     ) -> AsyncIterator[MongoStore]:
    """A fresh, empty store on `backend`, dropped again afterwards."""
    store = await MongoStore.open(url_of(backend, secantus),
                                  f"{prefix}_{uuid.uuid4().hex[:8]}")
    assert store.embedded == (backend == "embedded")
    try:
        yield store
    finally:
        if not store.embedded:
            await store.drop()
        await store.close()


@asynccontextmanager
async def open_client(backend: str, secantus: str | None = None) -> AsyncIterator[Any]:
    """A bare driver client on `backend` (for suites below the repositories)."""
    url = url_of(backend, secantus)
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
