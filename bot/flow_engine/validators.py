"""Slot validators: turn what a follower typed (zh or en) into a clean profile value.

Each validator is a pure `(text, today) -> Valid | Invalid` function, registered by name so
flows can refer to it from YAML. An `Invalid.reason` is a short code that picks the re-ask
template; validators never raise, whatever a follower types.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from bot.privacy import phone_digits


@dataclass(frozen=True, slots=True)
class Valid:
    value: Any


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


Result = Valid | Invalid
Validator = Callable[[str, date], Result]

VALIDATORS: dict[str, Validator] = {}


def validator(name: str) -> Callable[[Validator], Validator]:
    """Register the decorated function under `name`; a name can only be taken once."""

    def register(fn: Validator) -> Validator:
        if name in VALIDATORS:
            raise ValueError(f"validator {name!r} is registered twice")
        VALIDATORS[name] = fn
        return fn

    return register


def get_validator(name: str) -> Validator:
    try:
        return VALIDATORS[name]
    except KeyError:
        known = ", ".join(sorted(VALIDATORS))
        raise KeyError(f"unknown validator {name!r}; known: {known}") from None


# --- normalisation ---------------------------------------------------------------------

# Chat punctuation people tack on ("好的！", "yes.", "上海。"); NFKC has already folded the
# full-width ，！？ into ASCII, but 。、… have no ASCII form.
_TRIM: Final = " \t\r\n,.!?;:~。、…"
_SPACES = re.compile(r"\s+")


def _fold(text: str) -> str:
    """NFKC (full-width digits/letters -> ASCII, ideographic space -> space), trimmed."""
    folded = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", folded).strip(_TRIM)


def _word(text: str) -> str:
    """A short answer reduced to the form we look up: folded, lower-case."""
    return _fold(text).lower()


# --- yes / no --------------------------------------------------------------------------

_YES: Final = frozenset(
    {"是", "是的", "好", "好的", "同意", "可以", "对", "嗯", "嗯嗯", "好呀", "是呀"}
    | {"yes", "y", "ok", "okay", "sure", "agree", "yeah", "yep", "1"}
)
_NO: Final = frozenset(
    {"否", "不", "不是", "不同意", "不要", "不用", "no", "n", "disagree", "nope", "2"}
)


@validator("yes_no")
def yes_no(text: str, today: date) -> Result:
    word = _word(text)
    if word in _YES:
        return Valid(True)
    if word in _NO:
        return Valid(False)
    return Invalid("not_yes_no")


# --- nickname --------------------------------------------------------------------------

_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://|www\.|[a-z0-9-]+\.(?:com|cn|net|org|io|cc|top|xyz|me|info|vip)\b",
    re.IGNORECASE | re.ASCII,
)
# Seven digits or more in one run, however written (一三八, ①③⑧, ０, separators between):
# a mobile or landline number, which we must not store (and later show) as a name.
_LONG_NUMBER: Final = 7


@validator("nickname")
def nickname(text: str, today: date) -> Result:
    name = _SPACES.sub(" ", text).strip()
    if not name:
        return Invalid("empty")
    if len(name) > 20:
        return Invalid("too_long")
    folded = unicodedata.normalize("NFKC", name)
    compact = re.sub(r"[\s\-]", "", folded)
    if (
        compact.isdigit()
        or _URL.search(folded)
        or any(len(run) >= _LONG_NUMBER for run in phone_digits(name))
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        return Invalid("invalid")
    return Valid(name)


# --- mobile ----------------------------------------------------------------------------

_MOBILE_CHARS = re.compile(r"\(?\+?[0-9 ()\-]+", re.ASCII)
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)


@validator("cn_mobile")
def cn_mobile(text: str, today: date) -> Result:
    raw = _fold(text)
    if not _MOBILE_CHARS.fullmatch(raw):
        return Invalid("not_a_mobile")
    digits = re.sub(r"[^0-9]", "", raw)
    if "+" in raw:
        # "+" only ever introduces a country code, and only China's is a mainland mobile
        if not digits.startswith("86"):
            return Invalid("not_a_mobile")
        digits = digits[2:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not _MOBILE.fullmatch(digits):
        return Invalid("not_a_mobile")
    return Valid(digits)


# --- role ------------------------------------------------------------------------------

_ROLES: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("1", "怀孕", "怀孕了", "孕妈", "准妈妈", "孕期", "expecting", "pregnant"), "expecting"
    ),
    **dict.fromkeys(
        ("2", "宝妈", "妈妈", "已生", "mother", "mom", "mum", "new mom", "new mum"), "mother"
    ),
    # 备孕 ("trying to conceive") is not pregnant yet: no due date to ask for
    **dict.fromkeys(("3", "其他", "other", "备孕", "备孕中", "爸爸", "家人"), "other"),
}


@validator("role")
def role(text: str, today: date) -> Result:
    found = _ROLES.get(_word(text))
    return Valid(found) if found else Invalid("unknown_role")


# --- dates -----------------------------------------------------------------------------

_Y, _M, _D = r"(?P<y>[0-9]{4})", r"(?P<m>[0-9]{1,2})", r"(?P<d>[0-9]{1,2})"
_DATE_FORMS = tuple(
    re.compile(form, re.ASCII)
    for form in (
        rf"{_Y} ?(?P<sep>[-/.]) ?{_M} ?(?P=sep) ?{_D}",  # 2027-03-15, 2027/3/15, 2027.3.15
        rf"{_Y} ?年 ?{_M} ?月 ?{_D} ?[日号]?",  # 2027年3月15日
        r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})",  # 20270315
        rf"{_M} ?月 ?{_D} ?[日号]?",  # 3月15日
        rf"{_M} ?/ ?{_D}",  # 3/15
    )
)
# Feb 29 without a year can be up to 8 years away (e.g. 2096 -> 2104)
_YEAR_SEARCH: Final = 9


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _parse_date(text: str, today: date, *, forward: bool) -> date | None:
    """A date in any accepted form; a yearless one is the nearest occurrence after
    (`forward`) or before today, today included."""
    raw = _fold(text)
    for pattern in _DATE_FORMS:
        m = pattern.fullmatch(raw)
        if m is None:
            continue
        month, day = int(m["m"]), int(m["d"])
        year = m.groupdict().get("y")
        if year:
            return _make_date(int(year), month, day)
        step = 1 if forward else -1
        for offset in range(_YEAR_SEARCH):
            found = _make_date(today.year + step * offset, month, day)
            if found and (found >= today if forward else found <= today):
                return found
        return None
    return None


_PREGNANCY_DAYS: Final = 294  # 42 weeks: the longest a pregnancy is let run


@validator("due_date")
def due_date(text: str, today: date) -> Result:
    due = _parse_date(text, today, forward=True)
    if due is None:
        return Invalid("not_a_date")
    ahead = (due - today).days
    if ahead <= 0:
        return Invalid("date_in_past")
    if ahead > _PREGNANCY_DAYS:
        return Invalid("too_far")
    return Valid(due)


def years_before(today: date, years: int) -> date:
    """The same calendar day `years` earlier; Feb 29 falls back to Feb 28 (as dateutil's
    relativedelta does), which errs towards accepting a child on the limit."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        try:
            return today.replace(year=today.year - years, day=today.day - 1)
        except ValueError:  # before year 1: nothing is that old
            return date.min


