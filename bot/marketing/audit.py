"""The staff audit: what each command attempt was, by whom, and how it ended, masked."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from bot.privacy import mask_phones
from store.protocols import Store
from store.records import Profile


class Audit:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, actor: Profile, role: str, command: str, args: str, now: datetime,
                     result: str, detail: str, source: str, extra: dict[str, Any]) -> None:
        idents = actor.get("identities") or []
        await self._store.audit.add({
            "_id": uuid.uuid4().hex, "at": now, "actor": actor["_id"],
            "openid": idents[0]["openid"] if idents else None, "role": role,
            "command": command, "text": mask_phones(f"/{command} {args}".strip())[:500],
            "result": result, "detail": mask_phones(str(detail))[:300], "source": source,
            **extra})
