"""The WeChat server API as this app uses it: a shared access_token, customer-service sends.

One token per AppID lives in Redis for every process; it comes from `stable_token` (which
does not invalidate other holders' tokens) and is refreshed by one process at a time under a
Redis lock, 5 minutes before WeChat expires it. An invalid-token answer (40001/42001)
forces one refresh and one retry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from wechatpy.constants import WeChatErrorCode

from store.state import TokenCache

log = logging.getLogger(__name__)

TOKEN_INVALID = {WeChatErrorCode.INVALID_CREDENTIAL.value,
                 WeChatErrorCode.EXPIRED_ACCESS_TOKEN.value}
REFRESH_MARGIN = 300


JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def wechat_json(body: dict[str, Any]) -> bytes:
    """A request body as WeChat reads it: Chinese as raw UTF-8. WeChat does not decode
    `\\uXXXX` escapes (json.dumps' default, and aiohttp's `json=`): a follower would see
    them literally. Every call to WeChat's API is encoded here."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WeChatTransportError(Exception):
    """The request may not have reached WeChat (connection error, timeout, bad answer)."""


class WeChatAPI:
    def __init__(
        self, session: aiohttp.ClientSession, base: str, app_id: str, secret: str,
        tokens: TokenCache, timeout: float = 5.0,
    ) -> None:
        self._s = session
        self._base = base.rstrip("/")
        self._app_id = app_id
        self._secret = secret
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def _token_name(self) -> str:
        return f"wechat:{self._app_id}"

    async def access_token(self, stale: str | None = None) -> str:
        """The shared token; `stale` is one WeChat just rejected, forcing a refresh."""
        cached = await self._tokens.get(self._token_name)
        if cached and cached != stale:
            return cached
        async with self._tokens.lock(self._token_name):
            # Another process may have refreshed while we waited for the lock.
            cached = await self._tokens.get(self._token_name)
            if cached and cached != stale:
                return cached
            data = await self._post_json(
                "/cgi-bin/stable_token",
                {"grant_type": "client_credential", "appid": self._app_id,
                 "secret": self._secret, "force_refresh": stale is not None},
            )
            token = data.get("access_token")
            if not token:
                raise WeChatTransportError(f"stable_token failed: errcode {data.get('errcode')}")
            ttl = int(data.get("expires_in", 7200)) - REFRESH_MARGIN
            await self._tokens.set(self._token_name, str(token), ttl)
            log.info("access_token refreshed", extra={"forced": stale is not None})
            return str(token)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to an API that takes ?access_token=; retries once on an invalid token."""
        token = await self.access_token()
        data = await self._post_json(path, body, token)
        if data.get("errcode") in TOKEN_INVALID:
            token = await self.access_token(stale=token)
            data = await self._post_json(path, body, token)
        return data

    async def send_custom(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("/cgi-bin/message/custom/send", body)

    async def create_qr(self, scene: str) -> dict[str, str]:
        """A permanent parametric QR code (qrcode/create, QR_LIMIT_STR_SCENE)."""
        data = await self.call("/cgi-bin/qrcode/create", {
            "action_name": "QR_LIMIT_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}}})
        if not data.get("ticket"):
            raise WeChatTransportError(f"qrcode/create failed: errcode {data.get('errcode')}")
        return {"ticket": str(data["ticket"]), "url": str(data.get("url", "")),
                "image": f"https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={data['ticket']}"}

    async def _post_json(
        self, path: str, body: dict[str, Any], token: str | None = None
    ) -> dict[str, Any]:
        params = {"access_token": token} if token else None
        try:
            async with self._s.post(
                self._base + path, data=wechat_json(body), params=params,
                headers=JSON_HEADERS, timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    raise WeChatTransportError(f"HTTP {resp.status} from {path}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise WeChatTransportError(f"{path}: {type(e).__name__}: {e}") from e
        if not isinstance(data, dict):
            raise WeChatTransportError(f"{path}: answer is not a JSON object")
        return data
