"""Read and check `flows/knowledge/*.yml`: the FAQ entries community managers edit.

Errors are the flow loader's (`FlowError`: file, line, plain message; `FlowsInvalid`
carries them all), so `scrm flows check` prints both the same way, and a broken file never
replaces a working version: `load_knowledge` returns a KnowledgeBase only without errors.

    entries:
      - id: coffee_in_pregnancy
        category: 孕期饮食
        medical: true            # adds the disclaimer and the offer of a sister or a person
        needs_person: false      # optional: offer 转人工 (a question only staff can settle)
        questions: [孕期能不能喝咖啡, 怀孕了还能喝咖啡吗, can I drink coffee while pregnant]
        answer:
          zh: ...
          en: ...

Answers are texts in the bounded Jinja2 sandbox (`bot/flow_engine/sandbox.py`); they may
use no variables, so each is rendered once here, when the file is loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from jinja2 import meta

from bot import yamlmarks
from bot.flow_engine.loader import LANGS, FlowError, FlowsInvalid, checked_text
from bot.flow_engine.sandbox import (
    bounded_environment,
    render_bounded,
)
from bot.knowledge.index import Document, Hit, QuestionIndex
from bot.knowledge.text import normalise

KNOWLEDGE_DIR: Final = "knowledge"  # under the flows folder
ENTRY_KEYS: Final = {"id", "category", "questions", "answer", "medical", "needs_person"}
REQUIRED_KEYS: Final = ("id", "category", "questions", "answer", "medical")
MIN_QUESTIONS: Final = 2  # one way of asking is too few to recognise another
_ID: Final = re.compile(r"[a-z][a-z0-9_]{1,63}")


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    questions: tuple[str, ...]
    answer: dict[str, str]  # lang -> the answer text, rendered
    medical: bool
    needs_person: bool = False
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class KnowledgeBase:
    """Every entry and the index over their questions: one version, swapped whole."""

    entries: dict[str, Entry]
    version: str = ""
    index: QuestionIndex = field(default_factory=lambda: QuestionIndex(()))

    def search(self, text: str, limit: int = 3) -> Sequence[Hit]:
        return self.index.search(text, limit)

    @classmethod
    def of(cls, entries: Sequence[Entry], version: str = "") -> KnowledgeBase:
        """A base over given entries (the loader, the benchmark, tests)."""
        index = QuestionIndex(Document(e.id, e.questions, " ".join(e.answer.values()))
                              for e in entries)
        return cls({e.id: e for e in entries}, version, index)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[FlowError] = []
        self.env = bounded_environment()  # the sandbox the flow templates run in
        self.entries: list[Entry] = []
        self.ids: dict[str, tuple[str, int]] = {}  # id -> (file, line)
        self.questions: dict[str, tuple[str, str, int]] = {}  # normalised -> (id, file, line)

    def err(self, file: str, line: int, message: str) -> None:
        self.errors.append(FlowError(file, line, message))

    def read(self, path: Path) -> None:
        fname = str(path)
        try:
            data, lines = yamlmarks.load(path.read_text(encoding="utf-8"), fname)
        except yamlmarks.YamlProblem as e:
            self.err(fname, e.line, e.problem)
            return
        if data is None:
            return
        if not isinstance(data, dict) or set(data) != {"entries"} or \
                not isinstance(data["entries"], list):
            self.err(fname, 1, "a file in flows/knowledge/ holds one list: entries:")
            return
        for i, raw in enumerate(data["entries"]):
            self._entry(raw, ("entries", str(i)), fname, lines)

    def _entry(self, raw: Any, path: yamlmarks.Path_, fname: str, lines: yamlmarks.Lines
               ) -> None:
        line = yamlmarks.line_of(path, lines)
        if not isinstance(raw, dict):
            self.err(fname, line, "an entry is a mapping with id, category, questions, "
                     "answer and medical")
            return
        name = str(raw.get("id") or f"entry {int(path[-1]) + 1}")
        where = f"entry {name!r}"
        before = len(self.errors)
        for key in raw:
            if key not in ENTRY_KEYS:
                self.err(fname, lines[(*path, key)], f"{where}: unknown key {key!r} "
                         f"(expected one of: {', '.join(sorted(ENTRY_KEYS))})")
        for key in REQUIRED_KEYS:
            if key not in raw or raw[key] is None or raw[key] == "":
                self.err(fname, line, f"{where} has no {key}:")
        entry_id = raw.get("id")
        if isinstance(entry_id, str) and entry_id:
            if not _ID.fullmatch(entry_id):
                self.err(fname, lines[(*path, "id")], f"{where}: an id is lower-case "
                         "letters, digits and _ (like coffee_in_pregnancy)")
            elif entry_id in self.ids:
                first = self.ids[entry_id]
                self.err(fname, lines[(*path, "id")], f"{where} is already defined at "
                         f"{first[0]}:{first[1]}")
            else:
                self.ids[entry_id] = (fname, lines[(*path, "id")])
        for key in ("medical", "needs_person"):
            if key in raw and raw[key] is not None and not isinstance(raw[key], bool):
                self.err(fname, lines[(*path, key)], f"{where}: {key} is true or false")
        questions = self._questions(raw.get("questions"), name, where, (*path, "questions"),
                                    fname, lines)
        answer = self._answer(raw.get("answer"), where, (*path, "answer"), fname, lines)
        if len(self.errors) == before and isinstance(entry_id, str):
            self.entries.append(Entry(
                id=entry_id, category=str(raw["category"]), questions=questions,
                answer=answer, medical=bool(raw["medical"]),
                needs_person=bool(raw.get("needs_person", False)), file=fname, line=line))

    def _questions(self, raw: Any, name: str, where: str, path: yamlmarks.Path_, fname: str,
                   lines: yamlmarks.Lines) -> tuple[str, ...]:
        if raw is None:
            return ()  # reported as missing
        line = yamlmarks.line_of(path, lines)
        if not isinstance(raw, list):
            self.err(fname, line, f"{where}: questions is a list of ways she may ask")
            return ()
        out: list[str] = []
        for j, q in enumerate(raw):
            at = yamlmarks.line_of((*path, str(j)), lines)
            text = str(q).strip() if isinstance(q, str | int | float) else ""
            key = normalise(text)
            if not key:
                self.err(fname, at, f"{where}: question {j + 1} is empty (or only "
                         "punctuation and particles)")
                continue
            seen = self.questions.get(key)
            if seen is not None and seen[0] != name:
                self.err(fname, at, f"{where}: question {text!r} is also a question of "
                         f"entry {seen[0]!r} ({seen[1]}:{seen[2]}); an answer cannot be "
                         "chosen between them")
                continue
            self.questions.setdefault(key, (name, fname, at))
            out.append(text)
        if len(out) < MIN_QUESTIONS and len(out) == len(raw):
            self.err(fname, line, f"{where}: give at least {MIN_QUESTIONS} ways of asking "
                     f"(found {len(out)})")
        return tuple(out)

    def _answer(self, raw: Any, where: str, path: yamlmarks.Path_, fname: str,
                lines: yamlmarks.Lines) -> dict[str, str]:
        if raw is None or raw == "":
            return {}  # reported as missing
        line = yamlmarks.line_of(path, lines)
        if not isinstance(raw, dict):
            self.err(fname, line, f"{where}: answer needs a zh: and an en: text")
            return {}
        out: dict[str, str] = {}
        for lang in LANGS:
            if lang not in raw:
                self.err(fname, line, f"{where}: answer has no {lang} text")
        for lang, source in raw.items():
            at = lines.get((*path, lang), line)
            if lang not in LANGS:
                self.err(fname, at, f"{where}: answer language {lang!r} (expected "
                         f"{' or '.join(LANGS)})")
                continue
            text = self._render(str(source or ""), fname, at, f"{where}: answer ({lang})")
            if text is not None:
                out[lang] = text
        return out

    def _render(self, source: str, fname: str, line: int, what: str) -> str | None:
        """The answer checked in the sandbox and rendered; None with the problem recorded."""
        if not source.strip():
            self.err(fname, line, f"{what} is empty")
            return None
        ast, problems = checked_text(self.env, source, what)
        for problem in problems:
            self.err(fname, line, problem)
        if ast is None:
            return None  # (finding variables compiles the text: only once it is allowed)
        used = sorted(meta.find_undeclared_variables(ast))
        if used:
            self.err(fname, line, f"{what} uses {', '.join(map(repr, used))}: answers are "
                     "the same for everyone and may use no variables")
            return None
        try:
            text = render_bounded(self.env.from_string(ast), {}).strip()
        except Exception as e:  # whatever the text does wrong, it is the text's problem
            self.err(fname, line, f"{what} cannot be rendered: {e}")
            return None
        if not text:
            self.err(fname, line, f"{what} is empty")
            return None
        return text


def knowledge_files(flows_dir: str | Path) -> list[Path]:
    return sorted((Path(flows_dir) / KNOWLEDGE_DIR).glob("*.yml"))


def load_knowledge(flows_dir: str | Path) -> KnowledgeBase:
    """The checked knowledge base under `flows_dir`/knowledge/ (empty if there is none),
    or FlowsInvalid listing every problem, sorted by file and line."""
    checker = _Checker()
    files = knowledge_files(flows_dir)
    for path in files:
        checker.read(path)
    if checker.errors:
        raise FlowsInvalid(sorted(set(checker.errors)))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return KnowledgeBase.of(checker.entries, digest.hexdigest()[:12])
