"""Reply templates: Jinja2 texts in zh and en that managers edit under `flows/`.

The flows decide *what* to say (a template name); this module decides *how*, in the member's
language and with their profile fields. Strict: a missing variable is an error, never a blank
in front of a follower. Bounded (`bot/flow_engine/sandbox.py`): compiling or rendering a
template costs time and memory bounded by its length, and no message is longer than
OUTPUT_LIMIT.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from jinja2 import Template, TemplateError, TemplateSyntaxError, meta

from bot.flow_engine.sandbox import (
    FLOW_TEMPLATE_LIMIT,
    INLINE_TEMPLATE_LIMIT,
    bounded_environment,
    render_bounded,
    template_problems,
)


class TemplateProblem(Exception):
    """A template is missing, malformed, not allowed or failed to render; the message says
    which."""


def _failure(e: Exception) -> str:
    """What went wrong rendering, in one line (Jinja2's own errors say it best as they are)."""
    return str(e) if isinstance(e, TemplateError) else f"{type(e).__name__}: {e}"


class InlineTemplate:
    """A marketer's text, compiled: `render(**ctx)` is the message, or TemplateProblem."""

    def __init__(self, template: Template) -> None:
        self._template = template

    def render(self, **context: Any) -> str:
        try:
            return render_bounded(self._template, context)
        except Exception as e:  # whatever the text does wrong, it is the text's problem
            raise TemplateProblem(_failure(e)) from e


class TemplateSource(Protocol):
    """Where the live templates come from (the flow registry swaps them on reload)."""

    @property
    def templates(self) -> TemplateLibrary: ...


class TemplateLibrary:
    def __init__(self, texts: dict[str, dict[str, str]], default_lang: str = "zh") -> None:
        self._env = bounded_environment()
        self._default = default_lang
        self._compiled: dict[tuple[str, str], Template] = {}
        for name, by_lang in texts.items():
            for lang, source in by_lang.items():
                if len(source) > FLOW_TEMPLATE_LIMIT:
                    raise TemplateProblem(f"template {name!r} ({lang}) is {len(source)} "
                                          f"characters long; at most {FLOW_TEMPLATE_LIMIT}")
                try:
                    self._compiled[(name, lang)] = self._env.from_string(source)
                except TemplateError as e:
                    raise TemplateProblem(f"template {name!r} ({lang}): {e}") from e

    @property
    def templates(self) -> TemplateLibrary:
        """A fixed library is its own source (tests, tools)."""
        return self

    def compile_inline(self, source: str, allowed: Collection[str]) -> InlineTemplate:
        """A marketer's inline text, in the same sandbox; TemplateProblem if it is too long,
        not valid Jinja2, does what templates may not, or uses a variable outside
        `allowed`."""
        if len(source) > INLINE_TEMPLATE_LIMIT:
            raise TemplateProblem(f"文字太长: {len(source)} 字，最多 {INLINE_TEMPLATE_LIMIT} 字")
        try:
            ast = self._env.parse(source)
        except TemplateSyntaxError as e:
            raise TemplateProblem(f"模板语法错误: {e}") from e
        problems = template_problems(ast, self._env)
        if problems:
            raise TemplateProblem("模板不允许: " + "; ".join(
                f"{p.message} (第 {p.lineno} 行)" if p.lineno > 1 else p.message
                for p in problems))
        unknown = meta.find_undeclared_variables(ast) - set(allowed)
        if unknown:
            raise TemplateProblem(f"未知变量 {', '.join(sorted(unknown))}；可用: "
                                  f"{', '.join(allowed)}")
        try:
            return InlineTemplate(self._env.from_string(ast))
        except TemplateError as e:
            raise TemplateProblem(f"模板语法错误: {e}") from e

    def render(self, name: str, lang: str, /, **context: Any) -> str:
        template = self._compiled.get((name, lang)) or self._compiled.get((name, self._default))
        if template is None:
            raise TemplateProblem(f"no template named {name!r}")
        try:
            return render_bounded(template, context).strip()
        except Exception as e:  # whatever the template does wrong, it is the template's problem
            raise TemplateProblem(f"template {name!r} ({lang}): {_failure(e)}") from e


def detect_lang(text: str | None, fallback: str) -> str:
    """zh if the text has CJK characters, en if it has Latin letters, else the fallback."""
    if not text:
        return fallback
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "zh"
    if any(ch.isascii() and ch.isalpha() for ch in text):
        return "en"
    return fallback
