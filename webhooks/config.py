"""The whole of config.yml: the core's sections (bot/settings.py) plus the edges' own:
`wechat:` (the channel), `json_channel:` and `admin:` (the admin API)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from bot.settings import BotSettings, ConfigError, Strict, load_config
from webhooks.wechat.settings import WeChatSettings

__all__ = ["AdminSettings", "ConfigError", "JsonChannelSettings", "Settings", "ShopSettings",
           "load_settings"]


class AdminSettings(Strict):
    token: str | None = None
    allow_remote: bool = False


class JsonChannelSettings(Strict):
    secret: str | None = None
    header: str = "X-SCRM-Signature"


class ShopSettings(Strict):
    """The shop's order webhook (POST /admin/api/orders): signed like the JSON channel."""

    secret: str | None = None  # empty: the route refuses every call
    header: str = "X-SCRM-Signature"


class Settings(BotSettings):
    wechat: WeChatSettings
    admin: AdminSettings = Field(default_factory=AdminSettings)
    json_channel: JsonChannelSettings = Field(default_factory=JsonChannelSettings)
    shop: ShopSettings = Field(default_factory=ShopSettings)


def load_settings(path: str | Path = "config.yml", env: dict[str, str] | None = None
                  ) -> Settings:
    """Read, expand and validate config.yml; ConfigError names file, line and key."""
    return load_config(Settings, path, env)
