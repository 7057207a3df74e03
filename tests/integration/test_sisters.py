"""Sister matching in chat: consent, candidates by nickname and stage only, invitation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import APP_PORT, make_settings
from tests.support.chat import TODAY, Chat, sign_up

pytestmark = pytest.mark.rasa


@pytest.fixture
async def app(start_app, namespace, rasa_proxy):
    return await start_app(make_settings(namespace, rasa_proxy.url), port=APP_PORT)


async def test_two_members_find_each_other_and_one_invites(app):
    lin = Chat(app, "o_lin")
    await sign_up(lin, nickname="小林", date_answer=(TODAY + timedelta(days=60)).isoformat())
    assert "你也会被推荐给其他姐妹" in await lin.say("帮我找姐妹")
    assert "暂时没有找到合适的姐妹" in await lin.say("同意")  # nobody else opted in yet
    assert (await lin.profile())["consents"]["matching"]["accepted"] is True

    mei = Chat(app, "o_mei")
    await sign_up(mei, nickname="小美", date_answer=(TODAY + timedelta(days=100)).isoformat())
    await mei.say("找姐妹")
    listing = await mei.say("同意")
    assert "为你找到这些姐妹：\n1. 小林（孕31周）" in listing and "回复数字邀请她" in listing
    assert "138" not in listing and "上海" not in listing  # nickname and stage only
    assert "请回复列表里的数字" in await mei.say("九")
    assert "已记录你对 小林 的邀请" in await mei.say("1")
    mei_id = (await mei.profile())["_id"]
    [invite] = await app.store.matches.for_profile(mei_id)
    assert invite["to"] == (await lin.profile())["_id"] and invite["status"] == "invited"
    # Asking again: no consent question (it is kept) and 小林 is not suggested twice.
    assert "暂时没有找到合适的姐妹" in await mei.say("找姐妹")


async def test_matching_needs_membership_and_consent(app):
    visitor = Chat(app, "o_visitor")
    assert "先发送「我要注册」" in await visitor.say("找姐妹")
    ann = Chat(app, "o_ann")
    await sign_up(ann, nickname="安安", date_answer=(TODAY + timedelta(days=90)).isoformat())
    await ann.say("找姐妹")
    assert "不参与匹配" in await ann.say("不同意")
    assert (await ann.profile())["consents"]["matching"]["accepted"] is False
    bo = Chat(app, "o_bo")
    await sign_up(bo, nickname="波波", date_answer=(TODAY + timedelta(days=80)).isoformat())
    await bo.say("找姐妹")
    assert "暂时没有找到合适的姐妹" in await bo.say("同意")  # ann said no: never suggested


@pytest.fixture
async def app_api(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url),
                           port=APP_PORT)


async def pushed_to(wechat_api, openid: str, n: int = 1) -> list[str]:
    """Texts the bot pushed (customer-service API) to one follower, once n have arrived."""
    for _ in range(100):
        texts = [c.body["text"]["content"] for c in wechat_api.sends()
                 if c.body["touser"] == openid]
        if len(texts) >= n:
            return texts
        await asyncio.sleep(0.05)
    return texts


async def two_matched_sisters(app, wechat_api) -> tuple[Chat, Chat, str]:
    lin = Chat(app, "o_lin2")
    await sign_up(lin, nickname="小林", date_answer=(TODAY + timedelta(days=60)).isoformat())
    await lin.say("找姐妹")
    await lin.say("同意")
    mei = Chat(app, "o_mei2")
    await sign_up(mei, nickname="小美", date_answer=(TODAY + timedelta(days=100)).isoformat())
    await mei.say("找姐妹")
    await mei.say("同意")
    assert "已记录你对 小林 的邀请" in await mei.say("1")
    [invitation] = await pushed_to(wechat_api, "o_lin2")
    assert "姐妹 小美（孕25周）想认识你" in invitation  # only nickname and stage
    [match] = await app.store.matches.for_profile((await mei.profile())["_id"])
    return lin, mei, match["_id"]


async def test_double_opt_in_introduction_relay_feedback_and_unmatch(app_api, wechat_api):
    app = app_api
    lin, mei, match_id = await two_matched_sisters(app, wechat_api)
    # Nothing is shared before she says yes; her "同意" answers the invitation.
    assert "你和 小美 已经认识啦" in await lin.say("同意")
    assert "小林 同意认识你啦" in (await pushed_to(wechat_api, "o_mei2"))[0]
    assert (await app.store.matches.get(match_id))["status"] == "accepted"
    keys = app.services.keys
    assert await app.services.redis.exists(f"arq:job:{keys.queue}:match_feedback:{match_id}")

    # Relayed messages: the text goes through, a phone number in it does not.
    assert "已转达给 小林" in await mei.say("对姐妹说 你好呀，我的电话是13812345678")
    relayed = (await pushed_to(wechat_api, "o_lin2", 2))[1]
    assert relayed == "姐妹 小美 对你说：你好呀，我的电话是138****5678"

    # A week later (the scheduled job's work): both are asked; answers feed the ranking.
    assert await app.services.core.feedback.ask(match_id, datetime.now(UTC)) == 2
    assert "认识一周啦" in (await pushed_to(wechat_api, "o_lin2", 3))[2]
    assert "谢谢你的反馈" in await lin.say("是")
    assert "谢谢你的反馈" in await mei.say("否")
    match = await app.store.matches.get(match_id)
    lin_id, mei_id = (await lin.profile())["_id"], (await mei.profile())["_id"]
    assert match["feedback"] == {lin_id: True, mei_id: False}
    mei_card = await app.services.core.matcher.card_of(mei_id)
    assert (mei_card["fb_n"], mei_card["fb_sum"]) == (1, 1)  # lin found mei helpful

    # Unmatch: she is told; the load on both is released.
    assert "已结束这次匹配" in await mei.say("解除匹配")
    assert "你的姐妹结束了这次匹配" in (await pushed_to(wechat_api, "o_lin2", 4))[3]
    assert (await app.store.matches.get(match_id))["status"] == "ended"
    assert "还没有匹配的姐妹" in await mei.say("对姐妹说 还在吗")


async def test_a_declined_invitation_tells_the_inviter_kindly(app_api, wechat_api):
    lin, mei, match_id = await two_matched_sisters(app_api, wechat_api)
    assert "已婉拒" in await lin.say("不同意")
    assert "对方暂时不方便" in (await pushed_to(wechat_api, "o_mei2"))[0]
    assert (await app_api.store.matches.get(match_id))["status"] == "declined"
    assert "暂时没有找到合适的姐妹" in await mei.say("找姐妹")  # not suggested again


async def test_block_ends_the_match_without_telling_her(app_api, wechat_api):
    lin, mei, match_id = await two_matched_sisters(app_api, wechat_api)
    await lin.say("同意")
    before = len(await pushed_to(wechat_api, "o_lin2"))
    assert "已结束这次匹配" in await mei.say("屏蔽姐妹")
    await asyncio.sleep(0.3)
    assert len(await pushed_to(wechat_api, "o_lin2")) == before  # nothing sent to her
    assert (await app_api.store.matches.get(match_id))["status"] == "blocked"


async def test_an_invitation_mid_journey_is_asked_after_her_own_question(
        app_api, wechat_api):
    lin = Chat(app_api, "o_lin3")
    await sign_up(lin, nickname="小林", date_answer=(TODAY + timedelta(days=60)).isoformat())
    await lin.say("找姐妹")
    await lin.say("同意")
    assert "隐私政策" in await lin.say("我要注册")  # she starts updating her details
    mei = Chat(app_api, "o_mei3")
    await sign_up(mei, nickname="小美", date_answer=(TODAY + timedelta(days=100)).isoformat())
    await mei.say("找姐妹")
    await mei.say("同意")
    await mei.say("1")  # the invitation reaches lin while her sign-up waits for an answer
    # Her "同意" answers her own (privacy) question; then the invitation is put to her.
    reply = await lin.say("同意")
    assert "敏感个人信息" in reply and "小美（孕25周）想认识你" in reply
    assert "认识啦" not in reply  # nothing accepted on her behalf
    reply = await lin.say("同意")  # now, knowingly, to the invitation
    assert "你和 小美 已经认识啦" in reply and "敏感个人信息" in reply  # then sign-up resumes
    assert "怎么称呼" in await lin.say("同意")


async def test_an_unseen_invitation_is_asked_in_full_before_any_answer_counts(
        app_api, wechat_api):
    lin, _mei, match_id = await two_matched_sisters(app_api, wechat_api)
    # Say the push never reached her: her next message is not taken as an answer.
    reply = await lin.say("你好")
    assert "小美（孕25周）想认识你" in reply and "愿意吗" in reply
    assert (await app_api.store.matches.get(match_id))["status"] == "invited"
    assert "不会告诉对方原因" in await lin.say("不同意")
