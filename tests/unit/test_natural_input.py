"""Dates, numbers and corrections as mothers type them: every accepted form of a due date,
a birthday, a mobile and a city, the refusals, and the confirmation of a computed due date
through the core (sign-up without Rasa)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core import ACTION_NAMES
from bot.flow_engine.loader import FlowsInvalid, Known, load_flows
from bot.flow_engine.validators import (
    CONFIRMING,
    VALIDATORS,
    Invalid,
    Valid,
    baby_birthday,
    city,
    cn_mobile,
    due_date,
    yes_no,
)
from tests.support.core import CoreHarness, core_harness, shipped_templates

TODAY = date(2026, 9, 1)  # due dates: 2027-03-15 is 195 days ahead, the 42-week limit 2027-06-22
BIRTH_TODAY = date(2027, 9, 1)  # birthdays: 2027-03-15 is in the past
MAR_15 = date(2027, 3, 15)


def days(n: int) -> date:
    return TODAY + timedelta(days=n)


# --- due dates -------------------------------------------------------------------------

EXACT_DUE: list[tuple[str, date]] = [
    *[(t, MAR_15) for t in (
        "2027-03-15", "2027/3/15", "2027.3.15", "2027年3月15日", "2027年3月15号", "20270315",
        "3月15号", "3月15日", "3月15", "3.15", "3/15", "3-15", "明年3月15号",
        "２０２７年３月１５日", "３月１５号", "２０２７－０３－１５", "三月十五号", "三月十五日",
        "二〇二七年三月十五日", "2027 年 3 月 15 日", " 3月15号。", "预产期是3月15号左右",
        "明年三月十五",
    )],
    ("下个月10号", date(2026, 10, 10)),
    ("下月10日", date(2026, 10, 10)),
    ("这个月20号", date(2026, 9, 20)),
    ("本月20号", date(2026, 9, 20)),
    ("十二月廿五", date(2026, 12, 25)),
    ("12月1日", date(2026, 12, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "expected"), EXACT_DUE)
def test_due_dates_as_typed(answer: str, expected: date) -> None:
    assert due_date(answer, TODAY) == Valid(expected)  # no confirmation: she said the day


MONTH_DUE: list[tuple[str, date]] = [
    ("明年3月", MAR_15),
    ("明年三月", MAR_15),
    ("2027年3月", MAR_15),
    ("2027年3月份", MAR_15),
    ("3月", MAR_15),  # no year: the next March
    ("三月份", MAR_15),
    ("下个月", date(2026, 10, 15)),
]


@pytest.mark.parametrize(("answer", "expected"), MONTH_DUE)
def test_a_month_alone_is_its_15th_and_asks_for_confirmation(answer: str, expected: date
                                                             ) -> None:
    assert due_date(answer, TODAY) == Valid(expected, confirm="month")


WEEKS: list[tuple[str, int]] = [
    # at week W+D the due date is today + 280 - (7W+D)
    *[(t, 280 - 140) for t in (
        "孕20周", "怀孕20周", "20周", "孕20周了", "我怀孕20周了", "现在孕20周", "孕二十周",
        "２０周", "20w", "20 weeks", "20 weeks pregnant", "孕20个星期",
    )],
    *[(t, 280 - 143) for t in ("孕20周3天", "怀孕20周3天", "20周3天", "孕20周+3", "孕20+3",
                               "20w3d", "孕二十周三天")],
    ("孕6周", 280 - 42),
    ("孕39周6天", 1),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "ahead"), WEEKS)
def test_a_pregnancy_week_gives_a_due_date_to_confirm(answer: str, ahead: int) -> None:
    assert due_date(answer, TODAY) == Valid(days(ahead), confirm="weeks")


def test_week_20_is_140_days_before_the_due_date() -> None:
    assert due_date("孕20周", TODAY) == Valid(date(2027, 1, 19), confirm="weeks")


COUNTDOWNS: list[tuple[str, int]] = [
    ("还有12周", 84),
    ("还剩12周", 84),
    ("还有十二周", 84),
    ("12周后", 84),
    ("还有12周3天", 87),
    ("还有80天", 80),
    ("还剩八十天", 80),
    ("80天后", 80),
    ("再过1天", 1),
]


@pytest.mark.parametrize(("answer", "ahead"), COUNTDOWNS)
def test_weeks_or_days_left_give_a_due_date_to_confirm(answer: str, ahead: int) -> None:
    assert due_date(answer, TODAY) == Valid(days(ahead), confirm="countdown")


DUE_REFUSED: list[tuple[str, str]] = [
    ("2026-08-31", "date_in_past"),
    ("2026-09-01", "date_in_past"),  # today is not "after today"
    ("这个月1号", "date_in_past"),
    ("孕40周", "date_in_past"),  # due today
    ("孕41周", "date_in_past"),
    ("还有0天", "date_in_past"),
    ("2027-06-23", "too_far"),  # 295 days
    ("还有50周", "too_far"),
    ("还有300天", "too_far"),
    ("后年3月", "too_far"),
    *[(t, "not_a_date") for t in (
        "", "不知道", "soon", "明天", "孕周", "孕20周8天", "32月", "2月30日", "13/1",
        "2027-03/15", "202703", "十十月", "一百天", "3月15号吧吧", "abc", "孕", "周",
    )],
]  # fmt: skip


@pytest.mark.parametrize(("answer", "reason"), DUE_REFUSED)
def test_due_date_refusals(answer: str, reason: str) -> None:
    assert due_date(answer, TODAY) == Invalid(reason)


def test_the_42_week_limit_also_holds_for_computed_dates() -> None:
    assert due_date("还有42周", TODAY) == Valid(days(294), confirm="countdown")
    assert due_date("还有42周1天", TODAY) == Invalid("too_far")


# --- birthdays -------------------------------------------------------------------------

BIRTHDAYS: list[tuple[str, date]] = [
    *[(t, MAR_15) for t in (
        "2027-03-15", "2027/3/15", "2027.3.15", "2027年3月15日", "3月15号", "3月15日", "3.15",
        "3/15", "２０２７年３月１５日", "三月十五号", "今年3月15号", "生日是3月15号",
    )],
    ("9月1日", date(2027, 9, 1)),  # born today
    ("9月2日", date(2026, 9, 2)),  # no year: the last Sep 2
    ("去年3月15号", date(2026, 3, 15)),
    ("上个月10号", date(2027, 8, 10)),
    ("这个月1号", date(2027, 9, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "expected"), BIRTHDAYS)
def test_birthdays_as_typed(answer: str, expected: date) -> None:
    assert baby_birthday(answer, BIRTH_TODAY) == Valid(expected)


@pytest.mark.parametrize(("answer", "expected"), [
    ("今年3月", MAR_15), ("3月", MAR_15), ("去年3月", date(2026, 3, 15)),
    ("上个月", date(2027, 8, 15)), ("2027年3月", MAR_15),
])  # fmt: skip
def test_a_birth_month_alone_asks_for_confirmation(answer: str, expected: date) -> None:
    assert baby_birthday(answer, BIRTH_TODAY) == Valid(expected, confirm="month")


@pytest.mark.parametrize(("answer", "reason"), [
    ("2027-09-02", "date_in_future"), ("明年3月", "date_in_future"),
    ("下个月10号", "date_in_future"), ("这个月20号", "date_in_future"),
    ("2021-08-31", "too_old"), ("2021年8月", "too_old"),
    ("孕20周", "not_a_date"), ("还有80天", "not_a_date"), ("不记得了", "not_a_date"),
    ("2月30日", "not_a_date"), ("", "not_a_date"),
])  # fmt: skip
def test_birthday_refusals(answer: str, reason: str) -> None:
    assert baby_birthday(answer, BIRTH_TODAY) == Invalid(reason)


@pytest.mark.parametrize("answer", ["孕20周", "还有80天", "下个月10号", "明年3月", "3月15号",
                                    "2月29日", "去年3月", "上个月"])
@pytest.mark.parametrize("today", [date.min, date.max, date(9999, 12, 1), date(1, 1, 31)])
def test_dates_at_the_ends_of_the_calendar_never_raise(answer: str, today: date) -> None:
    for check in (due_date, baby_birthday):
        assert isinstance(check(answer, today), Valid | Invalid)


def test_both_date_validators_may_ask_for_confirmation() -> None:
    assert {"due_date", "baby_birthday"} <= CONFIRMING <= set(VALIDATORS)


# --- mobiles ---------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    "13812345678", "138 1234 5678", "138-1234-5678", "138.1234.5678", "(138)1234-5678",
    "138 - 1234 - 5678", "+86 13812345678", "+86-138-1234-5678", "+86 (138) 1234 5678",
    "(+86) 138 1234 5678", "0086 138 1234 5678", "0086-13812345678", "86 138 1234 5678",
    "8613812345678", "１３８１２３４５６７８", "＋８６　１３８－１２３４－５６７８",
    "（１３８）１２３４５６７８", "138．1234．5678", " 13812345678。",
])  # fmt: skip
def test_mobiles_as_typed(answer: str) -> None:
    assert cn_mobile(answer, TODAY) == Valid("13812345678")


@pytest.mark.parametrize("answer", [
    "", "1381234567", "138123456789", "12812345678", "+1 415 555 0100", "+852 9123 4567",
    "+13812345678", "010-12345678", "138x1234x5678", "我的手机13812345678",
    "一三八一二三四五六七八", "٣٨١٢٣٤٥٦٧٨١", "86 138 1234 567", "+", "---",
])  # fmt: skip
def test_mobile_refusals(answer: str) -> None:
    assert cn_mobile(answer, TODAY) == Invalid("not_a_mobile")


# --- cities ----------------------------------------------------------------------------

def place(name: str, province: str | None) -> dict[str, Any]:
    return {"city": name, "province": province}


@pytest.mark.parametrize(("answer", "expected"), [
    *[(t, place("上海", "上海"))
      for t in ("上海", "上海市", "沪", "魔都", "中国上海", "上海市浦东新区")],
    *[(t, place("北京", "北京")) for t in ("北京", "北京市", "帝都", "京", "北京市朝阳区")],
    *[(t, place("广州", "广东")) for t in ("广州", "广州市", "羊城", "广东省广州市", "广东广州")],
    *[(t, place("深圳", "广东")) for t in ("深圳", "深圳市", "鹏城", "广东深圳", "深圳市南山区")],
    ("浙江杭州", place("杭州", "浙江")),
    ("新疆维吾尔自治区乌鲁木齐市", place("乌鲁木齐", "新疆")),
    ("成都 ", place("成都", "四川")),
    ("无锡市", place("无锡", None)),  # not in the table: kept as she wrote it
])  # fmt: skip
def test_cities_as_typed(answer: str, expected: dict[str, Any]) -> None:
    assert city(answer, TODAY) == Valid(expected)


@pytest.mark.parametrize(("answer", "reason"), [(" ", "empty"), ("城" * 21, "too_long")])
def test_city_refusals(answer: str, reason: str) -> None:
    assert city(answer, TODAY) == Invalid(reason)


# --- the confirmation's yes and no -----------------------------------------------------

@pytest.mark.parametrize(("answer", "expected"), [
    ("对", True), ("对的", True), ("没错", True), ("是的", True), ("right", True),
    ("不对", False), ("不是", False), ("错了", False), ("wrong", False), ("no", False),
])  # fmt: skip
def test_answers_to_is_that_right(answer: str, expected: bool) -> None:
    assert yes_no(answer, TODAY) == Valid(expected)


# --- the flow check --------------------------------------------------------------------

FLOW = """
slots:
  due: {validator: due_date, ask: ask_due%s}
