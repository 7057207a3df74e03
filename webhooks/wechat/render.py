"""Reply to WeChat passive-reply XML and to customer-service API JSON."""

from __future__ import annotations

from typing import Any

from wechatpy.replies import ArticlesReply, ImageReply, TextReply

from bot.messages import Reply


def passive_xml(reply: Reply, follower: str, account: str) -> str:
    common = {"source": account, "target": follower}
    if reply.kind == "image":
        return str(ImageReply(media_id=reply.media_id, **common).render())
    if reply.kind == "news":
        articles = [
            {"title": a.title, "description": a.description, "image": a.image, "url": a.url}
            for a in reply.articles[:8]
        ]
        return str(ArticlesReply(articles=articles, **common).render())
    return str(TextReply(content=reply.text, **common).render())


def custom_message(reply: Reply, follower: str) -> dict[str, Any]:
    """The body of POST /cgi-bin/message/custom/send for one reply."""
    if reply.kind == "image":
        return {"touser": follower, "msgtype": "image", "image": {"media_id": reply.media_id}}
    if reply.kind == "news":
        articles = [
            {"title": a.title, "description": a.description, "url": a.url, "picurl": a.image}
            for a in reply.articles[:1]  # the API takes one article per news message
        ]
        return {"touser": follower, "msgtype": "news", "news": {"articles": articles}}
    return {"touser": follower, "msgtype": "text", "text": {"content": reply.text}}
