"""Polls: the answer a member gives to a poll she was sent, stored once, points once.

A sent poll hands her a frame of the `poll_answer` flow (the flow inbox); her next message
answers it through the `answer_poll` action.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.flow_engine.actions import Say, StepContext, step_action
from bot.members.points import Points
from bot.members.social import Social
from bot.settings import MarketingSettings
from store.protocols import Store

POLL_FLOW, POLL_STEP, POLL_SLOT = "poll_answer", "answer", "poll_choice"


def poll_frame(doc: dict[str, Any], sent_at: datetime) -> dict[str, Any]:
    """The flow frame a member gets with a poll: her next message answers it."""
    return {"flow": POLL_FLOW, "step": POLL_STEP, "slot": POLL_SLOT,
            "slots": {"poll": doc["_id"], "question": doc["poll"]["question"],
                      "options": doc["poll"]["options"], "sent_at": sent_at.isoformat()}}


class PollActions:
    def __init__(self, store: Store, points: Points, settings: MarketingSettings,
                 social: Social | None = None) -> None:
        self._store = store
        self._points = points
        self._cfg = settings
        self._social = social

    @step_action("answer_poll")
    async def answer_poll(self, ctx: StepContext) -> list[Say]:
        """Store her answer once, award the poll points once."""
        slots, turn = ctx.slots, ctx.turn
        options = list(slots.get("options") or [])
        choice = slots.get(POLL_SLOT)
        sent_at = datetime.fromisoformat(str(slots.get("sent_at")))
        if not isinstance(choice, int) or not 1 <= choice <= len(options):
            ctx.vars["poll"] = {"invalid": True, "count": len(options)}
            slots.pop(POLL_SLOT, None)
            return []
        if turn.now - sent_at > timedelta(days=self._cfg.poll_days):
            ctx.vars["poll"] = {"closed": True}
            return []
        first = await self._store.campaigns.answer(str(slots["poll"]), turn.profile_id,
                                                   choice, turn.now)
        award = None
        if first and "poll" in self._points.rules():
            award = await self._points.award(turn.profile_id, "poll", turn.now,
                                             f"poll:{slots['poll']}")
        if first and self._social is not None:
            await self._social.poll_answered(turn.profile_id, str(slots["poll"]), turn.now)
        ctx.vars["poll"] = {"first": first, "option": options[choice - 1], "award": award}
        return []
