"""Contract fixtures: every test here runs once per store backend (tests/support/backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from store.mongo import MongoStore
from tests.support.backends import BACKENDS, open_store


@pytest.fixture(params=[b if b == "embedded" else pytest.param(b, marks=pytest.mark.server)
                        for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The session's SecantusDB server, started only when a secantus test runs."""
    return str(request.getfixturevalue("secantus_url")) if backend == "secantus" else None


@pytest.fixture
async def store(backend: str, server: str | None) -> AsyncIterator[MongoStore]:
    async with open_store(backend, secantus=server) as s:
        yield s
