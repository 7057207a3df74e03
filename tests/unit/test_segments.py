"""Segment query language: every field, the syntax marketers type on phones, errors that say
where and why, and properties: no text escapes the whitelist, and the compiled date ranges
agree with bot.members.lifestage.
"""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta
from typing import Any

import bson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.marketing.segments import (
    EMPTY_QUERY,
    FIELDS,
    SEGMENT_HELP,
    Segment,
    SegmentError,
    compile_segment,
)
from bot.members.fields import FieldBook
from bot.members.lifestage import baby_age_months, pregnancy_week
from bot.settings import CustomField

NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
TODAY = date(2026, 5, 1)
TIERS = ["普通", "银卡", "金卡"]


def seg(query: str, today: date = TODAY) -> dict[str, Any]:
    return compile_segment(query, now=NOW, today=today, tiers=TIERS).filter


def err(query: str) -> SegmentError:
    with pytest.raises(SegmentError) as info:
        compile_segment(query, now=NOW, today=TODAY, tiers=TIERS)
    return info.value


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


# ------------------------------------------------------------------ a tiny evaluator
# Just the MongoDB semantics the compiler emits, to check meaning without a server.

MISSING = object()


def lookup(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def comparable(a: Any, b: Any) -> bool:
    kinds = (str, int, datetime)
    return any(isinstance(a, k) and isinstance(b, k) for k in kinds) and not isinstance(a, bool)


def cond_holds(value: Any, op: str, arg: Any) -> bool:
    if op == "$exists":
        return (value is not MISSING) == arg
    candidates = value if isinstance(value, list) else [value]
    if op == "$eq":
        return any(c == arg or (arg is None and c is MISSING) for c in candidates)
    if op == "$ne":
        return not cond_holds(value, "$eq", arg)
    if op == "$in":
        return any(cond_holds(value, "$eq", a) for a in arg)
    compare = {"$gte": lambda c: c >= arg, "$gt": lambda c: c > arg,
               "$lte": lambda c: c <= arg, "$lt": lambda c: c < arg}[op]
    return any(comparable(c, arg) and compare(c) for c in candidates)


def matches(flt: dict[str, Any], doc: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(f, doc) for f in cond)
        elif key == "$or":
            ok = any(matches(f, doc) for f in cond)
        elif key == "$nor":
            ok = not any(matches(f, doc) for f in cond)
        else:
            value = lookup(doc, key)
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            ok = all(cond_holds(value, op, arg) for op, arg in ops.items())
        if not ok:
            return False
    return True


# ------------------------------------------------------------------ the whitelist

PATHS = {
    "tags", "fields.city", "fields.province", "member.tier", "points.balance",
    "points.earned", "last_seen", "member.since", "member.stage", "fields.due_date",
    "fields.baby_birthday", "role", "member.id", "follow.state", "lang", "orders.count",
    "orders.spent", "orders.last_at", "social.score", "source.kind", "source.campaign",
    *(f"fields.{name}" for name in ("baby_gender", "children", "feeding", "visit", "vip")),
}  # fmt: skip
CATEGORY = "orders.categories."  # then one plain name: no dot, no $
LOGIC = {"$and", "$or", "$nor"}
OPERATORS = {"$in", "$eq", "$ne", "$gte", "$gt", "$lte", "$lt", "$exists"}


def check_value(value: Any) -> None:
    assert value is None or type(value) in (str, int, float, bool, datetime), value
    if isinstance(value, str):
        value.encode("utf-8")  # no lone surrogates


def check_filter(flt: Any) -> None:
    assert type(flt) is dict
    for key, cond in flt.items():
        if key in LOGIC:
            assert isinstance(cond, list) and cond
            for sub in cond:
                check_filter(sub)
            continue
        if key.startswith(CATEGORY):
            name = key.removeprefix(CATEGORY)
            assert name and "." not in name and "$" not in name and name.isprintable(), key
        else:
            assert key in PATHS, key
        if isinstance(cond, dict):
            assert cond
            for op, arg in cond.items():
                assert op in OPERATORS, op
                if op == "$in":
                    assert isinstance(arg, list)
                    for a in arg:
                        check_value(a)
                else:
                    check_value(arg)
        else:
            check_value(cond)


# ------------------------------------------------------------------ the brief's example


def test_the_example_query():
    s = compile_segment(
        "tag:孕中期 city:上海 tier>=银卡 points>=100 last_seen<30d stage:pregnant "
        "week:20..28 role:kol",
        now=NOW, today=TODAY, tiers=TIERS,
    )
    assert isinstance(s, Segment)
    assert s.filter == {"$and": [
        {"tags": "孕中期"},
        {"fields.city": "上海"},
        {"member.tier": {"$in": ["银卡", "金卡"]}},
        {"points.balance": {"$gte": 100}},
        {"last_seen": {"$gte": days_ago(30)}},
        {"member.stage": "pregnant"},
        # week 28 starts 78 days before the due date, week 20 ends 140 days before it
        {"fields.due_date": {"$gte": "2026-07-18", "$lte": "2026-09-18"}},
        {"role": "kol"},
    ]}  # fmt: skip


# ------------------------------------------------------------------ free text fields


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag:孕中期", {"tags": "孕中期"}),
        ("tags:孕中期,vip", {"tags": {"$in": ["孕中期", "vip"]}}),
        ("标签=vip", {"tags": "vip"}),
        ("tag:vip,vip", {"tags": "vip"}),
        ("city:上海,北京", {"fields.city": {"$in": ["上海", "北京"]}}),
        ("province:广东", {"fields.province": "广东"}),
        ('city:"New York"', {"fields.city": "New York"}),
        ('city:"上海 浦东",北京', {"fields.city": {"$in": ["上海 浦东", "北京"]}}),
        ("city:“上海 浦东”", {"fields.city": "上海 浦东"}),
        ('tag:"a,b"', {"tags": "a,b"}),
        # What looks like an operator or a pattern is only ever a value
        ("tag:$where", {"tags": "$where"}),
        ("tag:{$gt:1}", {"tags": "{$gt:1}"}),
        ("city:.*", {"fields.city": ".*"}),
        ("tag:a:b>c", {"tags": "a:b>c"}),
    ],
)
def test_text_fields(query, expected):
    assert seg(query) == expected


