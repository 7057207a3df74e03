"""Reply templates: Jinja2 texts in zh and en that managers edit under `flows/`.

Rasa decides *what* to say (a template name); this module decides *how*, in the member's
language and with their profile fields. Sandboxed, and strict: a missing variable is an
error, never a blank in front of a follower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml
from jinja2 import StrictUndefined, TemplateError
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

    @classmethod
    def from_dir(cls, flows_dir: str | Path, default_lang: str = "zh") -> TemplateLibrary:
        """Load every `templates:` mapping from the YAML files in `flows_dir`."""
        texts: dict[str, dict[str, str]] = {}
        for path in sorted(Path(flows_dir).glob("*.yml")):
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
