"""WeChat XML to channel-free InboundMessage, behind a hardened XML parser.

defusedxml rejects any DTD (so no entity expansion, no external entities) before wechatpy,
whose xmltodict parser would otherwise see the body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy import parse_message
from wechatpy.messages import UnknownMessage

from bot.messages import InboundKind, InboundMessage


class MalformedMessage(Exception):
    """The body is not a WeChat message we can read (answered with HTTP 400)."""


def harden(body: bytes | str) -> dict[str, str]:
    """Parse with DTDs forbidden; the top-level fields, for checks before wechatpy runs."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except (DefusedXmlException, SafeET.ParseError, ValueError) as e:
        raise MalformedMessage(f"not acceptable XML: {type(e).__name__}") from e
    if root.tag != "xml":
        raise MalformedMessage("root element is not <xml>")
    return {child.tag: (child.text or "") for child in root}


_KINDS: dict[str, InboundKind] = {
    "text": "text", "image": "image", "voice": "voice", "video": "video",
    "shortvideo": "video", "location": "location", "link": "link", "event": "event",
}
_EVENT_NAMES = {"subscribe_scan": "subscribe"}


def to_inbound(xml: bytes | str, app_id: str) -> InboundMessage:
    fields = harden(xml)
    for required in ("FromUserName", "CreateTime", "MsgType"):
        if not fields.get(required):
            raise MalformedMessage(f"missing {required}")
    try:
        created = int(fields["CreateTime"])
    except ValueError as e:
        raise MalformedMessage("CreateTime is not a number") from e
    try:
        msg: Any = parse_message(xml)
    except Exception as e:  # wechatpy raises bare KeyError/ValueError on odd input
        raise MalformedMessage(f"wechatpy could not parse it: {type(e).__name__}") from e

    msg_type = fields["MsgType"].lower()
    kind: InboundKind = "unknown" if isinstance(msg, UnknownMessage) else _KINDS.get(
        msg_type, "unknown")
    payload: dict[str, Any] = {"account": fields.get("ToUserName", ""), "msg_type": msg_type}
    text = event = event_key = None
    if kind == "text":
        text = msg.content
    elif kind == "voice":
        text = msg.recognition or None
        payload.update(media_id=msg.media_id, format=msg.format)
    elif kind in ("image", "video"):
        payload.update(media_id=msg.media_id, url=getattr(msg, "image", None))
    elif kind == "location":
        payload.update(x=msg.location_x, y=msg.location_y, scale=msg.scale, label=msg.label)
    elif kind == "link":
        payload.update(title=msg.title, description=msg.description, url=msg.url)
    elif kind == "event":
        event = _EVENT_NAMES.get(msg.event, msg.event)
        if msg.event == "subscribe_scan":
            event_key = msg.scene_id  # wechatpy already stripped "qrscene_"
            payload["scene"] = msg.scene_id
        elif msg.event == "scan":
            event_key = msg.scene_id
            payload["scene"] = msg.scene_id
        elif msg.event == "location":
            payload.update(lat=msg.latitude, lng=msg.longitude, precision=msg.precision)
        else:
            event_key = getattr(msg, "key", None) or getattr(msg, "url", None) or None
    else:
        payload["fields"] = {k: v[:200] for k, v in list(fields.items())[:20]}

    msg_id = fields.get("MsgId") or fields.get("MsgID")
    # Keyed on the account and the sender too: a MsgId (or a second) reused by another
    # follower is another message, never a retry of hers.
    who = f"{fields.get('ToUserName', '')}:{fields['FromUserName']}"
    if kind == "event" or not msg_id:
        dedupe = f"evt:{who}:{created}:{fields.get('Event', msg_type)}"
    else:
        dedupe = f"msg:{who}:{msg_id}"
    return InboundMessage(
        channel="wechat", app_id=app_id, sender=fields["FromUserName"], kind=kind,
        dedupe_key=dedupe, created_at=datetime.fromtimestamp(created, UTC), text=text,
        event=event, event_key=event_key, payload=payload,
    )