# ------------------------------------------------------------------ tier


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("tier:银卡", ["银卡"]),
        ("tier=金卡", ["金卡"]),
        ("tier>=银卡", ["银卡", "金卡"]),
        ("tier>银卡", ["金卡"]),
        ("tier<=银卡", ["普通", "银卡"]),
        ("tier<银卡", ["普通"]),
        ("tier<普通", []),
        ("tier>金卡", []),
        ("tier:金卡,普通", ["普通", "金卡"]),
        ("tier:普通..银卡", ["普通", "银卡"]),
        ("等级≥金卡", ["金卡"]),
    ],
)
def test_tier_follows_the_configured_order(query, names):
    assert seg(query) == {"member.tier": {"$in": names}}


def test_unknown_tier_lists_the_tiers_and_points_at_the_term():
    e = err("points>=100 tier>=钻石")
    assert (e.position, e.term) == (12, "tier>=钻石")
    assert e.message == "未知等级「钻石」，可选: 普通, 银卡, 金卡"
    assert str(e) == "「tier>=钻石」(第 13 个字符): 未知等级「钻石」，可选: 普通, 银卡, 金卡"


def test_tier_errors():
    assert "前高后低" in err("tier:金卡..普通").message
    assert "只能跟一个值" in err("tier>=银卡,金卡").message
    with pytest.raises(SegmentError, match="没有配置会员等级"):
        compile_segment("tier:银卡", now=NOW, today=TODAY, tiers=[])