flows:
  due:
    triggers: {keywords: [due]}
    steps:
      - collect: due
templates:
  ask_due: {zh: 预产期？, en: "due?"}
  confirm_due: {zh: "约 {{ value }}，对吗？", en: "about {{ value }}, right?"}
"""
KNOWN = Known(validators=set(VALIDATORS), actions=ACTION_NAMES, award_rules=set())


def test_a_slot_whose_validator_confirms_needs_a_confirm_template(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(FLOW % "")
    with pytest.raises(FlowsInvalid, match="slot 'due': validator 'due_date' may ask her to "
                                           "confirm its reading: give the slot a confirm:"):
        load_flows(tmp_path, KNOWN)
    (tmp_path / "a.yml").write_text(FLOW % ", confirm: confirm_duee")
    with pytest.raises(FlowsInvalid, match="template 'confirm_duee' is not defined"):
        load_flows(tmp_path, KNOWN)
    (tmp_path / "a.yml").write_text(FLOW % ", confirm: confirm_due")
    assert load_flows(tmp_path, KNOWN).slots["due"].confirm == "confirm_due"


# --- through the core: sign-up with a computed due date --------------------------------

@pytest.fixture
async def core() -> CoreHarness:
    return await core_harness()


async def to_the_due_date(core: CoreHarness, openid: str) -> date:
    """Sign-up up to the due-date question; her brand-local today."""
    assert "隐私政策" in await core.say(openid, "我要注册")
    assert "敏感个人信息" in await core.say(openid, "同意")
    assert "怎么称呼" in await core.say(openid, "同意")
    assert "手机号" in await core.say(openid, "小美")
    assert "准妈妈" in await core.say(openid, "+86 138-1234-5678")
    assert "预产期是哪天" in await core.say(openid, "1")
    return core.calendar.today(datetime.now(UTC))


async def test_a_week_answer_is_confirmed_then_kept(core: CoreHarness) -> None:
    today = await to_the_due_date(core, "w1")
    due = today + timedelta(days=280 - 140)
    assert f"预产期约 {due.isoformat()}，对吗？" in await core.say("w1", "孕20周")
    assert "城市" in await core.say("w1", "对")
    assert "注册成功" in await core.say("w1", "上海市")
    p = await core.profile("w1")
    assert p is not None
    assert (p["fields"]["due_date"], p["fields"]["mobile"], p["fields"]["city"]) == (
        due.isoformat(), "13812345678", "上海")


async def test_no_asks_the_due_date_again(core: CoreHarness) -> None:
    today = await to_the_due_date(core, "w2")
    assert "对吗" in await core.say("w2", "孕20周")
    again = await core.say("w2", "不对")
    assert "预产期是哪天" in again and "对吗" not in again
    exact = today + timedelta(days=100)
    assert "城市" in await core.say("w2", f"{exact.year}年{exact.month}月{exact.day}日")
    await core.say("w2", "深圳")
    p = await core.profile("w2")
    assert p is not None and p["fields"]["due_date"] == exact.isoformat()


async def test_while_confirming_a_new_date_replaces_and_nonsense_re_asks(core: CoreHarness
                                                                        ) -> None:
    today = await to_the_due_date(core, "w3")
    first = (today + timedelta(days=84)).isoformat()
    assert f"预产期约 {first}" in await core.say("w3", "还有12周")
    assert f"预产期约 {first}，对吗？" in await core.say("w3", "嗯？？啥")
    # a question in between is answered, then the yes/no is asked again
    reply = await core.say("w3", "我的积分")
    assert "你的积分" in reply and f"预产期约 {first}，对吗？" in reply
    # a second estimate replaces the first, and is confirmed in its turn
    second = (today + timedelta(days=80)).isoformat()
    assert f"预产期约 {second}" in await core.say("w3", "还有80天")
    assert "城市" in await core.say("w3", "是的")
    await core.say("w3", "北京")
    p = await core.profile("w3")
    assert p is not None and p["fields"]["due_date"] == second


async def test_an_exact_date_needs_no_confirmation(core: CoreHarness) -> None:
    today = await to_the_due_date(core, "w4")
    exact = today + timedelta(days=60)
    assert "城市" in await core.say("w4", f"{exact.year}/{exact.month}/{exact.day}")


@pytest.mark.parametrize(("name", "why", "zh", "en"), [
    ("signup_confirm_due", "weeks", "预产期约 2027-01-19，对吗？（对/不对）",
     "So your due date is about 2027-01-19, right? (yes / no)"),
    ("signup_confirm_due", "month", "按月中算，预产期约 2027-01-19，对吗？（对/不对）",
     "Taking the middle of the month, your due date is about 2027-01-19, right? (yes / no)"),
    ("signup_confirm_birthday", "month", "按月中算，宝宝生日约 2027-01-19，对吗？",
     "Taking the middle of the month, your baby's birthday is about 2027-01-19, right?"),
])  # fmt: skip
def test_the_confirmation_question_in_both_languages(name: str, why: str, zh: str, en: str
                                                     ) -> None:
    lib = shipped_templates()
    context = {"value": "2027-01-19", "why": why, "slots": {}}
    assert lib.render(name, "zh", **context).startswith(zh)
    assert lib.render(name, "en", **context).startswith(en)
