"""How a question is reduced before it is compared: one form for zh and en, and the
features (character n-grams) the index counts.

Full-width → half-width (NFKC), lower case, no punctuation, no politeness or modal
particles (请问, 呀, 呢 ...), and a few everyday synonyms folded into one word (娃 → 宝宝,
可不可以 → 能), so that "请问宝贝可不可以吃螃蟹呀？" and "宝宝能吃螃蟹吗" meet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Final

NGRAM_SIZES: Final = (1, 2, 3)

# Longest first: "想问一下" goes before "问一下" would leave "想" behind.
_FILLERS: Final = ("请问一下", "想问一下", "想请教一下", "请教一下", "问一下", "请问", "请教",
                   "想问", "大家好", "姐妹们", "宝妈们", "大家", "你好", "您好")
# Sentence-final particles: they carry tone, not meaning. 么 is absent on purpose (什么).
_PARTICLES: Final = "呀呢吧啊哦嘛吗啦哈噢呐喔哇"
# Everyday ways of saying the same thing, folded to one form (applied longest first).
_SYNONYMS: Final[dict[str, str]] = {
    "小宝宝": "宝宝", "宝贝": "宝宝", "孩子": "宝宝", "小孩": "宝宝", "婴儿": "宝宝",
    "新生儿": "宝宝", "娃娃": "宝宝", "娃": "宝宝", "小朋友": "宝宝",
    "怀孕期间": "孕期", "怀孕的时候": "孕期", "怀孕时": "孕期", "怀孕了": "孕期",
    "怀孕": "孕期", "孕妇": "孕期", "怀着孕": "孕期",
    "可不可以": "能", "能不能": "能", "能否": "能", "可以": "能", "允许": "能",
    "行不行": "能", "行吗": "能",
    "怎么办": "怎么", "怎么样": "怎么", "如何": "怎么", "咋办": "怎么", "咋": "怎么",
    "多少度": "温度", "几度": "温度",
    "几个月": "月龄", "多大": "月龄",
    "babies": "baby", "infant": "baby", "newborn": "baby", "pregnancy": "pregnant",
}
_SYNONYM_RE: Final = re.compile("|".join(re.escape(k) for k in
                                         sorted(_SYNONYMS, key=len, reverse=True)))
_FILLER_RE: Final = re.compile("|".join(re.escape(f) for f in _FILLERS))
_EN_STOP: Final = frozenset(
    "a an the i my me is are am be can could should would do does did to of for in on at "
    "it its this that there what when how much many any some please hi hello with and or "
    "while you your we our".split())
_SEGMENT: Final = re.compile(r"[\u3400-\u9fff]+|[a-z0-9]+")


def normalise(text: str) -> str:
    """The comparable form of a question: half-width, lower case, no punctuation or
    particles, synonyms folded; CJK runs and latin words separated by single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _FILLER_RE.sub(" ", folded)
    folded = _SYNONYM_RE.sub(lambda m: _SYNONYMS[m.group(0)], folded)
    kept: list[str] = []
    for run in _SEGMENT.findall(folded):
        if run[0].isascii():
            if run not in _EN_STOP:
                kept.append(run)
        else:
            run = "".join(ch for ch in run if ch not in _PARTICLES)
            if run:
                kept.append(run)
    return " ".join(kept)


def features(text: str) -> Iterator[str]:
    """The n-grams counted for a normalised text: character 1-3-grams inside each CJK run;
    for a latin word the word itself and its character trigrams (typos, plurals)."""
    for run in text.split():
        if run.isascii():
            yield "w:" + run
            padded = f"#{run}#"
            for i in range(len(padded) - 2):
                yield padded[i:i + 3]
            continue
        for n in NGRAM_SIZES:
            for i in range(len(run) - n + 1):
                yield run[i:i + n]
