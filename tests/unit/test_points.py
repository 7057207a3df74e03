"""Tiers by lifetime points, idempotency keys per rule, and naming a reward in chat."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.brand_calendar import BrandCalendar
from bot.members.actions import match_reward
from bot.members.points import Points, tier_status
from bot.settings import PointsSettings, Tier

TIERS = [Tier(name="普通", min=0), Tier(name="银卡", min=500), Tier(name="金卡", min=2000)]


@pytest.mark.parametrize(("earned", "expected"), [
    (0, ("普通", "银卡", 500)), (499, ("普通", "银卡", 1)), (500, ("银卡", "金卡", 1500)),
    (2000, ("金卡", None, 0)), (99999, ("金卡", None, 0)),
])
def test_tier_status(earned, expected):
    s = tier_status(earned, TIERS)
    assert (s.tier, s.next_tier, s.to_next) == expected


def test_keys_follow_the_rule_and_the_shanghai_calendar_day():
    points = Points(store=None, settings=PointsSettings(),  # type: ignore[arg-type]
                    calendar=BrandCalendar("Asia/Shanghai"))
    late_utc = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on the 25th in Shanghai
    assert points.key("checkin", "p1", late_utc, None) == "checkin:p1:2026-11-25"
    assert points.key("signup", "p1", late_utc, "x") == "signup:p1"


def test_tiers_must_start_at_zero_and_increase():
    with pytest.raises(ValueError, match="start at min: 0"):
        PointsSettings(tiers=[Tier(name="a", min=10)])
    with pytest.raises(ValueError, match="strictly increase"):
        PointsSettings(tiers=[Tier(name="a", min=0), Tier(name="b", min=0)])


CATALOGUE = {"wipes": ("婴儿湿巾", "湿巾"), "diapers": ("纸尿裤试用装", "纸尿裤")}


@pytest.mark.parametrize(("text", "code"), [
    ("兑换 湿巾", "wipes"), ("兑换婴儿湿巾", "wipes"), ("redeem wipes", "wipes"),
    ("兑换：纸尿裤", "diapers"), ("兑换 婴儿", "wipes"), ("兑换", None), ("兑换 汽车", None),
    ("帮我拿积分换包湿巾呗", "wipes"), ("用分换一箱纸尿裤吧", "diapers"),  # by an alias
    ("我想用积分给宝宝换点东西", None),
])
def test_match_reward(text, code):
    assert match_reward(text, CATALOGUE) == code


def test_an_ambiguous_name_matches_nothing():
    assert match_reward("兑换 婴儿", {"wipes": ("婴儿湿巾",), "crib": ("婴儿床",)}) is None
    assert match_reward("换湿巾还是纸尿裤呢", CATALOGUE) is None  # two gifts named
