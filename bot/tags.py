"""Tags the system keeps, which staff commands may not add or remove: membership, testers
(who see draft flows) and the life-stage tags recomputed from a member's dates."""

from __future__ import annotations

from typing import Final

from bot.members.lifestage import is_stage_tag

MEMBER_TAG: Final = "会员"  # set by sign-up (flows/signup.yml)
TESTER_TAG: Final = "tester"  # sees flows marked draft: true
SYSTEM_TAGS: Final = frozenset({MEMBER_TAG, TESTER_TAG})


def is_system_tag(tag: str) -> bool:
    return tag in SYSTEM_TAGS or is_stage_tag(tag)
