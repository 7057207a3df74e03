"""Sister matching in chat: consent, candidates by nickname and stage only, invitation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import APP_PORT, make_settings
from tests.integration.test_journeys import TODAY, Chat, sign_up

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
