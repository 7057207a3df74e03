"""A WeChat follower simulator: signed (optionally encrypted) XML as WeChat's servers send it.

Used by `scrm chat`, the tests and the benchmarks, so all three speak to the real HTTP path.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import defusedxml.ElementTree as SafeET
from wechatpy.crypto import WeChatCrypto

_ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)


def sign(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, *extra])).encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


def _cdata(value: Any) -> str:
    # As WeChat sends it: the raw text in CDATA ("]]>" split across two sections).
    if not isinstance(value, str):
        return str(value)
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass
class Follower:
    token: str
    openid: str
    account: str = "gh_scrm_demo"
    app_id: str = "wx-demo"
    aes_key: str | None = None
    clock: float | None = None  # fixed CreateTime for tests; None = now
    _crypto: WeChatCrypto | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.aes_key:
            self._crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)

    def xml(self, msg_type: str, **fields: Any) -> str:
        created = int(self.clock if self.clock is not None else time.time())
        body = {"ToUserName": self.account, "FromUserName": self.openid,
                "CreateTime": created, "MsgType": msg_type, **fields}
        if msg_type != "event" and "MsgId" not in body:
            body["MsgId"] = next(_ids)
        inner = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in body.items())
        return f"<xml>{inner}</xml>"

    def text(self, content: str, **extra: Any) -> str:
        return self.xml("text", Content=content, **extra)

    def event(self, event: str, key: str | None = None, **extra: Any) -> str:
        fields: dict[str, Any] = {"Event": event, **extra}
        if key is not None:
            fields["EventKey"] = key
        return self.xml("event", **fields)

    def request(self, xml: str, timestamp: int | None = None) -> tuple[str, str]:
        """(query string, body) for POST /wechat, signed, encrypted in safe mode."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = secrets.token_hex(5)
        params = {"timestamp": ts, "nonce": nonce, "openid": self.openid,
                  "signature": sign(self.token, ts, nonce)}
        if self._crypto is None:
            return urlencode(params), xml
        wrapped = self._crypto.encrypt_message(xml, nonce, ts)
        encrypted = SafeET.fromstring(wrapped).findtext("Encrypt") or ""
        params.update(encrypt_type="aes", msg_signature=sign(self.token, ts, nonce, encrypted))
        body = (f"<xml><ToUserName>{_cdata(self.account)}</ToUserName>"
                f"<Encrypt>{_cdata(encrypted)}</Encrypt></xml>")
        return urlencode(params), body

    def read_reply(self, body: str, query: str = "") -> dict[str, str]:
        """The reply's fields ({} for 'success' or empty); decrypted in safe mode."""
        if not body or body == "success":
            return {}
        root = SafeET.fromstring(body)
        if self._crypto is not None and root.find("Encrypt") is not None:
            plain = self._crypto.decrypt_message(
                body, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
                root.findtext("Nonce"))
            root = SafeET.fromstring(plain)
        out = {child.tag: (child.text or "") for child in root}
        articles = root.find("Articles")
        if articles is not None:
            out["Articles"] = "\n".join(
                f"[{item.findtext('Title') or ''}] {item.findtext('Url') or ''}"
                for item in articles)
        return out


def describe(reply: dict[str, str]) -> str:
    """What a person would see in WeChat for a parsed reply."""
    if not reply:
        return "(no reply)"
    kind = reply.get("MsgType")
    if kind == "text":
        return reply.get("Content", "")
    if kind == "news":
        return reply.get("Articles", "[news]")
    return f"[{kind}]"
