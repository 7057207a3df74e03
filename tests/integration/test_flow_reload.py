"""Changing flows without a deploy: reload swaps a checked version; a broken one is refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import date, timedelta

import pytest

from scrm.follower import Follower
from tests.conftest import ADMIN, APP_ID, APP_PORT, ROOT, TOKEN, make_settings, scrm_bin

pytestmark = pytest.mark.rasa
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def flows_dir(tmp_path):
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    return tmp_path / "flows"


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, flows_dir):
    return await start_app(make_settings(namespace, rasa_proxy.url,
                                         app={"flows_dir": str(flows_dir)}), port=APP_PORT)


async def ask_help(app, openid: str = "o_reload") -> str:
    f = Follower(token=TOKEN, openid=openid)
    status, body = await app.post_wechat(*f.request(f.text("帮助")))
    assert status == 200
    return f.read_reply(body)["Content"]


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_an_edited_text_goes_live_on_reload(app, flows_dir):
    assert (await ask_help(app)).startswith("我可以帮你")
    edit(flows_dir / "system.yml", "我可以帮你：", "姐妹，我可以帮你：")
    assert (await ask_help(app)).startswith("我可以帮你")  # not before the reload
    resp = await app.client.post("/admin/api/flows/reload", headers=AUTH)
    data = await resp.json()
    assert resp.status == 200 and data["ok"] and data["version"] != data["previous"]
    assert (await ask_help(app)).startswith("姐妹，我可以帮你")


async def test_a_broken_file_is_refused_and_the_running_version_stays(app, flows_dir):
    before = (await (await app.client.get("/admin/api/flows", headers=AUTH)).json())["version"]
    edit(flows_dir / "signup.yml", "collect: mobile", "collect: phone")
    edit(flows_dir / "system.yml", "我可以帮你：", "改坏了：")
    resp = await app.client.post("/admin/api/flows/reload", headers=AUTH)
    data = await resp.json()
    assert resp.status == 422 and data["ok"] is False and data["version"] == before
    assert any("signup.yml" in e and "unknown slot 'phone'" in e for e in data["errors"])
    assert (await ask_help(app)).startswith("我可以帮你")  # the old version answers
    now = (await (await app.client.get("/admin/api/flows", headers=AUTH)).json())["version"]
    assert now == before


async def test_messages_in_flight_during_a_reload_are_all_answered(app, flows_dir):
    edit(flows_dir / "system.yml", "我可以帮你：", "新版本：")
    tasks = [asyncio.create_task(ask_help(app, f"o_flight_{i}")) for i in range(12)]
    await asyncio.sleep(0.05)
    resp = await app.client.post("/admin/api/flows/reload", headers=AUTH)
    assert resp.status == 200
    replies = await asyncio.gather(*tasks)
    assert all(r.startswith(("我可以帮你", "新版本")) for r in replies)  # old or new, never none


async def test_reload_needs_the_admin_token(app):
    assert (await app.client.post("/admin/api/flows/reload")).status == 401


async def test_cli_reload_keeps_the_model_when_nlu_is_unchanged(app, flows_dir, rasa_server):
    edit(flows_dir / "system.yml", "我可以帮你：", "命令行重载：")
    env = {**os.environ, "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID,
           "SCRM_ADMIN_TOKEN": ADMIN, "RASA_URL": rasa_server, "SCRM_ENV_FILE": "/dev/null"}
    proc = await asyncio.create_subprocess_exec(
        scrm_bin(), "flows", "reload", "--dir", str(flows_dir), "--url",
        f"http://127.0.0.1:{APP_PORT}", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "NLU data unchanged: no retraining" in out.decode()
    assert "reloaded: version" in out.decode()
    assert (await ask_help(app)).startswith("命令行重载")


async def test_life_stage_tags_move_with_the_calendar(app):
    profiles = app.store.profiles
    f = Follower(token=TOKEN, openid="o_stage")
    await app.post_wechat(*f.request(f.text("你好")))
    await app.services.core.orchestrator.drain(5)
    p = await profiles.find_by_identity("wechat", APP_ID, "o_stage")
    due = date.today() + timedelta(days=100)
    await profiles.update(p["_id"], {"fields.role": "expecting", "fields.due_date":
                                     due.isoformat(), "member.id": "M1"})
    stages = app.services.core.stages
    await stages.refresh(await profiles.get(p["_id"]), date.today())
    assert "孕中期" in (await profiles.get(p["_id"]))["tags"]
    # Seven weeks later the same member is in the third trimester, without any new input.
    later = date.today() + timedelta(days=49)
    await stages.refresh(await profiles.get(p["_id"]), later)
    tags = (await profiles.get(p["_id"]))["tags"]
    assert "孕晚期" in tags and "孕中期" not in tags
    # The daily job runs over every member.
    assert await stages.refresh_all() == 1
    assert "孕中期" in (await profiles.get(p["_id"]))["tags"]  # today's date again


async def test_a_draft_flow_is_tried_by_testers_before_it_goes_live(
        start_app, namespace, rasa_proxy, flows_dir):
    (flows_dir / "help_v2.yml").write_text(
        "flows:\n"
        "  help_v2:\n"
        "    description: new help, being tried\n"
        "    draft: true\n"
        "    triggers: {intents: [help], keywords: [帮助]}\n"
        "    steps: [{say: help_v2}]\n"
        "templates:\n"
        "  help_v2: {zh: 新版帮助, en: new help}\n")
    app = await start_app(make_settings(namespace, rasa_proxy.url,
                                        app={"flows_dir": str(flows_dir)},
                                        members={"testers": ["o_manager"]}), port=APP_PORT)
    assert await ask_help(app, "o_manager") == "新版帮助"  # the manager tries the draft
    assert (await ask_help(app, "o_member")).startswith("我可以帮你")  # members: live flow
    # Going live: drop the draft mark (and retire the old flow), then reload.
    edit(flows_dir / "help_v2.yml", "    draft: true\n", "")
    edit(flows_dir / "system.yml",
         "triggers: {intents: [help], keywords: [帮助], menu: [MENU_HELP]}",
         "triggers: {menu: [MENU_HELP]}")
    assert (await app.client.post("/admin/api/flows/reload", headers=AUTH)).status == 200
    assert await ask_help(app, "o_member") == "新版帮助"


async def test_a_campaign_qr_scene_starts_its_flow_and_profile_fields_steer_it(
        start_app, namespace, rasa_proxy, flows_dir):
    (flows_dir / "campaign.yml").write_text(
        "flows:\n"
        "  store_visit:\n"
        "    description: 门店海报二维码\n"
        "    triggers: {scenes: [store_001]}\n"
        "    steps:\n"
        "      - say: store_hello\n"
        "        next:\n"
        "          - if: \"profile.city == '上海'\"\n"
        "            then: local\n"
        "          - else: END\n"
        "      - id: local\n"
        "        say: store_local\n"
        "templates:\n"
        "  store_hello: {zh: 欢迎来到门店, en: welcome to the store}\n"
        "  store_local: {zh: 上海的姐妹周六有线下活动, en: Saturday meetup in Shanghai}\n")
    app = await start_app(make_settings(namespace, rasa_proxy.url,
                                        app={"flows_dir": str(flows_dir)}), port=APP_PORT)
    f = Follower(token=TOKEN, openid="o_store")
    status, body = await app.post_wechat(*f.request(f.event("subscribe", "qrscene_store_001",
                                                            Ticket="t")))
    assert status == 200 and f.read_reply(body)["Content"] == "欢迎来到门店"  # not the welcome
    await app.services.core.orchestrator.drain(5)
    p = await app.store.profiles.find_by_identity("wechat", APP_ID, "o_store")
    await app.store.profiles.update(p["_id"], {"fields.city": "上海"})
    f.clock = 1_790_000_100
    status, body = await app.post_wechat(*f.request(f.event("SCAN", "store_001", Ticket="t")))
    assert f.read_reply(body)["Content"] == "欢迎来到门店\n\n上海的姐妹周六有线下活动"


async def test_a_reload_that_renumbers_steps_never_misreads_a_waiting_answer(app, flows_dir):
    f = Follower(token=TOKEN, openid="o_waiting")

    async def say(text: str) -> str:
        status, body = await app.post_wechat(*f.request(f.text(text)))
        assert status == 200
        return f.read_reply(body).get("Content", "")

    for answer in ("我要注册", "同意", "同意"):
        await say(answer)
    assert "手机号" in await say("小美")  # waiting for her mobile number (an unnamed step)
    edit(flows_dir / "signup.yml", "    steps:\n      - collect: consent_privacy",
         "    steps:\n      - say: signup_ask_nickname\n      - collect: consent_privacy")
    assert (await app.client.post("/admin/api/flows/reload", headers=AUTH)).status == 200
    reply = await say("13812345678")
    assert "13812345678，" not in reply  # never taken as her nickname under the new numbering
    await app.services.core.orchestrator.drain(5)
    p = await app.store.profiles.find_by_identity("wechat", APP_ID, "o_waiting")
    assert "nickname" not in p["fields"]
