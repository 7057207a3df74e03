"""The channel registry: each channel is one module that registers a factory here.

A channel owns its routes and, if it can push messages later, a LateSender and the job
functions that do the pushing. The app builds every registered channel that is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from bot.orchestrator import LateSender

if TYPE_CHECKING:
    from webhooks.services import Services


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def late_sender(self) -> LateSender | None: ...

    @property
    def job_functions(self) -> Sequence[Callable[..., Any]]: ...

    def routes(self) -> Sequence[web.AbstractRouteDef]: ...


ChannelFactory = Callable[["Services"], Channel | None]
REGISTRY: dict[str, ChannelFactory] = {}


def register_channel(name: str) -> Callable[[ChannelFactory], ChannelFactory]:
    """Decorator: make a channel factory known. The factory returns None when unconfigured."""

    def wrap(factory: ChannelFactory) -> ChannelFactory:
        if name in REGISTRY:
            raise ValueError(f"channel {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return wrap


def load_builtin_channels() -> None:
    """Import the channel modules shipped with the app (each registers itself)."""
    import webhooks.json_channel
    import webhooks.wechat.channel  # noqa: F401
