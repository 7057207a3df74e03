"""Reply templates: Jinja2 texts in zh and en that managers edit under `flows/`.

Rasa decides *what* to say (a template name); this module decides *how*, in the member's
language and with their profile fields. Sandboxed, and strict: a missing variable is an
error, never a blank in front of a follower.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from bot.lifestage import stage_summary

# What a broadcast template (flows/templates/) may use. A variable a member lacks is left
# out of her context, so the strict environment fails her render instead of printing a
# blank; templates handle optional ones with `{% if week is defined %}`.
MEMBER_VARS = ("nickname", "city", "province", "tier", "points", "member_id", "stage",
               "week", "baby_months", "lang")


class TemplateProblem(Exception):
    """A template is missing, malformed or failed to render; the message says which."""


class TemplateSource(Protocol):
    """Where the live templates come from (the flow registry swaps them on reload)."""

    @property
    def templates(self) -> TemplateLibrary: ...


class TemplateLibrary:
    def __init__(self, texts: dict[str, dict[str, str]], default_lang: str = "zh") -> None:
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._default = default_lang
        self._compiled = {}
        for name, by_lang in texts.items():
            for lang, source in by_lang.items():
                try:
                    self._compiled[(name, lang)] = self._env.from_string(source)
                except TemplateError as e:
                    raise TemplateProblem(f"template {name!r} ({lang}): {e}") from e

    @classmethod
    def from_dir(cls, flows_dir: str | Path, default_lang: str = "zh") -> TemplateLibrary:
        """Load every `templates:` mapping from the YAML files in `flows_dir` and in its
        `templates/` folder (broadcast and life-stage texts)."""
        texts: dict[str, dict[str, str]] = {}
        folder = Path(flows_dir)
        for path in sorted(folder.glob("*.yml")) + sorted(folder.glob("templates/*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for name, by_lang in (data.get("templates") or {}).items():
                if name in texts:
                    raise TemplateProblem(f"{path}: template {name!r} is defined twice")
                if not isinstance(by_lang, dict):
                    raise TemplateProblem(f"{path}: template {name!r} needs zh/en texts")
                texts[name] = {str(k): str(v) for k, v in by_lang.items()}
        return cls(texts, default_lang)

    @property
    def templates(self) -> TemplateLibrary:
        """A fixed library is its own source (tests, tools)."""
        return self

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self._compiled)

    def compile_inline(self, source: str) -> Any:
        """A marketer's inline broadcast text, in the same sandbox; TemplateProblem if it
        is not valid Jinja2 or uses a variable members do not have."""
        try:
            unknown = meta.find_undeclared_variables(self._env.parse(source)) - set(MEMBER_VARS)
            template = self._env.from_string(source)
        except TemplateError as e:
            raise TemplateProblem(f"模板语法错误: {e}") from e
        if unknown:
            raise TemplateProblem(f"未知变量 {', '.join(sorted(unknown))}；可用: "
                                  f"{', '.join(MEMBER_VARS)}")
        return template

    def render(self, name: str, lang: str, /, **context: Any) -> str:
        template = self._compiled.get((name, lang)) or self._compiled.get((name, self._default))
        if template is None:
            raise TemplateProblem(f"no template named {name!r}")
        try:
            return template.render(**context).strip()
        except TemplateError as e:
            raise TemplateProblem(f"template {name!r} ({lang}): {e}") from e


def detect_lang(text: str | None, fallback: str) -> str:
    """zh if the text has CJK characters, en if it has Latin letters, else the fallback."""
    if not text:
        return fallback
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "zh"
    if any(ch.isascii() and ch.isalpha() for ch in text):
        return "en"
    return fallback


def member_context(profile: Mapping[str, Any], today: date) -> dict[str, Any]:
    """A member's broadcast variables (MEMBER_VARS); those she lacks are left out."""
    fields = profile.get("fields") or {}
    member = profile.get("member") or {}
    ctx: dict[str, Any] = {
        "nickname": fields.get("nickname"), "city": fields.get("city"),
        "province": fields.get("province"), "tier": member.get("tier"),
        "member_id": member.get("id"), "lang": profile.get("lang"),
        "points": int((profile.get("points") or {}).get("balance", 0)),
    }

    def day(value: Any) -> date | None:
        try:
            return date.fromisoformat(str(value)) if value else None
        except ValueError:
            return None

    summary = stage_summary(fields.get("role"), day(fields.get("due_date")),
                            day(fields.get("baby_birthday")), today)
    ctx.update(stage=summary.stage, week=summary.week, baby_months=summary.months)
    return {k: v for k, v in ctx.items() if v is not None and v != ""}
