"""What the web app needs of a channel: its routes. Each channel is one module (the WeChat
official account in webhooks/wechat/, the generic JSON channel), built by
webhooks/services.py with exactly what it uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def routes(self) -> Sequence[web.AbstractRouteDef]: ...
