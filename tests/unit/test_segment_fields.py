"""Segments over the brand's own fields, orders, social value and source: what a marketer
types that cannot be read is refused with where and why, and nothing she types becomes an
operator or a field name."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from bot.marketing.segments import SegmentError, compile_segment
from bot.members.fields import FieldBook
from bot.settings import CustomField

NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
TODAY = date(2026, 5, 1)
BOOK = FieldBook({
    "baby_gender": CustomField(type="enum", label={"zh": "宝宝性别", "en": "Baby gender"},
                               choices={"girl": "女孩", "boy": "男孩"}),
    "children": CustomField(type="int", label="孩子数量", min=0, max=12),
    "allergy": CustomField(type="text", label="过敏", sensitive=True),
})


def seg(query: str) -> dict[str, Any]:
    return compile_segment(query, now=NOW, today=TODAY, tiers=["普通"], fields=BOOK).filter


def err(query: str) -> SegmentError:
    with pytest.raises(SegmentError) as info:
        seg(query)
    return info.value


def test_a_choice_is_stored_by_its_code_whatever_the_marketer_types():
    assert seg("field.baby_gender:女孩") == {"fields.baby_gender": "girl"}
    assert seg("宝宝性别：GIRL") == {"fields.baby_gender": "girl"}
    assert seg("Baby_Gender:boy") == {"fields.baby_gender": "boy"}  # the en label, as typed


def test_an_unknown_choice_lists_the_choices():
    e = err("field.baby_gender:双胞胎")
    assert "女孩(girl)" in e.message and e.position == 0


def test_numbers_compare_and_respect_the_fields_bounds():
    assert seg("field.children>=2") == {"fields.children": {"$gte": 2}}
    assert "不能大于 12" in err("field.children:20").message
    assert "整数" in err("field.children:两个").message


def test_a_choice_field_cannot_be_ordered():
    assert "不能用「>」" in err("field.baby_gender>girl").message


def test_an_unknown_custom_field_suggests_the_close_one():
    e = err("field.childrn:2")
    assert "field.children" in e.message


def test_without_custom_fields_field_terms_are_unknown():
    with pytest.raises(SegmentError, match="未知字段"):
        compile_segment("field.children:2", now=NOW, today=TODAY, tiers=["普通"])


@pytest.mark.parametrize("name", ["a.b", "$where", "奶粉.x", "x\u200b"])
def test_a_category_cannot_bend_the_path(name):
    e = err(f'category:"{name}"')
    assert "品类" in e.message


def test_a_category_is_one_key_under_orders_categories():
    assert seg("category:奶粉") == {"orders.categories.奶粉": {"$gt": 0}}


def test_spent_takes_yuan_with_two_places_and_counts_no_orders_as_zero():
    assert seg("spent>=99.9") == {"orders.spent": {"$gte": 99.9}}
    assert seg("spent<10") == {"$or": [{"orders.spent": {"$lt": 10}},
                                       {"orders.spent": {"$exists": False}}]}
    assert "两位小数" in err("spent>=9.999").message
