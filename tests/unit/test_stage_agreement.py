"""One life-stage answer everywhere: the tags a member gets, the segment that selects her,
the stage other sisters see, and the variables her templates get agree at month and
pregnancy-week boundaries (they all call bot/members/lifestage.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from mongomock.filtering import filter_applies

from bot.marketing.segments import compile_segment
from bot.members.lifestage import stage_of
from bot.members.variables import member_context
from bot.sisters.matching import anchor_of, shown_stage

BIRTH_CASES = [
    (date(2026, 1, 31), date(2026, 7, 31)),  # the example: 6 months on Jul 31
    (date(2026, 1, 31), date(2026, 7, 30)),  # not yet
    (date(2026, 1, 31), date(2026, 2, 28)),  # one month on the short month's last day
    (date(2024, 2, 29), date(2025, 2, 28)),  # leap-day baby: a year on Feb 28
    (date(2026, 3, 31), date(2026, 4, 30)),
    (date(2026, 5, 15), date(2026, 11, 14)),
    (date(2026, 5, 15), date(2026, 11, 15)),
    (date(2025, 12, 31), date(2026, 12, 31)),
]


def profile(fields: dict) -> dict:
    return {"_id": "p", "fields": {"role": "mother", **fields}, "tags": [],
            "member": {"id": "M1"}}


def selected(query: str, doc: dict, today: date) -> bool:
    now = datetime.combine(today, time(4), tzinfo=UTC)  # noon in Shanghai
    flt = compile_segment(query, now=now, today=today, tiers=["普通"]).filter
    return filter_applies(flt, doc)


@pytest.mark.parametrize(("born", "today"), BIRTH_CASES)
def test_baby_months_agree_everywhere(born, today):
    doc = profile({"nickname": "小美", "baby_birthday": born.isoformat()})
    months = stage_of(doc, today).months
    assert months is not None
    assert member_context(doc, today)["baby_months"] == months
    assert selected(f"baby_months:{months}", doc, today)
    assert not selected(f"baby_months:{months + 1}", doc, today)
    if months > 0:
        assert not selected(f"baby_months:{months - 1}", doc, today)
    anchor = anchor_of(doc)
    assert anchor is not None
    label = shown_stage(anchor, today)
    assert label == (f"宝宝{months}个月" if months < 12 else
                     f"宝宝{months // 12}岁{months % 12}个月")


@pytest.mark.parametrize("days_to_due", [280, 274, 273, 196, 189, 188, 1, 0])
def test_pregnancy_weeks_agree_everywhere(days_to_due):
    today = date(2026, 11, 30)
    doc = profile({"nickname": "小美", "role": "expecting",
                   "due_date": (today + timedelta(days=days_to_due)).isoformat()})
    summary = stage_of(doc, today)
    week = summary.week
    assert week is not None and f"孕{week}周" in summary.tags
    assert member_context(doc, today)["week"] == week
    assert selected(f"week:{week}", doc, today) and not selected(f"week:{week + 1}", doc, today)
    anchor = anchor_of(doc)
    assert anchor is not None
    if days_to_due > 0:  # on the due date the anchor is today: she is shown as a new mother
        assert shown_stage(anchor, today) == f"孕{week}周"