# ------------------------------------------------------------------ points


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("points>=100", {"points.balance": {"$gte": 100}}),
        ("points>0", {"points.balance": {"$gt": 0}}),
        ("earned>=500", {"points.earned": {"$gte": 500}}),
        ("points:100..500", {"points.balance": {"$gte": 100, "$lte": 500}}),
        ("points:5,10", {"points.balance": {"$in": [5, 10]}}),
        ("积分:7", {"points.balance": {"$eq": 7}}),
        # 0 satisfies these, and a member without points has 0
        ("points<100", {"$or": [{"points.balance": {"$lt": 100}},
                                {"points.balance": {"$exists": False}}]}),
        ("points>=0", {"$or": [{"points.balance": {"$gte": 0}},
                               {"points.balance": {"$exists": False}}]}),
        ("points:0", {"$or": [{"points.balance": {"$eq": 0}},
                              {"points.balance": {"$exists": False}}]}),
        ("earned:0..10", {"$or": [{"points.earned": {"$gte": 0, "$lte": 10}},
                                  {"points.earned": {"$exists": False}}]}),
        ("points:0,50..60", {"$or": [{"points.balance": {"$eq": 0}},
                                     {"points.balance": {"$gte": 50, "$lte": 60}},
                                     {"points.balance": {"$exists": False}}]}),
        ("points:１００", {"points.balance": {"$eq": 100}}),
    ],
)  # fmt: skip
def test_points(query, expected):
    assert seg(query) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("points>=abc", "积分要写 0 到 1000000000 的整数，不是「abc」"),
        ("points>=-5", "积分要写 0 到 1000000000 的整数，不是「-5」"),
        ("points>=1.5", "积分要写 0 到 1000000000 的整数，不是「1.5」"),
        ("points>=٣", "积分要写 0 到 1000000000 的整数"),
        ("points>=1000000001", "积分要在 0 到 1000000000 之间，不是 1000000001"),
        ("earned:10..5", "范围 10..5 前大后小，应写 5..10"),
        ("points:..5", "积分要写"),
        ("points>=1..5", "范围 a..b 只能和 : 一起用"),
        ("points>=1,2", "「>=」只能跟一个值"),
    ],
)
def test_points_errors(query, reason):
    e = err(query)
    assert reason in e.message and e.term == query and e.position == 0


# ------------------------------------------------------------------ last_seen / joined


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("last_seen<30d", {"last_seen": {"$gte": days_ago(30)}}),
        ("last_seen<=30d", {"last_seen": {"$gte": days_ago(30)}}),
        ("last_seen>30d", {"last_seen": {"$lt": days_ago(30)}}),
        ("last_seen>=2w", {"last_seen": {"$lt": days_ago(14)}}),
        ("last_seen<48h", {"last_seen": {"$gte": days_ago(2)}}),
        ("last_seen<3650d", {"last_seen": {"$gte": days_ago(3650)}}),
        ("活跃<30天", {"last_seen": {"$gte": days_ago(30)}}),
        ("last_seen<３０Ｄ", {"last_seen": {"$gte": days_ago(30)}}),
        ("joined<7d", {"member.since": {"$gte": days_ago(7)}}),
        ("入会>1w", {"member.since": {"$lt": days_ago(7)}}),
    ],
)
def test_time_since(query, expected):
    assert seg(query) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("last_seen:30d", "last_seen 不能用「=」"),
        ("last_seen<30", "时间要写数字加单位"),
        ("last_seen<30m", "时间要写数字加单位"),
        ("last_seen<d", "时间要写数字加单位"),
        ("last_seen<3651d", "时间最长 3650 天"),
        ("last_seen<522w", "时间最长 3650 天"),
        ("last_seen<99999999999d", "时间最长 3650 天"),
        ("joined<7d,8d", "这里只能写一个值"),
    ],
)
def test_time_since_errors(query, reason):
    assert reason in err(query).message


