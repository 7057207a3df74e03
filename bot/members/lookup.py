"""Finding a member by what staff and the brand's systems call her: member id (M…), mobile
(however written), profile id, or an openid on one of the brand's accounts. One rule for
the staff commands, the admin API and the shop's orders."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from bot.privacy import phone_digits
from store.protocols import Store
from store.records import Profile

_MEMBER_ID: Final = re.compile(r"^M[0-9A-F]{10}$")
_PROFILE_ID: Final = re.compile(r"^[0-9a-f]{32}$")


async def find_member(store: Store, ref: str, accounts: Iterable[tuple[str, str]]
                      ) -> Profile | None:
    """A profile by member id (M…), mobile (however written), profile id, or openid on one
    of `accounts` (channel, app id); None if nobody is found."""
    ref = ref.strip()
    if not ref:
        return None
    profiles = store.profiles
    if _MEMBER_ID.match(ref.upper()):
        return await profiles.find_by_member(ref.upper())
    digits = phone_digits(ref)
    if len(digits) == 1 and len(digits[0]) >= 11 and digits[0][-11] == "1":
        found = await profiles.find_by_mobile(digits[0][-11:])  # +86 / 0086 dropped
        if found is not None:
            return found
    if _PROFILE_ID.match(ref):
        found = await profiles.get(ref)
        if found is not None:
            return found
    for channel, app_id in dict.fromkeys(accounts):
        found = await profiles.find_by_identity(channel, app_id, ref)
        if found is not None:
            return found
    return None
