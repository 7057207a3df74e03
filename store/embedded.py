"""Hash indexes and linear cursors for the embedded engine (mongomock).

mongomock answers every query by scanning the whole collection, checks each unique index
with another full scan, and its cursor copies the remaining result list on every `next()`
(so reading n documents costs O(n²)). A 100,000-member broadcast or a store holding a few
hours of chat is then too slow to measure anything. `install()` fixes those three paths
in place, for the process, without changing what any query returns:

- every field named by an index (and `_id`) gets a hash map value -> document ids, kept up
  to date on insert, update, replace, delete and drop;
- a filter that pins such a field to a value (`v`, `{"$eq": v}`, `{"$in": [...]}`,
  `{"$elemMatch": {"$eq": v}}`, or an array of values) reads only the candidates from the
  map, in natural order, and still applies the whole filter to each: the map only has to
  hold a superset of the matches, which is what keeps it simple to trust;
- the cursor walks its cached result by position, and a query with a limit copies only
  the documents it returns, not every match.

A real MongoDB needs none of this; `tests/contract/test_embedded_index.py` compares
indexed answers with brute-force ones over random operations.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import mongomock.collection
import mongomock.filtering
import mongomock.helpers
import mongomock.store
from bson import ObjectId

# mongomock is untyped here: its modules are handled as Any.
_collection: Any = mongomock.collection
_filtering: Any = mongomock.filtering
_helpers: Any = mongomock.helpers
_store: Any = mongomock.store

_ARRAY = "__array__"  # tags the key of a whole array, so it never equals a scalar key
_INNER = "__inner__"  # a scalar inside an array inside the array ($elemMatch reaches it)
_installed = False


def _scalar(value: Any) -> bool:
    """Values a map may hold: those equal (as mongomock compares) only when equal in
    Python, so equal values share a bucket. True shares 1's bucket: harmless, as a
    bucket only has to hold a superset. NaN never equals itself in Python: scanned."""
    if isinstance(value, float) and value != value:
        return False
    return isinstance(value, str | int | float | ObjectId)


def _array_key(values: list[Any]) -> tuple[str, tuple[Any, ...]] | None:
    return (_ARRAY, tuple(values)) if all(_scalar(v) for v in values) else None


class _Index:
    """value -> ids for the indexed fields of one collection, and natural order."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[Any, set[Any]]] = {}
        self.wild: dict[str, set[Any]] = {}  # ids whose value sits under an array
        self.keys: dict[Any, dict[str, list[Any] | None]] = {}  # id -> field -> keys
        self.order: dict[Any, int] = {}
        self.counter = itertools.count()

    @staticmethod
    def doc_keys(doc: Any, field: str) -> list[Any] | None:
        """The map keys of `doc` for `field`; None when an array lies on the path
        (such a document is a candidate for any value)."""
        value = doc
        for part in field.split("."):
            if isinstance(value, list):
                return None
            if not isinstance(value, dict) or part not in value:
                return []
            value = value[part]
        if isinstance(value, list):
            keys: list[Any] = [v for v in value if _scalar(v)]
            keys += [k for k in [_array_key(value)] if k is not None]
            for inner in (v for v in value if isinstance(v, list)):
                keys += [k for k in [_array_key(inner)] if k is not None]
                keys += [(_INNER, v) for v in inner if _scalar(v)]
            return keys
        return [value] if _scalar(value) else []

    def add_field(self, field: str, docs: Any) -> None:
        self.maps[field], self.wild[field] = {}, set()
        for doc_id, doc in docs:
            self._put(doc_id, field, self.doc_keys(doc, field))

    def _put(self, doc_id: Any, field: str, keys: list[Any] | None) -> None:
        self.keys.setdefault(doc_id, {})[field] = keys
        if keys is None:
            self.wild[field].add(doc_id)
            return
        for key in keys:
            self.maps[field].setdefault(key, set()).add(doc_id)

    def remove(self, doc_id: Any) -> None:
        for field, keys in self.keys.pop(doc_id, {}).items():
            if keys is None:
                self.wild[field].discard(doc_id)
                continue
            for key in keys:
                ids = self.maps[field].get(key)
                if ids is not None:
                    ids.discard(doc_id)
                    if not ids:
                        del self.maps[field][key]
        self.order.pop(doc_id, None)

    def put(self, doc_id: Any, doc: Any) -> None:
        """(Re)index a document; a new id goes to the end of the natural order."""
        seq = self.order.get(doc_id)
        self.remove(doc_id)
        self.order[doc_id] = next(self.counter) if seq is None else seq
        for field in self.maps:
            self._put(doc_id, field, self.doc_keys(doc, field))


def _index(coll_store: Any) -> _Index:
    index: _Index | None = coll_store.__dict__.get("_scrm_index")
    if index is None:
        index = _Index()
        for doc_id, doc in coll_store._documents.items():
            index.put(doc_id, doc)
        coll_store.__dict__["_scrm_index"] = index
    return index