# ------------------------------------------------------------------ closed sets


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stage:pregnant", {"member.stage": "pregnant"}),
        ("stage:孕期", {"member.stage": "pregnant"}),
        ("stage:宝宝,其他", {"member.stage": {"$in": ["baby", "other"]}}),
        ("stage:育儿,BABY", {"member.stage": "baby"}),
        ("role:kol", {"role": "kol"}),
        ("role:达人", {"role": "kol"}),
        ("role:KOL", {"role": "kol"}),
        ("role:员工,社群经理,营销,管理员",
         {"role": {"$in": ["employee", "manager", "marketer", "admin"]}}),
        ("role:consumer", {"role": {"$in": [None, "consumer"]}}),
        ("role:会员,kol", {"role": {"$in": [None, "consumer", "kol"]}}),
        ("member:yes", {"member.id": {"$exists": True}}),
        ("member:否", {"member.id": {"$exists": False}}),
        ("follow:subscribed", {"follow.state": "subscribed"}),
        ("follow:取关", {"follow.state": "unsubscribed"}),
        ("lang:EN", {"lang": "en"}),
        ("lang:zh,en", {"lang": {"$in": ["zh", "en"]}}),
    ],
)  # fmt: skip
def test_closed_sets(query, expected):
    assert seg(query) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("stage:toddler", "未知阶段「toddler」，可选: pregnant, baby, other, unknown"),
        ("role:boss", "未知角色「boss」，可选: consumer, kol, employee, manager, marketer, admin"),
        ("member:maybe", "member 只能是 yes 或 no"),
        ("member:yes,no", "这里只能写一个值"),
        ("follow:maybe", "未知关注状态「maybe」"),
        ("lang:fr", "未知语言「fr」，可选: zh, en"),
        ("stage>=baby", "stage 不能用「>=」，只能用 :"),
    ],
)
def test_closed_set_errors(query, reason):
    e = err(query)
    assert reason in e.message and e.term == query


# ------------------------------------------------------------------ week / baby_months


def test_week_compiles_to_a_due_date_range():
    # week 20 = 134..140 days before the due date
    assert seg("week:20") == {"fields.due_date": {"$gte": "2026-09-12", "$lte": "2026-09-18"}}
    assert seg("孕周>=30") == {"fields.due_date": {"$gte": "2026-04-17", "$lte": "2026-07-10"}}
    # week 42 only has the two weeks' grace after the due date in it
    assert seg("week:42") == {"fields.due_date": {"$gte": "2026-04-17", "$lte": "2026-04-17"}}
    assert seg("week:1,3") == {"$or": [
        {"fields.due_date": {"$gte": "2027-01-23", "$lte": "2027-01-29"}},
        {"fields.due_date": {"$gte": "2027-01-09", "$lte": "2027-01-15"}},
    ]}  # fmt: skip
    assert seg("week>42") == {"fields.due_date": {"$in": []}}
    assert seg("week<0") == {"fields.due_date": {"$in": []}}


def test_baby_months_compiles_to_a_birthday_range():
    assert seg("baby_months:0..6") == {
        "fields.baby_birthday": {"$gte": "2025-10-02", "$lte": "2026-05-01"}}
    # Born Jan 31: not two months old until Mar 31 (no Feb 31 to count from)
    assert seg("months:1", date(2026, 3, 30)) == {
        "fields.baby_birthday": {"$gte": "2026-01-31", "$lte": "2026-02-28"}}
    # Feb 28 is a month end: a baby born on Jan 29..31 is one month old that day
    assert seg("月龄:0", date(2026, 2, 28)) == {
        "fields.baby_birthday": {"$gte": "2026-02-01", "$lte": "2026-02-28"}}
    assert seg("baby_months>=12") == {
        "fields.baby_birthday": {"$gte": "0001-01-01", "$lte": "2025-05-01"}}
    assert seg("baby_months<0") == {"fields.baby_birthday": {"$in": []}}


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("week:43", "孕周要在 0 到 42 之间，不是 43"),
        ("week:28..20", "范围 28..20 前大后小，应写 20..28"),
        ("week:二十", "孕周要写 0 到 42 的整数"),
        ("baby_months:121", "月龄要在 0 到 120 之间"),
        ("months:6..0", "前大后小"),
    ],
)
def test_week_and_months_errors(query, reason):
    assert reason in err(query).message


