"""Reply templates: Jinja2 texts in zh and en that managers edit under `flows/`.

The flows decide *what* to say (a template name); this module decides *how*, in the member's
language and with their profile fields. Sandboxed, and strict: a missing variable is an
error, never a blank in front of a follower.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment


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

    @property
    def templates(self) -> TemplateLibrary:
        """A fixed library is its own source (tests, tools)."""
        return self

    def compile_inline(self, source: str, allowed: Collection[str]) -> Any:
        """A marketer's inline text, in the same sandbox; TemplateProblem if it is not valid
        Jinja2 or uses a variable outside `allowed`."""
        try:
            unknown = meta.find_undeclared_variables(self._env.parse(source)) - set(allowed)
            template = self._env.from_string(source)
        except TemplateError as e:
            raise TemplateProblem(f"模板语法错误: {e}") from e
        if unknown:
            raise TemplateProblem(f"未知变量 {', '.join(sorted(unknown))}；可用: "
                                  f"{', '.join(allowed)}")
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
