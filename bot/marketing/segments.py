"""The marketers' segment query language: `tag:孕中期 tier>=银卡 last_seen<30d` → a MongoDB
filter over `profiles`, built only from whitelisted fields and operators.

User text only ever becomes a filter *value* (str or number, compared by equality or
range), never an operator or a field name, so no query can reach `$where`, `$regex` and
the like. One exception, checked: `category:奶粉` names the key `orders.categories.奶粉`,
after making sure the name has no dot, no `$` and nothing invisible.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from bot.members.fields import FieldBook, FieldDef, FieldError
from bot.members.lifestage import OVERDUE_DAYS, PREGNANCY_DAYS, baby_age_months

MAX_QUERY_CHARS: Final = 500
MAX_TERMS: Final = 20
MAX_VALUE_CHARS: Final = 64
MAX_ITEMS: Final = 20
MAX_POINTS: Final = 1_000_000_000
MAX_AGO_DAYS: Final = 3650
MAX_WEEK: Final = (PREGNANCY_DAYS + OVERDUE_DAYS) // 7  # 42: the last week lifestage reports
MAX_MONTHS: Final = 120

EMPTY_QUERY: Final = "请给出人群条件，或用 all 表示所有人"

# Separators marketers type on phones, mapped one character to one so that error positions
# still point into the text as typed. Values inside quotes are left alone.
_CHAR_MAP: Final = {
    "：": ":", "＝": "=", "＞": ">", "＜": "<", "，": ",", "、": ",", "－": "-", "．": ".",
}  # fmt: skip
_QUOTES: Final = frozenset('"＂“”')
_OP_CHARS: Final = frozenset(":=<>≥≤")
_EXTRA_SPACE: Final = frozenset("\u200b\ufeff")  # invisible, pasted from chats
_ALL: Final = frozenset({"all", "*", "所有人", "全部"})

EQ: Final = "="
_ORDER_OPS: Final = frozenset({">=", ">", "<=", "<"})
_ALL_OPS: Final = frozenset({EQ}) | _ORDER_OPS


class SegmentError(ValueError):
    """A query the marketer must fix: `message` (zh) says why, `position` (0-based index
    into the query) and `term` say where."""

    def __init__(self, message: str, position: int, term: str) -> None:
        super().__init__(message, position, term)
        self.message = message
        self.position = position
        self.term = term

    def __str__(self) -> str:
        if not self.term:
            return self.message
        # Shown 1-based: marketers count characters from one.
        return f"「{self.term}」(第 {self.position + 1} 个字符): {self.message}"


@dataclass(frozen=True)
class Segment:
    query: str
    filter: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Term:
    start: int
    end: int
    text: str  # as typed, for error messages
    negated: bool
    field: str  # case- and width-folded
    op: str | None  # None for a bare word such as `all`
    items: tuple[str, ...]

    def fail(self, message: str) -> SegmentError:
        return SegmentError(message, self.start, _clip(self.text))


@dataclass(frozen=True, slots=True)
class _Context:
    now: datetime
    today: date
    tiers: tuple[str, ...]
    fields: FieldBook


Compiler = Callable[[_Term, _Context], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    aliases: tuple[str, ...]
    ops: frozenset[str]
    compile: Compiler
    example: str
    help: str


# ---------------------------------------------------------------------------- scanning


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _is_space(ch: str) -> bool:
    return ch.isspace() or ch in _EXTRA_SPACE


def _norm(ch: str) -> str:
    return _CHAR_MAP.get(ch, ch)


def _check_chars(query: str) -> None:
    for i, ch in enumerate(query):
        # Control characters are never meant; lone surrogates cannot even be stored as BSON.
        if not _is_space(ch) and unicodedata.category(ch) in ("Cc", "Cs"):
            raise SegmentError("含有看不见的控制字符，请删掉后重试", i, f"U+{ord(ch):04X}")


def _scan(query: str) -> list[_Term]:
    terms: list[_Term] = []
    i = 0
    while i < len(query):
        if _is_space(query[i]):
            i += 1
            continue
        term = _scan_term(query, i)
        terms.append(term)
        if len(terms) > MAX_TERMS:
            raise term.fail(f"条件太多：最多 {MAX_TERMS} 个")
        i = term.end
    return terms


def _scan_term(q: str, start: int) -> _Term:
    n = len(q)

    def rest() -> str:
        end = start
        while end < n and not _is_space(q[end]):
            end += 1
        return q[start:end]

    def fail(message: str, text: str | None = None) -> SegmentError:
        return SegmentError(message, start, _clip(rest() if text is None else text))

    i = start
    negated = _norm(q[i]) == "-"
    if negated:
        i += 1
    field_start = i
    while i < n and not _is_space(q[i]) and _norm(q[i]) not in _OP_CHARS:
        if q[i] in _QUOTES:
            raise fail("字段名里不能有引号")
        i += 1
    field = _fold(q[field_start:i]).replace("-", "_")
    if i == n or _is_space(q[i]):
        return _Term(start, i, q[start:i], negated, field, None, ())
    if not field:
        raise fail("缺少字段名，例如 tag:孕中期")

    ch = _norm(q[i])
    if ch == "≥":
        op, i = ">=", i + 1
    elif ch == "≤":
        op, i = "<=", i + 1
    elif ch in "<>":
        if i + 1 < n and _norm(q[i + 1]) == "=":
            op, i = ch + "=", i + 2
        else:
            op, i = ch, i + 1
    else:  # ':' and '=' both mean equality
        op, i = EQ, i + 1

    items: list[str] = []
    while True:
        if i < n and q[i] in _QUOTES:
            j = i + 1
            while j < n and q[j] not in _QUOTES:
                j += 1
            if j == n:
                raise fail("引号没有配对", q[start:])
            item, i = q[i + 1 : j], j + 1
            if i < n and not _is_space(q[i]) and _norm(q[i]) != ",":
                raise fail("引号要包住整个值，后面接空格或逗号")
        else:
            j = i
            while j < n and not _is_space(q[j]) and _norm(q[j]) != ",":
                if q[j] in _QUOTES:
                    raise fail('引号要包住整个值，例如 city:"New York"')
                j += 1
            item, i = q[i:j], j
        if not item.strip():
            raise fail("缺少值" if not items else "逗号前后都要有值")
        if len(item) > MAX_VALUE_CHARS:
            raise fail(f"值太长：最多 {MAX_VALUE_CHARS} 个字符")
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise fail(f"值太多：一个条件最多列 {MAX_ITEMS} 个")
        if i < n and _norm(q[i]) == ",":
            i += 1
            continue
        break
    return _Term(start, i, q[start:i], negated, field, op, tuple(items))


# ---------------------------------------------------------------------------- values


def _single(term: _Term) -> str:
    if len(term.items) != 1:
        raise term.fail("这里只能写一个值")
    return term.items[0]


def _int(term: _Term, text: str, low: int, high: int, what: str) -> int:
    folded = _fold(text)
    # Plain ASCII digits only: int() would also take '+5', '1_000' and other scripts' digits.
    if not folded or len(folded) > 10 or any(c not in "0123456789" for c in folded):
        raise term.fail(f"{what}要写 {low} 到 {high} 的整数，不是「{_clip(text, 20)}」")
    value = int(folded)
    if not low <= value <= high:
        raise term.fail(f"{what}要在 {low} 到 {high} 之间，不是 {value}")
    return value


def _split_range(term: _Term, item: str) -> tuple[str, str] | None:
    folded = unicodedata.normalize("NFKC", item)
    if ".." not in folded:
        return None
    if term.op != EQ:
        raise term.fail("范围 a..b 只能和 : 一起用，例如 points:100..500")
    low, high = folded.split("..", 1)
    return low, high


def _int_items(term: _Term, low: int, high: int, what: str) -> list[tuple[int, int | None]]:
    """Each item as an inclusive (low, high) interval; high None means unbounded."""
    if term.op != EQ and len(term.items) > 1:
        raise term.fail(f"「{term.op}」只能跟一个值；要列多个值请用 :")
    spans: list[tuple[int, int | None]] = []
    for item in term.items:
        parts = _split_range(term, item)
        if parts is None:
            value = _int(term, item, low, high, what)
            spans.append((value, value))
            continue
        a = _int(term, parts[0], low, high, what)
        b = _int(term, parts[1], low, high, what)
        if a > b:
            raise term.fail(f"范围 {a}..{b} 前大后小，应写 {b}..{a}")
        spans.append((a, b))
    if term.op == EQ:
        return spans
    value = spans[0][0]
    if term.op == ">=":
        return [(value, None)]
    if term.op == ">":
        return [(value + 1, None)]
    if term.op == "<=":
        return [(low, value)]
    return [(low, value - 1)] if value > low else []


def _nothing(path: str) -> dict[str, Any]:
    return {path: {"$in": []}}


def _any_of(path: str, conds: list[dict[str, Any]]) -> dict[str, Any]:
    if not conds:
        return _nothing(path)
    if len(conds) == 1:
        return {path: conds[0]}
    return {"$or": [{path: c} for c in conds]}


# ---------------------------------------------------------------------------- fields


def _text(path: str) -> Compiler:
    def compile_text(term: _Term, ctx: _Context) -> dict[str, Any]:
        values = list(dict.fromkeys(item.strip() for item in term.items))
        return {path: values[0]} if len(values) == 1 else {path: {"$in": values}}

    return compile_text


def _choice(path: str, choices: dict[str, str], what: str, missing: str | None = None) -> Compiler:
    """A closed set of values with aliases; `missing` is the value an absent field means."""
    shown = ", ".join(dict.fromkeys(choices.values()))

    def compile_choice(term: _Term, ctx: _Context) -> dict[str, Any]:
        values: list[str | None] = []
        for item in term.items:
            value = choices.get(_fold(item))
            if value is None:
                raise term.fail(f"未知{what}「{_clip(item, 20)}」，可选: {shown}")
            if value == missing:
                values.append(None)  # `$in` with None matches a missing field too
            values.append(value)
        unique = list(dict.fromkeys(values))
        return {path: unique[0]} if len(unique) == 1 else {path: {"$in": unique}}

    return compile_choice


def _member(term: _Term, ctx: _Context) -> dict[str, Any]:
    answers = {"yes": True, "y": True, "true": True, "是": True,
               "no": False, "n": False, "false": False, "否": False}  # fmt: skip
    answer = answers.get(_fold(_single(term)))
    if answer is None:
        raise term.fail("member 只能是 yes 或 no（是/否）")
    return {"member.id": {"$exists": answer}}


def _tier(term: _Term, ctx: _Context) -> dict[str, Any]:
    if not ctx.tiers:
        raise term.fail("还没有配置会员等级")
    index = {_fold(name): i for i, name in enumerate(ctx.tiers)}

    def rank(text: str) -> int:
        found = index.get(_fold(text))
        if found is None:
            raise term.fail(f"未知等级「{_clip(text, 20)}」，可选: {', '.join(ctx.tiers)}")
        return found

    top = len(ctx.tiers) - 1
    if term.op != EQ and len(term.items) > 1:
        raise term.fail(f"「{term.op}」只能跟一个值；要列多个等级请用 :")
    ranks: set[int] = set()
    for item in term.items:
        parts = _split_range(term, item)
        if parts is None:
            r = rank(item)
            low, high = {EQ: (r, r), ">=": (r, top), ">": (r + 1, top),
                         "<=": (0, r), "<": (0, r - 1)}[term.op or EQ]  # fmt: skip
        else:
            low, high = rank(parts[0]), rank(parts[1])
            if low > high:
                raise term.fail(f"等级范围前高后低，应写 {parts[1]}..{parts[0]}")
        ranks.update(range(low, high + 1))
    return {"member.tier": {"$in": [ctx.tiers[r] for r in sorted(ranks)]}}


def _amount(path: str, what: str, decimal: bool = False) -> Compiler:
    """A number at `path` (points, orders, yuan spent, social score) where a member without
    the field counts as 0; `decimal`: values may have up to two places (8.5, 99.90)."""

    def compile_amount(term: _Term, ctx: _Context) -> dict[str, Any]:
        read = _decimal if decimal else _int
        if term.op != EQ:
            if len(term.items) > 1:
                raise term.fail(f"「{term.op}」只能跟一个值；要列多个值请用 :")
            if _split_range(term, term.items[0]) is not None:
                raise term.fail("范围 a..b 只能和 : 一起用，例如 points:100..500")
            # Keep the operator as typed rather than an interval: a balance can go below
            # zero after a refund, and `points<100` must still match it.
            value = read(term, term.items[0], 0, MAX_POINTS, what)
            op = {">=": "$gte", ">": "$gt", "<=": "$lte", "<": "$lt"}[term.op or ">="]
            conds: list[dict[str, Any]] = [{op: value}]
            zero_matches = {">=": 0 >= value, ">": 0 > value,
                            "<=": 0 <= value, "<": 0 < value}[term.op or ">="]  # fmt: skip
        else:
            spans: list[tuple[float, float]] = []
            for item in term.items:
                parts = _split_range(term, item)
                a, b = (read(term, item, 0, MAX_POINTS, what),) * 2 if parts is None else (
                    read(term, parts[0], 0, MAX_POINTS, what),
                    read(term, parts[1], 0, MAX_POINTS, what))
                if a > b:
                    raise term.fail(f"范围 {a}..{b} 前大后小，应写 {b}..{a}")
                spans.append((a, b))
            singles = list(dict.fromkeys(a for a, b in spans if a == b))
            conds = [{"$gte": a, "$lte": b} for a, b in spans if a != b]
            if len(singles) == 1:
                conds.insert(0, {"$eq": singles[0]})
            elif singles:
                conds.insert(0, {"$in": singles})
            zero_matches = any(a == 0 for a, b in spans)
        found = _any_of(path, conds)
        if not zero_matches:
            return found
        # Members who never got points have no `points` at all: for them the balance is 0.
        missing = {path: {"$exists": False}}
        return {"$or": [*found["$or"], missing]} if "$or" in found else {"$or": [found, missing]}

    return compile_amount


def _decimal(term: _Term, text: str, low: int, high: int, what: str) -> float:
    folded = _fold(text)
    whole, dot, frac = folded.partition(".")
    if not whole or len(whole) > 10 or any(c not in "0123456789" for c in whole + frac) or \
            (dot and not 1 <= len(frac) <= 2):
        raise term.fail(f"{what}要写数字（最多两位小数），不是「{_clip(text, 20)}」")
    value = float(folded)
    if not low <= value <= high:
        raise term.fail(f"{what}要在 {low} 到 {high} 之间，不是 {folded}")
    return value


_UNITS: Final = {"h": 1, "小时": 1, "时": 1, "d": 24, "天": 24, "日": 24,
                 "w": 168, "周": 168, "星期": 168}  # fmt: skip


def _ago(path: str) -> Compiler:
    def compile_ago(term: _Term, ctx: _Context) -> dict[str, Any]:
        text = _fold(_single(term))
        digits = 0
        while digits < len(text) and text[digits] in "0123456789":
            digits += 1
        hours_per = _UNITS.get(text[digits:].strip())
        if hours_per is None or digits == 0:
            raise term.fail("时间要写数字加单位 h/d/w（小时/天/周），例如 30d、48h、2w")
        if digits > 7 or int(text[:digits]) * hours_per > MAX_AGO_DAYS * 24:
            raise term.fail(f"时间最长 {MAX_AGO_DAYS} 天")
        cutoff = ctx.now - timedelta(hours=int(text[:digits]) * hours_per)
        # `<`/`<=` mean "within that long" and `>`/`>=` "longer ago than": the two sides
        # are exact complements, with the cutoff instant itself counted as "within".
        return {path: {"$gte" if term.op in ("<", "<=") else "$lt": cutoff}}

    return compile_ago


def _shift(day: date, days: int) -> date:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _week(term: _Term, ctx: _Context) -> dict[str, Any]:
    conds: list[dict[str, Any]] = []
    for low, high in _int_items(term, 0, MAX_WEEK, "孕周"):
        high = MAX_WEEK if high is None else high
        if low > high:
            continue
        # pregnancy_week = (280 - days_to_due) // 7, reported for -14 <= days_to_due <= 280.
        first = max(-OVERDUE_DAYS, PREGNANCY_DAYS - 7 * high - 6)
        last = min(PREGNANCY_DAYS, PREGNANCY_DAYS - 7 * low)
        if first <= last:
            conds.append({"$gte": _shift(ctx.today, first).isoformat(),
                          "$lte": _shift(ctx.today, last).isoformat()})  # fmt: skip
    return _any_of("fields.due_date", conds)


def _first_true(low: int, high: int, pred: Callable[[int], bool]) -> int:
    """Smallest k in [low, high] with pred(k), for pred monotone False→True; high+1 if none."""
    while low <= high:
        mid = (low + high) // 2
        if pred(mid):
            high = mid - 1
        else:
            low = mid + 1
    return low


def _birthdays(low: int, high: int | None, today: date) -> tuple[date, date] | None:
    """The birthdays whose `baby_age_months` on `today` lies in [low, high].

    Age only grows as the birthday moves back, so this is one span of days; it is searched
    with lifestage's own function rather than re-derived, because of its month-end rule.
    """

    def age(days_back: int) -> int:
        months = baby_age_months(_shift(today, -days_back), today)
        return -1 if months is None else months

    # Going back 31*(m+2) days always completes at least m+1 months.
    newest = _first_true(0, 31 * (low + 2), lambda k: age(k) >= low)
    if high is None:
        oldest_day = date.min
    else:
        oldest = _first_true(0, 31 * (high + 2), lambda k: age(k) > high) - 1
        if oldest < newest:
            return None
        oldest_day = _shift(today, -oldest)
    return oldest_day, _shift(today, -newest)


def _months(term: _Term, ctx: _Context) -> dict[str, Any]:
    conds: list[dict[str, Any]] = []
    for low, high in _int_items(term, 0, MAX_MONTHS, "月龄"):
        span = _birthdays(low, high, ctx.today)
        if span is not None:
            # Both bounds always, so that an empty or malformed string never matches.
            conds.append({"$gte": span[0].isoformat(), "$lte": span[1].isoformat()})
    return _any_of("fields.baby_birthday", conds)


_STAGES: Final = {
    "pregnant": "pregnant", "孕期": "pregnant", "怀孕": "pregnant", "孕妇": "pregnant",
    "baby": "baby", "宝宝": "baby", "育儿": "baby", "婴儿": "baby",
    "other": "other", "其他": "other", "unknown": "unknown", "未知": "unknown",
}  # fmt: skip
_ROLES: Final = {
    "consumer": "consumer", "普通": "consumer", "会员": "consumer", "消费者": "consumer",
    "kol": "kol", "达人": "kol", "employee": "employee", "员工": "employee",
    "manager": "manager", "社群经理": "manager", "经理": "manager",
    "marketer": "marketer", "市场": "marketer", "营销": "marketer",
    "admin": "admin", "管理员": "admin",
}  # fmt: skip
_FOLLOW: Final = {
    "subscribed": "subscribed", "关注": "subscribed", "已关注": "subscribed",
    "unsubscribed": "unsubscribed", "取关": "unsubscribed", "取消关注": "unsubscribed",
    "unknown": "unknown", "未知": "unknown",
}  # fmt: skip
_LANGS: Final = {"zh": "zh", "中文": "zh", "en": "en", "英文": "en"}

_SOURCES: Final = {
    "qr": "qr", "二维码": "qr", "扫码": "qr", "referral": "referral", "推荐": "referral",
    "邀请": "referral", "import": "import", "导入": "import", "organic": "organic",
    "自然": "organic", "搜索": "organic",
}  # fmt: skip


def _category(term: _Term, ctx: _Context) -> dict[str, Any]:
    """Bought in this category (net of refunds). The category becomes one key of the
    path `orders.categories.<name>`, so it is first checked to be a plain name: no dot,
    no `$`, nothing invisible, which is all a path could be bent with."""
    conds: list[dict[str, Any]] = []
    for item in term.items:
        name = unicodedata.normalize("NFKC", item).strip()
        if not name or any(c in ".$" or not c.isprintable() for c in name):
            raise term.fail(f"品类名不能含 . 或 $：「{_clip(item, 20)}」")
        conds.append({f"orders.categories.{name}": {"$gt": 0}})
    return conds[0] if len(conds) == 1 else {"$or": conds}


def _custom_value(term: _Term, field: FieldDef, text: str) -> Any:
    try:
        value = field.parse(text)
    except FieldError as e:
        raise term.fail(e.message) from None
    if value is None:
        raise term.fail("缺少值")
    return value


def _custom(field: FieldDef) -> _Field:
    """The segment field of a custom member field: `field.<name>` (or its label), compared
    as its type says: numbers and dates by order and a..b ranges, the rest by equality
    (a list field matches when it holds any of the values)."""
    path = f"fields.{field.name}"
    ordered = field.type in ("int", "decimal", "date")

    def compile_custom(term: _Term, ctx: _Context) -> dict[str, Any]:
        if not ordered:
            values = list(dict.fromkeys(
                v for item in term.items
                for v in (_custom_value(term, field, item) if field.type == "list"
                          else [_custom_value(term, field, item)])))
            if field.type == "bool" and len(values) > 1:
                raise term.fail("是/否只能写一个")
            return {path: values[0]} if len(values) == 1 else {path: {"$in": values}}
        if term.op != EQ:
            if len(term.items) > 1:
                raise term.fail(f"「{term.op}」只能跟一个值；要列多个值请用 :")
            op = {">=": "$gte", ">": "$gt", "<=": "$lte", "<": "$lt"}[term.op or ">="]
            return {path: {op: _custom_value(term, field, term.items[0])}}
        conds: list[dict[str, Any]] = []
        for item in term.items:
            parts = _split_range(term, item)
            if parts is None:
                conds.append({"$eq": _custom_value(term, field, item)})
                continue
            low, high = (_custom_value(term, field, p) for p in parts)
            if low > high:
                raise term.fail(f"范围前大后小，应写 {parts[1]}..{parts[0]}")
            conds.append({"$gte": low, "$lte": high})
        return _any_of(path, conds)

    ops = _ALL_OPS if ordered else frozenset({EQ})
    example = f"field.{field.name}:{field.choices[0][1] if field.choices else '…'}"
    # Its labels are names too (宝宝性别:女孩), spaces written as _ since a space ends a term.
    labels = tuple(_fold(lab).replace(" ", "_") for lab in (field.label_zh, field.label_en))
    return _Field(f"field.{field.name}", labels, ops,
                  compile_custom, example, f"{field.label_zh}（{field.hint()}）")


_EQ_ONLY: Final = frozenset({EQ})
_AGO_OPS: Final = _ORDER_OPS

FIELDS: Final[tuple[_Field, ...]] = (
    _Field("tag", ("tags", "标签"), _EQ_ONLY, _text("tags"), "tag:孕中期", "标签"),
    _Field("city", ("城市",), _EQ_ONLY, _text("fields.city"), "city:上海,北京", "城市（任一）"),
    _Field("province", ("省份", "省"), _EQ_ONLY, _text("fields.province"), "province:广东",
           "省份"),
    _Field("tier", ("等级",), _ALL_OPS, _tier, "tier>=银卡", "会员等级，按等级高低比较"),
    _Field("points", ("积分",), _ALL_OPS, _amount("points.balance", "积分"), "points>=100",
           "积分余额（没有积分算 0）"),
    _Field("earned", ("累计积分",), _ALL_OPS, _amount("points.earned", "累计积分"),
           "earned:100..500", "累计获得的积分，a..b 含两端"),
    _Field("last_seen", ("活跃",), _AGO_OPS, _ago("last_seen"), "last_seen<30d",
           "30 天内来过；>30d 是超过 30 天没来（h 小时 d 天 w 周）"),
    _Field("joined", ("入会",), _AGO_OPS, _ago("member.since"), "joined<7d", "7 天内入会"),
    _Field("stage", ("阶段",), _EQ_ONLY, _choice("member.stage", _STAGES, "阶段"),
           "stage:pregnant", "阶段 pregnant/baby/other/unknown（孕期/宝宝/其他/未知）"),
    _Field("week", ("孕周",), _ALL_OPS, _week, "week:20..28", "孕周 0–42"),
    _Field("baby_months", ("months", "月龄"), _ALL_OPS, _months, "baby_months:0..6",
           "宝宝月龄 0–120（满月才算）"),
    _Field("role", ("角色",), _EQ_ONLY, _choice("role", _ROLES, "角色", missing="consumer"),
           "role:kol", "角色 consumer/kol/employee/manager/marketer/admin"),
    _Field("member", ("会员",), _EQ_ONLY, _member, "member:yes", "是否会员 yes/no（是/否）"),
    _Field("follow", ("关注",), _EQ_ONLY, _choice("follow.state", _FOLLOW, "关注状态"),
           "follow:subscribed", "关注状态 subscribed/unsubscribed（关注/取关）"),
    _Field("lang", ("语言",), _EQ_ONLY, _choice("lang", _LANGS, "语言"), "lang:zh",
           "语言 zh/en"),
    _Field("orders", ("订单", "订单数"), _ALL_OPS, _amount("orders.count", "订单数"),
           "orders>=2", "订单数（全额退款的不算）"),
    _Field("spent", ("消费", "消费金额"), _ALL_OPS, _amount("orders.spent", "消费金额", True),
           "spent>=500", "累计消费（元，已扣退款）"),
    _Field("last_order", ("最近下单",), _AGO_OPS, _ago("orders.last_at"), "last_order<30d",
           "30 天内下过单"),
    _Field("category", ("品类",), _EQ_ONLY, _category, "category:奶粉,纸尿裤",
           "买过的品类（任一，已扣退款）"),
    _Field("social", ("社交价值",), _ALL_OPS, _amount("social.score", "社交价值", True),
           "social>=20", "社交价值分（推荐、拉新、分享、姐妹好评、投票、活跃）"),
    _Field("source", ("来源",), _EQ_ONLY, _choice("source.kind", _SOURCES, "来源"),
           "source:qr", "来源 qr/referral/import/organic（扫码/推荐/导入/自然）"),
    _Field("campaign", ("渠道",), _EQ_ONLY, _text("source.campaign"), "campaign:春季快闪",
           "带来她的二维码活动名"),
)
_BY_NAME: Final = {n: f for f in FIELDS for n in (f.name, *f.aliases)}

SEGMENT_HELP: Final = "\n".join(
    [
        "人群条件：空格分开的条件要同时满足。: 或 = 表示等于，逗号表示任一，a..b 表示范围"
        "（含两端），>= > <= < 用来比较，前面加 - 表示排除，带空格的值用引号包住，"
        "all 表示所有人。",
        *(f"{f.example}  {f.help}" for f in FIELDS),
        "field.<字段名>:值  品牌自定义字段（config.yml members.fields），也可用中文名，"
        "例 field.baby_gender:女孩、孩子数量>=2",
        "例：tag:孕中期 city:上海 tier>=银卡 last_seen<30d -role:employee",
    ]
)


# ---------------------------------------------------------------------------- compile


def _custom_fields(book: FieldBook) -> dict[str, _Field]:
    return {n: f for f in map(_custom, book) for n in (f.name, *f.aliases)}


def _unknown_field(term: _Term, custom: dict[str, _Field]) -> SegmentError:
    names = [n for f in FIELDS for n in (f.name, *f.aliases)] + list(custom)
    close = difflib.get_close_matches(term.field, names, n=1, cutoff=0.5)
    shown = [f.name for f in FIELDS] + list(dict.fromkeys(f.name for f in custom.values()))
    hint = f"是不是 {close[0]}？" if close else f"可用: {', '.join(shown)}"
    return term.fail(f"未知字段「{_clip(term.field, 20)}」，{hint}")


def _wrong_op(term: _Term, field: _Field) -> SegmentError:
    allowed = " ".join(":" if op == EQ else op for op in sorted(field.ops))
    return term.fail(f"{field.name} 不能用「{term.op}」，只能用 {allowed}，例如 {field.example}")


def _render(term: _Term, field: _Field) -> str:
    def quote(item: str) -> str:
        special = any(_is_space(c) or _norm(c) == "," or c in _QUOTES for c in item)
        plain = bool(item) and not special
        return item if plain else f'"{item}"' if '"' not in item else f"“{item}”"

    op = ":" if term.op == EQ else term.op
    return f"{'-' if term.negated else ''}{field.name}{op}{','.join(map(quote, term.items))}"


def compile_segment(
    query: str, *, now: datetime, today: date, tiers: Sequence[str],
    fields: FieldBook | None = None,
) -> Segment:
    """Compile a marketer's query into a filter over `profiles`; raise SegmentError saying
    where and why when the query cannot be understood."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if len(query) > MAX_QUERY_CHARS:
        raise SegmentError(
            f"条件太长：最多 {MAX_QUERY_CHARS} 个字符，现在有 {len(query)} 个",
            MAX_QUERY_CHARS, _clip(query[MAX_QUERY_CHARS:], 20),
        )
    _check_chars(query)
    book = fields or FieldBook({})
    ctx = _Context(now, today, tuple(tiers), book)
    custom = _custom_fields(book)
    filters: list[dict[str, Any]] = []
    rendered: list[str] = []
    saw_all = False
    for term in _scan(query):
        if term.op is None:
            if term.field in _ALL:
                if term.negated:
                    raise term.fail("all 不能排除，那样谁都不剩")
                saw_all = True
                continue
            if not term.field:
                raise term.fail("缺少条件，例如 -role:employee")
            raise term.fail(f"缺少 : 或比较符；按标签找请写 tag:{_clip(term.text, 20)}")
        field = _BY_NAME.get(term.field) or custom.get(term.field)
        if field is None:
            raise _unknown_field(term, custom)
        if term.op not in field.ops:
            raise _wrong_op(term, field)
        found = field.compile(term, ctx)
        filters.append({"$nor": [found]} if term.negated else found)
        rendered.append(_render(term, field))
    if not filters:
        if not saw_all:
            raise SegmentError(EMPTY_QUERY, 0, "")
        return Segment(query="all", filter={})
    return Segment(
        query=" ".join(rendered), filter=filters[0] if len(filters) == 1 else {"$and": filters}
    )