# ------------------------------------------------------------------ syntax


@pytest.mark.parametrize(
    ("typed", "ascii_form"),
    [
        ("points＞＝100", "points>=100"),
        ("points≥100", "points>=100"),
        ("points＜＝100", "points<=100"),
        ("points≤100", "points<=100"),
        ("points＞100", "points>100"),
        ("points＜100", "points<100"),
        ("tag：孕中期", "tag:孕中期"),
        ("tag＝孕中期", "tag:孕中期"),
        ("city:上海，北京", "city:上海,北京"),
        ("city:上海、北京", "city:上海,北京"),
        ("tag:孕中期\u3000city:上海", "tag:孕中期 city:上海"),
        ("  tag:孕中期\t\n city:上海  ", "tag:孕中期 city:上海"),
        ("－tag:vip", "-tag:vip"),
        ("week:20．．28", "week:20..28"),
        ("TAG:vip", "tag:vip"),
        ("ｔａｇ:vip", "tag:vip"),
        ("last-seen<30d", "last_seen<30d"),
    ],
)
def test_full_width_and_spacing_forms(typed, ascii_form):
    assert seg(typed) == seg(ascii_form)


def test_negation_wraps_the_term_in_nor():
    assert seg("-tag:vip") == {"$nor": [{"tags": "vip"}]}
    assert seg("tag:孕中期 -role:consumer") == {"$and": [
        {"tags": "孕中期"}, {"$nor": [{"role": {"$in": [None, "consumer"]}}]}]}
    assert seg("-points<10") == {"$nor": [{"$or": [
        {"points.balance": {"$lt": 10}}, {"points.balance": {"$exists": False}}]}]}


@pytest.mark.parametrize("query", ["all", "*", "ALL", "所有人", "all all", " * "])
def test_all_means_everyone(query):
    assert compile_segment(query, now=NOW, today=TODAY, tiers=TIERS) == Segment("all", {})


def test_all_with_other_terms_is_ignored():
    s = compile_segment("all tag:vip *", now=NOW, today=TODAY, tiers=TIERS)
    assert s == Segment("tag:vip", {"tags": "vip"})


def test_the_normalised_query():
    typed = '  标签：孕中期　points≥１００ -ROLE:员工  months:0..6 city:"上海 浦东"，北京'
    s = compile_segment(typed, now=NOW, today=TODAY, tiers=TIERS)
    assert s.query == 'tag:孕中期 points>=１００ -role:员工 baby_months:0..6 city:"上海 浦东",北京'
    assert seg(s.query) == s.filter


@pytest.mark.parametrize("query", ["", "   ", "\u3000\t"])
def test_an_empty_query_is_an_error(query):
    e = err(query)
    assert e.message == EMPTY_QUERY and str(e) == EMPTY_QUERY and e.position == 0


# ------------------------------------------------------------------ errors say where and why


