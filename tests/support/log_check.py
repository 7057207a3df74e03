"""A check over everything the app logged during a test run (JSON lines, INFO and above):
no message text a test sent, no secret, no phone number in any form."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.privacy import mask_phones

# Texts distinctive enough that finding one in the log is a leak, not a coincidence:
# Chinese of 4+ characters, or anything of 12+ ("同意", "1", a fuzzed "null" are words).
MIN_CJK, MIN_ANY = 4, 12


def _distinctive(text: str) -> bool:
    text = text.strip()
    cjk = any("\u4e00" <= ch <= "\u9fff" for ch in text)
    return len(text) >= MIN_ANY or (cjk and len(text) >= MIN_CJK)


def leaks(log: str, texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    found: list[str] = []
    lines = log.splitlines()
    for secret in secrets:
        found += [f"secret {secret[:4]}…: {line[:200]}" for line in lines if secret in line]
    distinctive = {t.strip() for t in texts if _distinctive(t)}
    for text in sorted(distinctive):
        found += [f"message text {text[:30]!r}: {line[:200]}" for line in lines if text in line]
    for line in lines:
        if mask_phones(line) != line:
            found.append(f"phone number: {line[:200]}")
    return found[:50]


def sent_texts(body: str) -> list[str]:
    """The Content of a follower's text message XML (what the follower typed)."""
    return re.findall(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", body, re.S)
