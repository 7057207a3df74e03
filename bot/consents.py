"""A member's consents (PIPL): the latest answer of each kind on `consents.<kind>`, which
every rule reads, and every grant and withdrawal in `consent_history`, oldest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store.protocols import Store
from store.records import Profile

KINDS = ("privacy", "sensitive", "matching")  # the policy; pregnancy data; being matched


async def record_consent(store: Store, profile_id: str, kind: str, accepted: bool,
                         version: str, now: datetime, channel: str = "chat",
                         extra_set: dict[str, Any] | None = None,
                         unset: list[str] | None = None) -> None:
    """One grant or withdrawal: the latest answer and its history line in one write."""
    entry = {"accepted": accepted, "version": version, "at": now, "channel": channel}
    await store.profiles.update(profile_id, {f"consents.{kind}": entry, **(extra_set or {})},
                                unset, push={"consent_history": {"kind": kind, **entry}})


def consented(profile: Profile, kind: str) -> bool:
    return bool(((profile.get("consents") or {}).get(kind) or {}).get("accepted"))


def history(profile: Profile) -> list[dict[str, Any]]:
    """Every grant and withdrawal; a profile from before the history shows its latest."""
    kept = list(profile.get("consent_history") or [])
    if kept:
        return kept
    return [{"kind": k, **v} for k, v in (profile.get("consents") or {}).items()
            if isinstance(v, dict)]
