"""Masking of what staff, logs and other members may see of a member: one place for it.

Phone numbers are masked wherever text leaves the member's own conversation (logs, the admin
API, staff commands, relayed sister messages); names are shortened in staff views.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Mainland mobiles, also written 138 1234 5678 or 138-1234-5678.
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)[ \-]?\d{4}[ \-]?(\d{4})(?!\d)")


def mask_phones(text: str) -> str:
    """138****1234 for every mainland mobile number in `text` (full-width digits too)."""
    if any("０" <= ch <= "９" for ch in text):
        text = unicodedata.normalize("NFKC", text)
    return _PHONE.sub(r"\1****\2", text)


def mask_name(name: Any) -> str:
    """A nickname as staff see it: the first character, then stars (小美 -> 小*)."""
    text = str(name or "")
    return (text[0] + "*" * min(3, max(1, len(text) - 1))) if text else "(无昵称)"
