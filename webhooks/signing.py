"""HMAC-SHA256 signatures of request bodies: the JSON channel and the shop's order webhook
check them the same way."""

from __future__ import annotations

import hashlib
import hmac


def signed(secret: str | bytes, body: bytes, given: str) -> bool:
    """Whether `given` (hex, optionally "sha256="-prefixed, any case) is the HMAC-SHA256 of
    `body` under `secret`. Undecodable header bytes compare as bytes: never an error."""
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    given = given.strip().lower().removeprefix("sha256=")
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())
