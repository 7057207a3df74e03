"""Retrieval: TF-IDF over character n-grams, cosine similarity, through inverted indexes
(only what shares an n-gram with the question is touched), so hundreds of entries cost
about a millisecond per question. Pure Python: the app has no scikit-learn, and needs none.

An entry's score blends three cosines (weights measured with bench/faq_eval.py,
leave-one-out over the question variants):

- the best single variant (a new phrasing often resembles one way of asking),
- all its variants together (its own words add up; generic ones like 什么时候 thin out),
- its answer (words she uses that no variant has yet, like 恶露 or 破水).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bot.knowledge.text import features, normalise

WEIGHTS: Final = {"variant": 0.3, "entry": 0.4, "answer": 0.3}
#: n-grams in more than this share of all texts (的, 宝, 什么 ...) are left out of the
#: postings: they hardly move a score, and their long lists were most of the lookup time
COMMON_SHARE: Final = 0.1


@dataclass(frozen=True)
class Hit:
    entry: str
    score: float  # 0..1


@dataclass(frozen=True)
class Document:
    entry: str
    questions: Sequence[str]
    answer: str = ""  # the answer's texts, all languages


Postings = dict[str, list[tuple[int, float]]]


def _counts(text: str) -> Counter[str]:
    return Counter(features(normalise(text)))


class QuestionIndex:
    """Built once per version of the knowledge base; read-only afterwards."""

    def __init__(self, docs: Iterable[Document]) -> None:
        self._entries: list[str] = []
        variants: list[Counter[str]] = []
        self._variant_of: list[int] = []  # variant -> entry number
        together: list[Counter[str]] = []
        answers: list[Counter[str]] = []
        for doc in docs:
            counts = [c for c in map(_counts, doc.questions) if c]
            if not counts:
                continue
            number = len(self._entries)
            self._entries.append(doc.entry)
            variants += counts
            self._variant_of += [number] * len(counts)
            together.append(sum(counts, Counter()))
            answers.append(_counts(doc.answer))
        df: Counter[str] = Counter()
        for text in (*variants, *answers):
            df.update(text.keys())
        n = len(variants) + len(answers)
        # Smoothed idf; an n-gram nothing has gets the highest weight but matches nothing.
        self._idf = {f: math.log((1 + n) / (1 + d)) + 1.0 for f, d in df.items()}
        self._common = {f for f, d in df.items() if d > COMMON_SHARE * n}
        self._unseen = math.log(1 + n) + 1.0
        self._variants = self._postings(variants)
        self._together = self._postings(together)
        self._answers = self._postings(answers)
        self.size = len(self._entries)

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        """Sublinear tf × idf, L2-normalised (so a dot product is the cosine)."""
        raw = {f: (1.0 + math.log(n)) * self._idf.get(f, self._unseen)
               for f, n in counts.items()}
        norm = math.sqrt(sum(w * w for w in raw.values()))
        return {f: w / norm for f, w in raw.items()} if norm else {}

    def _postings(self, docs: list[Counter[str]]) -> Postings:
        out: Postings = defaultdict(list)
        for i, counts in enumerate(docs):
            for f, w in self._vector(counts).items():
                if f not in self._common:
                    out[f].append((i, w))
        return dict(out)

    @staticmethod
    def _dots(query: dict[str, float], postings: Postings) -> dict[int, float]:
        scores: dict[int, float] = defaultdict(float)
        for f, qw in query.items():
            for doc, dw in postings.get(f, ()):
                scores[doc] += qw * dw
        return scores

    def search(self, text: str, limit: int = 3) -> Sequence[Hit]:
        """The best entries for `text`, best first (at most `limit`)."""
        query = self._vector(_counts(text))
        if not query:
            return []
        best: dict[int, float] = defaultdict(float)
        for variant, score in self._dots(query, self._variants).items():
            entry = self._variant_of[variant]
            best[entry] = max(best[entry], score)
        together = self._dots(query, self._together)
        answers = self._dots(query, self._answers)
        scores = {e: WEIGHTS["variant"] * best.get(e, 0.0) + WEIGHTS["entry"] *
                  together.get(e, 0.0) + WEIGHTS["answer"] * answers.get(e, 0.0)
                  for e in {*best, *together, *answers}}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], self._entries[kv[0]]))
        return [Hit(self._entries[e], min(1.0, s)) for e, s in ranked[:limit]]
