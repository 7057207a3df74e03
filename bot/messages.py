"""Channel-free message types: what adapters hand to the orchestrator and get back.

No WeChat (or other platform) type crosses this line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from store.records import identity_key, inbound_key

InboundKind = Literal[
    "text", "image", "voice", "video", "location", "link", "event", "unknown"
]


def is_command(text: str | None) -> bool:
    """A staff command: a text that starts with "/" (or the full-width "／")."""
    return bool(text) and (text or "").lstrip()[:1] in ("/", "／")


class InboundMessage(BaseModel):
    """One message or event from a follower, already verified and deduplicated by key."""

    model_config = ConfigDict(frozen=True)

    channel: str
    app_id: str
    sender: str
    kind: InboundKind
    dedupe_key: str
    created_at: datetime
    text: str | None = None
    event: str | None = None  # subscribe, unsubscribe, scan, click, view, location, ...
    event_key: str | None = None  # menu key, QR scene (without qrscene_), URL
    payload: dict[str, Any] = Field(default_factory=dict)
    unionid: str | None = None

    @property
    def follower(self) -> str:
        """A key naming the follower across channels and accounts (for ordering)."""
        return identity_key(self.channel, self.app_id, self.sender)

    @property
    def record_key(self) -> str:
        """The key of this message's inbound interaction (unique: stored once)."""
        return inbound_key(self.channel, self.dedupe_key)


class Article(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    description: str = ""
    image: str = ""
    url: str = ""


class Reply(BaseModel):
    """One outbound message: text, an image (by media id or URL) or news articles."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["text", "image", "news"]
    text: str = ""
    media_id: str = ""
    image_url: str = ""
    articles: tuple[Article, ...] = ()

    def as_text(self) -> str:
        """A plain-text rendering, for terminals and logs of what was said."""
        if self.kind == "text":
            return self.text
        if self.kind == "image":
            return f"[image {self.media_id or self.image_url}]"
        return "\n".join(f"[{a.title}] {a.url}" for a in self.articles)
