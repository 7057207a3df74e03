"""Admin API authorisation, metrics, and what the logs may contain."""

from __future__ import annotations

import logging

import pytest

from bot.logs import JsonFormatter
from scrm.follower import Follower
from tests.conftest import ADMIN, TOKEN, closed_port_url, make_settings


@pytest.fixture
async def app(start_app, namespace):
    return await start_app(make_settings(namespace, closed_port_url()))


async def test_admin_api_needs_the_bearer_token(app):
    f = Follower(token=TOKEN, openid="o_adm")
    await app.post_wechat(*f.request(f.text("hi")))
    await app.services.core.orchestrator.drain(5)
    url = "/admin/api/profiles?openid=o_adm"
    assert (await app.client.get(url)).status == 401
    assert (await app.client.get(url, headers={"Authorization": "Bearer nope"})).status == 401
    ok = await app.client.get(url, headers={"Authorization": f"Bearer {ADMIN}"})
    data = await ok.json()
    assert ok.status == 200 and data["profile"]["identities"][0]["openid"] == "o_adm"
    assert [i["direction"] for i in data["interactions"]] == ["out", "in"]
    by_id = await app.client.get(f"/admin/api/profiles/{data['profile']['_id']}",
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    assert (await by_id.json())["profile"]["_id"] == data["profile"]["_id"]
    missing = await app.client.get("/admin/api/profiles?openid=nobody",
                                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert missing.status == 404


async def test_admin_api_is_disabled_without_a_token(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(), admin={"token": None}))
    resp = await app.client.get("/admin/api/profiles?openid=x",
                                headers={"Authorization": "Bearer "})
    assert resp.status == 403 and "SCRM_ADMIN_TOKEN" in await resp.text()


def test_internal_endpoints_refuse_non_loopback_peers():
    from webhooks.app import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1")
    assert not _loopback("10.0.0.5") and not _loopback(None) and not _loopback("garbage")


async def test_rasa_action_endpoint_errors_are_json(app):
    resp = await app.client.post("/rasa/webhook", data="nope")
    assert resp.status == 400
    resp = await app.client.post("/rasa/webhook", json={
        "next_action": "action_nope", "tracker": {"sender_id": "x", "slots": {},
                                                  "latest_message": {}, "events": []},
        "domain": {}, "version": "3.6.21"})
    assert resp.status == 404 and (await resp.json())["action_name"] == "action_nope"


async def test_metrics_exposes_the_message_path(app):
    f = Follower(token=TOKEN, openid="o_met")
    query, body = f.request(f.text("hi"))
    await app.post_wechat(query, body)
    await app.post_wechat(query, body)
    text = await (await app.client.get("/metrics")).text()
    assert 'scrm_requests_total{channel="wechat",status="200"} 2.0' in text
    assert 'scrm_dedupe_hits_total{channel="wechat"} 1.0' in text
    assert "scrm_rasa_errors_total 1.0" in text
    assert 'scrm_request_seconds_bucket{channel="wechat",le="4.0"}' in text
    assert "scrm_late_replies_total" in text


async def test_info_logs_carry_no_message_text_or_phone(app, caplog):
    caplog.set_level(logging.INFO)
    f = Follower(token=TOKEN, openid="o_log")
    status, _ = await app.post_wechat(*f.request(f.text("我的手机是13812345678，秘密内容")))
    assert status == 200
    await app.services.core.orchestrator.drain(5)
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.levelno >= logging.INFO]
    assert any('"request_id"' in line for line in lines)
    joined = "\n".join(lines)
    assert "13812345678" not in joined and "秘密内容" not in joined
    assert any('"msg": "turn done"' in line for line in lines)


async def test_action_endpoint_requires_the_shared_token_when_set(start_app, namespace):
    app = await start_app(make_settings(namespace, closed_port_url(),
                                        rasa={"action_token": "tok-1"}))
    call = {"next_action": "action_flow", "tracker": {
        "sender_id": "x", "slots": {}, "latest_message": {"metadata": {}}, "events": []},
        "domain": {}, "version": "3.6.21"}
    assert (await app.client.post("/rasa/webhook", json=call)).status == 403
    assert (await app.client.post("/rasa/webhook?token=nope", json=call)).status == 403
    ok = await app.client.post("/rasa/webhook?token=tok-1", json=call)
    assert ok.status == 200
    assert (await ok.json())["responses"][0]["custom"] == {"template": "fallback"}


async def test_points_check_finds_and_repairs_a_drifted_balance(app):
    from datetime import UTC, datetime

    f = Follower(token=TOKEN, openid="o_pts")
    await app.post_wechat(*f.request(f.text("hi")))
    await app.services.core.orchestrator.drain(5)
    p = await app.store.profiles.find_by_identity("wechat", app.services.settings.wechat.app_id,
                                                  "o_pts")
    await app.store.ledger.award(p["_id"], "k1", 30, "gift", now=datetime.now(UTC))
    url = "/admin/api/points/check"
    ok = await (await app.client.post(url, headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert ok == {"ok": True, "repaired": 0, "mismatches": []}
    await app.store.profiles.update(p["_id"], {"points.balance": 999})  # drift
    bad = await (await app.client.post(url, headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert bad["ok"] is False and bad["mismatches"][0]["ledger_sum"] == 30
    fixed = await (await app.client.post(url + "?repair=1",
                                         headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert fixed["repaired"] == 1
    assert await app.store.ledger.balance(p["_id"]) == (30, 30)


def test_ids_that_hold_a_phone_like_digit_run_are_shown_whole():
    from webhooks.app import _jsonable

    doc = {"_id": "2e47d17712344019a8bbd18098ea9435", "profile_id": "a13812345678b",
           "fields": {"mobile": "13812345678", "note": "call 13912345678"}}
    shown = _jsonable(doc)
    assert shown["_id"] == doc["_id"] and shown["profile_id"] == doc["profile_id"]
    assert shown["fields"] == {"mobile": "138****5678", "note": "call 139****5678"}
