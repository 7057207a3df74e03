"""`scrm qr --for <member> --campaign NAME` over real HTTP: the admin route makes a staff
member's, KOL's or member's campaign code once through the strict fake WeChat API, and a
follow by it records where she came from. The old `scrm qr OPENID` still works."""

from __future__ import annotations

import asyncio

import pytest

from scrm import cli
from scrm.follower import Follower
from tests.conftest import ADMIN, APP_ID, ROOT, TOKEN, closed_port_url, make_settings
from tests.support.marketing import member_doc


@pytest.fixture
async def app(start_app, namespace, wechat_api):
    return await start_app(make_settings(namespace, closed_port_url(), wechat_api.url))


@pytest.fixture(autouse=True)
def cli_env(monkeypatch):
    for name, value in {"WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID,
                        "SCRM_ADMIN_TOKEN": ADMIN, "SCRM_ENV_FILE": "/dev/null"}.items():
        monkeypatch.setenv(name, value)


async def scrm_qr(app, capsys, *args: str) -> tuple[int, str, str]:
    """`scrm qr ...` against the app (in a thread: the CLI's HTTP call blocks)."""
    url = str(app.client.make_url("")).rstrip("/")

    def run() -> tuple[int, str]:
        try:
            cli.main(["--config", str(ROOT / "config.yml"), "qr", *args, "--url", url])
        except SystemExit as e:  # sys.exit("scrm: ...") is what a shell would print
            return (0, "") if e.code in (None, 0) else (1, str(e.code))
        return 0, ""

    code, message = await asyncio.to_thread(run)
    out, err = capsys.readouterr()
    return code, out, err + message


async def test_scrm_qr_for_a_member_and_campaign_through_the_admin_route(app, wechat_api,
                                                                         capsys):
    kol = member_doc(1)
    kol["role"] = "kol"
    await app.store._db["profiles"].insert_one(kol)
    code, out, _ = await scrm_qr(app, capsys, "--for", "13900000001", "--campaign", "spring")
    assert code == 0 and "scene cq_M0000000001_spring" in out and "campaign spring" in out
    assert "showqrcode?ticket=" in out
    [call] = wechat_api.qr_calls()
    assert call.body["action_info"]["scene"]["scene_str"] == "cq_M0000000001_spring"
    # Asked again (by member id): the same code, not a second one.
    code, again, _ = await scrm_qr(app, capsys, "--for", "M0000000001", "--campaign", "spring")
    assert code == 0 and again == out and len(wechat_api.qr_calls()) == 1

    # A follow by it: attributed to her and the campaign.
    f = Follower(token=TOKEN, openid="o_came_by_spring")
    status, _ = await app.post_wechat(*f.request(f.event("subscribe",
                                                         "qrscene_cq_M0000000001_spring")))
    assert status == 200
    await app.services.core.orchestrator.drain(5)
    came = await app.store.profiles.find_by_identity("wechat", APP_ID, "o_came_by_spring")
    assert (came["source"]["kind"], came["source"]["campaign"], came["source"]["by"]) == (
        "qr", "spring", kol["_id"])


async def test_scrm_qr_refuses_what_it_cannot_make(app, wechat_api, capsys):
    await app.store._db["profiles"].insert_one(member_doc(1))
    code, _, err = await scrm_qr(app, capsys, "--for", "M0000000001", "--campaign", "春季")
    assert code == 1 and "campaign name" in err and "letters, digits" in err
    code, _, err = await scrm_qr(app, capsys, "--for", "nobody", "--campaign", "spring")
    assert code == 1 and "no such follower" in err
    code, _, err = await scrm_qr(app, capsys)
    assert code == 1 and "name the member" in err
    assert wechat_api.qr_calls() == []
    # The old form: a member's own referral code by openid.
    code, out, _ = await scrm_qr(app, capsys, "o_m0001")
    assert code == 0 and "scene ref_M0000000001" in out
    resp = await app.client.post("/admin/api/qrcode?for=M0000000001&campaign=spring")
    assert resp.status == 401  # the admin token is still required
