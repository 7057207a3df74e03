"""Life stage from a member's dates: pregnancy week, baby's age, and the stage tags.

Stages move every day, so nothing here is stored as truth: callers recompute from the due
date and birthday whenever they need a stage, and replace the old stage tags with the new.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from bot.brand_calendar import parse_day

PREGNANCY_DAYS: Final = 280  # due date = 40 weeks after the last period
OVERDUE_DAYS: Final = 14  # past this, the baby has surely arrived: ask for the birthday

NEEDS_UPDATE: Final = "待更新"
# Every tag this module hands out, except the per-week "孕{n}周" ones (see `is_stage_tag`).
STAGE_TAGS: Final[tuple[str, ...]] = (
    "孕早期", "孕中期", "孕晚期",
    "0-6月", "6-12月", "1-2岁", "2-3岁", "3岁以上",
    NEEDS_UPDATE,
)  # fmt: skip
_WEEK_TAG = re.compile(r"孕[0-9]{1,2}周")

Stage = Literal["pregnant", "baby", "other", "unknown"]


def is_stage_tag(tag: str) -> bool:
    """True for any tag this module may set, so a recompute can drop the stale ones."""
    return tag in STAGE_TAGS or _WEEK_TAG.fullmatch(tag) is not None


def pregnancy_week(due: date, today: date) -> int | None:
    """Completed weeks of pregnancy (0-based; 40 on the due date), or None when the due date
    is more than 280 days away or more than two weeks past."""
    to_due = (due - today).days
    if to_due > PREGNANCY_DAYS or to_due < -OVERDUE_DAYS:
        return None
    return (PREGNANCY_DAYS - to_due) // 7


def baby_age_months(birthday: date, today: date) -> int | None:
    """Completed calendar months since birth, or None if the birthday is in the future.

    A month is complete on the same day of the month, or on the month's last day when it is
    shorter (born Jan 31: one month old on Feb 28), as dateutil's relativedelta counts.
    """
    if birthday > today:
        return None
    months = (today.year - birthday.year) * 12 + today.month - birthday.month
    month_end = calendar.monthrange(today.year, today.month)[1]
    if today.day < birthday.day and today.day != month_end:
        months -= 1
    return months


@dataclass(frozen=True, slots=True)
class StageSummary:
    stage: Stage
    week: int | None = None
    months: int | None = None
    tags: list[str] = field(default_factory=list)


def _pregnancy_tags(week: int) -> list[str]:
    if week <= 12:
        group = "孕早期"
    elif week <= 27:
        group = "孕中期"
    else:
        group = "孕晚期"
    return [group, f"孕{week}周"]


def _baby_tag(months: int) -> str:
    if months < 6:
        return "0-6月"
    if months < 12:
        return "6-12月"
    if months < 24:
        return "1-2岁"
    if months < 36:
        return "2-3岁"
    return "3岁以上"


def stage_summary(
    role: str | None, due: date | None, birthday: date | None, today: date
) -> StageSummary:
    """Where the member is today. Dates speak for the child, so they win over the role; a
    mother expecting again gets both the pregnancy and the baby tags, with the pregnancy as
    her stage because it is the more time-sensitive."""
    week = pregnancy_week(due, today) if due else None
    months = baby_age_months(birthday, today) if birthday else None
    tags: list[str] = []
    if week is not None:
        tags += _pregnancy_tags(week)
    if months is not None:
        tags.append(_baby_tag(months))
    overdue = due is not None and (today - due).days > OVERDUE_DAYS
    if role == "expecting" and overdue and months is None:
        tags.append(NEEDS_UPDATE)

    stage: Stage
    if week is not None:
        stage = "pregnant"
    elif months is not None:
        stage = "baby"
    elif role == "other":
        stage = "other"
    else:
        stage = "unknown"
    return StageSummary(stage=stage, week=week, months=months, tags=tags)


def stage_tags(role: str | None, due: date | None, birthday: date | None, today: date) -> list[str]:
    return stage_summary(role, due, birthday, today).tags


def stage_of(profile: Mapping[str, Any], today: date) -> StageSummary:
    """Where a member is today, from the dates on her profile."""
    fields = profile.get("fields") or {}
    return stage_summary(fields.get("role"), parse_day(fields.get("due_date")),
                         parse_day(fields.get("baby_birthday")), today)


def stage_label(child: date, today: date, lang: str = "zh") -> str:
    """What other members see of a mother's stage, from her child's birth date (expected or
    actual): the pregnancy week or the baby's age, nothing more."""
    if child > today:
        week = pregnancy_week(child, today) or 0
        return f"孕{week}周" if lang == "zh" else f"{week} weeks pregnant"
    months = baby_age_months(child, today) or 0
    if months < 12:
        return f"宝宝{months}个月" if lang == "zh" else f"baby {months} months"
    years = months // 12
    return f"宝宝{years}岁{months % 12}个月" if lang == "zh" else f"child {years}y{months % 12}m"
