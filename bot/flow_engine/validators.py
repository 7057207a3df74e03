"""Slot validators: turn what a follower typed (zh or en) into a clean profile value.

Each validator is a pure `(text, today) -> Valid | Invalid` function, registered by name so
flows can refer to it from YAML. An `Invalid.reason` is a short code that picks the re-ask
template; validators never raise, whatever a follower types.

Confirmation: any validator may return `Valid(value, confirm="why")` when the value is an
estimate of ours (due dates from "孕20周" or "还有12周", the 15th for a month alone). The
engine then keeps it aside and asks the slot's `confirm:` template (a yes/no, given `value`
and `why`); yes keeps the value, no asks the slot's question again, and any other answer is
read as a new answer to the slot. A slot whose validator is in `CONFIRMING` must have one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from bot.privacy import phone_digits


@dataclass(frozen=True, slots=True)
class Valid:
    value: Any
    # Set when the value is our reading rather than what she said (a due date computed from
    # "孕20周", the 15th for "明年3月"): a short code, like `Invalid.reason`, for the
    # slot's `confirm:` question, which the engine asks before it keeps the value.
    confirm: str | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


Result = Valid | Invalid
Validator = Callable[[str, date], Result]

VALIDATORS: dict[str, Validator] = {}
CONFIRMING: set[str] = set()  # validators that may ask for confirmation (`confirms=True`)


def validator(name: str, *, confirms: bool = False) -> Callable[[Validator], Validator]:
    """Register the decorated function under `name`; a name can only be taken once.
    `confirms`: it may return `Valid(..., confirm=...)`, so its slots need `confirm:`."""

    def register(fn: Validator) -> Validator:
        if name in VALIDATORS:
            raise ValueError(f"validator {name!r} is registered twice")
        VALIDATORS[name] = fn
        if confirms:
            CONFIRMING.add(name)
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
    | {"对的", "没错", "正确"}  # answers to "…，对吗？"
    | {"yes", "y", "ok", "okay", "sure", "agree", "yeah", "yep", "1", "right", "correct"}
)
_NO: Final = frozenset(
    {"否", "不", "不是", "不同意", "不要", "不用", "no", "n", "disagree", "nope", "2"}
    | {"不对", "不是的", "错了", "wrong"}
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

# What a typed number may hold once folded (full-width digits and signs are ASCII by then):
# digits, spaces, dashes, dots, brackets and a "+". Anything else (letters, other scripts'
# digits, words) is not a bare number we can trust.
_MOBILE_CHARS = re.compile(r"[0-9 ()\-.+]+", re.ASCII)
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)


@validator("cn_mobile")
def cn_mobile(text: str, today: date) -> Result:
    raw = _fold(text)
    if not _MOBILE_CHARS.fullmatch(raw):
        return Invalid("not_a_mobile")
    # the one digit reader (bot/privacy.py), so this and the nickname check agree
    digits = "".join(phone_digits(raw))
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
#
# What mothers type, read after NFKC (full-width digits are ASCII by then), Chinese numerals
# turned into digits (三月十五号 -> 3月15号) and spaces removed:
#   2027-03-15  2027/3/15  2027.3.15  20270315  2027年3月15日  3月15号  3/15  3.15  3-15
#   明年3月15号  去年3月15日  下个月10号  这个月20号  上个月5号
# and a month alone (2027年3月, 明年3月, 3月, 下个月): the 15th of that month, mid-month so the
# guess is at most about two weeks off, which the member is asked to confirm.
# A date without a year is the next one from today for a due date, the last one for a birthday.

_Y, _M, _D = r"(?P<y>[0-9]{4})", r"(?P<m>[0-9]{1,2})", r"(?P<d>[0-9]{1,2})"
_DAY_END = r"[日号]?"
_DATE_FORMS = tuple(
    re.compile(form, re.ASCII)
    for form in (
        rf"{_Y}(?P<sep>[-/.]){_M}(?P=sep){_D}",  # 2027-03-15, 2027/3/15, 2027.3.15
        rf"{_Y}年{_M}月(?:{_D}{_DAY_END}|份)?",  # 2027年3月15日, 2027年3月
        rf"{_Y}(?P<sep>[-/.]){_M}",  # 2027-03, 2027.3 (a month)
        r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})",  # 20270315
        rf"{_M}月(?:{_D}{_DAY_END}|份)?",  # 3月15日, 3月15, 3月
        rf"{_M}(?P<sep>[-/.]){_D}",  # 3/15, 3.15, 3-15
        rf"(?P<rel_y>今年|明年|后年|去年|前年){_M}月(?:{_D}{_DAY_END}|份)?",  # 明年3月(15号)
        rf"(?P<rel_m>这个?月|本月|下个?月|上个?月)(?:{_D}{_DAY_END})?",  # 下个月10号
    )
)
_YEAR_OFFSETS: Final = {"今年": 0, "明年": 1, "后年": 2, "去年": -1, "前年": -2}
_MONTH_OFFSETS: Final = {"这月": 0, "这个月": 0, "本月": 0, "下月": 1, "下个月": 1,
                         "上月": -1, "上个月": -1}  # fmt: skip
_MID_MONTH: Final = 15  # the day picked when only a month is given
# Words around a date that change nothing: "预产期是3月15号左右", "生日在去年3月".
_AROUND = re.compile(r"^(?:预产期|宝宝生日|生日)?(?:是|在)?|(?:左右|前后)?(?:吧|呀|啊|哦|了)?$")
# Feb 29 without a year can be up to 8 years away (e.g. 2096 -> 2104)
_YEAR_SEARCH: Final = 9

# Chinese numerals as people write dates and weeks: 三月十五, 二十周, 二〇二七年, 廿五号.
_CN_DIGITS: Final = {ch: n for n, chars in enumerate(
    ("〇零", "一", "二两", "三", "四", "五", "六", "七", "八", "九")) for ch in chars}
_CN_TENS: Final = {"十": 1, "廿": 2, "卅": 3}
_CN_NUMBER = re.compile(f"[{''.join(_CN_DIGITS)}{''.join(_CN_TENS)}]+")


def _cn_number(m: re.Match[str]) -> str:
    """One run of Chinese numerals as ASCII digits; a run that is no number is kept."""
    run = m.group()
    tens = [i for i, ch in enumerate(run) if ch in _CN_TENS]
    if not tens:  # digit by digit: 二〇二七 -> 2027
        return "".join(str(_CN_DIGITS[ch]) for ch in run)
    i = tens[0]
    head, tail = run[:i], run[i + 1:]
    if len(tens) > 1 or len(head) > 1 or len(tail) > 1 or (head and run[i] != "十"):
        return run  # 十十, 三十五六, 二廿: not how a date or a week is written
    tens_digit = _CN_DIGITS[head] if head else _CN_TENS[run[i]]  # 二十 -> 2, 十 -> 1, 廿 -> 2
    return str(tens_digit * 10 + (_CN_DIGITS[tail] if tail else 0))


def _date_text(text: str) -> str:
    """The answer as the date patterns read it: folded, Chinese numerals as digits, no
    spaces (2026 - 12 - 15), lower-case (20W), and the words around a date dropped."""
    text = _CN_NUMBER.sub(_cn_number, _fold(text))
    return _AROUND.sub("", text.replace(" ", "").lower())


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _shift_month(today: date, months: int) -> tuple[int, int]:
    index = today.year * 12 + today.month - 1 + months
    return index // 12, index % 12 + 1


@dataclass(frozen=True, slots=True)
class _Read:
    day: date
    month_only: bool  # the day is our guess (the 15th): she is asked to confirm it


def _parse_date(text: str, today: date, *, forward: bool) -> _Read | None:
    """A date in any accepted form; a yearless one is the nearest occurrence after
    (`forward`) or before today, today included."""
    raw = _date_text(text)
    for pattern in _DATE_FORMS:
        m = pattern.fullmatch(raw)
        if m is None:
            continue
        groups = m.groupdict()
        day = int(groups["d"]) if groups.get("d") else _MID_MONTH
        month_only = not groups.get("d")
        year: int | None = None
        if groups.get("rel_m"):
            year, month = _shift_month(today, _MONTH_OFFSETS[groups["rel_m"]])
        else:
            month = int(m["m"])
            if groups.get("rel_y"):
                year = today.year + _YEAR_OFFSETS[groups["rel_y"]]
            elif groups.get("y"):
                year = int(groups["y"])
        if year is not None:
            found = _make_date(year, month, day)
            return _Read(found, month_only) if found else None
        step = 1 if forward else -1
        for offset in range(_YEAR_SEARCH):
            found = _make_date(today.year + step * offset, month, day)
            if found and (found >= today if forward else found <= today):
                return _Read(found, month_only)
        return None
    return None


# How far along she is, or how long is left: the due date is computed, then confirmed.
_N = r"(?P<n>[0-9]{1,3})"
_WEEK = r"(?:周|weeks?|wks?|w|週|个?星期|个?礼拜)"
_W_D = rf"(?P<w>[0-9]{{1,2}}){_WEEK}(?:\+?(?P<d>[0-9])(?:天|days?|d)?)?(?:pregnant)?"
_NOW = r"(?:现在|目前|已经|我)*"
_WEEKS_ALONG = (
    re.compile(rf"{_NOW}(?:怀孕|孕){_W_D}(?:了|啦)?", re.ASCII),  # 孕20周, 怀孕20周3天
    re.compile(rf"{_NOW}{_W_D}(?:了|啦)?", re.ASCII),  # 20周, 20周+3
    re.compile(rf"{_NOW}(?:怀孕|孕)(?P<w>[0-9]{{1,2}})\+(?P<d>[0-9])(?:天)?", re.ASCII),  # 孕20+3
)
_LEFT = (
    # 还有12周, 还剩12周3天, 12周后
    re.compile(rf"(?:还有|还剩|再过)(?P<w>[0-9]{{1,2}}){_WEEK}(?:(?P<d>[0-9])天)?(?:后|以后)?",
               re.ASCII),
    re.compile(rf"(?P<w>[0-9]{{1,2}}){_WEEK}(?:(?P<d>[0-9])天)?(?:后|以后)", re.ASCII),
    re.compile(rf"(?:还有|还剩|再过){_N}天(?:后|以后)?", re.ASCII),  # 还有80天
    re.compile(rf"{_N}天(?:后|以后)", re.ASCII),  # 80天后
)
_TERM_DAYS: Final = 280  # 40 weeks from the last period: the usual due date


def _days(m: re.Match[str]) -> int:
    groups = m.groupdict()
    if groups.get("n"):
        return int(groups["n"])
    return 7 * int(groups["w"]) + int(groups.get("d") or 0)


def _from_weeks(text: str, today: date) -> Valid | None:
    """A due date computed from her pregnancy week or a countdown, to be confirmed."""
    raw = _date_text(text)
    try:
        for pattern in _LEFT:
            if m := pattern.fullmatch(raw):
                return Valid(today + timedelta(days=_days(m)), confirm="countdown")
        for pattern in _WEEKS_ALONG:
            if m := pattern.fullmatch(raw):
                if int(m["d"] or 0) > 6:
                    return None
                # at week W+D she is 7W+D days from her last period, due 280 days after it
                return Valid(today + timedelta(days=_TERM_DAYS - _days(m)), confirm="weeks")
    except OverflowError:  # a date beyond 9999 is no due date
        return None
    return None


_PREGNANCY_DAYS: Final = 294  # 42 weeks: the longest a pregnancy is let run


@validator("due_date", confirms=True)
def due_date(text: str, today: date) -> Result:
    read = _parse_date(text, today, forward=True)
    found = Valid(read.day, "month" if read.month_only else None) if read else \
        _from_weeks(text, today)
    if found is None:
        return Invalid("not_a_date")
    ahead = (found.value - today).days
    if ahead <= 0:
        return Invalid("date_in_past")
    if ahead > _PREGNANCY_DAYS:
        return Invalid("too_far")
    return found


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


@validator("baby_birthday", confirms=True)
def baby_birthday(text: str, today: date) -> Result:
    read = _parse_date(text, today, forward=False)
    if read is None:
        return Invalid("not_a_date")
    if read.day > today:
        return Invalid("date_in_future")
    if read.day < years_before(today, _MAX_BABY_YEARS):
        return Invalid("too_old")
    return Valid(read.day, "month" if read.month_only else None)


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


# The short names and nicknames people really answer with; only the unambiguous ones.
_CITY_ALIASES: Final[dict[str, str]] = {
    "沪": "上海", "申城": "上海", "魔都": "上海", "京": "北京", "帝都": "北京", "津": "天津",
    "渝": "重庆", "山城": "重庆", "羊城": "广州", "穗": "广州", "鹏城": "深圳", "蓉城": "成都",
}  # fmt: skip
# The province part of "广东省深圳市" / "广东深圳" / "新疆维吾尔自治区乌鲁木齐市".
_PROVINCE_NAMES: Final = frozenset(_PROVINCES.values())
_REGION = re.compile(r"(?:.{2,3}省|.{2,8}?自治区)")


def _city_name(name: str) -> str:
    """The city in an answer that may name its country, province and district too."""
    name = name.removeprefix("中国")
    if (region := _REGION.match(name)) and region.end() < len(name):
        name = name[region.end():]
    for province in _PROVINCE_NAMES:
        rest = name.removeprefix(province)
        if rest != name and rest.removesuffix("市") in _PROVINCES:
            name = rest  # "广东深圳": a province without 省, then a city we know
            break
    # "深圳市南山区" -> "深圳": the district is more than a profile needs
    if "市" in name[1:-1]:
        name = name.split("市", 1)[0]
    if len(name) > 1:
        name = name.removesuffix("市")
    return _CITY_ALIASES.get(name, name)


@validator("city")
def city(text: str, today: date) -> Result:
    name = _fold(text)
    if not name:
        return Invalid("empty")
    if len(name) > 20:
        return Invalid("too_long")
    key = name.lower().removesuffix(" city")
    name = _city_name(_ENGLISH_CITIES.get(key, name))
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
