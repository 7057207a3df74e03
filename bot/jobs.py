"""The durable job queue as the core sees it: named jobs, idempotent by a caller's id.

The app runs them on arq in Redis (webhooks/services.py); tests may run them in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

Job = Callable[..., Awaitable[Any]]


class JobQueue(Protocol):
    async def enqueue(self, job: str, args: list[Any], job_id: str,
                      at: datetime | None = None, delay: float | None = None) -> None:
        """Run `job(*args)` once per `job_id`, at `at` or after `delay` seconds (else now)."""
        ...
