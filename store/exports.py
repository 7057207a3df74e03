"""Bulk reads for exports: the values at a few paths of every profile or interaction that
matches a filter, streamed a batch at a time as columns (one projected scan, never all in
memory).

On a MongoDB server this is a projected cursor. On the embedded engine (mongomock) it reads
the engine's own candidate documents (`store/embedded.py`) and copies only the asked-for
values: mongomock's cursor deep-copies and re-projects every whole document, which made
reading 100,000 profiles four times slower than this. Values are read a column at a time
(`map` over the batch), so the per-document work stays in C.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from operator import methodcaller
from typing import Any, Final, Literal, Protocol, cast

import mongomock.helpers
from pymongo.errors import PyMongoError

from store.errors import StoreUnavailable, guarded

Collection = Literal["profiles", "interactions"]
COLLECTIONS: Final = ("profiles", "interactions")
BATCH: Final = 1000
_helpers: Any = mongomock.helpers  # untyped: handled as Any, as in store/embedded.py
Columns = list[list[Any]]  # one list per asked-for path, all of the batch's length


class ExportRepo(Protocol):
    def columns(self, collection: Collection, query: dict[str, Any], paths: Sequence[str],
                batch: int = BATCH) -> AsyncIterator[Columns]:
        """The matching documents in stored order, `batch` at a time: for each path, the
        values there (None when absent; a path through an array reads None)."""
        ...

    async def count(self, collection: Collection, query: dict[str, Any]) -> int: ...


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
_EMPTY: Final[dict[str, Any]] = {}


def _copy(value: Any, aware: bool) -> Any:
    """A value safe to hand out: containers copied, naive datetimes read as UTC (as the
    tz-aware client returns them)."""
    if isinstance(value, dict):
        return {k: _copy(v, aware) for k, v in value.items()}
    if isinstance(value, list):
        if all(map(_PLAIN.__contains__, map(type, value))):
            return value[:]  # tags and the like: plain values, one C-level copy
        return [_copy(v, aware) for v in value]
    if aware and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class _Reader:
    """Documents -> columns, for a fixed list of paths: each sub-document is looked up
    once per document, each value by a `map` over the batch."""

    def __init__(self, paths: Sequence[str], aware: bool) -> None:
        self._aware = aware
        self._size = len(paths)
        groups: dict[str, list[tuple[int, list[str]]]] = {}
        for i, path in enumerate(paths):
            first, *rest = path.split(".")
            groups.setdefault(first, []).append((i, rest))
        self._groups = [(methodcaller("get", top), wanted) for top, wanted in groups.items()]

    def __call__(self, docs: list[dict[str, Any]]) -> Columns:
        out: Columns = [[] for _ in range(self._size)]
        for get_top, wanted in self._groups:
            tops = list(map(get_top, docs))
            subs: list[Any] | None = None
            for i, rest in wanted:
                if not rest:
                    values = tops
                else:
                    if subs is None:
                        subs = [s if isinstance(s, dict) else _EMPTY for s in tops]
                    values = subs
                    for depth, part in enumerate(rest):
                        if depth:
                            values = [v if isinstance(v, dict) else _EMPTY for v in values]
                        values = list(map(methodcaller("get", part), values))
                if not all(map(_PLAIN.__contains__, map(type, values))):
                    values = self._fix(values)
                elif values is tops:
                    values = list(values)
                out[i] = values
        return out


    def _fix(self, values: list[Any]) -> list[Any]:
        if self._aware and all(type(v) is datetime or v is None for v in values):
            # A column of times (seen, joined, ordered): the commonest non-plain case.
            return [v if v is None or v.tzinfo else v.replace(tzinfo=UTC) for v in values]
        return [v if type(v) in _PLAIN else _copy(v, self._aware) for v in values]


def projection(paths: Sequence[str]) -> dict[str, int]:
    """A MongoDB projection of `paths`; a path under another one asked for is dropped
    (MongoDB refuses such a "path collision")."""
    unique = sorted(set(paths), key=lambda p: (p.count("."), p))
    kept: list[str] = []
    for p in unique:
        if not any(p == k or p.startswith(k + ".") for k in kept):
            kept.append(p)
    return {p: 1 for p in kept} | ({} if "_id" in kept else {"_id": 0})


@guarded
class MongoExports:
    def __init__(self, db: Any, embedded: bool) -> None:
        self._db = db
        self._embedded = embedded

    def _col(self, collection: Collection) -> Any:
        if collection not in COLLECTIONS:
            raise ValueError(f"not an exported collection: {collection!r}")
        return self._db[collection]

    async def count(self, collection: Collection, query: dict[str, Any]) -> int:
        return int(await self._col(collection).count_documents(query))

    async def columns(self, collection: Collection, query: dict[str, Any],
                      paths: Sequence[str], batch: int = BATCH) -> AsyncIterator[Columns]:
        col = self._col(collection)
        if self._embedded:
            async for chunk in self._embedded_columns(col, query, paths, batch):
                yield chunk
            return
        read = _Reader(paths, aware=False)  # the driver's own datetimes are aware
        docs: list[dict[str, Any]] = []
        try:
            async for doc in col.find(query, projection(paths), batch_size=batch):
                docs.append(doc)
                if len(docs) >= batch:
                    yield read(docs)
                    docs = []
        except PyMongoError as e:  # @guarded covers coroutines, not generators
            raise StoreUnavailable(f"{type(e).__name__}: {e}"[:300]) from e
        if docs:
            yield read(docs)

    async def _embedded_columns(self, col: Any, query: dict[str, Any], paths: Sequence[str],
                                batch: int) -> AsyncIterator[Columns]:
        read = _Reader(paths, aware=bool(col.codec_options.tz_aware))
        # The engine's own filtering (hash-index candidates, then the whole filter on
        # each) gives the live documents: read here, and copied where not plain values.
        # Its cursor first turns the filter's times into naive UTC, as it keeps them.
        spec = _helpers.patch_datetime_awareness_in_document(query)
        found = iter(cast(Any, col)._iter_documents(spec))
        while True:
            docs = [doc for _, doc in zip(range(batch), found, strict=False)]
            if not docs:
                return
            yield read(docs)
            await asyncio.sleep(0)  # let the app answer messages between batches
