"""The brand's calendar: its time zone (`app.timezone`), what day it is there, and the one
parser of the ISO dates kept on profiles.

Points per day, quiet hours, the monthly broadcast cap and every daily job count days and
hours in this one zone, so a check-in, a quiet night and a cron run never disagree.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def parse_day(value: Any) -> date | None:
    """A profile date (ISO `2027-03-15`, or a date) as a date; None when absent or not one."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


class BrandCalendar:
    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.zone)

    def today(self, now: datetime) -> date:
        """The calendar day at the brand, e.g. for once-a-day points."""
        return self.local(now).date()

    def month(self, now: datetime) -> str:
        """`2026-12`: the month a broadcast counts against a member's monthly cap."""
        return self.local(now).strftime("%Y-%m")

    def at(self, day: date, clock: time) -> datetime:
        """A wall-clock time on a day at the brand, as an aware datetime."""
        return datetime.combine(day, clock, tzinfo=self.zone)

    def tomorrow_at(self, now: datetime, clock: time) -> datetime:
        return self.at(self.today(now) + timedelta(days=1), clock)

    def utc_time(self, clock: time, on: datetime | None = None) -> time:
        """The UTC wall-clock time of a local one (cron runs in UTC); today's offset."""
        day = self.today(on or datetime.now(UTC))
        return self.at(day, clock).astimezone(UTC).time()


Window = tuple[tuple[int, int], tuple[int, int]]
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def clock_window(text: str, name: str) -> str:
    """A setting "HH:MM-HH:MM" checked (or "" for none: "", "none", "off")."""
    text = text.strip()
    if text in ("", "none", "off"):
        return ""
    parts = text.split("-")
    if len(parts) != 2 or not all(_CLOCK.match(p.strip()) for p in parts):
        raise ValueError(f"{name} is HH:MM-HH:MM (e.g. 22:00-08:00), or off")
    return text


def window_of(text: str) -> Window | None:
    """((start h, m), (end h, m)) of a checked "HH:MM-HH:MM", None when there is none."""
    if not text:
        return None
    a, b = (p.strip().split(":") for p in text.split("-"))
    return (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))


def window_end(local: datetime, window: Window | None) -> datetime | None:
    """The local time a daily window (quiet hours, service hours) ends, if `local` is
    inside it; else None. A window may run past midnight (22:00-08:00)."""
    if window is None:
        return None
    (sh, sm), (eh, em) = window
    start, end, now = time(sh, sm), time(eh, em), local.timetz().replace(tzinfo=None)
    if start == end:
        return None
    inside = (start <= now or now < end) if start > end else (start <= now < end)
    if not inside:
        return None
    end_day = local.date() + timedelta(days=1) if start > end and now >= start else \
        local.date()
    return datetime.combine(end_day, time(eh, em), tzinfo=local.tzinfo)
