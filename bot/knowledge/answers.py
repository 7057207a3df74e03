"""What the core calls: the FAQ step actions, the answer for a message nothing else
understood, the helpfulness count and the staff summary.

The flows in `flows/knowledge.yml` say the answer (template `faq_answer`: the medical
disclaimer and the offer of a sister or a person are written there, once) and ask
"有帮助吗？" (`faq_helpful`); this module finds the entry and records the feedback. The
knowledge base comes from the flow registry, so `scrm flows reload` swaps it with the flows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from bot.flow_engine.actions import Say, StepContext, step_action
from bot.flow_engine.templates import detect_lang
from bot.knowledge.base import Entry, KnowledgeBase
from store.knowledge import FaqFeedbackRepo

log = logging.getLogger(__name__)
FAQ_FLOW = "faq"  # the flow a message nothing else understood goes to (bot/core.py)

#: the cosine score under which the bot says it does not know (bench/faq_eval.py chose it)
DEFAULT_THRESHOLD: Final = 0.15
ANSWER_TEMPLATE: Final = "faq_answer"
FEEDBACK_FLOW: Final = "faq_feedback"  # opened after an answer given outside the faq flow
HELPFUL, NOT_HELPFUL = 1, 2  # her reply to "有帮助吗？回复 1 有帮助，2 没帮助"
TOP_STATS: Final = 5


class KnowledgeSource(Protocol):
    """Where the live knowledge base is (the flow registry swaps it on reload)."""

    @property
    def knowledge(self) -> KnowledgeBase: ...


class Knowledge:
    def __init__(self, source: KnowledgeSource, feedback: FaqFeedbackRepo,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self._source = source
        self._feedback = feedback
        self.threshold = threshold

    def lookup(self, text: str) -> tuple[Entry | None, float]:
        """The best entry for `text` and its score; no entry below the threshold."""
        base = self._source.knowledge  # one version for the whole lookup
        hits = base.search(text, 1)
        if not hits:
            return None, 0.0
        best = hits[0]
        entry = base.entries.get(best.entry)
        return (entry if best.score >= self.threshold else None), best.score

    async def _answered(self, text: str, lang: str, now: datetime) -> dict[str, Any]:
        """The `faq` variables for `text`, with the answer counted (or the miss)."""
        entry, score = self.lookup(text)
        if entry is None:
            await self._feedback.unanswered(now)
            # the score, never the text: the log holds nothing a follower sent
            log.info("faq: no confident answer", extra={"score": round(score, 3)})
            return {"found": False, "score": round(score, 3)}
        await self._feedback.asked(entry.id, now)
        return {"found": True, "id": entry.id, "category": entry.category,
                "medical": entry.medical, "needs_person": entry.needs_person,
                "score": round(score, 3), "key": uuid.uuid4().hex,  # this answer's feedback
                "zh": entry.answer["zh"], "en": entry.answer["en"],
                "text": entry.answer.get(lang, entry.answer["zh"])}

    async def answer(self, text: str, lang: str, *, now: datetime | None = None
                     ) -> tuple[str, dict[str, Any]] | None:
        """For a message nothing else understood: (template, variables) to say, or None
        when no entry is confident enough. The template renders in her language (both
        texts are in the variables; `faq.text` is the one in `lang`). To ask whether it
        helped, open the flow FEEDBACK_FLOW with slots {"faq": variables["faq"]}."""
        faq = await self._answered(text, lang, now or datetime.now(UTC))
        return (ANSWER_TEMPLATE, {"faq": faq}) if faq["found"] else None

    @step_action("answer_faq")
    async def answer_faq(self, ctx: StepContext) -> list[Say]:
        """`faq` = {found, id, medical, needs_person, score, zh, en, ...} for the flow's
        templates; the slot `faq` keeps what the feedback step records against."""
        faq = await self._answered(ctx.turn.text, detect_lang(ctx.turn.text, "zh"),
                                   ctx.turn.now)
        ctx.vars["faq"] = faq
        if faq["found"]:
            ctx.slots["faq"] = {"id": faq["id"], "key": faq["key"]}
        else:
            ctx.slots.pop("faq", None)
        return []

    @step_action("faq_feedback")
    async def faq_feedback(self, ctx: StepContext) -> list[Say]:
        """Her 1 or 2 on the answer in slot `faq`: `faq_feedback` = {helpful, first,
        invalid}; counted once per answer, whatever she sends afterwards."""
        choice = ctx.slots.get("faq_helpful")
        answered = ctx.slots.get("faq")
        if choice not in (HELPFUL, NOT_HELPFUL):
            ctx.slots.pop("faq_helpful", None)
            ctx.vars["faq_feedback"] = {"invalid": True, "helpful": False, "first": False}
            return []
        helpful = choice == HELPFUL
        first = False
        if isinstance(answered, dict) and answered.get("id") and answered.get("key"):
            first = await self._feedback.record(str(answered["key"]), str(answered["id"]),
                                                helpful, ctx.turn.now)
        else:
            log.warning("faq feedback without the answer it is about")
        ctx.vars["faq_feedback"] = {"invalid": False, "helpful": helpful, "first": first}
        return []

    async def stats(self) -> str:
        """For /stats: the misses, then one line per most-answered entry."""
        top = await self._feedback.top(TOP_STATS)
        missed = await self._feedback.unanswered_count()
        entries = self._source.knowledge.entries
        lines = [f"常见问题: {len(entries)} 条 · 没找到答案 {missed} 次"
                 + (" · 最常问:" if top else "")]
        for row in top:
            entry = entries.get(row["entry"])
            title = f"{row['entry']}（{entry.questions[0]}）" if entry else row["entry"]
            lines.append(f"  {title} 回答 {row['asked']} · 有帮助 {row['helpful']} · "
                         f"没帮助 {row['not_helpful']}")
        return "\n".join(lines)
