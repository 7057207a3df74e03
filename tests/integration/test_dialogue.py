"""The whole path with a real Rasa server: WeChat XML in, Rasa, replies out, profile written."""

from __future__ import annotations

import asyncio

import pytest

from scrm.follower import Follower
from tests.conftest import AES_KEY, APP_ID, APP_PORT, TOKEN, closed_port_url, make_settings

pytestmark = pytest.mark.rasa


@pytest.fixture
async def app(start_app, namespace, rasa_proxy, wechat_api):
    return await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url),
                           port=APP_PORT)


async def say(app, follower: Follower, xml: str) -> dict[str, str]:
    status, body = await app.post_wechat(*follower.request(xml))
    assert status == 200
    return follower.read_reply(body)


async def interactions(app, openid: str):
    # Records are written after the reply goes out; wait for in-flight turns first.
    await app.services.core.orchestrator.drain(10)
    profile = await app.store.profiles.find_by_identity("wechat", APP_ID, openid)
    assert profile is not None
    return profile, list(reversed(await app.store.interactions.latest(profile["_id"], 100)))


async def test_greeting_in_chinese_and_english_is_answered_and_recorded(app):
    f = Follower(token=TOKEN, openid="o_greet")
    zh = await say(app, f, f.text("你好"))
    assert "姐妹社区" in zh["Content"]
    en = await say(app, f, f.text("hello there"))
    assert "sister-community" in en["Content"]
    profile, log = await interactions(app, "o_greet")
    assert [(i["direction"], i["type"]) for i in log] == [
        ("in", "text"), ("out", "text"), ("in", "text"), ("out", "text")]
    assert log[0]["intent"] == "greet" and log[0]["confidence"] > 0.5
    assert log[0]["outcome"] == "replied" and log[0]["latency_ms"] > 0
    assert log[1]["text"] == zh["Content"] and log[1]["delivery"] == "passive"
    assert profile["counters"] == {"inbound": 2, "outbound": 2}
    assert profile["lang"] == "en"


@pytest.mark.parametrize(("text", "intent", "expected"), [
    ("谢谢", "thanks", "不客气"),
    ("再见", "goodbye", "再见"),
    ("帮助", "help", "我可以"),
    ("thank you", "thanks", "welcome"),
    ("what can you do", "help", "I can"),
    ("yes", "affirm", "Great"),
    ("不用了", "deny", "没关系"),
])
async def test_core_intents(app, text, intent, expected):
    f = Follower(token=TOKEN, openid=f"o_{intent}")
    reply = await say(app, f, f.text(text))
    assert expected in reply["Content"]
    _, log = await interactions(app, f"o_{intent}")
    assert log[0]["intent"] == intent


async def test_gibberish_gets_the_fallback(app):
    f = Follower(token=TOKEN, openid="o_fb")
    reply = await say(app, f, f.text("qzx vbn wpl"))
    # Not understood, and no common question close: it says so and offers a person.
    assert "person" in reply["Content"] or "转人工" in reply["Content"]
    _, log = await interactions(app, "o_fb")
    assert log[0]["intent"] in ("nlu_fallback", "out_of_scope")


async def test_custom_action_reads_the_store_through_the_action_endpoint(app):
    f = Follower(token=TOKEN, openid="o_who")
    await say(app, f, f.text("你好"))
    reply = await say(app, f, f.text("我的资料"))
    # 3 interactions exist when the action runs: greet in/out and this inbound.
    assert "共 3 条消息记录" in reply["Content"]


async def test_subscribe_with_qr_scene_welcomes_and_sets_follow_state(app):
    f = Follower(token=TOKEN, openid="o_sub")
    reply = await say(app, f, f.event("subscribe", "qrscene_ref_42", Ticket="t"))
    assert "欢迎加入姐妹社区" in reply["Content"]
    profile, log = await interactions(app, "o_sub")
    assert profile["follow"]["state"] == "subscribed"
    assert log[0]["type"] == "event:subscribe" and log[0]["payload"]["scene"] == "ref_42"
    assert await say(app, f, f.event("unsubscribe")) == {}
    profile, log = await interactions(app, "o_sub")
    assert profile["follow"]["state"] == "unsubscribed"
    assert log[-1]["type"] == "event:unsubscribe" and log[-1]["outcome"] == "no_reply"