@pytest.mark.parametrize(
    ("query", "position", "term", "reason"),
    [
        ("tag:a  city>=x", 7, "city>=x", "city 不能用「>=」，只能用 :，例如 city:上海,北京"),
        ("tag<3", 0, "tag<3", "tag 不能用「<」"),
        ("tag:a poinst>=3", 6, "poinst>=3", "未知字段「poinst」，是不是 points？"),
        ("ciyt:上海", 0, "ciyt:上海", "是不是 city？"),
        ("城:上海", 0, "城:上海", "是不是 城市？"),
        ("zzzz:1", 0, "zzzz:1", "可用: tag, city, province, tier, points"),
        ("fields.city:x", 0, "fields.city:x", "未知字段「fields.city」"),
        ("$where:1", 0, "$where:1", "未知字段「$where」"),
        ("tag:a 孕中期", 6, "孕中期", "缺少 : 或比较符；按标签找请写 tag:孕中期"),
        ("tag:a -all", 6, "-all", "all 不能排除"),
        ("tag:a -", 6, "-", "缺少条件"),
        (":上海", 0, ":上海", "缺少字段名"),
        ("city:", 0, "city:", "缺少值"),
        ("city:上海,", 0, "city:上海,", "逗号前后都要有值"),
        ("city:上海,,北京", 0, "city:上海,,北京", "逗号前后都要有值"),
        ('city:"上海', 0, 'city:"上海', "引号没有配对"),
        ('city:"上海"x', 0, 'city:"上海"x', "引号要包住整个值"),
        ('city:上"海"', 0, 'city:上"海"', "引号要包住整个值"),
        ('ci"ty":x', 0, 'ci"ty":x', "字段名里不能有引号"),
        ('tag:""', 0, 'tag:""', "缺少值"),
        ("tag:a\x00b", 5, "U+0000", "控制字符"),
        ("tag:a \x1b[31m", 6, "U+001B", "控制字符"),
    ],
)
def test_errors_say_where_and_why(query, position, term, reason):
    e = err(query)
    assert (e.position, e.term) == (position, term)
    assert reason in e.message
    assert str(e) == f"「{term}」(第 {position + 1} 个字符): {e.message}"


def test_a_segment_error_is_a_value_error_that_survives_pickling():
    e = err("tier:钻石")
    assert isinstance(e, ValueError)
    copy = pickle.loads(pickle.dumps(e))
    assert (copy.message, copy.position, copy.term, str(copy)) == (
        e.message, e.position, e.term, str(e))


def test_a_naive_now_is_a_programming_error():
    with pytest.raises(ValueError, match="aware"):
        compile_segment("all", now=datetime(2026, 5, 1), today=TODAY, tiers=TIERS)


# ------------------------------------------------------------------ limits


def test_query_length_limit():
    ok = " ".join(["tag:" + "a" * 64] * 7) + " city:" + "b" * 12
    assert len(ok) == 500
    seg(ok)
    e = err(ok + "b")
    assert e.position == 500 and "最多 500 个字符" in e.message


def test_term_count_limit():
    seg(" ".join(["tag:a"] * 20))
    e = err(" ".join(["tag:a"] * 20 + ["city:b", "city:c"]))
    assert (e.position, e.term) == (120, "city:b") and "最多 20 个" in e.message


def test_value_length_limit():
    assert seg("tag:" + "a" * 64) == {"tags": "a" * 64}
    e = err("tag:x " + "tag:" + "a" * 65)
    assert e.position == 6 and "最多 64 个字符" in e.message and e.term.endswith("…")
    assert "最多 64 个字符" in err('tag:"' + "a" * 65 + '"').message


def test_item_count_limit():
    seg("tag:" + ",".join(str(i) for i in range(20)))
    assert "最多列 20 个" in err("tag:" + ",".join(str(i) for i in range(21))).message


# ------------------------------------------------------------------ help


def test_help_lists_every_field_with_an_example_that_compiles():
    for field in FIELDS:
        assert f"{field.example}  " in SEGMENT_HELP
        assert field.example.startswith(field.name)
        check_filter(seg(field.example))
    assert "all" in SEGMENT_HELP


# ------------------------------------------------------------------ properties

NASTY = [
    "tag", "city", "points", "tier", "week", "baby_months", "last_seen", "role", "member",
    "all", "*", ":", "=", ">=", "<", "≥", "＞＝", "：", "，", ",", "..", "-", '"', "“", " ",
    "\u3000", "\t", "\x00", "\x7f", "\u200b", "$where", '{"$gt": ""}', ".*", "$regex",
    "fields.", "$", "30d", "2w", "48h", "0", "42", "120", "1000000001", "-1", "银卡", "钻石",
    "孕期", "kol", "yes", "__proto__", "\\", "\n", "\ud800", "🙂", "a" * 70,
]  # fmt: skip
nasty_text = st.lists(st.sampled_from(NASTY), max_size=30).map("".join)
# Terms shaped like the real thing, so that the fuzzing also reaches every field's compiler.
CUSTOM = FieldBook({
    "baby_gender": CustomField(type="enum", label="宝宝性别", choices={"girl": "女孩"}),
    "children": CustomField(type="int", label="孩子数量", min=0, max=12),
    "feeding": CustomField(type="list", label="喂养", choices=["母乳", "奶粉"]),
    "visit": CustomField(type="date", label="到店"),
    "vip": CustomField(type="bool", label="会员卡"),
})
FIELD_NAMES = [n for f in FIELDS for n in (f.name, *f.aliases)] + [
    "$where", "fields.city", "", "field.baby_gender", "宝宝性别", "field.children",
    "field.feeding", "field.visit", "field.vip", "field.$where", "field."]
