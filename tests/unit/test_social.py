"""Social value (社交价值) through the core: the score of scripted histories, updates on the
events that change it, the daily job, the weekly KOL suggestion, and where every follower
came from. (Staff commands around members: test_social_commands.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from bot.members.referrals import CampaignNameError
from bot.members.social import Counts, explain, social_score
from tests.support.core import CoreHarness, core_harness, settings
from tests.support.marketing import BOSS, bid_in, member_doc, seed

SOCIAL = settings().social  # config.yml's weights: referral_member 10, follower 3, ...


@pytest.fixture
async def core() -> CoreHarness:
    harness = await core_harness(marketing={"admins": [BOSS]})
    await harness.say(BOSS, "你好")  # her profile exists once she has written
    return harness


async def social_of(core: CoreHarness, openid: str) -> dict[str, Any]:
    profile = await core.profile(openid)
    assert profile is not None
    return dict(profile.get("social") or {})  # type: ignore[call-overload]


async def sign_up(core: CoreHarness, openid: str, nickname: str, mobile: str,
                  due_in_days: int = 100) -> str:
    today = core.calendar.today(datetime.now(UTC))
    for text in ("我要注册", "同意", "同意", nickname, mobile, "1",
                 (today + timedelta(days=due_in_days)).isoformat()):
        await core.say(openid, text)
    done = await core.say(openid, "上海")
    assert "注册成功" in done
    return str((await core.profile(openid))["member"]["id"])


def test_the_score_of_a_scripted_history_comes_from_the_config_weights():
    # She referred 3 who joined, brought 5 followers, 2 sisters found her helpful, she
    # answered 4 polls and was here yesterday.
    score = social_score(Counts(referral_member=3, follower=5, share=0, helpful=2, poll=4,
                                days_away=1), SOCIAL)
    w = SOCIAL.weights
    assert (w.referral_member, w.follower, w.helpful, w.poll, w.recency) == (10, 3, 5, 1, 10)
    assert score.total == 68.67  # 30 + 15 + 10 + 4 + 10 x (1 - 1/30)
    assert score.parts["referral_member"] == {"count": 3, "points": 30.0}
    assert score.parts["recency"] == {"count": 1, "points": 9.67}
    assert explain(score.parts, SOCIAL.recency_days) == (
        "推荐入会 3 人 +30 · 带来关注 5 人 +15 · 扫码触达 0 人 +0 · 姐妹好评 2 次 +10 · "
        "参与投票 4 次 +4 · 近期活跃 1 天前 +9.67")


def test_recency_is_whole_today_and_nothing_from_recency_days_on():
    days = SOCIAL.recency_days
    points = {d: social_score(Counts(days_away=d), SOCIAL).total
              for d in (0, days // 2, days - 1, days, days + 20)}
    assert points == {0: 10.0, days // 2: 5.0, days - 1: round(10 / days, 2), days: 0.0,
                      days + 20: 0.0}
    assert social_score(Counts(), SOCIAL).total == 0.0  # never seen
    # Past recency_days the count stops too: a score that cannot move is not rewritten.
    assert social_score(Counts(days_away=days + 20), SOCIAL).parts["recency"]["count"] == days
    assert explain(social_score(Counts(days_away=90), SOCIAL).parts, days).endswith(
        f"近期活跃 {days} 天以上 +0")


async def history(core: CoreHarness, now: datetime) -> str:
    """The scripted history in the store; her profile id."""
    star = member_doc(1, last_seen=timedelta(days=1))
    sid = star["_id"]
    came: list[dict[str, Any]] = []
    for i in range(2, 7):  # 5 followers by her code, 3 of whom joined
        d = member_doc(i)
        d["source"] = {"kind": "referral", "scene": "ref_x", "campaign": None, "by": sid,
                       "at": now}
        d["referral"] = {"by": sid, "scene": "ref_x", "event": "subscribe", "at": now}
        if i > 4:
            del d["member"]
        came.append(d)
    refused = member_doc(7)  # joined with a mobile already on record: not hers to count
    refused["referral"] = {"by": sid, "event": "subscribe", "refused": "mobile_in_use"}
    left = member_doc(8, follow="unsubscribed")  # came by her code, left again
    left["source"] = {"kind": "referral", "by": sid, "at": now}
    del left["member"]
    await seed(core, [star, *came, refused, left])
    social, matches = core.core.social, core.store.matches
    for mentee, helpful in ((came[0], True), (came[1], True), (came[2], False)):
        match = await matches.invite(mentee["_id"], sid, now)
        assert match is not None
        await matches.add_feedback(match, mentee["_id"], helpful)
        await social.feedback_given(match, mentee["_id"], helpful, now)
        # What she said of her mentee counts for the mentee's mentor, nobody here.
        await social.feedback_given(match, sid, True, now)
    for poll in ("B00000A", "B00000B", "B00000C", "B00000D", "B00000A"):  # one twice
        await social.poll_answered(sid, poll, now)
    return sid


async def test_the_daily_job_counts_a_history_as_the_pure_score_does(core):
    now = datetime.now(UTC)
    sid = await history(core, now)
    result = await core.core.social.refresh_all(now)
    assert result["scored"] == result["changed"] == 5  # she, 3 who joined, the refused one
    star = await core.store.profiles.get(sid)
    assert star["social"]["score"] == 68.67
    assert {k: v["count"] for k, v in star["social"]["parts"].items()} == {
        "referral_member": 3, "follower": 5, "share": 0, "helpful": 2, "poll": 4,
        "recency": 1}
    # The same member recomputed alone (as an event does) agrees with the daily scan.
    again = await core.core.social.refresh(sid, now)
    assert again is not None and (again.total, again.parts) == (
        star["social"]["score"], star["social"]["parts"])


async def test_the_daily_job_recomputes_everyone_and_twice_changes_nothing(core):
    now = datetime.now(UTC)
    await history(core, now)
    social = core.core.social
    first = await social.refresh_all(now)
    before = {p["_id"]: p.get("social") async for p in
              core.store.profiles.fields_where({"social": {"$exists": True}}, ["social"])}
    assert first["scored"] == 5
    assert (await social.refresh_all(now))["changed"] == 0  # idempotent
    after = {p["_id"]: p.get("social") async for p in
             core.store.profiles.fields_where({"social": {"$exists": True}}, ["social"])}
    assert after == before  # not even `social.at` moved
    # A week on, everyone's recency has decayed: every score is recomputed.
    later = await social.refresh_all(now + timedelta(days=7))
    assert later["changed"] == later["scored"] == 5
    star = await core.profile("o_m0001")
    assert star["social"]["parts"]["recency"] == {"count": 8, "points": 7.33}
    # Past recency_days nothing moves any more: nothing is written.
    gone = now + timedelta(days=SOCIAL.recency_days + 5)
    assert (await social.refresh_all(gone))["changed"] == 5
    assert (await social.refresh_all(gone + timedelta(days=1)))["changed"] == 0


async def test_a_referral_signup_changes_her_score_at_once(core):
    member_id = await sign_up(core, "o_star", "星星", "13900000001")
    scene = f"ref_{member_id}"
    assert "social" not in await core.profile("o_star")  # nothing computed yet
    await core.event("o_friend", "subscribe", scene)
    await core.queue.run(core.core)  # the recompute the follow queued, as the worker runs it
    mine = await social_of(core, "o_star")
    assert (mine["parts"]["follower"]["count"], mine["score"]) == (1, 13.0)  # 3 + recency
    await core.say("o_friend", "算了")  # the sign-up the follow started
    await sign_up(core, "o_friend", "好友", "13900000002")
    assert [j.job for j in core.queue.jobs] == ["social_refresh"]  # none in her replies
    await core.queue.run(core.core)
    mine = await social_of(core, "o_star")
    assert mine["parts"]["referral_member"] == {"count": 1, "points": 10.0}
    assert mine["score"] == 23.0
    # The referral programme itself is as before: share and referral points, once each.
    entries = await core.store.ledger.entries((await core.profile("o_star"))["_id"], 10)
    assert sorted(e["reason"] for e in entries) == ["referral", "share", "signup"]


async def test_a_poll_answer_counts_at_once_and_once(core):
    await seed(core, [member_doc(1, tags=["会员"])])
    bid = bid_in(await core.say(BOSS, "/poll tag:会员 | 想听哪个讲座？ | 辅食 | 睡眠"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    assert "睡眠" in await core.say("o_m0001", "2")
    await core.queue.run(core.core)
    assert (await social_of(core, "o_m0001"))["parts"]["poll"] == {"count": 1, "points": 1.0}
    await core.say("o_m0001", "1")  # no second answer, no second count
    assert await core.queue.run(core.core) == 0
    assert (await social_of(core, "o_m0001"))["parts"]["poll"]["count"] == 1


async def test_a_mentees_helpful_answer_counts_for_her_mentor(core):
    await sign_up(core, "o_lin", "小林", "13900000011", due_in_days=60)
    await core.say("o_lin", "找姐妹")
    await core.say("o_lin", "同意")
    await sign_up(core, "o_mei", "小美", "13900000012", due_in_days=100)
    await core.say("o_mei", "找姐妹")
    assert "1. 小林" in await core.say("o_mei", "同意")
    await core.say("o_mei", "1")  # she asks 小林, who is further along, to be her sister
    await core.say("o_lin", "同意")
    [job] = core.queue.named("match_feedback")
    await core.queue.run(core.core, until=job.at + timedelta(seconds=1))
    assert "谢谢你的反馈" in await core.say("o_mei", "是")
    await core.queue.run(core.core)
    assert (await social_of(core, "o_lin"))["parts"]["helpful"] == {"count": 1,
                                                                    "points": 5.0}
    assert "谢谢你的反馈" in await core.say("o_lin", "是")  # the mentor's word on her mentee
    await core.queue.run(core.core)
    assert (await social_of(core, "o_mei")).get("parts", {}).get("helpful", {}).get(
        "count", 0) == 0


def on_weekday(weekday: int, core: CoreHarness) -> datetime:
    day = core.calendar.today(datetime.now(UTC))
    day += timedelta(days=(weekday - day.weekday()) % 7)
    return core.calendar.at(day, time(SOCIAL.hour, 30))


async def test_the_weekly_kol_suggestion_reaches_admins_on_its_weekday_only(core):
    def scored(i: int, score: float, **over: Any) -> dict[str, Any]:
        d = member_doc(i, **{k: v for k, v in over.items() if k != "role"})
        d["social"] = {"score": score, "parts": {"referral_member": {"count": i,
                                                                     "points": score}}}
        if "role" in over:
            d["role"] = over["role"]
        return d

    other_admin = member_doc(9)
    other_admin["role"] = "admin"
    await seed(core, [scored(1, 50.0), scored(2, 40.0, role="kol"),
                      scored(3, 30.0, role="employee"),
                      scored(4, 20.0, follow="unsubscribed"), scored(5, 10.0),
                      other_admin])
    kol = core.core.kol
    assert await kol.weekly(on_weekday((SOCIAL.kol_weekday + 1) % 7, core)) == 0
    assert core.texts_to(BOSS) == [] and core.texts_to("o_m0009") == []
    monday = on_weekday(SOCIAL.kol_weekday, core)
    assert await kol.weekly(monday) == 2  # the config admin and the admin by role
    [note] = core.texts_to(BOSS)
    assert core.texts_to("o_m0009") == [note]
    assert "1. 妈** · M0000000001 · 50" in note and "2. 妈** · M0000000005 · 10" in note
    for excluded in ("M0000000002", "M0000000003", "M0000000004", "M0000000009"):
        assert excluded not in note  # a KOL, staff, gone, an admin
    assert "妈妈1" not in note and "13900000001" not in note  # masked
    assert not any(t for t in core.texts_to("o_m0001"))  # members are not told
    await kol.weekly(monday + timedelta(hours=1))  # a second run that week: nothing twice
    assert core.texts_to(BOSS) == [note]


async def test_where_she_came_from_is_recorded_once_organic_qr_or_referral(core):
    boss = await core.profile(BOSS)
    member_id = await sign_up(core, "o_star", "星星", "13900000001")
    # Organic: a follow without a code; a later follow by a code changes nothing.
    await core.event("o_plain", "subscribe")
    plain = await core.profile("o_plain")
    assert (plain["source"]["kind"], plain["source"]["by"], plain["source"]["scene"]) == (
        "organic", None, None)
    await core.event("o_plain", "unsubscribe")
    await core.event("o_plain", "subscribe", f"ref_{member_id}")
    assert (await core.profile("o_plain"))["source"] == plain["source"]

    # A staff member's campaign code: attribution to her and the campaign, no points.
    qr = await core.core.referrals.campaign_qr(boss, "expo-2026")
    assert qr["scene"] == f"cq_{boss['_id']}_expo-2026" and len(qr["scene"]) <= 64
    assert await core.core.referrals.campaign_qr(await core.profile(BOSS), "expo-2026") == qr
    assert len(core.wechat.qr_calls()) == 1  # made once, then kept
    await core.event("o_expo", "subscribe", qr["scene"])
    expo = await core.profile("o_expo")
    assert {k: expo["source"][k] for k in ("kind", "campaign", "by")} == {
        "kind": "qr", "campaign": "expo-2026", "by": boss["_id"]}
    assert "referral" not in expo and await core.store.ledger.balance(boss["_id"]) == (0, 0)
    # She scans a member's code later: that is a referral link, but her source stays.
    await core.event("o_expo", "scan", f"ref_{member_id}")
    expo = await core.profile("o_expo")
    assert expo["source"]["kind"] == "qr" and expo["referral"]["event"] == "scan"

    # A member's referral code: source, link and share points as before.
    await core.event("o_friend", "subscribe", f"ref_{member_id}")
    friend = await core.profile("o_friend")
    star = await core.profile("o_star")
    assert (friend["source"]["kind"], friend["source"]["by"]) == ("referral", star["_id"])
    assert friend["referral"]["by"] == star["_id"]
    assert await core.store.ledger.balance(star["_id"]) == (120, 120)  # signup + share
    await core.queue.run(core.core)
    star = await core.profile("o_star")
    # Her score: one follower (o_friend), one already-following scan (o_expo).
    parts = star["social"]["parts"]
    assert (parts["follower"]["count"], parts["share"]["count"]) == (1, 1)


async def test_a_campaign_name_must_fit_a_wechat_scene(core):
    boss = await core.profile(BOSS)
    for bad in ("母婴展", "a" * 25, "-x", "expo 2026", ""):
        with pytest.raises(CampaignNameError):
            await core.core.referrals.campaign_qr(boss, bad)
    assert core.wechat.qr_calls() == []
    longest = await core.core.referrals.campaign_qr(boss, "A" * 24)
    assert len(longest["scene"]) <= 64
    # An unknown owner's code still records the campaign, crediting nobody.
    await core.event("o_lost", "subscribe", f"cq_{uuid.uuid4().hex}_expo")
    lost = await core.profile("o_lost")
    assert (lost["source"]["kind"], lost["source"]["campaign"], lost["source"]["by"]) == (
        "qr", "expo", None)


async def test_erasing_the_member_whose_code_brought_a_follower_takes_her_id_off_his_source(
        core):
    member_id = await sign_up(core, "o_gone", "阿离", "13900000009")
    await core.event("o_came", "subscribe", f"ref_{member_id}")
    assert (await core.profile("o_came"))["source"]["scene"] == f"ref_{member_id}"
    await core.core.rights.erase(await core.profile("o_gone"), "member", "注销",
                                 datetime.now(UTC))
    source = (await core.profile("o_came"))["source"]
    assert source["kind"] == "referral" and source["by"] is None and "scene" not in source


async def test_someone_who_wrote_before_sources_were_kept_is_unknown_not_credited(core):
    member_id = await sign_up(core, "o_code", "码码", "13900000008")
    await core.say("o_old", "你好")  # here before: her first contact recorded no source
    await core.event("o_old", "scan", f"ref_{member_id}")
    source = (await core.profile("o_old"))["source"]
    assert source["kind"] == "unknown" and source["by"] is None
