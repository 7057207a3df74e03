"""What importing members needs of `profiles`: people matched by unionid, openid or
mobile, and members created before they have a WeChat identity (linked later)."""

from __future__ import annotations

from typing import Any, Protocol

from store.errors import guarded


class MemberImportRepo(Protocol):
    async def ensure_indexes(self) -> None: ...


@guarded
class MongoMemberImports:
    def __init__(self, db: Any) -> None:
        self._profiles = db["profiles"]

    async def ensure_indexes(self) -> None:
        return None
