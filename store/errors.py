"""Errors the store raises, so that callers never need the driver's exception types."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError, PyMongoError


class StoreUnavailable(Exception):
    """The database could not be reached or refused the operation (not a duplicate key)."""


T = TypeVar("T")


def _guard(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except DuplicateKeyError:
            raise  # a method's own idempotency answer, handled where it is expected
        except PyMongoError as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}"[:300]) from e

    return wrapper


def guarded(cls: type[T]) -> type[T]:
    """Class decorator: every public coroutine method raises StoreUnavailable on a driver
    error, so the message path can tell "the database is down" from a bug."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _guard(member))
    return cls
