"""The live version of the flows, their templates and the FAQ knowledge base
(`flows/knowledge/`, bot/knowledge/base.py), swapped whole on reload.

A turn takes `current` once and uses that version to its end, so a reload never changes a
flow under a message in flight; a broken file raises and leaves the running version.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

from bot.flow_engine.loader import FlowError, FlowsInvalid, Known, load_flows
from bot.flow_engine.model import CustomFields, FlowSet
from bot.flow_engine.templates import TemplateLibrary
from bot.flow_engine.validators import VALIDATORS
from bot.knowledge.base import KnowledgeBase, load_knowledge

log = logging.getLogger(__name__)

# Templates the app says on its own, outside any flow.
REQUIRED_TEMPLATES = ("apology", "fallback", "media_received", "unsupported", "menu_unknown",
                      "flow_cancelled", "staff_text", "too_long")


class FlowRegistry:
    def __init__(self, flows_dir: str | Path, known: Known, default_lang: str) -> None:
        self._dir = Path(flows_dir)
        self._known = known
        self._lang = default_lang
        self._current, self._templates, self._knowledge = self._load()

    @classmethod
    def for_app(cls, flows_dir: str | Path, actions: Collection[str], rules: Collection[str],
                member_vars: Sequence[str], default_lang: str,
                fields: CustomFields | None = None) -> FlowRegistry:
        return cls(flows_dir, Known(validators=set(VALIDATORS), actions=set(actions),
                                    award_rules=set(rules),
                                    required_templates=REQUIRED_TEMPLATES,
                                    member_vars=member_vars, fields=fields), default_lang)

    def _load(self) -> tuple[FlowSet, TemplateLibrary, KnowledgeBase]:
        """Both checked, every error of both reported at once (FlowsInvalid)."""
        errors: list[FlowError] = []
        flows: FlowSet | None = None
        knowledge: KnowledgeBase | None = None
        try:
            flows = load_flows(self._dir, self._known)
        except FlowsInvalid as e:
            errors += e.errors
        try:
            knowledge = load_knowledge(self._dir)
        except FlowsInvalid as e:
            errors += e.errors
        if flows is None or knowledge is None:
            raise FlowsInvalid(sorted(errors))
        return flows, TemplateLibrary(flows.templates, self._lang), knowledge

    @property
    def current(self) -> FlowSet:
        return self._current

    @property
    def templates(self) -> TemplateLibrary:
        return self._templates

    @property
    def knowledge(self) -> KnowledgeBase:
        return self._knowledge

    def reload(self) -> FlowSet:
        """Load and check the files again; swap in only a version without errors."""
        flows, templates, knowledge = self._load()
        self._current, self._templates, self._knowledge = flows, templates, knowledge
        log.info("flows reloaded", extra={"version": flows.version,
                                          "flows": len(flows.flows),
                                          "faq_entries": len(knowledge.entries)})
        return flows
