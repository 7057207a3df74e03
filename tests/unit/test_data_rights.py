"""A member's rights over her data (PIPL) through the core: what is kept and a copy of it
behind a single-use link, withdrawing the pregnancy-data and matching consents, deletion
with its cooling-off period, retention; and after erasure nothing anywhere names her.
(Over HTTP, the CLI and Redis: tests/integration/test_data_rights.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from store.member_data import COLLECTIONS
from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import BOSS, bid_in

PHONE = "13912345678"


@pytest.fixture
async def core() -> CoreHarness:
    return await core_harness(marketing={"admins": [BOSS]})


async def sign_up(core: CoreHarness, openid: str, nickname: str, due_in_days: int = 100,
                  mobile: str = PHONE) -> None:
    today = core.calendar.today(datetime.now(UTC))
    for text in ("我要注册", "同意", "同意", nickname, mobile, "1",
                 (today + timedelta(days=due_in_days)).isoformat(), "上海"):
        await core.say(openid, text)
    assert (await core.profile(openid))["member"]["id"]


def token_in(text: str) -> str:
    found = re.search(r"/me/export/(\S+)", text)
    assert found, text
    return found.group(1)


async def test_my_data_shows_what_is_kept_and_a_copy_opens_once(core):
    await sign_up(core, "o_a", "林小雨")
    reply = await core.say("o_a", "我的数据")
    assert "林小雨" in reply and "139****5678" in reply and PHONE not in reply
    assert "孕育信息（敏感个人信息）：同意" in reply and "政策版本 2026-11" in reply
    assert "消息记录" in reply and "仅能打开一次" in reply
    rights = core.core.rights
    token = token_in(reply)
    doc = await rights.open_export(token)
    assert doc is not None
    assert doc["profile"]["手机号 mobile"] == PHONE  # her own copy is whole
    assert doc["profile"]["昵称 nickname"] == "林小雨"
    assert any(m["text"] == "林小雨" for m in doc["messages"])
    assert {c["kind"] for c in doc["consent history"]} == {"privacy", "sensitive"}
    assert set(doc["records in every collection"]) >= {"profile", "interactions", "ledger"}
    json.dumps(doc, ensure_ascii=False)  # plain JSON, dates as text
    assert await rights.open_export(token) is None  # single use
    audit = [a["command"] for a in await core.store.audit.latest(20)]
    assert "export_link" in audit and "export" in audit


async def test_a_tampered_guessed_or_expired_link_opens_nothing(core):
    await sign_up(core, "o_b", "周周")
    rights = core.core.rights
    token = token_in(await core.say("o_b", "my data"))
    claim, _ = token.split(".")
    assert await rights.open_export(f"{claim}.{'0' * 32}") is None  # forged signature
    assert await rights.open_export("not-a-token") is None
    assert await rights.open_export("") is None
    body = json.loads(base64.urlsafe_b64decode(claim + "=" * (-len(claim) % 4)))
    # Another member's id in a link: the signature no longer matches.
    other = base64.urlsafe_b64encode(json.dumps({**body, "p": "someone-else"}).encode()
                                     ).decode().rstrip("=")
    assert await rights.open_export(f"{other}.{token.split('.')[1]}") is None
    # A link signed right but past its time (signed here with the app's own secret).
    secret = (await core.core.state.tokens.get("export-link-secret")).encode()
    old = base64.urlsafe_b64encode(json.dumps({**body, "e": 1}).encode()).decode().rstrip("=")
    good = hmac.new(secret, old.encode(), hashlib.sha256).hexdigest()[:32]
    assert await rights.open_export(f"{old}.{good}") is None
    # None of that spent the real link: it opens, once.
    assert await rights.open_export(token) is not None
    assert await rights.open_export(token) is None


async def test_withdrawing_pregnancy_data_deletes_it_and_stops_life_stage_messages(core):
    await sign_up(core, "o_c", "阿青", due_in_days=193)  # week 12 today: a moment is due
    before = await core.profile("o_c")
    assert before["fields"]["due_date"] and any(t.startswith("孕") for t in before["tags"])
    assert await core.core.matcher.card_of(before["_id"]) is None  # never opted in
    assert "删除你的预产期" in await core.say("o_c", "撤回孕育信息授权")
    assert "已撤回孕育信息授权" in await core.say("o_c", "同意")
    after = await core.profile("o_c")
    assert "due_date" not in after["fields"] and "baby_birthday" not in after["fields"]
    assert not any(t.startswith("孕") for t in after["tags"])
    assert after["member"]["id"] == before["member"]["id"]  # membership stays
    assert after["consents"]["sensitive"]["accepted"] is False
    assert [(c["kind"], c["accepted"]) for c in after["consent_history"]
            if c["kind"] == "sensitive"] == [("sensitive", True), ("sensitive", False)]
    await core.core.campaigns.run_moments()
    await core.queue.run(core.core)
    assert core.texts_to("o_c") == []  # no 孕12周 message for her


async def test_saying_no_changes_nothing(core):
    await sign_up(core, "o_d", "小鹿")
    await core.say("o_d", "撤回孕育信息授权")
    assert "什么都没有改变" in await core.say("o_d", "不同意")
    assert (await core.profile("o_d"))["fields"]["due_date"]


async def invited(core: CoreHarness, first: tuple[str, str], second: tuple[str, str],
                  phones: tuple[str, str]) -> None:
    """Both join matching; the second invites the first, who has not answered yet."""
    for (openid, nickname), days, mobile in zip((first, second), (60, 100), phones,
                                                strict=True):
        await sign_up(core, openid, nickname, due_in_days=days, mobile=mobile)
        await core.say(openid, "找姐妹")
        await core.say(openid, "同意")
    await core.say(second[0], "1")


async def matched_pair(core: CoreHarness) -> tuple[str, str]:
    await invited(core, ("o_lin", "小林"), ("o_mei", "美美子"), ("13900000001", "13900000002"))
    assert "已经认识啦" in await core.say("o_lin", "同意")
    return "o_lin", "o_mei"


async def test_leaving_matching_ends_the_match_kindly(core):
    lin, mei = await matched_pair(core)
    assert "不会再被推荐" in await core.say(mei, "退出姐妹匹配")
    assert "已退出姐妹匹配，进行中的匹配已结束" in await core.say(mei, "同意")
    note = core.texts_to(lin)[-1]
    assert "结束了这次匹配" in note and "退出" not in note  # no reason given
    mei_profile = await core.profile(mei)
    assert await core.core.matcher.card_of(mei_profile["_id"]) is None
    [match] = await core.store.matches.for_profile(mei_profile["_id"])
    assert match["status"] == "ended"
    assert mei_profile["consents"]["matching"]["accepted"] is False


async def test_deletion_waits_for_the_cooling_off_and_can_be_cancelled(core):
    await sign_up(core, "o_e", "桃子")
    profile = await core.profile("o_e")
    await core.store.ledger.award(profile["_id"], "k-extra", 30, "test", now=datetime.now(UTC))
    assert "冷静期" in await core.say("o_e", "注销")
    assert "将于" in await core.say("o_e", "同意")
    [job] = core.queue.named("member_erase")
    assert job.at is not None and job.at - datetime.now(UTC) > timedelta(days=6)
    assert "已取消注销" in await core.say("o_e", "取消注销")
    await core.queue.run(core.core, until=job.at + timedelta(seconds=1))
    assert await core.profile("o_e") is not None  # cancelled: nothing erased
    await core.say("o_e", "注销")
    await core.say("o_e", "同意")
    due = next(j for j in core.queue.named("member_erase") if j is not job).at
    await core.queue.run(core.core, until=due + timedelta(seconds=1))
    assert await core.profile("o_e") is None
    assert await core.store.member_data.tombstone(profile["_id"]) is not None
    # A later message starts a fresh profile: no member id, no points, no history.
    await core.say("o_e", "你好")
    fresh = await core.profile("o_e")
    assert fresh["_id"] != profile["_id"] and "member" not in fresh


async def test_after_erasure_nothing_anywhere_names_her_and_the_ledger_sum_holds(core):
    lin, mei = await matched_pair(core)
    await core.say(BOSS, "你好")
    bid = bid_in(await core.say(BOSS, "/poll member:yes | 想听哪个讲座？ | 辅食 | 睡眠"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    await core.say(mei, "2")  # her poll answer
    await core.say(mei, "对姐妹说 美美子想问你待产包准备了什么")
    await core.say(lin, "对姐妹说 美美子你好呀")  # her sister names her
    await core.say(mei, "签到")
    profile = await core.profile(mei)
    ids = [profile["identities"][0]["openid"], profile["member"]["id"], "13900000002",
           "美美子", profile["_id"]]
    total_before = await ledger_sum(core)
    counts = await core.core.rights.erase(profile, "staff:test", "test", datetime.now(UTC))
    assert counts["profiles"] == 1 and counts["interactions"] > 5
    # Every collection and every piece of shared state: her ids appear nowhere.
    db = core.store._db
    for name in await db.list_collection_names():
        for doc in await db[name].find().to_list(None):
            blob = json.dumps(doc, default=str, ensure_ascii=False)
            for value in ids:
                assert value not in blob, (name, value)
    assert await core.core.state.traces.find(ids) == {}
    assert await ledger_sum(core) == total_before  # kept, anonymised
    assert not await core.store.ledger.check()
    lin_profile = await core.profile(lin)
    assert lin_profile is not None and lin_profile["member"]["id"]  # her sister stays


async def ledger_sum(core: CoreHarness) -> int:
    rows = await core.store._db["ledger"].find().to_list(None)
    return sum(int(r["points"]) for r in rows)


async def test_every_collection_the_app_writes_is_covered_by_export_and_erasure(core):
    """A new collection must be given its treatment in store/member_data.py COLLECTIONS."""
    await matched_pair(core)
    await core.say(BOSS, "你好")
    bid = bid_in(await core.say(BOSS, "/poll member:yes | 周末? | 好 | 不好"))
    await core.say(BOSS, f"/confirm {bid}")
    await core.queue.run(core.core)
    await core.say("o_lin", "1")
    await core.say("o_mei", "注销")
    await core.say("o_mei", "同意")
    mei = await core.profile("o_mei")
    await core.core.rights.erase(mei, "member", "test", datetime.now(UTC))
    written = set(await core.store.member_data.collection_names())
    assert written - set(COLLECTIONS) == set(), "collections without an export/erasure rule"
    assert {"profiles", "interactions", "ledger", "matches", "deliveries", "poll_answers",
            "audit", "tombstones", "broadcasts"} <= written  # the scenario reached them


async def test_retention_strips_old_texts_and_erases_long_gone_followers(core):
    await sign_up(core, "o_f", "老会员")
    await core.event("o_gone", "subscribe")
    await core.event("o_gone", "unsubscribe")
    gone = await core.profile("o_gone")
    long_ago = datetime.now(UTC) - timedelta(days=400)
    await core.store._db["interactions"].update_many({}, {"$set": {"ts": long_ago}})
    await core.store._db["profiles"].update_one({"_id": gone["_id"]},
                                                {"$set": {"follow.changed_at": long_ago}})
    rights = core.core.rights
    dry = await rights.retention(datetime.now(UTC), dry_run=True)
    assert dry["texts"] > 5 and dry["erased"] == 1
    assert await core.profile("o_gone") is not None  # a dry run changes nothing
    done = await rights.retention(datetime.now(UTC), dry_run=False)
    assert done == dry
    assert await core.profile("o_gone") is None
    member = await core.profile("o_f")
    kept = await core.store.interactions.latest(member["_id"], 50)
    assert kept and all(i["text"] is None for i in kept)  # type and outcome stay
    assert all(i["outcome"] for i in kept)


async def test_admins_export_and_erase_in_the_chat_and_nobody_else_can(core):
    await sign_up(core, "o_g", "糖糖")
    member_id = (await core.profile("o_g"))["member"]["id"]
    await core.say(BOSS, "你好")
    link = await core.say(BOSS, f"/export {member_id}")
    assert "仅能打开一次" in link and await core.core.rights.open_export(token_in(link))
    assert "/export" not in await core.say("o_g", f"/export {member_id}")  # just chat
    assert "原因必填" in await core.say(BOSS, f"/erase {member_id}")
    scheduled = await core.say(BOSS, f"/erase {member_id} 电话申请删除")
    assert "将于" in scheduled and await core.profile("o_g") is not None
    assert "已删除" in await core.say(BOSS, f"/erase {member_id} now 工单 7")
    assert await core.profile("o_g") is None
    audit = [(a["command"], a["result"]) for a in await core.store.audit.latest(30)]
    assert ("export", "ok") in audit and ("erase", "ok") in audit and ("erased", "ok") in audit


async def test_members_without_a_recorded_consent_get_no_broadcast(core):
    from tests.support.marketing import member_doc, seed

    legacy = member_doc(2, tags=["会员"])
    del legacy["consents"]  # imported from an old system: never agreed here
    leaving = member_doc(3, tags=["会员"])
    leaving["erasure"] = {"due": datetime.now(UTC) + timedelta(days=5)}
    await seed(core, [member_doc(1, tags=["会员"]), legacy, leaving])
    await core.say(BOSS, "你好")
    preview = await core.say(BOSS, "/broadcast tag:会员 | 周末活动")
    assert "客服消息 1" in preview and "未同意隐私政策 2" in preview
    await core.say(BOSS, f"/confirm {bid_in(preview)}")
    await core.queue.run(core.core)
    assert [c.body["touser"] for c in core.wechat.delivered()
            if c.body["touser"] != BOSS] == ["o_m0001"]
    tally = await core.store.campaigns.tally(bid_in(preview))
    assert tally["skipped:no_consent"] == 2


async def test_leaving_matching_withdraws_a_pending_invitation(core):
    await invited(core, ("o_p", "小彤"), ("o_q", "小卉"), ("13900000011", "13900000012"))
    await core.say("o_q", "退出姐妹匹配")
    assert "1 个未回复的邀请已撤回" in await core.say("o_q", "同意")
    assert "已经处理过了" in await core.say("o_p", "同意")  # answering it now changes nothing
    [match] = await core.store.matches.for_profile((await core.profile("o_q"))["_id"])
    assert match["status"] == "withdrawn"