def _wanted(condition: Any) -> list[Any] | None:
    """The map keys a field condition can match, or None if it cannot be answered
    from the map (a range, a regex, $ne, None...)."""
    if _scalar(condition):
        return [condition]
    if isinstance(condition, list):
        key = _array_key(condition)
        return [key] if key is not None else None
    if isinstance(condition, dict) and len(condition) == 1:
        (op, arg), = condition.items()
        if op == "$eq":
            return _wanted(arg)
        if op == "$in" and isinstance(arg, list | tuple):
            keys = [_wanted(v) for v in arg]
            if all(k is not None for k in keys):
                return [key for k in keys if k is not None for key in k]
        if op == "$elemMatch" and isinstance(arg, dict) and len(arg) == 1 and "$eq" in arg:
            value = arg["$eq"]
            return [value, (_INNER, value)] if _scalar(value) else None
    return None


def _candidates(coll: Any, flt: Any) -> list[Any] | None:
    """Natural-order candidate documents for `flt`, or None to scan everything."""
    if not isinstance(flt, dict) or not flt:
        return None
    coll_store = coll._store
    documents = coll_store._documents
    if "_id" in flt:
        wanted = _wanted(flt["_id"])
        if wanted is not None and all(not isinstance(k, tuple) for k in wanted):
            order = _index(coll_store).order
            found = sorted({k for k in wanted if k in documents}, key=order.__getitem__)
            return [documents[k] for k in found]
    indexed = {field for spec in coll_store.indexes.values() for field, _ in spec["key"]}
    best: set[Any] | None = None
    for field, condition in flt.items():
        if field not in indexed or field.startswith("$"):
            continue
        wanted = _wanted(condition)
        if wanted is None:
            continue
        index = _index(coll_store)
        if field not in index.maps:
            index.add_field(field, documents.items())
        ids = set(index.wild[field]).union(
            *(index.maps[field].get(k, ()) for k in wanted))
        if best is None or len(ids) < len(best):
            best = ids
    if best is None:
        return None
    order = _index(coll_store).order
    return [documents[i] for i in sorted(best, key=order.__getitem__)]


def install() -> None:
    """Patch mongomock for this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    coll_cls, store_cls, cursor_cls = (_collection.Collection, _store.CollectionStore,
                                       _collection.Cursor)
    scan = coll_cls._iter_documents
    check_uniques = coll_cls._ensure_uniques
    setitem, delitem, drop = (store_cls.__setitem__, store_cls.__delitem__, store_cls.drop)

    def _iter_documents(self: Any, flt: Any) -> Iterator[Any]:
        self._store._remove_expired_documents()
        found = _candidates(self, flt)
        if found is None:
            return iter(scan(self, flt))
        _filtering.filter_applies(flt, {})  # invalid filters raise, as in a scan
        return (doc for doc in found if _filtering.filter_applies(flt, doc))

    def _ensure_uniques(self: Any, new_data: Any) -> None:
        # Called after every insert and every in-place change of a stored document.
        doc_id = new_data["_id"]
        _index(self._store).put(_helpers.hashdict(doc_id) if isinstance(doc_id, dict)
                                else doc_id, new_data)
        check_uniques(self, new_data)

    def __setitem__(self: Any, key: Any, val: Any) -> None:
        setitem(self, key, val)
        _index(self).put(key, val)

    def __delitem__(self: Any, key: Any) -> None:
        delitem(self, key)
        _index(self).remove(key)

    def drop_(self: Any) -> None:
        drop(self)
        self.__dict__.pop("_scrm_index", None)

    def __next__(self: Any) -> Any:
        # The original slices results[skip:][:limit] on every call.
        results = self._compute_results()
        if self._limit and self._emitted >= abs(self._limit):
            raise StopIteration
        position = (self._skip or 0) + self._emitted
        if position >= len(results):
            raise StopIteration
        self._emitted += 1
        return results[position]

    def _compute_results(self: Any, with_limit_and_skip: bool = False) -> Any:
        # The original copies every match before applying a limit: with one, stop early.
        if not self._results or self._factory_last_generated_results != self._factory:
            rows: Iterable[Any] = self._factory()
            if self._limit:
                rows = itertools.islice(rows, (self._skip or 0) + abs(self._limit))
            if self.collection.codec_options.tz_aware:
                rows = (_helpers.make_datetime_timezone_aware_in_document(x) for x in rows)
            self._results = list(rows)
            self._factory_last_generated_results = self._factory
        if with_limit_and_skip:
            results = self._results[self._skip:]
            return results[:abs(self._limit)] if self._limit else results
        return self._results

    coll_cls._iter_documents = _iter_documents
    cursor_cls._compute_results = _compute_results
    coll_cls._ensure_uniques = _ensure_uniques
    store_cls.__setitem__ = __setitem__
    store_cls.__delitem__ = __delitem__
    store_cls.drop = drop_
    cursor_cls.__next__ = cursor_cls.next = __next__