_MAX_BABY_YEARS: Final = 6


@validator("baby_birthday")
def baby_birthday(text: str, today: date) -> Result:
    born = _parse_date(text, today, forward=False)
    if born is None:
        return Invalid("not_a_date")
    if born > today:
        return Invalid("date_in_future")
    if born < years_before(today, _MAX_BABY_YEARS):
        return Invalid("too_old")
    return Valid(born)


# --- city ------------------------------------------------------------------------------

# city -> province for the cities most members live in; municipalities are their own province
_PROVINCES: Final[dict[str, str]] = {
    "北京": "北京", "上海": "上海", "天津": "天津", "重庆": "重庆",
    "石家庄": "河北", "太原": "山西", "呼和浩特": "内蒙古", "沈阳": "辽宁", "长春": "吉林",
    "哈尔滨": "黑龙江", "南京": "江苏", "杭州": "浙江", "合肥": "安徽", "福州": "福建",
    "南昌": "江西", "济南": "山东", "郑州": "河南", "武汉": "湖北", "长沙": "湖南",
    "广州": "广东", "南宁": "广西", "海口": "海南", "成都": "四川", "贵阳": "贵州",
    "昆明": "云南", "拉萨": "西藏", "西安": "陕西", "兰州": "甘肃", "西宁": "青海",
    "银川": "宁夏", "乌鲁木齐": "新疆",
    "深圳": "广东", "苏州": "江苏", "宁波": "浙江", "青岛": "山东", "厦门": "福建",
    "大连": "辽宁",
}  # fmt: skip

_ENGLISH_CITIES: Final[dict[str, str]] = {
    "beijing": "北京", "peking": "北京", "shanghai": "上海", "tianjin": "天津",
    "chongqing": "重庆", "guangzhou": "广州", "canton": "广州", "shenzhen": "深圳",
    "hangzhou": "杭州", "chengdu": "成都", "nanjing": "南京", "wuhan": "武汉",
    "xian": "西安", "xi'an": "西安", "suzhou": "苏州", "ningbo": "宁波", "qingdao": "青岛",
    "xiamen": "厦门", "dalian": "大连", "changsha": "长沙", "zhengzhou": "郑州",
    "jinan": "济南", "shenyang": "沈阳", "hefei": "合肥", "fuzhou": "福州",
    "kunming": "昆明", "harbin": "哈尔滨",
}  # fmt: skip


@validator("city")
def city(text: str, today: date) -> Result:
    name = _fold(text)
    if not name:
        return Invalid("empty")
    if len(name) > 20:
        return Invalid("too_long")
    key = name.lower().removesuffix(" city")
    name = _ENGLISH_CITIES.get(key, name)
    # "广东省深圳市" -> "深圳": the province comes from our table, the city is what we keep
    if "省" in name[1:-1]:
        name = name.split("省", 1)[1]
    if len(name) > 1:
        name = name.removesuffix("市")
    return Valid({"city": name, "province": _PROVINCES.get(name)})


# --- free text and numbers -------------------------------------------------------------


@validator("text")
def free_text(text: str, today: date) -> Result:
    value = text.strip()
    if not value:
        return Invalid("empty")
    if len(value) > 200:
        return Invalid("too_long")
    return Valid(value)


_FULLWIDTH_DIGITS: Final = str.maketrans("０１２３４５６７８９", "0123456789")
_INTEGER = re.compile(r"[0-9]+", re.ASCII)


@validator("integer")
def integer(text: str, today: date) -> Result:
    digits = text.strip().translate(_FULLWIDTH_DIGITS)
    if not _INTEGER.fullmatch(digits):
        return Invalid("not_an_integer")
    # a bound keeps int() far from its digit limit and out of absurd answers
    if len(digits) > 9:
        return Invalid("too_large")
    return Valid(int(digits))
