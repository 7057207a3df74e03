"""Marketers in the chat: roles, commands, segments, broadcasts within WeChat's limits, polls
and life-stage moments, through the real app (real Redis, real Rasa, fake WeChat API)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.settings import TemplateMessage
from tests.conftest import APP_ID, APP_PORT, make_settings
from tests.support.chat import Chat
from tests.support.marketing import (
    BOSS,
    SHANGHAI,
    audit,
    bid_in,
    boss,
    marketing,
    member_doc,
    member_sends,
    seed,
    status_of,
    texts_to,
    until,
)

pytestmark = pytest.mark.rasa

@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                         marketing=marketing()), port=APP_PORT)


# -- roles and authorisation ---------------------------------------------------------------
async def test_commands_from_consumers_are_ordinary_chat_but_audited(app, rasa_proxy):
    await seed(app, [member_doc(1)])
    consumer = Chat(app, "o_plain")
    reply = await consumer.say("/segment all")
    assert "人群" not in reply and "M0000000001" not in reply  # no data, no hint
    assert rasa_proxy.turns_of("o_plain") == ["/segment all"]  # NLU, like any message
    [entry] = await audit(app, "segment")
    assert entry["result"] == "refused" and entry["detail"] == "not staff"


async def test_admin_promotes_and_roles_limit_commands(app):
    admin = await boss(app)
    anna = Chat(app, "o_anna")
    await anna.say("你好")
    assert "→ 市场" in await admin.say("/role o_anna marketer")
    assert (await anna.profile())["role"] == "marketer"
    assert "人群「all」" in await anna.say("/segment all")  # now she may
    refused = await anna.say("/role o_boss_admin consumer")
    assert "不能使用 /role" in refused
    assert "不能修改自己的角色" in await admin.say(f"/role {BOSS} consumer")
    assert "未知角色" in await admin.say("/role o_anna superuser")
    # A manager may tag and look, but not broadcast.
    bea = Chat(app, "o_bea")
    await bea.say("你好")
    await admin.say("/role o_bea 社群经理")
    assert "不能使用 /broadcast" in await bea.say("/broadcast all | 你好")
    results = {(a["command"], a["result"]) for a in await audit(app)}
    assert {("role", "ok"), ("role", "refused"), ("role", "error"), ("segment", "ok"),
            ("broadcast", "refused")} <= results
    # Demoted: her commands are ordinary chat again.
    await admin.say("/role o_anna consumer")
    assert "人群" not in await anna.say("/segment all")


async def test_unknown_and_malformed_commands_get_usage(app):
    admin = await boss(app)
    assert "未知命令" in await admin.say("/frobnicate") and "/segment" in \
        await admin.say("/帮助")
    bad = await admin.say("/segment tier>=钻石")
    assert "钻石" in bad and "用法: /segment" in bad
    assert "格式: /points grant" in await admin.say("/points give x")
    assert "缺少" in await admin.say("/broadcast city:上海")


async def test_segment_smuggling_operators_is_refused_and_audited(app):
    await seed(app, [member_doc(i) for i in range(3)])
    admin = await boss(app)
    for query in ('city:{"$ne":null}', "$where:1", "fields.mobile:1", "tag:.*"):
        reply = await admin.say(f"/segment {query}")
        assert "人群「" not in reply or ": 0 人" in reply, query
    entries = await audit(app, "segment")
    assert len(entries) == 4
    assert all(e["result"] in ("error", "ok") for e in entries)
    assert sum(e["result"] == "error" for e in entries) >= 3


# -- segments, tags, points, stats ----------------------------------------------------------
async def test_segment_counts_with_masked_samples(app):
    await seed(app, [member_doc(i, tags=["孕中期"] if i % 2 else []) for i in range(10)]
               + [member_doc(99, city="北京", tags=["孕中期"])])
    admin = await boss(app)
    reply = await admin.say("/segment tag:孕中期 city:上海")
    assert "人群「tag:孕中期 city:上海」: 5 人" in reply
    samples = reply.splitlines()[1:]
    assert len(samples) == 3
    assert "139" not in reply and "妈妈" not in reply  # phones and names never shown
    assert all("妈*" in s for s in samples)


async def test_tag_points_grant_and_stats(app):
    docs = await seed(app, [member_doc(i) for i in range(4)] + [member_doc(9, city="北京")])
    admin = await boss(app)
    assert "已为 4 人添加标签「活动A」" in await admin.say("/tag add 活动A city:上海")
    assert "已为 0 人添加" in await admin.say("/tag add 活动A city:上海")  # idempotent
    for system in ("/tag add 孕中期 all", "/tag add tester member:yes", "/tag remove 会员 all"):
        assert "系统维护的标签" in await admin.say(system)
    tagged = await app.store.profiles.count_where({"tags": "活动A"})
    assert tagged == 4
    removed = await admin.say("/tag remove 活动A tag:活动A -city:北京 points<1 "
                              "last_seen<2d role:consumer")
    assert "已为 4 人移除标签「活动A」" in removed
    assert await app.store.profiles.count_where({"tags": "活动A"}) == 0
    await admin.say("/tag add 活动A city:上海")
    # Points: a grant lands once, even if the same WeChat message is retried.
    grant = await admin.say(f"/points grant {docs[4]['member']['id']} 30 线下活动")
    assert "发放 30 积分" in grant and "当前余额 30" in grant
    balance, _ = await app.store.ledger.balance(docs[4]["_id"])
    assert balance == 30
    assert "1 到 10000" in await admin.say(f"/points grant {docs[4]['member']['id']} -5 x")
    assert "找不到成员" in await admin.say("/points grant o_nobody 5 x")
    stats = await admin.say("/stats")
    assert "会员 5" in stats and "累计发放积分 30" in stats


async def test_points_grant_retry_grants_once(app):
    [doc] = await seed(app, [member_doc(1)])
    admin = await boss(app)
    xml = admin.f.text(f"/points grant {doc['member']['id']} 50 补偿")
    for _ in range(2):  # WeChat retries the same MsgId
        status, _ = await app.post_wechat(*admin.f.request(xml))
        assert status == 200
    await app.services.core.orchestrator.drain(10)
    assert (await app.store.ledger.balance(doc["_id"]))[0] == 50


# -- broadcasts -------------------------------------------------------------------------------
async def test_broadcast_preview_confirm_and_tally(app, wechat_api):
    docs = await seed(app, [
        member_doc(1, nickname="小红"), member_doc(2, nickname="小蓝"),
        member_doc(3, follow="unsubscribed"),  # never contacted
        member_doc(4, last_seen=timedelta(days=3)),  # outside 48 h, no template mapped
        member_doc(5, month_count=4),  # monthly cap reached
        member_doc(6, month_count=3),  # one left this month
    ])
    admin = await boss(app)
    preview = await admin.say("/broadcast city:上海 | 亲爱的{{ nickname }}，周六有讲座")
    bid = bid_in(preview)
    assert "6 人" in preview and f"/confirm {bid}" in preview
    assert preview.count("亲爱的") == 3 and "小红" not in preview and "小*" in preview
    assert "客服消息 3" in preview and "取关 1" in preview and "本月已达 4 条 1" in preview
    assert "跳过 3（" in preview and "48 小时外且无模板消息 1" in preview
    assert wechat_api.delivered() == []  # nothing before /confirm
    assert "已确认" in await admin.say(f"/confirm {bid}")
    assert await until(lambda: _done(app, bid))
    assert texts_to(wechat_api, "o_m0001") == ["亲爱的小红，周六有讲座"]
    assert texts_to(wechat_api, "o_m0002") == ["亲爱的小蓝，周六有讲座"]
    for quiet in ("o_m0003", "o_m0004", "o_m0005"):
        assert texts_to(wechat_api, quiet) == []
    tally = await app.store.campaigns.tally(bid)
    assert tally["sent"] == 3 and tally["skipped"] == 3
    assert tally["skipped:unsubscribed"] == 1 and tally["skipped:outside_window"] == 1
    assert tally["skipped:monthly_cap"] == 1
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    assert (await app.store.profiles.get(docs[5]["_id"]))["broadcasts"][month] == 4
    # Every send is in the member's history, and the marketer got the final tally.
    history = await app.store.interactions.latest(docs[0]["_id"], 5)
    assert history[0]["text"] == "亲爱的小红，周六有讲座" and history[0]["direction"] == "out"
    assert await until(lambda: _has(wechat_api, BOSS, "发送完成"))
    status = await admin.say(f"/status {bid}")
    assert "done" in status and "已发送 3" in status and "monthly_cap 1" in status
    assert "已确认" not in await admin.say(f"/confirm {bid}")  # twice: nothing more


async def _done(app, bid: str) -> bool:
    return await status_of(app, bid) == "done"


async def _has(wechat_api, openid: str, text: str) -> bool:
    return any(text in t for t in texts_to(wechat_api, openid))


async def test_preview_errors_change_nothing(app):
    await seed(app, [member_doc(1), member_doc(2, nickname="")])
    admin = await boss(app)
    assert "未知变量 phone" in await admin.say("/broadcast all | 你好 {{ phone }}")
    assert "模板语法错误" in await admin.say("/broadcast all | 你好 {{ nickname ")
    assert "没有符合条件的成员" in await admin.say("/broadcast city:拉萨 | 你好")
    assert await app.store.campaigns.recent(10) == []
    # A variable one of the sampled members lacks: an error now, not a blank later.
    missing = await admin.say("/broadcast all | {{ nickname }}你好 {{ week }}")
    assert "预览失败" in missing and "缺少变量" in missing


async def test_window_template_message_and_45015(start_app, namespace, rasa_proxy, wechat_api):
    settings = make_settings(namespace, rasa_proxy.url, wechat_api.url, marketing=marketing(
        template_messages={"lecture_invite": TemplateMessage(
            template_id="TPL-1", data={"thing1": "{{ nickname }}"})}))
    app = await start_app(settings, port=APP_PORT)
    await seed(app, [member_doc(1), member_doc(2, last_seen=timedelta(days=5)),
                     member_doc(3)])
    wechat_api.errcode_for["o_m0003"] = 45015
    admin = await boss(app)
    bid = bid_in(await admin.say("/broadcast member:yes | lecture_invite"))
    await admin.say(f"/confirm {bid}")
    assert await until(lambda: _done(app, bid))
    [tpl] = [c for c in wechat_api.template_sends() if c.body["touser"] == "o_m0002"]
    assert tpl.body["template_id"] == "TPL-1" and tpl.body["data"]["thing1"]["value"] == "妈妈2"
    tally = await app.store.campaigns.tally(bid)
    assert tally["sent"] == 2 and tally["skipped:window_closed"] == 1
    delivery = await app.store.campaigns.delivery(f"{bid}:" + (await app.store.profiles
                                                                .find_by_identity(
        "wechat", APP_ID, "o_m0002"))["_id"])
    assert delivery["via"] == "template"


async def test_quota_45009_pauses_and_confirm_resumes(app, wechat_api):
    await seed(app, [member_doc(i) for i in range(8)])
    wechat_api.quota_after = 3
    admin = await boss(app)
    bid = bid_in(await admin.say("/broadcast city:上海 | 通知"))
    await admin.say(f"/confirm {bid}")
    assert await until(lambda: _status_is(app, bid, "paused"))
    # She is told (the same quota may refuse that message too: /status shows it anyway).
    assert await until(lambda: _attempted(wechat_api, BOSS, "已暂停"))
    assert "paused" in await admin.say(f"/status {bid}")
    assert len(wechat_api.delivered()) == 3  # the day's quota (her "started" note is one)
    members_sent = {c.body["touser"] for c in member_sends(wechat_api)}
    tally = await app.store.campaigns.tally(bid)
    assert tally["sent"] == len(members_sent) >= 1
    assert tally["queued"] == 8 - len(members_sent)  # waiting, not dropped
    wechat_api.quota_after = None
    assert "已恢复发送" in await admin.say(f"/confirm {bid}")
    assert await until(lambda: _done(app, bid))
    to_members = [c.body["touser"] for c in wechat_api.delivered() if c.body["touser"] != BOSS]
    assert sorted(to_members) == sorted(set(to_members)) and len(to_members) == 8


async def _attempted(wechat_api, openid: str, text: str) -> bool:
    return any(text in c.body["text"]["content"] for c in wechat_api.sends()
               if c.body.get("touser") == openid)


async def _status_is(app, bid: str, status: str) -> bool:
    return await status_of(app, bid) == status


async def test_cancel_stops_within_a_second(start_app, namespace, rasa_proxy, wechat_api):
    settings = make_settings(namespace, rasa_proxy.url, wechat_api.url,
                             marketing=marketing(rate_per_second=5.0))
    app = await start_app(settings, port=APP_PORT)
    await seed(app, [member_doc(i) for i in range(40)])
    admin = await boss(app)
    bid = bid_in(await admin.say("/broadcast city:上海 | 慢慢发"))
    await admin.say(f"/confirm {bid}")
    assert await until(lambda: _count_members(wechat_api, 3))
    reply = await admin.say(f"/cancel {bid}")
    at_cancel = len(member_sends(wechat_api))
    assert "已取消" in reply
    await asyncio.sleep(2.0)
    after = len(member_sends(wechat_api))
    print(f"\ncancel: {at_cancel} sent when cancelled, {after} after 2 s (rate 5/s)")
    assert after - at_cancel <= 5  # at most one second's worth at the configured rate
    assert await status_of(app, bid) == "cancelled"
    tally = await app.store.campaigns.tally(bid)
    assert tally["skipped:cancelled"] == 40 - tally["sent"]
    assert tally["sent"] == after  # no member left in between


async def _count_members(wechat_api, n: int) -> bool:
    return len(member_sends(wechat_api)) >= n


async def test_confirm_expires_after_the_window(app, wechat_api):
    await seed(app, [member_doc(1)])
    admin = await boss(app)
    bid = bid_in(await admin.say("/broadcast all | 你好"))
    await app.store.campaigns.update(bid, {"expires_at": datetime.now(UTC) - timedelta(1)})
    assert "已作废" in await admin.say(f"/confirm {bid}")
    other = Chat(app, "o_other_marketer")
    await other.say("你好")
    await admin.say("/role o_other_marketer marketer")
    bid2 = bid_in(await admin.say("/broadcast all | 你好"))
    assert "不是你创建的" in await other.say(f"/confirm {bid2}")
    assert "不是你创建的" in await other.say(f"/cancel {bid2}")
    await asyncio.sleep(0.5)
    assert member_sends(wechat_api) == []


async def test_quiet_hours_defer_not_drop(start_app, namespace, rasa_proxy, wechat_api):
    now = datetime.now(SHANGHAI)
    start, end = now - timedelta(minutes=5), now + timedelta(minutes=50)
    settings = make_settings(namespace, rasa_proxy.url, wechat_api.url, marketing=marketing(
        quiet_hours=f"{start:%H:%M}-{end:%H:%M}"))
    app = await start_app(settings, port=APP_PORT)
    await seed(app, [member_doc(i) for i in range(3)])
    admin = await boss(app)
    preview = await admin.say("/broadcast member:yes | 晚安")
    assert "免打扰时段" in preview
    bid = bid_in(preview)
    assert "免打扰时段" in await admin.say(f"/confirm {bid}")
    await asyncio.sleep(1.5)
    assert member_sends(wechat_api) == []
    tally = await app.store.campaigns.tally(bid)
    assert tally == {"queued": 3}  # deferred, not dropped
    # The chunk waits in the job queue for the end of the quiet hours ...
    services = app.services
    jobs = await services.arq.queued_jobs(queue_name=services.keys.queue)
    deferred = [j for j in jobs if j.function == "campaign_send"]
    assert len(deferred) == 1
    runs_at = deferred[0].score / 1000
    assert abs(runs_at - end.replace(second=0, microsecond=0).timestamp()) < 1
    # ... and when it runs then, it sends.
    campaigns = services.core.campaigns
    campaigns.clock = lambda: datetime.now(UTC) + timedelta(minutes=60)
    await campaigns.send_chunk(*deferred[0].args)
    assert len(member_sends(wechat_api)) == 3


# -- polls and moments ------------------------------------------------------------------------
async def test_poll_answers_once_with_points(app, wechat_api):
    admin = await boss(app)
    mei = Chat(app, "o_poll_mei")
    await mei.say("你好")  # a member who wrote recently (inside 48 h)
    await app.store.profiles.update((await mei.profile())["_id"], {
        "member.id": "M00000000AA", "consents.privacy": {"accepted": True}})
    preview = await admin.say("/poll member:yes | 最想参加的活动？ | 线上讲座 | 产品试用")
    assert "最想参加的活动" in preview and "1. 线上讲座" in preview
    bid = bid_in(preview)
    await admin.say(f"/confirm {bid}")
    assert await until(lambda: _done(app, bid))
    [question] = texts_to(wechat_api, "o_poll_mei")
    assert "2. 产品试用" in question and "回复数字" in question
    assert "请回复 1 到 2" in await mei.say("7")
    thanks = await mei.say("2")
    assert "你选了「产品试用」" in thanks and "积分 +2" in thanks
    assert "你选了" not in await mei.say("1")  # her poll is over: "1" is chat now
    assert await app.store.campaigns.results(bid) == {2: 1}
    status = await admin.say(f"/status {bid}")
    assert "共 1 人作答" in status and "2. 产品试用: 1" in status
    # Points for the poll once: a second delivery of the same poll cannot pay again.
    mid = (await mei.profile())["_id"]
    assert (await app.store.ledger.balance(mid))[0] == 2


async def test_life_stage_moment_once_per_member_even_if_run_twice(app, wechat_api):
    today = datetime.now(SHANGHAI).date()
    # Week 12 today: due date 280 - 84 = 196 days away (the week lasts 7 days).
    due12 = today + timedelta(days=196 - 3)
    due20 = today + timedelta(days=280 - 20 * 7)
    await seed(app, [member_doc(1, due=due12), member_doc(2, due=due20),
                     member_doc(3, due=today + timedelta(days=100))])
    campaigns = app.services.core.campaigns
    await campaigns.run_moments()
    await campaigns.run_moments()  # the daily job ran twice
    assert await until(lambda: _count_members(wechat_api, 2))
    await asyncio.sleep(1.0)
    assert len(texts_to(wechat_api, "o_m0001")) == 1
    assert "孕12周" in texts_to(wechat_api, "o_m0001")[0]
    assert len(texts_to(wechat_api, "o_m0002")) == 1
    assert "孕20周" in texts_to(wechat_api, "o_m0002")[0]
    assert texts_to(wechat_api, "o_m0003") == []
    # The next day, the same member is still in week 12: not messaged again.
    campaigns.clock = lambda: datetime.now(UTC) + timedelta(days=1)
    await campaigns.run_moments()
    await asyncio.sleep(1.5)
    assert len(texts_to(wechat_api, "o_m0001")) == 1