nasty_terms = st.lists(
    st.builds(
        lambda neg, name, op, values: f"{neg}{name}{op}{','.join(values)}",
        st.sampled_from(["", "-", "－"]), st.sampled_from(FIELD_NAMES),
        st.sampled_from([":", "=", ">=", ">", "<=", "<", "≥", "＜", "：", "=>", "==", "!="]),
        st.lists(st.one_of(st.sampled_from(NASTY), nasty_text,
                           st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=6)),
                 min_size=1, max_size=4),
    ),
    min_size=1, max_size=6,
).map(" ".join)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(max_size=700), nasty_text, nasty_terms))
@example("x" * 100_000)
@example(" ".join(["tag:a"] * 200))
@example("tag:" + "a," * 300)
@example('{"$where": "sleep(1000)"}')
@example("tag:a\ud800")
@example("last_seen<" + "9" * 400 + "d")
def test_any_text_compiles_inside_the_whitelist_or_fails_cleanly(text):
    try:
        s = compile_segment(text, now=NOW, today=TODAY, tiers=TIERS, fields=CUSTOM)
    except SegmentError as e:
        assert e.message and 0 <= e.position <= len(text) and len(e.term) <= 41
        return
    check_filter(s.filter)
    bson.encode(s.filter)
    again = compile_segment(s.query, now=NOW, today=TODAY, tiers=TIERS, fields=CUSTOM)
    assert again.filter == s.filter


plain = st.text(st.characters(categories=["Lu", "Ll", "Lo", "Nd"]), min_size=1, max_size=8)
numbers = st.integers(0, 10**9).map(str)
ranges = st.tuples(st.integers(0, 500), st.integers(0, 500)).map(
    lambda ab: f"{min(ab)}..{max(ab)}")
ops = st.sampled_from([">=", ">", "<=", "<", "≥", "＜"])
eq = st.sampled_from([":", "=", "："])


def eq_term(field: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda o, vs: field + o + ",".join(vs), eq, st.lists(values, min_size=1,
                                                                           max_size=4))


def ordered_term(field: str, value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda o, v: field + o + v, ops, value)


terms = st.one_of(
    eq_term("tag", plain), eq_term("city", plain), eq_term("province", plain),
    eq_term("tier", st.sampled_from(TIERS)), ordered_term("tier", st.sampled_from(TIERS)),
    eq_term("points", st.one_of(numbers, ranges)), ordered_term("earned", numbers),
    ordered_term("last_seen", st.builds(lambda n, u: f"{n}{u}", st.integers(0, 500),
                                        st.sampled_from(["h", "d", "w", "天"]))),
    ordered_term("joined", st.just("7d")),
    eq_term("stage", st.sampled_from(["pregnant", "baby", "other", "unknown", "孕期", "宝宝"])),
    eq_term("week", st.integers(0, 42).map(str)), ordered_term("week", st.integers(0, 42).map(str)),
    eq_term("baby_months", st.integers(0, 120).map(str)),
    ordered_term("months", st.integers(0, 120).map(str)),
    eq_term("role", st.sampled_from(["consumer", "kol", "employee", "达人", "管理员"])),
    st.sampled_from(["member:yes", "member:no", "follow:关注", "follow:unsubscribed",
                     "lang:zh", "lang:en", "all"]),
)  # fmt: skip
queries = st.lists(st.tuples(st.booleans(), terms), min_size=1, max_size=8).map(
    lambda ts: " ".join(("-" if neg and t != "all" else "") + t for neg, t in ts))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(queries)
