"""Staff commands around members, through the core: /member shows her masked profile with
her social value explained, /stats the top contributors and where followers came from,
/field sets a custom field (checked, audited, sensitive values never shown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.members.social import Counts, social_score
from tests.support.core import CoreHarness, core_harness, settings
from tests.support.marketing import BOSS, member_doc, seed

SOCIAL = settings().social


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness(marketing={"admins": [BOSS]})
    await harness.say(BOSS, "你好")  # her profile exists once she has written
    return harness


def star() -> dict[str, Any]:
    d = member_doc(1, nickname="林小雨")
    now = datetime.now(UTC)
    score = social_score(Counts(referral_member=3, follower=5, helpful=2, poll=4,
                                days_away=1), SOCIAL)
    d["social"] = {"score": score.total, "parts": score.parts, "at": now}
    d["fields"].update(allergy="花生过敏", baby_gender="girl")
    d["orders"] = {"count": 3, "spent": 256.5, "last_at": now - timedelta(days=2),
                   "top_category": "纸尿裤", "categories": {"纸尿裤": 200.0, "湿巾": 56.5}}
    d["source"] = {"kind": "qr", "scene": "cq_x_expo", "campaign": "expo", "by": None,
                   "at": now}
    d["tags"] = ["会员", "孕中期", "孕22周"]
    return d


async def test_member_shows_her_profile_masked_with_her_social_value_explained(core):
    await seed(core, [star()])
    reply = await core.say(BOSS, "/member M0000000001")
    assert "林*" in reply and "林小雨" not in reply
    assert "139****0001" in reply and "13900000001" not in reply
    assert "过敏情况 ***" in reply and "花生过敏" not in reply  # a sensitive custom field
    assert "宝宝性别 女孩" in reply
    assert "订单: 3 笔 · 累计 ¥256.50" in reply and "常买 纸尿裤" in reply
    assert "来源: 二维码 · 活动 expo" in reply
    assert "社交价值 68.67" in reply
    assert "推荐入会 3 人 +30 · 带来关注 5 人 +15" in reply and "近期活跃 1 天前 +9.67" in reply
    assert "阶段 孕期" in reply and "普通" in reply
    assert "标签: 会员" in reply and "孕中期" not in reply  # no pregnancy detail beyond stage
    # Found by her mobile however typed, or her openid; the audit never holds the number.
    assert (await core.say(BOSS, "/member 139 0000 0001")) == reply
    assert (await core.say(BOSS, "/member o_m0001")) == reply
    log = [a for a in await core.store.audit.latest(10) if a["command"] == "member"]
    assert len(log) == 3 and all("13900000001" not in a["text"] for a in log)
    assert "找不到成员" in await core.say(BOSS, "/member M00000000FF")


async def test_member_is_for_staff_only(core):
    await seed(core, [star()])
    calls = len(core.nlu.calls)
    assert "林*" not in await core.say("o_m0001", "/member M0000000001")
    assert core.nlu.calls[calls:] == ["/member M0000000001"]  # ordinary chat for her
    assert (await core.store.audit.latest(1))[0]["result"] == "refused"


async def test_stats_lists_top_contributors_masked_and_counts_by_source(core):
    boss = await core.profile(BOSS)

    def doc(i: int, score: float | None, kind: str | None, campaign: str | None = None,
            member: bool = True) -> dict[str, Any]:
        d = member_doc(i, nickname=f"会员{i}号")
        if score is not None:
            d["social"] = {"score": score, "parts": {}}
        if kind is not None:
            d["source"] = {"kind": kind, "campaign": campaign, "by": boss["_id"]}
        if not member:
            del d["member"]
        return d

    await seed(core, [doc(1, 12.5, "organic"), doc(2, 80.0, "qr", "expo"),
                      doc(3, 40.0, "referral"), doc(4, None, "qr", "expo", member=False),
                      doc(5, 3.0, None), doc(6, 1.0, "organic", member=False),
                      doc(7, 2.0, "organic"), doc(8, 0.5, "organic")])
    reply = await core.say(BOSS, "/stats")
    top = reply.split("社交价值前 5:\n", 1)[1].splitlines()[:5]
    assert top == ["1. 会*** · M0000000002 · 80", "2. 会*** · M0000000003 · 40",
                   "3. 会*** · M0000000001 · 12.5", "4. 会*** · M0000000005 · 3",
                   "5. 会*** · M0000000007 · 2"]
    assert "会员2号" not in reply
    # BOSS wrote before any follow: she is one of the unrecorded.
    assert "来源: 自然关注 4（会员 3） · 二维码 2（会员 1） · 会员推荐 1（会员 1） · " \
           "未记录 2（会员 1）" in reply
    assert "活动码: expo 2（会员 1）" in reply


async def test_field_set_stores_a_checked_value_and_audits_it(core):
    await seed(core, [member_doc(1)])
    reply = await core.say(BOSS, "/field set M0000000001 baby_gender 女孩")
    assert "设置「宝宝性别」: 女孩（原来: （空））" in reply and "妈**" in reply
    assert (await core.profile("o_m0001"))["fields"]["baby_gender"] == "girl"
    listing = await core.say(BOSS, "/field list")
    assert "baby_gender 宝宝性别" in listing and "allergy 过敏情况" in listing
    [entry] = [a for a in await core.store.audit.latest(5) if a["command"] == "field"
               and "set" in a["text"]]
    assert entry["result"] == "ok" and entry["target"] == (await core.profile("o_m0001"))["_id"]


async def test_a_sensitive_fields_value_is_stored_but_never_shown_or_audited(core):
    await seed(core, [member_doc(1)])
    reply = await core.say(BOSS, "/field set 13900000001 allergy 花生过敏")
    assert "过敏情况」: ***" in reply and "花生过敏" not in reply
    assert (await core.profile("o_m0001"))["fields"]["allergy"] == "花生过敏"
    texts = [a["text"] + a["detail"] for a in await core.store.audit.latest(10)]
    assert texts and not any("花生过敏" in t for t in texts)
    staff = await core.profile(BOSS)
    kept = [i["text"] or "" for i in await core.store.interactions.latest(staff["_id"], 10)]
    assert any("allergy ***" in t for t in kept) and not any("花生过敏" in t for t in kept)
    # Without her consent to sensitive data, nothing is recorded.
    shy = member_doc(2)
    shy["consents"]["sensitive"]["accepted"] = False
    await seed(core, [shy])
    assert "没有同意保存敏感个人信息" in await core.say(BOSS, "/field set M0000000002 allergy 乳糖")
    assert "allergy" not in (await core.profile("o_m0002"))["fields"]


async def test_a_bad_value_or_unknown_field_changes_nothing_and_says_why(core):
    await seed(core, [member_doc(1)])
    before = await core.profile("o_m0001")
    bad = await core.say(BOSS, "/field set M0000000001 children 很多")
    assert "孩子数量要填整数" in bad
    unknown = await core.say(BOSS, "/field set M0000000001 hobby 跑步")
    assert "没有字段「hobby」" in unknown
    assert all(n in unknown for n in ("baby_gender", "card_no", "children", "allergy"))
    builtin = await core.say(BOSS, "/field set M0000000001 mobile 13800000000")
    assert "内置字段" in builtin
    assert "找不到成员" in await core.say(BOSS, "/field set M00000000FF card_no 1")
    assert (await core.profile("o_m0001"))["fields"] == before["fields"]
    results = [a["result"] for a in await core.store.audit.latest(4)]
    assert results == ["error"] * 4


async def test_only_managers_and_admins_set_fields(core):
    await seed(core, [member_doc(1)])
    marketer = member_doc(2)
    marketer["role"] = "marketer"
    await seed(core, [marketer])
    assert "不能使用 /field" in await core.say("o_m0002", "/field set M0000000001 card_no 9")
    calls = len(core.nlu.calls)
    await core.say("o_m0001", "/field set M0000000001 card_no 9")  # a member: just chat
    assert core.nlu.calls[calls:] == ["/field set M0000000001 card_no 9"]
    assert "card_no" not in (await core.profile("o_m0001"))["fields"]
    assert [a["result"] for a in await core.store.audit.latest(2)] == ["refused", "refused"]