async def test_menu_click_scan_view_and_location_events(app):
    f = Follower(token=TOKEN, openid="o_evt")
    f.clock = 1_790_000_000
    assert "我可以" in (await say(app, f, f.event("CLICK", "MENU_HELP")))["Content"]
    f.clock += 1
    assert "即将上线" in (await say(app, f, f.event("CLICK", "NO_SUCH_KEY")))["Content"]
    f.clock += 1
    assert await say(app, f, f.event("SCAN", "ref_7", Ticket="t")) == {}
    f.clock += 1
    assert await say(app, f, f.event("VIEW", "https://example.invalid/")) == {}
    f.clock += 1
    assert await say(app, f, f.event("LOCATION", Latitude="31.2", Longitude="121.4",
                                     Precision="10")) == {}
    _, log = await interactions(app, "o_evt")
    inbound = [i for i in log if i["direction"] == "in"]
    assert [i["type"] for i in inbound] == [
        "event:click", "event:click", "event:scan", "event:view", "event:location"]
    assert inbound[2]["payload"]["scene"] == "ref_7"
    assert inbound[4]["payload"]["lat"] == 31.2


async def test_media_messages_are_recorded_and_answered_politely(app, rasa_proxy):
    f = Follower(token=TOKEN, openid="o_media")
    for xml in (f.xml("image", PicUrl="http://x.invalid/p.jpg", MediaId="m1"),
                f.xml("video", MediaId="m2", ThumbMediaId="t2"),
                f.xml("location", Location_X="31.2", Location_Y="121.4", Scale="15",
                      Label="上海"),
                f.xml("link", Title="t", Description="d", Url="http://x.invalid")):
        assert "文字" in (await say(app, f, xml))["Content"]
    voice = await say(app, f, f.xml("voice", MediaId="v1", Format="amr", Recognition="谢谢"))
    assert "不客气" in voice["Content"]
    unknown = await say(app, f, f.xml("hologram", Data="?"))
    assert "暂不支持" in unknown["Content"]
    _, log = await interactions(app, "o_media")
    kinds = [i["type"] for i in log if i["direction"] == "in"]
    assert kinds == ["image", "video", "location", "link", "voice", "unknown"]
    assert rasa_proxy.turns_of("o_media") == ["谢谢"]  # only the recognised voice went to Rasa


async def test_four_concurrent_retries_give_one_rasa_call_one_record_same_reply(app, rasa_proxy):
    f = Follower(token=TOKEN, openid="o_retry")
    query, body = f.request(f.text("你好"))
    results = await asyncio.gather(*(app.post_wechat(query, body) for _ in range(4)))
    assert {status for status, _ in results} == {200}
    bodies = {b for _, b in results}
    assert len(bodies) == 1 and "姐妹社区" in bodies.pop()
    assert rasa_proxy.turns_of("o_retry") == ["你好"]
    _, log = await interactions(app, "o_retry")
    assert [i["direction"] for i in log] == ["in", "out"]
    metrics = await (await app.client.get("/metrics")).text()
    assert 'scrm_dedupe_hits_total{channel="wechat"} 3.0' in metrics


async def test_safe_mode_round_trip(start_app, namespace, rasa_proxy):
    app = await start_app(make_settings(namespace, rasa_proxy.url, wechat={"aes_key": AES_KEY}),
                          port=APP_PORT)
    f = Follower(token=TOKEN, openid="o_safe", aes_key=AES_KEY, app_id=APP_ID)
    query, body = f.request(f.text("你好"))
    assert "<Encrypt>" in body and "你好" not in body
    status, answer = await app.post_wechat(query, body)
    assert status == 200 and "<Encrypt>" in answer and "姐妹" not in answer
    assert "姐妹社区" in f.read_reply(answer)["Content"]
    _, log = await interactions(app, "o_safe")
    assert log[0]["text"] == "你好"


