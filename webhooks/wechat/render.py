"""Reply to WeChat passive-reply XML and to customer-service API JSON."""

from __future__ import annotations

import re
from typing import Any

from wechatpy.replies import ArticlesReply, ImageReply, TextReply

from bot.messages import Reply

# Characters XML 1.0 cannot carry at all: a reply containing one is not well-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def cdata_safe(text: str) -> str:
    """Text that stays text inside wechatpy's <![CDATA[...]]>: a `]]>` in it (a nickname,
    a relayed message) would end the section and let the rest be read as XML, so it is
    split across two sections, the way XML allows; characters XML forbids are dropped."""
    return _NOT_XML.sub("", text).replace("]]>", "]]]]><![CDATA[>")


def passive_xml(reply: Reply, follower: str, account: str) -> str:
    common = {"source": cdata_safe(account), "target": cdata_safe(follower)}
    if reply.kind == "image":
        return str(ImageReply(media_id=cdata_safe(reply.media_id), **common).render())
    if reply.kind == "news":
        articles = [
            {"title": cdata_safe(a.title), "description": cdata_safe(a.description),
             "image": cdata_safe(a.image), "url": cdata_safe(a.url)}
            for a in reply.articles[:8]
        ]
        return str(ArticlesReply(articles=articles, **common).render())
    return str(TextReply(content=cdata_safe(reply.text), **common).render())


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
