"""What the bot says: templates rendered in the member's language, and messages it starts
itself (an invitation, a relayed message, a note to staff) pushed through her channel.

Every push is recorded as an outbound interaction before it is queued, under a key the
caller supplies, so asking twice sends once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.flow_engine.actions import Say
from bot.flow_engine.templates import TemplateProblem, TemplateSource
from bot.messages import Reply
from bot.outlets import Outlet, recipient_of
from store.protocols import Store
from store.records import Profile, new_interaction, push_key

log = logging.getLogger(__name__)

LAST_RESORT = {"zh": "抱歉，我暂时无法回答，请稍后再试。", "en": "Sorry, please try again later."}


def merge(replies: list[Reply]) -> list[Reply]:
    """Consecutive texts become one message: a passive reply carries only one."""
    merged: list[Reply] = []
    for r in replies:
        if r.kind == "text" and merged and merged[-1].kind == "text":
            merged[-1] = Reply(kind="text", text=merged[-1].text + "\n\n" + r.text)
        else:
            merged.append(r)
    return merged


class Outbound:
    def __init__(self, store: Store, templates: TemplateSource, outlets: Sequence[Outlet],
                 default_lang: str) -> None:
        self._store = store
        self._templates = templates
        self._outlets = {o.channel: o for o in outlets}
        self.default_lang = default_lang

    def outlet(self, channel: str) -> Outlet | None:
        return self._outlets.get(channel)

    def lang_of(self, profile: Profile | None) -> str:
        return (profile.get("lang") if profile else None) or self.default_lang

    def say(self, says: list[Say], lang: str, profile: Profile | None) -> list[Reply]:
        """The replies for what the flows decided, merged for one message."""
        return merge([self.text(s.template, lang, profile, s.vars) for s in says])

    def text(self, name: str, lang: str, profile: Profile | None = None,
             variables: dict[str, Any] | None = None) -> Reply:
        context = {"profile": profile.get("fields", {}) if profile else {}, "lang": lang,
                   **(variables or {})}
        return Reply(kind="text", text=self.render_safe(name, lang, context))

    def apology(self, lang: str | None = None) -> Reply:
        return self.text("apology", lang or self.default_lang)

    def render_safe(self, name: str, lang: str, context: dict[str, Any]) -> str:
        try:
            return self._templates.templates.render(name, lang, **context)
        except TemplateProblem:
            # A broken template must not leave the follower with nothing or a stack trace.
            log.exception("template failed", extra={"template": name})
            if name != "apology":
                return self.render_safe("apology", lang, {})
            return LAST_RESORT.get(lang, LAST_RESORT["en"])

    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool:
        """Say something to a member who did not just write (durable, at most once per key).

        Rendered in her language, recorded as outbound interactions, pushed through the
        first channel that can reach her. False if none can.
        """
        profile = await self._store.profiles.get(profile_id)
        if profile is None or not says:
            return False
        found = recipient_of(self._outlets.values(), profile)
        if found is None:
            return False
        outlet, to = found
        replies = self.say(says, self.lang_of(profile), profile)
        keys = [push_key(key, i) for i in range(len(replies))]
        now = datetime.now(UTC)
        for k, reply in zip(keys, replies, strict=True):
            out = new_interaction(profile_id, outlet.channel, "out", reply.kind,
                                  reply.as_text(), reply.model_dump(mode="json"), now)
            out.update({"dedupe_key": k, "delivery": "push"})  # the channel says how it went
            await self._store.interactions.add(out)
        await outlet.push(to.address, replies, keys)
        await self._store.profiles.count_outbound(profile_id, len(replies))
        return True

    async def notify_text(self, profile_id: str, text: str, key: str) -> bool:
        """A plain message to staff (a broadcast's progress), through the same path."""
        return await self.notify(profile_id, [Say("staff_text", {"text": text})], key)
