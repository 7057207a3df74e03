"""The `wechat:` section of config.yml: the official account and WeChat's own limits."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.settings import Strict


class WeChatSettings(Strict):
    token: str = Field(min_length=3, max_length=32)
    app_id: str = Field(min_length=1)
    app_secret: str | None = None
    aes_key: str | None = None
    api_base: str = "https://api.weixin.qq.com"
    replay_window_seconds: int = Field(300, ge=1)
    # Customer-service messages reach a follower this long after her last message
    # (WeChat allows 48 hours; a brand may choose less).
    window_hours: int = Field(48, ge=1, le=48)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_length(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if len(v) != 43:
            raise ValueError("EncodingAESKey must be exactly 43 characters")
        return v
