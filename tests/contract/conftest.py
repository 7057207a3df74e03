"""Contract fixtures: every test here runs once per store backend (tests/support/backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from store.mongo import MongoStore
from tests.support.backends import BACKENDS, open_store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(backend: str) -> AsyncIterator[MongoStore]:
    async with open_store(backend) as s:
        yield s