async def test_slow_rasa_answers_success_then_one_customer_service_send(
        start_app, namespace, rasa_proxy, wechat_api):
    app = await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                        app={"budget_seconds": 0.8}), port=APP_PORT)
    rasa_proxy.delay = 1.6
    f = Follower(token=TOKEN, openid="o_slow")
    query, body = f.request(f.text("你好"))
    status, answer = await app.post_wechat(query, body)
    assert (status, answer) == (200, "success")
    # WeChat's retry of the same message while Rasa is still slow: still success, no work.
    assert await app.post_wechat(query, body) == (200, "success")
    sends = await wechat_api.wait_sends(1)
    await asyncio.sleep(0.5)  # room for a wrong second send to show up
    assert len(wechat_api.sends()) == 1
    send = sends[0]
    assert send.body["touser"] == "o_slow" and "姐妹社区" in send.body["text"]["content"]
    assert send.query["access_token"] == "TOKEN-1"
    assert rasa_proxy.turns_of("o_slow") == ["你好"]
    _, log = await interactions(app, "o_slow")
    assert log[0]["delivery"] == "push"  # answered outside the passive reply
    for _ in range(40):  # the job records the outcome right after sending
        _, log = await interactions(app, "o_slow")
        if log[1]["outcome"] == "sent":
            break
        await asyncio.sleep(0.05)
    assert log[1]["outcome"] == "sent" and log[1]["delivery"] == "customer_service"
    metrics = await (await app.client.get("/metrics")).text()
    assert 'scrm_late_replies_total{channel="wechat"} 1.0' in metrics
    assert 'scrm_customer_service_sends_total{result="sent"} 1.0' in metrics


async def test_rasa_slower_than_its_hard_limit_gets_the_apology_by_customer_service(
        start_app, namespace, rasa_proxy, wechat_api):
    app = await start_app(make_settings(namespace, rasa_proxy.url, wechat_api.url,
                                        app={"budget_seconds": 0.5},
                                        rasa={"timeout_seconds": 1.0}), port=APP_PORT)
    rasa_proxy.delay = 2.5
    f = Follower(token=TOKEN, openid="o_stuck")
    assert await app.post_wechat(*f.request(f.text("你好"))) == (200, "success")
    sends = await wechat_api.wait_sends(1, timeout=5)
    assert "稍后再试" in sends[0].body["text"]["content"]
    _, log = await interactions(app, "o_stuck")
    assert log[0]["outcome"] == "rasa_unavailable"


async def test_rasa_down_gives_the_apology_within_the_budget(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url()))
    f = Follower(token=TOKEN, openid="o_down")
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await say(app, f, f.text("你好"))
    assert loop.time() - started < 4.0
    assert "稍后再试" in reply["Content"]
    _, log = await interactions(app, "o_down")
    assert log[0]["outcome"] == "rasa_unavailable"
    health = await app.client.get("/healthz")
    assert health.status == 503 and (await health.json())["rasa"] == "down"


async def test_health_is_ok_with_everything_up(app):
    resp = await app.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "mongo": "embedded", "redis": "ok", "rasa": "ok"}


async def test_rasas_own_rest_channel_reaches_the_flows_through_the_action_endpoint(
        app, rasa_server):
    """The app asks Rasa for NLU only; Rasa's own channels (REST, rasa shell) still get the
    same flows, through action_flow served by the app at /rasa/webhook."""
    import aiohttp

    f = Follower(token=TOKEN, openid="o_rest")
    await say(app, f, f.text("hi"))
    profile, _ = await interactions(app, "o_rest")
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{rasa_server}/webhooks/rest/webhook", json={
            "sender": "rest-user", "message": "谢谢",
            "metadata": {"profile_id": profile["_id"]}})
        messages = await resp.json()
    assert messages == [{"recipient_id": "rest-user",
                         "custom": {"template": "thanks", "vars": {"slots": {}}}}]


async def test_a_failing_flow_step_gets_the_apology_and_is_recorded(app, monkeypatch):
    async def broken(ctx):
        raise RuntimeError("step exploded")

    actions = dict(app.services.core.orchestrator._engine._actions)
    actions["profile_summary"] = broken
    monkeypatch.setattr(app.services.core.orchestrator._engine, "_actions", actions)
    f = Follower(token=TOKEN, openid="o_boom")
    reply = await say(app, f, f.text("我的资料"))
    assert "稍后再试" in reply["Content"]
    _, log = await interactions(app, "o_boom")
    assert log[0]["outcome"] == "error" and log[0]["intent"] == "whoami"
    assert log[1]["direction"] == "out" and "稍后再试" in log[1]["text"]


async def test_with_rasa_down_questions_can_still_be_answered(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url()))
    f = Follower(token=TOKEN, openid="o_nlu_down")
    assert "稍后再试" in (await say(app, f, f.text("你好")))["Content"]  # needs NLU: apology
    assert "隐私政策" in (await say(app, f, f.text("我要注册")))["Content"]  # a keyword
    assert "敏感个人信息" in (await say(app, f, f.text("同意")))["Content"]  # an answer
    _, log = await interactions(app, "o_nlu_down")
    assert [i["outcome"] for i in log if i["direction"] == "in"] == ["rasa_unavailable"] * 3
