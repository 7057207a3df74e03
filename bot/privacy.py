"""Masking of what staff, logs and other members may see of a member: one place for it.

Phone numbers are masked wherever text leaves the member's own conversation (logs, the admin
API, staff commands, relayed sister messages); names are shortened in staff views.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import islice
from typing import Any, Final

# --- reading digits however they are written -------------------------------------------
#
# A text is read as a normalised text of the same length, so that a span found there is the
# span to replace in the original: "0"-"9" is a digit of any script or style (full-width,
# circled, mathematical, superscript, a keycap's base), "\x10"-"\x19" a Chinese numeral and
# "\x1a" the numeral 一 (so that runs of the two kinds stay apart), " " a separator, "\x01" a
# combining mark (a keycap's U+20E3, VS16), "+" a plus sign; any other character stands for
# itself (C0 controls are separators, so none collides with these).

# The only hand-written digit table: Unicode gives no digit value to Chinese numerals.
_CHINESE: Final[dict[str, int]] = {
    ch: value
    for value, chars in enumerate((
        "〇零○", "一壹幺〡", "二贰貳两兩〢", "三叁參叄〣", "四肆〤", "五伍〥", "六陆陸〦", "七柒〧",
        "八捌〨", "九玖〩",
    ))
    for ch in chars
}  # fmt: skip
_CJK: Final = 0x10
_ONE: Final = "\x1a"  # 一 apart from the other 1s: it is also a dash look-alike
_MARK: Final = "\x01"
# Spaces, line breaks, controls, invisible format characters (zero-width space and joiners,
# word joiner, BOM), dashes, underscores and brackets of every script...
_SEPARATOR_CATEGORIES: Final = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Pd", "Pc", "Ps", "Pe"})
# ...and the dots, slashes and dash look-alikes Unicode files elsewhere, and blank letters.
_SEPARATORS: Final = frozenset(
    ".．。｡·・･•‧∙⋅․‥…/／\\＼⁄∕⧸⧹﹨−ー～~─━➖⁃\u115f\u1160\u2800\u3164\uffa0"
)
_PLUS: Final = frozenset("+＋﹢")


def _role(ch: str) -> str:
    if ch == "一":
        return _ONE
    if ch in _CHINESE:
        return chr(_CJK + _CHINESE[ch])
    digit = unicodedata.digit(ch, None)
    if digit is not None:
        return str(digit)
    if ch in _PLUS:
        return "+"
    category = unicodedata.category(ch)
    if category in _SEPARATOR_CATEGORIES or ch in _SEPARATORS:
        return " "
    return _MARK if category[0] == "M" else ch


_CACHE_LIMIT: Final = 1 << 17


class _Roles(dict[int, str]):
    """str.translate's table, filled as characters are first seen: a full table would cost
    a tenth of a second at import. Capped, so that odd input cannot grow it without end."""

    def __missing__(self, code: int) -> str:
        role = _role(chr(code))
        if len(self) < _CACHE_LIMIT:
            self[code] = role
        return role


_ROLES: Final = _Roles()

# JSON writes control characters as escapes (\n, \u0009) and, with ensure_ascii, every other
# character too (\uff11): the log formatter masks the encoded line, so it must read them, also
# inside a value encoded twice (\\u4e00). Only the first backslash of a run starts a match,
# and never gives any back, so a run of backslashes is read once.
_ESCAPE: Final = re.compile(
    r'(?<!\\)\\++(?:u(d[89ab][0-9a-f]{2})\\++u(d[c-f][0-9a-f]{2})|u([0-9a-f]{4})|(["/bfnrt]))',
    re.IGNORECASE,
)


def _is_digit(role: str) -> bool:
    return "0" <= role <= "9" or "\x10" <= role <= _ONE


def _escaped(m: re.Match[str]) -> str:
    high, low, code, short = m.groups()
    size = m.end() - m.start()
    if short is not None:
        return "x" * size if short == '"' else " " * size
    if high is not None:
        role = _ROLES[0x10000 + (int(high, 16) - 0xD800) * 0x400 + int(low, 16) - 0xDC00]
    else:
        role = _ROLES[int(code, 16)]
    if _is_digit(role):
        return role + _MARK * (size - 1)
    return role * size if role in (" ", _MARK) else "x" * size


def _normalise(text: str) -> str:
    if "\\" not in text:
        return text.translate(_ROLES)
    parts: list[str] = []
    last = 0
    for m in _ESCAPE.finditer(text):
        parts += (text[last : m.start()].translate(_ROLES), _escaped(m))
        last = m.end()
    parts.append(text[last:].translate(_ROLES))
    return "".join(parts)


def _digit_class(digits: str, extra: str = "") -> str:
    """A regex class for these digit values in either kind (1 also as 一), and `extra`."""
    cjk = "".join(f"\\x{_CJK + int(d):02x}" for d in digits)
    one = r"\x1a" if "1" in digits else ""
    return f"[{extra}{digits}{cjk}{one}]"


_DIGIT: Final = r"[0-9\x10-\x1a]"
_GAP: Final = r"[ \x01]*"
# A number starts and ends where a run of its kind does: the 13812345678 in 213812345678901
# is no phone, and the 一 of "十一" does not join the digits after it. (_STARTED looks back
# at the character just read and the one before it; a "+" passes.)
_STARTED: Final = r"(?<![0-9][0-9])(?<![\x10-\x1a][\x10-\x1a])"
_LAST: Final = r"(?:[0-9](?![0-9])|[\x10-\x1a](?![\x10-\x1a]))\x01*"
_AFTER_1: Final = f"{_GAP}{_digit_class('3456789')}(?:{_GAP}{_DIGIT}){{8}}{_GAP}{_LAST}"
_AFTER_8: Final = f"{_GAP}{_digit_class('6')}{_GAP}{_digit_class('1')}{_AFTER_1}"
_AFTER_0: Final = f"{_GAP}{_digit_class('0')}{_GAP}{_digit_class('8')}{_AFTER_8}"
# Each branch opens on the character it has just read, so the search can skip in C every
# position that cannot open a number; the classes never overlap and the count is fixed, so
# each try reads at most 15 digits and the gaps between them: linear in the text.
_PHONE: Final = re.compile(
    f"{_digit_class('018', extra='+')}{_STARTED}(?:"
    rf"(?<=\+){_GAP}(?:{_digit_class('0')}{_AFTER_0}|{_digit_class('8')}{_AFTER_8})"
    f"|(?<={_digit_class('0')}){_AFTER_0}"
    f"|(?<={_digit_class('8')}){_AFTER_8}"
    f"|(?<={_digit_class('1')}){_AFTER_1})"
)
_RUN: Final = re.compile(f"{_DIGIT}(?:{_GAP}{_DIGIT})*")
# Between digits, 一 looks like a dash: "138一1234一5678" also reads as 138-1234-5678.
_DASH_ONE: Final = re.compile(r"(?:(?<=[0-9])|(?<=[0-9] ))\x1a(?= ?[0-9])")
_ASCII: Final = str.maketrans(
    {chr(_CJK + d): str(d) for d in range(10)}
    | {_ONE: "1"}
    | dict.fromkeys((" ", _MARK, "+"))
)
# Cheap first look: a mobile takes 11 digit-like characters. \d is every decimal digit;
# the ranges hold the other characters Unicode gives a digit value (superscripts, ①, ❶, 🄁).
_DIGIT_LIKE: Final = re.compile(
    r"[\d\u00b2\u00b3\u00b9\u1369-\u1371\u19da\u2070-\u2089\u2460-\u24ff\u2776-\u2793"
    r"\U00010a40-\U00010a43\U00010e60-\U00010e68\U00011052-\U0001105a\U0001f100-\U0001f10a"
    + "".join(_CHINESE)
    + "]"
)
_MOBILE_DIGITS: Final = 11
_BRACKETS: Final = dict(zip("(（[［【〔{｛〈《「『〖", ")）]］】〕}｝〉》」』〗", strict=True))


def phone_digits(text: str) -> list[str]:
    """Every run of digits in `text` as ASCII, however each digit is written and whatever
    separators stand between them: "小美 一三八-1234 ⑤⑥⑦⑧" -> ["13812345678"]."""
    return [m.group().translate(_ASCII) for m in _RUN.finditer(_normalise(text))]


def _dashed(norm: str, found: list[tuple[int, int, str]]) -> str:
    """`norm` with each dash-like 一 read as a separator, the numbers already found blanked."""
    dashed = _DASH_ONE.sub(" ", norm)
    parts: list[str] = []
    last = 0
    for start, end, _ in found:
        parts += (dashed[last:start], "x" * (end - start))
        last = end
    parts.append(dashed[last:])
    return "".join(parts)


def mask_phones(text: str) -> str:
    """138****5678 for every mainland mobile number in `text`, however it is written: digits
    of any form (full-width, circled, keycap, 一三八, 幺, 壹), any separators between them
    (spaces, dots, dashes, brackets, zero-width characters), +86 / 86 / 0086 before it."""
    if next(islice(_DIGIT_LIKE.finditer(text), _MOBILE_DIGITS - 1, None), None) is None:
        return text
    norm = _normalise(text)
    found = [(m.start(), m.end(), m.group()) for m in _PHONE.finditer(norm)]
    if _ONE in norm and _DASH_ONE.search(norm):
        dashed = _dashed(norm, found)
        found += [(m.start(), m.end(), m.group()) for m in _PHONE.finditer(dashed)]
        found.sort()
    if not found:
        return text
    out: list[str] = []
    last = 0
    for start, end, number in found:
        digits = number.translate(_ASCII)[-_MOBILE_DIGITS:]  # the country code goes
        opener = text[start - 1] if start > last else ""
        if opener in _BRACKETS and _BRACKETS[opener] in text[start:end]:
            start -= 1  # "(+86) 138…": the bracket closes inside the number, so it goes too
        out += (text[last:start], f"{digits[:3]}****{digits[-4:]}")
        last = end
    out.append(text[last:])
    return "".join(out)


def mask_name(name: Any) -> str:
    """A nickname as staff see it: the first character, then stars (小美 -> 小*)."""
    text = str(name or "")
    return (text[0] + "*" * min(3, max(1, len(text) - 1))) if text else "(无昵称)"
