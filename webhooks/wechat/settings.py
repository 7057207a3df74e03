"""The `wechat:` section of config.yml: the official account and WeChat's own limits."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

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
    # The account's message encryption (消息加解密方式) as set in the WeChat admin console:
    # plain (明文), compatible (兼容: plaintext and encrypted requests both accepted) or
    # safe (安全: encrypted only). Unset: safe with an EncodingAESKey, plain without.
    mode: Literal["plain", "compatible", "safe"] | None = None

    @field_validator("aes_key")
    @classmethod
    def _aes_key_length(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if len(v) != 43:
            raise ValueError("EncodingAESKey must be exactly 43 characters")
        return v

    @model_validator(mode="after")
    def _mode_needs_the_key(self) -> Self:
        if self.mode in ("compatible", "safe") and not self.aes_key:
            raise ValueError(f"mode {self.mode!r} needs an EncodingAESKey (aes_key)")
        return self

    @property
    def effective_mode(self) -> Literal["plain", "compatible", "safe"]:
        return self.mode or ("safe" if self.aes_key else "plain")

    @property
    def accepts_plaintext(self) -> bool:
        """With a key, a plaintext request is a downgrade unless compatible mode is chosen."""
        return self.effective_mode != "safe"
