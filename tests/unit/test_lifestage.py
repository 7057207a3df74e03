"""Life stage: pregnancy week, baby's age in months, and the tags built on them."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.members.lifestage import (
    STAGE_TAGS,
    StageSummary,
    baby_age_months,
    is_stage_tag,
    pregnancy_week,
    stage_summary,
    stage_tags,
)

TODAY = date(2026, 5, 1)


def days(n: int) -> date:
    return TODAY + timedelta(days=n)


@pytest.mark.parametrize(
    ("to_due", "week"),
    [
        (281, None),  # further off than a whole pregnancy
        (280, 0),
        (274, 0),
        (273, 1),
        (196, 12),
        (195, 12),
        (189, 13),
        (92, 26),
        (91, 27),
        (85, 27),
        (84, 28),
        (0, 40),
        (-14, 42),
        (-15, None),  # more than two weeks overdue: she has had the baby
    ],
)
def test_pregnancy_week(to_due: int, week: int | None) -> None:
    assert pregnancy_week(days(to_due), TODAY) == week


@pytest.mark.parametrize(
    ("birthday", "today", "months"),
    [
        (date(2026, 5, 1), date(2026, 5, 1), 0),
        (date(2026, 4, 2), date(2026, 5, 1), 0),
        (date(2026, 4, 1), date(2026, 5, 1), 1),
        (date(2025, 5, 1), date(2026, 5, 1), 12),
        (date(2025, 5, 2), date(2026, 5, 1), 11),
        (date(2026, 1, 31), date(2026, 2, 27), 0),
        (date(2026, 1, 31), date(2026, 2, 28), 1),  # the month's last day completes it
        (date(2024, 2, 29), date(2025, 2, 28), 12),
        (date(2024, 2, 29), date(2028, 2, 29), 48),
        (date(2026, 5, 2), date(2026, 5, 1), None),
    ],
)
def test_baby_age_months(birthday: date, today: date, months: int | None) -> None:
    assert baby_age_months(birthday, today) == months


@pytest.mark.parametrize(
    ("to_due", "tags"),
    [
        (280, ["孕早期", "孕0周"]),
        (196, ["孕早期", "孕12周"]),
        (189, ["孕中期", "孕13周"]),
        (85, ["孕中期", "孕27周"]),
        (84, ["孕晚期", "孕28周"]),
        (-14, ["孕晚期", "孕42周"]),
    ],
)
def test_pregnancy_tags(to_due: int, tags: list[str]) -> None:
    assert stage_tags("expecting", days(to_due), None, TODAY) == tags


@pytest.mark.parametrize(
    ("birthday", "tag"),
    [
        (date(2026, 5, 1), "0-6月"),
        (date(2025, 11, 2), "0-6月"),
        (date(2025, 11, 1), "6-12月"),
        (date(2025, 5, 2), "6-12月"),
        (date(2025, 5, 1), "1-2岁"),
        (date(2024, 5, 2), "1-2岁"),
        (date(2024, 5, 1), "2-3岁"),
        (date(2023, 5, 2), "2-3岁"),
        (date(2023, 5, 1), "3岁以上"),
        (date(2020, 5, 1), "3岁以上"),
    ],
)
def test_baby_tags(birthday: date, tag: str) -> None:
    assert stage_tags("mother", None, birthday, TODAY) == [tag]


def test_overdue_expecting_member_needs_an_update() -> None:
    assert stage_summary("expecting", days(-15), None, TODAY) == StageSummary(
        stage="unknown", tags=["待更新"]
    )
    assert stage_tags("expecting", days(-14), None, TODAY) == ["孕晚期", "孕42周"]
    # once the birthday is known, there is nothing to update
    assert stage_tags("expecting", days(-30), days(-28), TODAY) == ["0-6月"]
    # only an expecting member is asked; for others an old due date just stops counting
    assert stage_tags("mother", days(-30), None, TODAY) == []


def test_summary_stages() -> None:
    assert stage_summary("expecting", days(100), None, TODAY) == StageSummary(
        stage="pregnant", week=25, tags=["孕中期", "孕25周"]
    )
    assert stage_summary("mother", None, date(2025, 1, 1), TODAY) == StageSummary(
        stage="baby", months=16, tags=["1-2岁"]
    )
    assert stage_summary("other", None, None, TODAY).stage == "other"
    assert stage_summary(None, None, None, TODAY) == StageSummary(stage="unknown")
    assert stage_summary("mother", days(400), days(3), TODAY).stage == "unknown"


def test_mother_expecting_again_gets_both_tags_and_pregnant_stage() -> None:
    summary = stage_summary("mother", days(100), date(2025, 1, 1), TODAY)
    assert summary.stage == "pregnant" and (summary.week, summary.months) == (25, 16)
    assert summary.tags == ["孕中期", "孕25周", "1-2岁"]


def test_stage_is_recomputed_from_today() -> None:
    due = date(2026, 11, 1)
    assert stage_tags("expecting", due, None, date(2026, 5, 1))[0] == "孕中期"
    assert stage_tags("expecting", due, None, date(2026, 9, 1))[0] == "孕晚期"


def test_is_stage_tag() -> None:
    assert all(is_stage_tag(t) for t in [*STAGE_TAGS, "孕0周", "孕42周"])
    assert not any(is_stage_tag(t) for t in ("VIP", "孕周", "孕一周", "孕100周", "上海"))


# --- properties ------------------------------------------------------------------------

DATES = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))
WEEK_TAG = re.compile(r"孕([0-9]+)周")


@given(DATES, DATES, DATES)
def test_pregnancy_week_is_monotonic_in_today(due: date, t1: date, t2: date) -> None:
    t1, t2 = sorted((t1, t2))
    w1, w2 = pregnancy_week(due, t1), pregnancy_week(due, t2)
    if w1 is not None and w2 is not None:
        assert 0 <= w1 <= w2 <= 42


@given(DATES, st.integers(-14, 280), st.integers(0, 400))
def test_pregnancy_week_never_goes_backwards_day_by_day(due: date, to_due: int, step: int) -> None:
    today = due - timedelta(days=to_due)
    w1 = pregnancy_week(due, today)
    w2 = pregnancy_week(due, today + timedelta(days=step))
    assert w1 is not None
    assert w2 is None or w1 <= w2


@given(DATES, DATES, DATES)
def test_baby_months_are_monotonic_in_today(birthday: date, t1: date, t2: date) -> None:
    t1, t2 = sorted((t1, t2))
    m1, m2 = baby_age_months(birthday, t1), baby_age_months(birthday, t2)
    if m1 is not None:
        assert m2 is not None and 0 <= m1 <= m2


@given(
    st.sampled_from([None, "expecting", "mother", "other", "unexpected"]),
    st.none() | DATES,
    st.none() | DATES,
    DATES,
)
def test_tags_are_known_stage_tags(
    role: str | None, due: date | None, birthday: date | None, today: date
) -> None:
    summary = stage_summary(role, due, birthday, today)
    for tag in summary.tags:
        m = WEEK_TAG.fullmatch(tag)
        assert tag in STAGE_TAGS or (m is not None and int(m[1]) == summary.week)
        assert is_stage_tag(tag)
    assert len(summary.tags) == len(set(summary.tags))
    assert stage_tags(role, due, birthday, today) == summary.tags


@given(st.dates(), st.dates())
def test_never_raises_on_any_dates(a: date, b: date) -> None:
    pregnancy_week(a, b)
    baby_age_months(a, b)
    stage_summary("expecting", a, a, b)
