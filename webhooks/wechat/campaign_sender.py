"""Broadcast sends through the official account: customer-service texts within 48 hours,
template messages outside it. Answers WeChat's errcode; SendUncertain when the request
may or may not have arrived (the broadcast then never retries it)."""

from __future__ import annotations

from bot.broadcasts import SendUncertain
from webhooks.wechat.api import WeChatAPI, WeChatTransportError


class WeChatCampaignSender:
    def __init__(self, api: WeChatAPI) -> None:
        self._api = api

    async def text(self, openid: str, text: str) -> int:
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        try:
            data = await self._api.send_custom(body)
        except WeChatTransportError as e:
            raise SendUncertain(str(e)) from e
        return int(data.get("errcode", 0) or 0)

    async def template(self, openid: str, template_id: str, data: dict[str, str],
                       url: str | None) -> int:
        body = {"touser": openid, "template_id": template_id,
                "data": {k: {"value": v} for k, v in data.items()}, **({"url": url} if url
                                                                       else {})}
        try:
            answer = await self._api.call("/cgi-bin/message/template/send", body)
        except WeChatTransportError as e:
            raise SendUncertain(str(e)) from e
        return int(answer.get("errcode", 0) or 0)
