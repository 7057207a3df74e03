"""The brand's calendar: its time zone (`app.timezone`), what day it is there, and the one
parser of the ISO dates kept on profiles.

Points per day, quiet hours, the monthly broadcast cap and every daily job count days and
hours in this one zone, so a check-in, a quiet night and a cron run never disagree.
"""

from __future__ import annotations

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
