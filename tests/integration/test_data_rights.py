"""Data rights over the real app: the export link over HTTP (single use, refused when
tampered or guessed, never a 5xx, never in the log), the admin API and the CLI for the
brand, and after erasure no Redis key of the deployment names her."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest
from redis.asyncio import Redis

from store.keys import FAMILIES, Keys
from tests.conftest import ADMIN, ROOT, SENT_TEXTS, TOKEN, closed_port_url, make_settings
from tests.support.chat import Chat, sign_up

MOBILE = "13955556666"


@pytest.fixture
async def app(start_app, namespace, wechat_api):
    # No Rasa: these journeys start by keyword, and answers need no NLU.
    return await start_app(make_settings(namespace, closed_port_url(), wechat_api.url))


async def member(app, openid: str, nickname: str) -> Chat:
    chat = Chat(app, openid)
    assert "注册成功" in await sign_up(chat, nickname=nickname, date_answer="2027-05-01",
                                   mobile=MOBILE)
    return chat


async def test_the_export_link_opens_once_over_http_and_never_leaks(app):
    chat = await member(app, "o_link", "小满")
    reply = await chat.say("我的数据")
    link = re.search(r"(http://\S+/me/export/(\S+))", reply)
    assert link, reply
    path, token = link.group(1).split("127.0.0.1:8080", 1)[1], link.group(2)
    SENT_TEXTS.append(token)  # a secret: the run's log must not show it
    client = app.client
    first = await client.get(path)
    assert first.status == 200 and "attachment" in first.headers["Content-Disposition"]
    doc = json.loads(await first.text())
    assert doc["profile"]["昵称 nickname"] == "小满" and doc["profile"]["手机号 mobile"] == MOBILE
    again = await client.get(path)
    assert again.status == 404 and "已失效" in (await again.json())["error"]
    for bad in (token[:-1] + ("0" if token[-1] != "0" else "1"), "x" * 500, "%00..%ff",
                "a.b.c", "e30.e30"):
        resp = await client.get(f"/me/export/{bad}")
        assert resp.status == 404, bad


async def test_the_brand_exports_and_erases_by_admin_api(app, namespace):
    await member(app, "o_api", "阿敏")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    client = app.client
    resp = await client.get(f"/admin/api/members/{MOBILE}/export", headers=headers)
    assert resp.status == 200 and (await resp.json())["profile"]["昵称 nickname"] == "阿敏"
    assert (await client.get("/admin/api/members/nobody/export", headers=headers)).status == 404
    assert (await client.get("/admin/api/members/o_api/export")).status == 401
    profile = await app.store.profiles.find_by_mobile(MOBILE)
    names = [b"o_api", MOBILE.encode(), "阿敏".encode(), profile["member"]["id"].encode()]
    # A push for her still queued (due in ten minutes): her text sits in an arq job.
    await app.services.wechat._enqueue("o_api", [{"kind": "text", "text": "阿敏，明天见"}],
                                       ["push:test:0"], None, "push:test", defer=600)
    queue = Keys(namespace).queue
    assert [j for j in await app.services.arq.queued_jobs(queue_name=queue)
            if "o_api" in str(j.args)]
    no_reason = await client.post("/admin/api/members/o_api/erase", headers=headers,
                                  json={"reason": " "})
    assert no_reason.status == 400
    later = await client.post("/admin/api/members/o_api/erase", headers=headers,
                              json={"reason": "电话申请"})
    assert later.status == 200 and "due" in await later.json()
    now = await client.post("/admin/api/members/o_api/erase", headers=headers,
                            json={"reason": "工单 12", "now": True})
    body = await now.json()
    assert now.status == 200 and body["erased"]["profiles"] == 1
    # Nothing in this deployment's Redis names her any more, in a key or a value.
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        found = []
        keys = [k async for k in redis.scan_iter(f"{namespace}:*", count=1000)]
        keys += [k async for k in redis.scan_iter(f"arq:*{namespace}:*", count=1000)]
        for key in keys:
            kind = (await redis.type(key)).decode()
            value = (await redis.get(key) if kind == "string" else
                     json.dumps([str(x) for x in await redis.lrange(key, 0, -1)])
                     if kind == "list" else b"")
            blob = key + (value if isinstance(value, bytes) else value.encode())
            if any(n in blob for n in names):
                found.append(key)
            family = Keys(namespace).family(key.decode())
            assert family in FAMILIES, f"key family {family!r} has no export/erasure rule"
    finally:
        await redis.aclose()
    assert found == []
    assert await app.store.profiles.find_by_mobile(MOBILE) is None
    assert not [j for j in await app.services.arq.queued_jobs(queue_name=queue)
                if "o_api" in str(j.args)]  # out of the queue, not only its payload


async def scrm(*args: str, port: int) -> tuple[int, str, str]:
    """The CLI as a staff member runs it, against this test's live server (in this event
    loop: so it runs as a subprocess awaited, not blocking the server)."""
    env = {**os.environ, "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": "wx-demo",
           "SCRM_ADMIN_TOKEN": ADMIN}
    env.pop("WECHAT_APP_SECRET", None)
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv/bin/scrm"), *args, "--url", f"http://127.0.0.1:{port}", cwd=ROOT,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_the_cli_exports_erases_and_shows_retention(app, tmp_path):
    await member(app, "o_cli", "晓晓")
    port = app.client.server.port
    out = tmp_path / "mine.json"
    code, _, err = await scrm("member", "export", "o_cli", "--out", str(out), port=port)
    assert code == 0, err
    assert json.loads(out.read_text(encoding="utf-8"))["profile"]["昵称 nickname"] == "晓晓"
    code, _, err = await scrm("member", "erase", "o_cli", "--reason", "", port=port)
    assert code != 0 and "reason" in err
    code, stdout, err = await scrm("retention", "--dry-run", port=port)
    assert code == 0 and "would strip" in stdout, err
    code, stdout, err = await scrm("member", "erase", "o_cli", "--now", "--reason", "测试",
                                   port=port)
    assert code == 0 and "erased:" in stdout, err
    code, _, err = await scrm("member", "export", "o_cli", port=port)
    assert code != 0 and "no member" in err
    audit = [a["command"] for a in await app.store.audit.latest(50)]
    assert "export" in audit and "erased" in audit
