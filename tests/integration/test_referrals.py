"""Referral QR codes: linking newcomers, share and referral points, and the abuse cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN, APP_PORT, make_settings
from tests.support.chat import TODAY, Chat, sign_up

pytestmark = pytest.mark.rasa


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url),
                           port=APP_PORT)


class Follower(Chat):
    async def event(self, event: str, key: str | None = None, **extra: str) -> str:
        self.f.clock = (self.f.clock or datetime.now(UTC).timestamp()) + 1  # distinct events
        status, body = await self.app.post_wechat(*self.f.request(
            self.f.event(event, key, **extra)))
        assert status == 200
        return self.f.read_reply(body).get("Content", "")


async def balance(app, chat: Chat) -> int:
    return (await app.store.ledger.balance((await chat.profile())["_id"]))[0]


async def test_a_members_qr_brings_a_friend_who_signs_up(app, wechat_api):
    alice = Follower(app, "o_alice")
    await sign_up(alice, date_answer=(TODAY + timedelta(days=100)).isoformat())
    invite = await alice.say("邀请好友")
    member_id = (await alice.profile())["member"]["id"]
    assert f"showqrcode?ticket=TICKET-ref_{member_id}" in invite and "20 积分" in invite
    assert "TICKET" in await alice.say("邀请码")
    assert len(wechat_api.qr_calls()) == 1  # created once, then kept on the profile
    assert wechat_api.qr_calls()[0].body["action_info"]["scene"]["scene_str"] == \
        f"ref_{member_id}"
    assert await balance(app, alice) == 100

    bob = Follower(app, "o_bob")
    welcome = await bob.event("subscribe", f"qrscene_ref_{member_id}", Ticket="t")
    assert "欢迎加入姐妹社区" in welcome
    bob_profile = await bob.profile()
    assert bob_profile["referral"]["by"] == (await alice.profile())["_id"]
    assert await balance(app, alice) == 120  # share: a new follower
    await bob.say("算了")
    await sign_up(bob, nickname="小波", date_answer=(TODAY + timedelta(days=60)).isoformat(),
                  mobile="13900000002")
    assert await balance(app, alice) == 170  # referral: the friend signed up

    # Bob unfollows and follows again by the same code: nobody earns anything more.
    await bob.event("unsubscribe")
    await bob.event("subscribe", f"qrscene_ref_{member_id}", Ticket="t")
    assert await balance(app, alice) == 170
    # Signing up again does not pay the referrer twice either.
    await sign_up(bob, nickname="小波", date_answer=(TODAY + timedelta(days=60)).isoformat(),
                  mobile="13900000002")
    assert await balance(app, alice) == 170
    assert await app.store.ledger.check() == []

    resp = await app.client.get(f"/admin/api/profiles/{(await alice.profile())['_id']}"
                                "/referrals", headers={"Authorization": f"Bearer {ADMIN}"})
    referred = (await resp.json())["referred"]
    assert [r["profile_id"] for r in referred] == [bob_profile["_id"]]


async def test_self_referral_and_a_second_referrer_earn_nothing(app):
    alice = Follower(app, "o_alice2")
    await sign_up(alice, date_answer=(TODAY + timedelta(days=100)).isoformat())
    await alice.say("邀请好友")
    alice_id = (await alice.profile())["member"]["id"]
    await alice.event("SCAN", f"ref_{alice_id}", Ticket="t")  # her own code
    assert await balance(app, alice) == 100
    assert "referral" not in await alice.profile()
    log = await app.store.interactions.latest((await alice.profile())["_id"], 5)
    scan = next(i for i in log if i["type"] == "event:scan")
    assert scan["referral"] == "self_referral"  # recorded on the interaction, for audit

    carol = Follower(app, "o_carol")
    await carol.say("我要注册")
    await carol.say("同意")
    dave = Follower(app, "o_dave2")
    await sign_up(dave, date_answer=(TODAY + timedelta(days=90)).isoformat(),
                  mobile="13900000004")
    await dave.say("邀请好友")
    dave_id = (await dave.profile())["member"]["id"]
    # Carol already follows: scanning links her (first code wins) but is no new follower.
    await carol.event("SCAN", f"ref_{alice_id}", Ticket="t")
    await carol.event("SCAN", f"ref_{dave_id}", Ticket="t")
    assert (await carol.profile())["referral"]["by"] == (await alice.profile())["_id"]
    assert await balance(app, alice) == 100 and await balance(app, dave) == 100


async def test_non_members_are_asked_to_join_before_inviting(app, wechat_api):
    erin = Follower(app, "o_erin")
    assert "注册会员后就能邀请好友" in await erin.say("邀请好友")
    assert wechat_api.qr_calls() == []


async def test_scrm_qr_makes_a_members_code_through_the_admin_api(app, wechat_api):
    import asyncio
    import os

    from tests.conftest import APP_ID, ROOT, TOKEN, scrm_bin

    alice = Follower(app, "o_cli_qr")
    env = {**os.environ, "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID,
           "SCRM_ADMIN_TOKEN": ADMIN, "SCRM_ENV_FILE": "/dev/null"}

    async def scrm_qr(openid: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            scrm_bin(), "qr", openid, "--url", f"http://127.0.0.1:{APP_PORT}", cwd=ROOT,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, _, err = await scrm_qr("o_cli_qr")
    assert code == 1 and "no such follower" in err
    await alice.say("你好")
    code, _, err = await scrm_qr("o_cli_qr")
    assert code == 1 and "not a member yet" in err
    await sign_up(alice, date_answer=(TODAY + timedelta(days=100)).isoformat())
    code, out, _ = await scrm_qr("o_cli_qr")
    member_id = (await alice.profile())["member"]["id"]
    assert code == 0 and f"scene ref_{member_id}" in out and "showqrcode?ticket=" in out
