"""The repository interfaces the rest of the application depends on."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from store.records import FollowState, Identity, Interaction, Profile


class ProfileRepo(Protocol):
    async def touch(self, identity: Identity, now: datetime, lang: str | None) -> Profile:
        """Find or create the profile for `identity`; record that it was seen now."""
        ...

    async def get(self, profile_id: str) -> Profile | None: ...

    async def find_by_identity(self, channel: str, app_id: str, openid: str) -> Profile | None:
        ...

    async def set_follow(self, profile_id: str, state: FollowState, now: datetime) -> None: ...

    async def count_outbound(self, profile_id: str, n: int) -> None: ...

    async def set_fields(self, profile_id: str, fields: dict[str, Any]) -> None: ...


class InteractionRepo(Protocol):
    async def add(self, doc: Interaction) -> bool:
        """Append one interaction; False (and nothing written) if its dedupe_key exists."""
        ...

    async def update(self, dedupe_key: str, fields: dict[str, Any]) -> None: ...

    async def get(self, dedupe_key: str) -> Interaction | None: ...

    async def latest(self, profile_id: str, limit: int) -> list[Interaction]: ...

    async def count(self, profile_id: str | None = None) -> int: ...


class Store(Protocol):
    @property
    def profiles(self) -> ProfileRepo: ...

    @property
    def interactions(self) -> InteractionRepo: ...

    @property
    def embedded(self) -> bool:
        """True when data lives in this process's memory (the embedded engine)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