def test_valid_queries_compile(query):
    s = compile_segment(query, now=NOW, today=TODAY, tiers=TIERS)
    check_filter(s.filter)
    assert compile_segment(s.query, now=NOW, today=TODAY, tiers=TIERS).filter == s.filter


def holds(op: str, value: int | None, a: int, b: int) -> bool:
    """`value OP a` (b is the top of the range when op is '..')."""
    if value is None:
        return False
    return {":": a <= value <= b, ">=": value >= a, ">": value > a,
            "<=": value <= a, "<": value < a}[op]  # fmt: skip


def term_for(field: str, op: str, a: int, b: int) -> str:
    return f"{field}:{a}..{b}" if op == ":" else f"{field}{op}{a}"


range_ops = st.sampled_from([":", ">=", ">", "<=", "<"])
days_ = st.dates(date(1990, 1, 1), date(2100, 12, 31))


@settings(derandomize=True, max_examples=500, deadline=None)
@given(days_, st.integers(-320, 320), range_ops, st.integers(0, 42), st.integers(0, 42))
@example(date(2026, 5, 1), 280, ":", 0, 0)
@example(date(2026, 5, 1), 281, ">=", 0, 0)
@example(date(2026, 5, 1), -14, ":", 42, 42)
@example(date(2026, 5, 1), -15, ">=", 40, 0)
def test_week_range_agrees_with_lifestage(today, to_due, op, a, b):
    a, b = min(a, b), max(a, b)
    due = today + timedelta(days=to_due)
    flt = seg(term_for("week", op, a, b), today)
    doc = {"fields": {"due_date": due.isoformat()}}
    assert matches(flt, doc) == holds(op, pregnancy_week(due, today), a, b)


@settings(derandomize=True, max_examples=500, deadline=None)
@given(days_, st.integers(-60, 3800), range_ops, st.integers(0, 120), st.integers(0, 120))
@example(date(2026, 2, 28), 28, ":", 1, 1)  # born Jan 31: one month old on Feb 28
@example(date(2024, 2, 29), 29, ":", 1, 1)  # born Jan 31 in a leap year
@example(date(2026, 3, 30), 58, ":", 2, 2)  # born Jan 31: not two months old on Mar 30
@example(date(2026, 3, 31), 59, "<", 2, 0)
def test_months_range_agrees_with_lifestage(today, age_days, op, a, b):
    a, b = min(a, b), max(a, b)
    birthday = today - timedelta(days=age_days)
    flt = seg(term_for("baby_months", op, a, b), today)
    doc = {"fields": {"baby_birthday": birthday.isoformat()}}
    assert matches(flt, doc) == holds(op, baby_age_months(birthday, today), a, b)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(-50, 700)), range_ops, st.integers(0, 600),
       st.integers(0, 600), st.booleans())
def test_points_treat_a_missing_balance_as_zero(balance, op, a, b, negated):
    a, b = min(a, b), max(a, b)
    doc: dict[str, Any] = {} if balance is None else {"points": {"balance": balance}}
    flt = seg(("-" if negated else "") + term_for("points", op, a, b))
    assert matches(flt, doc) == (holds(op, balance or 0, a, b) != negated)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.integers(0, 24 * 400), st.sampled_from(["<", "<=", ">", ">="]),
       st.integers(0, 400), st.sampled_from(["h", "d", "w"]))
def test_last_seen_within_and_beyond_are_complements(hours_ago, op, n, unit):
    seen = NOW - timedelta(hours=hours_ago)
    flt = seg(f"last_seen{op}{n}{unit}")
    limit = timedelta(hours=n * {"h": 1, "d": 24, "w": 168}[unit])
    within = NOW - seen <= limit
    assert matches(flt, {"last_seen": seen}) == (within if op in ("<", "<=") else not within)
