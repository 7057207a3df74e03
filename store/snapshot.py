"""The embedded engine's data on disk: a snapshot written on a clean stop and every so often,
loaded at start, so a development store survives `scrm up` being stopped and started.

One file of BSON documents: for each collection a header {db, collection, count}, then its
documents. Written to a temporary file beside the target and renamed over it, so a crash
while writing leaves the previous snapshot whole. What a crash can lose: whatever was
written after the last snapshot (at most `mongodb.snapshot_seconds`). A real MongoDB
(`MONGODB_URL`) needs none of this.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions

log = logging.getLogger(__name__)

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
Collections = list[tuple[str, str, list[dict[str, Any]]]]  # (database, collection, docs)


async def save(client: Any, path: Path) -> int:
    """Write every database and collection of the embedded client; documents written."""
    collections: Collections = []
    for db_name in await client.list_database_names():
        db = client[db_name]
        for col_name in sorted(await db.list_collection_names()):
            # Copies: the file is written in a thread while the engine goes on.
            collections.append((db_name, col_name,
                                await db[col_name].find({}).to_list(length=None)))
    await asyncio.to_thread(_write, path, collections)
    return sum(len(docs) for _, _, docs in collections)


def _write(path: Path, collections: Collections) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        for db_name, col_name, docs in collections:
            out.write(bson.encode({"db": db_name, "collection": col_name, "count": len(docs)}))
            for doc in docs:
                out.write(bson.encode(doc, codec_options=CODEC))
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)  # atomic: a crash while writing leaves the last snapshot whole


def _read(path: Path) -> Collections:
    if not path.exists():
        return []
    out: Collections = []
    with path.open("rb") as f:
        stream = bson.decode_file_iter(f, codec_options=CODEC)
        for header in stream:
            out.append((str(header["db"]), str(header["collection"]),
                        [next(stream) for _ in range(int(header["count"]))]))
    return out


async def load(client: Any, path: Path) -> int:
    """Fill an empty embedded client from a snapshot, if there is one; documents read."""
    collections = await asyncio.to_thread(_read, path)
    for db_name, col_name, docs in collections:
        if docs:
            await client[db_name][col_name].insert_many(docs)
    read = sum(len(docs) for _, _, docs in collections)
    if collections:
        log.info("embedded store loaded from its snapshot", extra={"documents": read})
    return read
