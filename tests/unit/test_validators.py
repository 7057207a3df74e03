"""Slot validators: every accepted and rejected form, the date limits, and no crashes."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.flow_engine.validators import (
    VALIDATORS,
    Invalid,
    Valid,
    cn_mobile,
    get_validator,
    validator,
    years_before,
)

TODAY = date(2026, 5, 1)  # so the 42-week due-date limit is 2027-02-19

NAMES = (
    "yes_no", "nickname", "cn_mobile", "role", "due_date", "baby_birthday", "city", "text",
    "integer",
)  # fmt: skip

MOBILES = (
    "13812345678", "138 1234 5678", "138-1234-5678", "+86 13812345678",
    "0086 13812345678", "86-13812345678", "+86-138-1234-5678", "(+86) 138 1234 5678",
    "１３８１２３４５６７８", " 13812345678。",
)  # fmt: skip
NOT_MOBILES = (
    "", "12812345678", "1381234567", "138123456789", "+13812345678", "+1 4155550100",
    "010-12345678", "138x1234x5678", "8613812345678 0", "abc", "٣٨١٢٣٤٥٦٧٨١",
)  # fmt: skip
DEC_15 = (
    "2026-12-15", "2026/12/15", "2026.12.15", "2026年12月15日", "2026年12月15号",
    "12月15日", "12月15", "12/15", "20261215", "２０２６－１２－１５", "2026 - 12 - 15",
)  # fmt: skip
NOT_DATES = (
    "", "明天", "2026-02-30", "2026-13-01", "13/1", "2026-12/15", "202612", "soon", "0000-01-01",
)  # fmt: skip

CASES: list[tuple[str, str, Any]] = [
    # yes_no
    *[("yes_no", t, True) for t in ("是", "是的", "好", "好的", "同意", "可以", "对", "嗯")],
    *[("yes_no", t, True) for t in ("yes", "Y", "OK", "okay", "Sure", "agree", "1", "１")],
    *[("yes_no", t, True) for t in (" 好的！", "好的。", "yes.", "OK!", "同意，")],
    *[("yes_no", t, False) for t in ("否", "不", "不是", "不同意", "不要", "No", "n")],
    *[("yes_no", t, False) for t in ("disagree", "2", "不！", " no. ")],
    *[("yes_no", t, Invalid("not_yes_no")) for t in ("", "也许", "maybe", "3", "yess")],
    # nickname
    ("nickname", "  小美  ", "小美"),
    ("nickname", "Lily妈妈", "Lily妈妈"),
    ("nickname", "🌸 豆豆妈", "🌸 豆豆妈"),
    ("nickname", "宝宝2023", "宝宝2023"),
    ("nickname", "美" * 20, "美" * 20),
    ("nickname", "   ", Invalid("empty")),
    ("nickname", "美" * 21, Invalid("too_long")),
    ("nickname", "123456", Invalid("invalid")),
    ("nickname", "１２３", Invalid("invalid")),
    ("nickname", "http://x.cn", Invalid("invalid")),
    ("nickname", "看www.abc.com", Invalid("invalid")),
    ("nickname", "加我shop.vip", Invalid("invalid")),
    ("nickname", "小美13812345678", Invalid("invalid")),
    ("nickname", "小美 138-1234-5678", Invalid("invalid")),
    ("nickname", "小\x00美", Invalid("invalid")),
    # cn_mobile
    *[("cn_mobile", t, "13812345678") for t in MOBILES],
    ("cn_mobile", "19912345678", "19912345678"),
    *[("cn_mobile", t, Invalid("not_a_mobile")) for t in NOT_MOBILES],
    # role
    *[("role", t, "expecting") for t in ("1", "怀孕", "孕妈", "准妈妈", "Expecting", "pregnant")],
    *[("role", t, "mother") for t in ("2", "宝妈", "妈妈", "已生", "mother", "Mom", "new  mom")],
    *[("role", t, "other") for t in ("3", "其他", "Other", "备孕", "备孕中", "爸爸", "家人")],
    *[("role", t, Invalid("unknown_role")) for t in ("", "4", "奶奶的朋友", "dad?")],
    # due_date
    *[("due_date", t, date(2026, 12, 15)) for t in DEC_15],
    ("due_date", "2026-6-1", date(2026, 6, 1)),
    ("due_date", "2月3日", date(2027, 2, 3)),  # no year: the next Feb 3
    ("due_date", "5月2日", date(2026, 5, 2)),
    ("due_date", "5月1日", Invalid("date_in_past")),  # today is not "after today"
    ("due_date", "2026-05-01", Invalid("date_in_past")),
    ("due_date", "2025-12-15", Invalid("date_in_past")),
    ("due_date", "2027-03-15", Invalid("too_far")),
    ("due_date", "4/30", Invalid("too_far")),  # next Apr 30 is a year away
    *[("due_date", t, Invalid("not_a_date")) for t in NOT_DATES],
    # baby_birthday
    *[
        ("baby_birthday", t, date(2025, 3, 15))
        for t in ("2025-03-15", "2025/3/15", "2025.3.15", "2025年3月15日", "20250315")
    ],
    ("baby_birthday", "3月15日", date(2026, 3, 15)),  # no year: the last Mar 15
    ("baby_birthday", "5/2", date(2025, 5, 2)),
    ("baby_birthday", "5/1", date(2026, 5, 1)),  # born today
    ("baby_birthday", "2026-05-02", Invalid("date_in_future")),
    ("baby_birthday", "2019-01-01", Invalid("too_old")),
    ("baby_birthday", "yesterday", Invalid("not_a_date")),
    ("baby_birthday", "2025-02-29", Invalid("not_a_date")),
    # city
    ("city", "上海", {"city": "上海", "province": "上海"}),
    ("city", "上海市", {"city": "上海", "province": "上海"}),
    ("city", " shanghai ", {"city": "上海", "province": "上海"}),
    ("city", "Beijing", {"city": "北京", "province": "北京"}),
    ("city", "guangzhou", {"city": "广州", "province": "广东"}),
    ("city", "Shenzhen City", {"city": "深圳", "province": "广东"}),
    ("city", "HANGZHOU", {"city": "杭州", "province": "浙江"}),
    ("city", "chengdu", {"city": "成都", "province": "四川"}),
    ("city", "广东省深圳市", {"city": "深圳", "province": "广东"}),
    ("city", "苏州", {"city": "苏州", "province": "江苏"}),
    ("city", "乌鲁木齐市", {"city": "乌鲁木齐", "province": "新疆"}),
    ("city", "大连", {"city": "大连", "province": "辽宁"}),
    ("city", "无锡", {"city": "无锡", "province": None}),
    ("city", "Springfield", {"city": "Springfield", "province": None}),
    ("city", "  ", Invalid("empty")),
    ("city", "城" * 21, Invalid("too_long")),
    # text
    ("text", "  宝宝最近睡得不好  ", "宝宝最近睡得不好"),
    ("text", "字" * 200, "字" * 200),
    ("text", " \n ", Invalid("empty")),
    ("text", "字" * 201, Invalid("too_long")),
    # integer
    ("integer", "3", 3),
    ("integer", " 42 ", 42),
    ("integer", "０７", 7),
    ("integer", "１2", 12),
    ("integer", "999999999", 999_999_999),
    ("integer", "1234567890", Invalid("too_large")),
    *[("integer", t, Invalid("not_an_integer")) for t in ("", "-1", "3.5", "三", "1 2", "٣")],
]


@pytest.mark.parametrize(("name", "answer", "expected"), CASES)
def test_examples(name: str, answer: str, expected: Any) -> None:
    result = get_validator(name)(answer, TODAY)
    if isinstance(expected, Invalid):
        assert result == expected
    else:
        assert result == Valid(expected)


def test_registry_holds_every_validator() -> None:
    assert set(VALIDATORS) == set(NAMES)


def test_unknown_validator_lists_the_known_names() -> None:
    with pytest.raises(KeyError, match=r"unknown validator 'email'.*cn_mobile, due_date"):
        get_validator("email")


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        validator("yes_no")(lambda text, today: Valid(text))
    assert VALIDATORS["yes_no"] is get_validator("yes_no")


# --- date limits -----------------------------------------------------------------------


def test_due_date_is_at_most_42_weeks_ahead() -> None:
    due = get_validator("due_date")
    assert due((TODAY + timedelta(days=294)).isoformat(), TODAY) == Valid(date(2027, 2, 19))
    assert due((TODAY + timedelta(days=295)).isoformat(), TODAY) == Invalid("too_far")
    assert due((TODAY + timedelta(days=1)).isoformat(), TODAY) == Valid(date(2026, 5, 2))


def test_birthday_is_at_most_six_years_ago() -> None:
    born = get_validator("baby_birthday")
    assert born("2020-05-01", TODAY) == Valid(date(2020, 5, 1))
    assert born("2020-04-30", TODAY) == Invalid("too_old")


def test_six_years_before_feb_29_is_feb_28() -> None:
    leap_day = date(2028, 2, 29)
    assert years_before(leap_day, 6) == date(2022, 2, 28)
    born = get_validator("baby_birthday")
    assert born("2022-02-28", leap_day) == Valid(date(2022, 2, 28))
    assert born("2022-02-27", leap_day) == Invalid("too_old")
    assert born("2月29日", leap_day) == Valid(leap_day)


def test_feb_29_without_a_year_finds_a_leap_year() -> None:
    born = get_validator("baby_birthday")
    assert born("2月29日", TODAY) == Valid(date(2024, 2, 29))
    due = get_validator("due_date")
    assert due("2月29日", date(2027, 6, 1)) == Valid(date(2028, 2, 29))
    assert due("2月29日", TODAY) == Invalid("too_far")  # 2028 is too far from 2026


def test_years_before_the_calendar_start_is_the_earliest_date() -> None:
    assert years_before(date(3, 1, 1), 6) == date.min


# --- properties ------------------------------------------------------------------------

MOBILE = re.compile(r"^1[3-9]\d{9}$")


@given(st.sampled_from(NAMES), st.text(), st.dates())
def test_validators_never_raise(name: str, answer: str, today: date) -> None:
    result = get_validator(name)(answer, today)
    assert isinstance(result, Valid | Invalid)
    if isinstance(result, Invalid):
        assert re.fullmatch(r"[a-z_]+", result.reason)


@given(st.sampled_from(NAMES), st.text(alphabet="0123456789０１２３年月日号/-.+ ", max_size=16))
def test_validators_never_raise_on_date_and_number_shapes(name: str, answer: str) -> None:
    assert isinstance(get_validator(name)(answer, TODAY), Valid | Invalid)


@given(st.text())
def test_valid_mobiles_are_eleven_digits(answer: str) -> None:
    result = cn_mobile(answer, TODAY)
    if isinstance(result, Valid):
        assert MOBILE.fullmatch(result.value) and result.value.isascii()


@given(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.sampled_from(["", "+86 ", "0086 ", "86-", "+86-"]),
    st.booleans(),
)
def test_formatted_mobiles_normalise_to_their_digits(digits: str, prefix: str, split: bool) -> None:
    body = f"{digits[:3]} {digits[3:7]} {digits[7:]}" if split else digits
    assert cn_mobile(prefix + body, TODAY) == Valid(digits)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(1, 294))
def test_any_due_date_in_range_is_accepted(today: date, ahead: int) -> None:
    due = today + timedelta(days=ahead)
    assert get_validator("due_date")(due.strftime("%Y年%m月%d日"), today) == Valid(due)
