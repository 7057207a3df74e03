"""POST /webhooks/json: the second channel, signed with HMAC-SHA256 of the body."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.conftest import APP_PORT, JSON_SECRET, make_settings

pytestmark = pytest.mark.rasa


def signed(body: dict | str, secret: str = JSON_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()
    sig = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-SCRM-Signature": f"sha256={sig}", "Content-Type": "application/json"}


@pytest.fixture
async def app(start_app, namespace, rasa_proxy):
    return await start_app(make_settings(namespace, rasa_proxy.url), port=APP_PORT)


async def test_signed_message_gets_replies_and_is_recorded(app, rasa_proxy):
    raw, headers = signed({"sender": "u1", "text": "hello", "id": "m-1"})
    resp = await app.client.post("/webhooks/json", data=raw, headers=headers)
    data = await resp.json()
    assert resp.status == 200 and data["late"] is False
    assert "sister-community" in data["replies"][0]["text"]
    # A retry with the same id: same answer, no second Rasa call.
    again = await (await app.client.post("/webhooks/json", data=raw, headers=headers)).json()
    assert again == data
    assert rasa_proxy.turns_of("u1") == ["hello"]
    await app.services.core.orchestrator.drain(5)
    profile = await app.store.profiles.find_by_identity("json", "default", "u1")
    assert await app.store.interactions.count(profile["_id"]) == 2


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"sender": "u1"}, 400, "text: Field required"),
    ({"sender": "u 1", "text": "x"}, 400, "sender:"),
    ({"sender": "u1", "text": "x" * 3000}, 400, "text:"),
    ({"sender": "u1", "text": "x", "admin": True}, 400, "admin: Extra inputs"),
    ("{not json", 400, "bad JSON"),
    ("[1, 2]", 400, ""),
    ('{"sender": "u1", "text": "hi", "sender": "admin"}', 400, "duplicate key 'sender'"),
    ('{"sender": "u1", "text": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "nested"),
])
async def test_bad_bodies_are_400_and_store_nothing(app, body, status, error):
    raw, headers = signed(body)
    resp = await app.client.post("/webhooks/json", data=raw, headers=headers)
    assert resp.status == status
    assert error in (await resp.json())["error"]
    assert await app.store.interactions.count() == 0


async def test_wrong_or_missing_signature_is_403(app):
    raw, headers = signed({"sender": "u1", "text": "hi"}, secret="wrong")
    assert (await app.client.post("/webhooks/json", data=raw, headers=headers)).status == 403
    assert (await app.client.post("/webhooks/json", data=raw)).status == 403
    assert await app.store.interactions.count() == 0


async def test_channel_is_off_without_a_secret(start_app, namespace, rasa_proxy):
    app = await start_app(make_settings(namespace, rasa_proxy.url,
                                        json_channel={"secret": None}))
    raw, headers = signed({"sender": "u1", "text": "hi"})
    assert (await app.client.post("/webhooks/json", data=raw, headers=headers)).status == 404


async def test_an_id_reused_by_another_sender_is_her_own_message(app, rasa_proxy):
    raw, headers = signed({"sender": "u_first", "text": "我的积分", "id": "same-id"})
    first = await (await app.client.post("/webhooks/json", data=raw, headers=headers)).json()
    raw, headers = signed({"sender": "u_second", "text": "hello", "id": "same-id"})
    second = await (await app.client.post("/webhooks/json", data=raw, headers=headers)).json()
    assert second != first and "sister-community" in second["replies"][0]["text"]
    assert rasa_proxy.turns_of("u_second") == ["hello"]  # handled, not taken for a retry
    await app.services.core.orchestrator.drain(5)
    for sender in ("u_first", "u_second"):
        p = await app.store.profiles.find_by_identity("json", "default", sender)
        assert await app.store.interactions.count(p["_id"]) == 2
