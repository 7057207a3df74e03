"""Compiled segment filters mean on the database what they mean in plain Python: each query
selects exactly the profiles a Python oracle picks, on the embedded engine and, when
MONGODB_URL is set, on a real MongoDB server.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.marketing.segments import compile_segment
from bot.members.fields import FieldBook
from bot.members.lifestage import baby_age_months, pregnancy_week
from bot.settings import CustomField
from store.records import identity_key
from tests.support.backends import open_store

# A month's last day, so the month-end rule of baby_age_months is in play.
TODAY = date(2026, 2, 28)
NOW = datetime(2026, 2, 28, 4, 0, tzinfo=UTC)  # noon in Shanghai
TIERS = ["普通", "银卡", "金卡"]


def make_profiles() -> list[dict[str, Any]]:
    rng = random.Random(20260228)
    # Offsets sit on the boundaries that are easy to get wrong.
    to_due = [None, None, 281, 280, 274, 273, 140, 134, 133, 84, 78, 77, 0, -14, -15]
    age_days = [None, None, -1, 0, 27, 28, 30, 31, 58, 59, 180, 181, 365, 366, 800]
    seen_hours = [1, 47, 49, 24 * 29, 24 * 30 - 1, 24 * 30 + 1, 24 * 31, 24 * 100]
    docs: list[dict[str, Any]] = []
    for i in range(40):
        doc: dict[str, Any] = {
            "_id": f"p{i:02d}",
            "identity_keys": [identity_key("wechat", "wx", f"o{i}")],
            "identities": [{"channel": "wechat", "app_id": "wx", "openid": f"o{i}",
                            "unionid": None}],
            "first_seen": NOW - timedelta(days=200),
            "counters": {"inbound": i},
            "last_seen": NOW - timedelta(hours=seen_hours[i % len(seen_hours)]),
            "follow": {"state": ["subscribed", "unsubscribed", "unknown"][i % 3],
                       "changed_at": None},
            "tags": rng.sample(["孕中期", "孕晚期", "0-6月", "vip", "新客"], rng.randint(0, 3)),
            "fields": {},
        }
        fields = doc["fields"]
        if (city := rng.choice(["上海", "北京", "广州", "New York", None])) is not None:
            fields["city"] = city
        if (province := rng.choice(["广东", "浙江", None])) is not None:
            fields["province"] = province
        if (due := to_due[i % len(to_due)]) is not None:
            fields["due_date"] = (TODAY + timedelta(days=due)).isoformat()
        if (age := age_days[(i * 7) % len(age_days)]) is not None:
            fields["baby_birthday"] = (TODAY - timedelta(days=age)).isoformat()
        if i % 5:  # every fifth never joined
            member: dict[str, Any] = {"id": f"M{i}", "since": NOW - timedelta(days=i),
                                      "stage": ["pregnant", "baby", "other", "unknown"][i % 4]}
            if i % 7:
                member["tier"] = TIERS[i % 3]
            doc["member"] = member
        if i % 4:  # a quarter never got points: the whole subdocument is missing
            doc["points"] = {"balance": rng.choice([0, 5, 99, 100, 101, 500, -3]),
                             "earned": rng.choice([0, 50, 100, 800])}
        if (role := [None, "consumer", "kol", "employee", "manager", "admin"][i % 6]):
            doc["role"] = role
        if i % 3:
            doc["lang"] = "zh" if i % 2 else "en"
        # The brand's own fields, orders, social value and source: some members lack each.
        if (gender := [None, "girl", "boy", "unknown"][i % 4]) is not None:
            fields["baby_gender"] = gender
        if i % 3 != 1:
            fields["children"] = i % 4
        if i % 5 != 2:
            fields["feeding"] = rng.sample(["breast", "formula", "mixed"], rng.randint(0, 2))
        if i % 6:
            fields["first_visit"] = (TODAY - timedelta(days=i * 9)).isoformat()
            fields["weight_kg"] = round(2.5 + (i % 9) * 0.35, 2)
        if i % 2:
            fields["vip_card"] = bool(i % 3)
        if i % 4 != 3:
            spent = [0.0, 88.5, 99.9, 100.0, 1200.0][i % 5]
            doc["orders"] = {"count": i % 5, "spent": spent,
                             "last_at": NOW - timedelta(days=[1, 29, 31, 90][i % 4]),
                             "categories": {c: spent / 2 for c in
                                            (["奶粉"], ["奶粉", "纸尿裤"], ["玩具"], [])[i % 4]}}
            if i % 5 == 3:
                doc["orders"]["categories"]["奶粉"] = 0  # bought, then refunded in full
        if i % 3 != 2:
            doc["social"] = {"score": [0, 3.5, 20, 20.01, 57][i % 5]}
        if i % 7:
            doc["source"] = {"kind": ["qr", "referral", "import", "organic"][i % 4],
                             "campaign": ["春季快闪", None, "门店"][i % 3]}
        docs.append(doc)
    return docs


PROFILES = make_profiles()


FIELDS = FieldBook({
    "baby_gender": CustomField(type="enum", label={"zh": "宝宝性别", "en": "Baby gender"},
                               choices={"girl": "女孩", "boy": "男孩", "unknown": "还不知道"}),
    "children": CustomField(type="int", label="孩子数量", min=0, max=12),
    "feeding": CustomField(type="list", label="喂养方式",
                           choices={"breast": "母乳", "formula": "奶粉", "mixed": "混合"}),
    "first_visit": CustomField(type="date", label="首次到店"),
    "weight_kg": CustomField(type="decimal", label="出生体重"),
    "vip_card": CustomField(type="bool", label="有会员卡"),
})


def custom(d: dict[str, Any], name: str) -> Any:
    return d["fields"].get(name)


def orders(d: dict[str, Any]) -> dict[str, Any]:
    return dict(d.get("orders", {}))


def balance(d: dict[str, Any]) -> int:
    return int(d.get("points", {}).get("balance", 0))


def earned(d: dict[str, Any]) -> int:
    return int(d.get("points", {}).get("earned", 0))


def week(d: dict[str, Any]) -> int | None:
    due = d["fields"].get("due_date")
    return pregnancy_week(date.fromisoformat(due), TODAY) if due else None


def months(d: dict[str, Any]) -> int | None:
    born = d["fields"].get("baby_birthday")
    return baby_age_months(date.fromisoformat(born), TODAY) if born else None


def between(value: int | None, low: int, high: int) -> bool:
    return value is not None and low <= value <= high


def member(d: dict[str, Any]) -> dict[str, Any]:
    return dict(d.get("member", {}))


def within(d: dict[str, Any], key: str, delta: timedelta) -> bool:
    at = member(d).get("since") if key == "since" else d.get(key)
    return at is not None and at >= NOW - delta


Oracle = Callable[[dict[str, Any]], bool]

QUERIES: list[tuple[str, Oracle]] = [
    ("tag:孕中期", lambda d: "孕中期" in d["tags"]),
    ("tag:孕中期,vip", lambda d: bool({"孕中期", "vip"} & set(d["tags"]))),
    ("city:上海，北京", lambda d: d["fields"].get("city") in ("上海", "北京")),
    ('-city:"New York"', lambda d: d["fields"].get("city") != "New York"),
    ("province:广东", lambda d: d["fields"].get("province") == "广东"),
    ("tier>=银卡", lambda d: member(d).get("tier") in ("银卡", "金卡")),
    ("tier<银卡", lambda d: member(d).get("tier") == "普通"),
    ("points>=100", lambda d: balance(d) >= 100),
    ("points<100", lambda d: balance(d) < 100),
    ("points:0", lambda d: balance(d) == 0),
    ("-points≤5", lambda d: not balance(d) <= 5),
    ("earned:50..500", lambda d: 50 <= earned(d) <= 500),
    ("earned:0,800", lambda d: earned(d) in (0, 800)),
    ("last_seen<30d", lambda d: within(d, "last_seen", timedelta(days=30))),
    ("last_seen>48h", lambda d: not within(d, "last_seen", timedelta(hours=48))),
    ("joined<2w", lambda d: within(d, "since", timedelta(days=14))),
    ("joined>=2w", lambda d: "since" in member(d) and not within(d, "since", timedelta(days=14))),
    ("stage:孕期,baby", lambda d: member(d).get("stage") in ("pregnant", "baby")),
    ("week:20..28", lambda d: between(week(d), 20, 28)),
    ("week>=40", lambda d: between(week(d), 40, 99)),
    ("week<1", lambda d: week(d) == 0),
    ("-week:0..42", lambda d: week(d) is None),
    ("baby_months:0..6", lambda d: between(months(d), 0, 6)),
    ("months:1", lambda d: months(d) == 1),
    ("baby_months>=12", lambda d: between(months(d), 12, 10**6)),
    ("role:consumer", lambda d: d.get("role") in (None, "consumer")),
    ("-role:consumer", lambda d: d.get("role") not in (None, "consumer")),
    ("role:kol,员工", lambda d: d.get("role") in ("kol", "employee")),
    ("member:no", lambda d: "id" not in member(d)),
    ("follow:取关", lambda d: d["follow"]["state"] == "unsubscribed"),
    ("lang:en", lambda d: d.get("lang") == "en"),
    ("field.baby_gender:女孩", lambda d: custom(d, "baby_gender") == "girl"),
    ("宝宝性别:boy,还不知道", lambda d: custom(d, "baby_gender") in ("boy", "unknown")),
    ("-field.baby_gender:girl", lambda d: custom(d, "baby_gender") != "girl"),
    ("field.children>=2", lambda d: (custom(d, "children") or -1) >= 2),
    ("field.children:0..1", lambda d: custom(d, "children") in (0, 1)),
    ("field.feeding:母乳", lambda d: "breast" in (custom(d, "feeding") or [])),
    ("field.feeding:奶粉,混合",
     lambda d: bool({"formula", "mixed"} & set(custom(d, "feeding") or []))),
    ("field.first_visit>=2026-01-01",
     lambda d: (custom(d, "first_visit") or "") >= "2026-01-01"),
    ("field.first_visit:2025-12-01..2026-1-31",
     lambda d: "2025-12-01" <= (custom(d, "first_visit") or "") <= "2026-01-31"),
    ("field.weight_kg<3.2", lambda d: custom(d, "weight_kg") is not None
     and custom(d, "weight_kg") < 3.2),
    ("field.vip_card:是", lambda d: custom(d, "vip_card") is True),
    ("orders>=2", lambda d: orders(d).get("count", 0) >= 2),
    ("orders:0", lambda d: orders(d).get("count", 0) == 0),
    ("spent>=99.9", lambda d: orders(d).get("spent", 0) >= 99.9),
    ("spent:0..100", lambda d: 0 <= orders(d).get("spent", 0) <= 100),
    ("last_order<30d", lambda d: "last_at" in orders(d)
     and orders(d)["last_at"] >= NOW - timedelta(days=30)),
    ("category:奶粉", lambda d: orders(d).get("categories", {}).get("奶粉", 0) > 0),
    ("category:玩具,纸尿裤", lambda d: any(orders(d).get("categories", {}).get(c, 0) > 0
                                       for c in ("玩具", "纸尿裤"))),
    ("social>20", lambda d: d.get("social", {}).get("score", 0) > 20),
    ("social:0", lambda d: d.get("social", {}).get("score", 0) == 0),
    ("source:扫码", lambda d: d.get("source", {}).get("kind") == "qr"),
    ("campaign:春季快闪", lambda d: d.get("source", {}).get("campaign") == "春季快闪"),
    (
        "tag:孕中期 city:上海,北京 tier>=银卡 last_seen<30d -role:employee",
        lambda d: ("孕中期" in d["tags"] and d["fields"].get("city") in ("上海", "北京")
                   and member(d).get("tier") in ("银卡", "金卡")
                   and within(d, "last_seen", timedelta(days=30))
                   and d.get("role") != "employee"),
    ),
    ("all", lambda d: True),
]


def expected_ids(oracle: Oracle) -> set[str]:
    return {d["_id"] for d in PROFILES if oracle(d)}


@pytest.fixture
async def store(backend, server):
    async with open_store(backend, "segments", secantus=server) as s:
        await s._db["profiles"].insert_many([dict(d) for d in PROFILES])
        yield s


@pytest.mark.parametrize(("query", "oracle"), QUERIES, ids=[q for q, _ in QUERIES])
async def test_the_database_selects_what_the_oracle_selects(store, query, oracle):
    flt = compile_segment(query, now=NOW, today=TODAY, tiers=TIERS, fields=FIELDS).filter
    profiles = store._db["profiles"]
    found = {d["_id"] async for d in profiles.find(flt, {"_id": 1})}
    want = expected_ids(oracle)
    assert found == want
    assert await profiles.count_documents(flt) == len(want)


@pytest.mark.parametrize(("query", "oracle"), QUERIES[:-1], ids=[q for q, _ in QUERIES[:-1]])
def test_each_query_separates_the_profiles(query, oracle):
    # A filter that matched everyone or no one would pass the comparison above too easily.
    assert 0 < len(expected_ids(oracle)) < len(PROFILES)


def test_the_profiles_cover_the_boundaries():
    weeks = {week(d) for d in PROFILES}
    ages = {months(d) for d in PROFILES}
    assert {None, 0, 1, 20, 28, 29, 40, 42} <= weeks
    assert {None, 0, 1, 2, 5, 6, 12} <= ages
    assert sum("points" not in d for d in PROFILES) == 10
    assert sum("role" not in d for d in PROFILES) == 7
