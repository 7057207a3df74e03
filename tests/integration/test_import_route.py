"""`scrm import members` as an operator runs it, against a running app over real HTTP: the
admin route streams progress then a summary, problems come back as FILE:LINE: column X:
reason with exit code 1, a dry run writes nothing, and calls it cannot take are refused
before anything is read or written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scrm import cli
from tests.conftest import ADMIN, APP_ID, ROOT, TOKEN, closed_port_url, make_settings
from webhooks import admin_import

AUTH = {"Authorization": f"Bearer {ADMIN}"}
GOOD = "会员编号,手机号,昵称,标签,积分\nC1,13800000001,小美,VIP,100\nC2,13800000002,阿花,,\n"


@pytest.fixture
async def app(start_app, namespace):
    return await start_app(make_settings(namespace, closed_port_url()), run_worker=False)


async def scrm(app: Any, capsys: Any, monkeypatch: Any, *args: str) -> tuple[int, str, str]:
    """`scrm --config config.yml <args> --url <the app>`, in a thread: the app keeps serving
    on this loop. (exit code, stdout, stderr)"""
    for name, value in {"SCRM_ENV_FILE": "/dev/null", "SCRM_ADMIN_TOKEN": ADMIN,
                        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID}.items():
        monkeypatch.setenv(name, value)
    url = str(app.client.make_url("")).rstrip("/")

    def run() -> int:
        try:
            cli.main(["--config", str(ROOT / "config.yml"), *args, "--url", url])
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
        return 0

    code = await asyncio.to_thread(run)
    out = capsys.readouterr()
    return code, out.out, out.err


async def profiles(app: Any) -> list[dict[str, Any]]:
    return await app.store._db["profiles"].find({}).to_list(None)


async def test_the_cli_prints_problems_by_line_and_column_and_exits_1_until_the_file_is_good(
        app, tmp_path: Path, capsys, monkeypatch):
    bad = tmp_path / "crm.csv"
    bad.write_text(GOOD + "C3,1380000,小朵,,abc\n", encoding="gbk")
    code, out, err = await scrm(app, capsys, monkeypatch, "import", "members", str(bad))
    assert code == 1
    assert out.splitlines() == [f"{bad}:4: column 手机号: not a mainland China mobile number",
                                f"{bad}:4: column 积分: points are a whole number, 0 or more"]
    assert "nothing written" in err and await profiles(app) == []

    mapping = tmp_path / "map.yml"
    mapping.write_text("会员编号: id\n手机号: phone\n", encoding="utf-8")
    code, out, _ = await scrm(app, capsys, monkeypatch, "import", "members", str(bad),
                              "--mapping", str(mapping))
    assert code == 1 and out.startswith(f"{mapping}:2: column 手机号: unknown target 'phone'")

    good = tmp_path / "crm.csv"
    good.write_text(GOOD, encoding="utf-8")
    code, _, err = await scrm(app, capsys, monkeypatch, "import", "members", str(good),
                              "--dry-run")
    assert code == 0 and "would create 2" in err and await profiles(app) == []
    code, _, err = await scrm(app, capsys, monkeypatch, "import", "members", str(good))
    assert code == 0 and "created 2" in err and "100 points credited" in err
    assert sorted(p["fields"]["nickname"] for p in await profiles(app)) == ["小美", "阿花"]
    code, _, err = await scrm(app, capsys, monkeypatch, "import", "members", str(good))
    assert code == 0 and "unchanged 2" in err and len(await profiles(app)) == 2


async def test_the_route_streams_progress_then_a_summary(app):
    resp = await app.client.post("/admin/api/import/members?source=crm&dry_run=1",
                                 data=GOOD.encode(), headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    lines = [json.loads(raw) for raw in (await resp.text()).splitlines()]
    assert {p["progress"]["phase"] for p in lines[:-1]} >= {"checking", "matching"}
    summary = lines[-1]["summary"]
    assert (summary["created"], summary["dry_run"], summary["written"]) == (2, True, False)
    assert summary["columns"]["手机号"] == "mobile"

    form = aiohttp.FormData()
    form.add_field("file", GOOD.encode(), filename="crm.csv")
    form.add_field("mapping", "会员编号: id\n手机号: mobile\n".encode(), filename="m.yml")
    resp = await app.client.post("/admin/api/import/members?source=crm", data=form,
                                 headers=AUTH)
    summary = json.loads((await resp.text()).splitlines()[-1])["summary"]
    assert summary["created"] == 2 and summary["columns"] == {"会员编号": "id",
                                                              "手机号": "mobile"}
    assert {p["fields"].get("nickname") for p in await profiles(app)} == {None}


async def test_calls_the_route_cannot_take_are_refused_and_change_nothing(app, monkeypatch):
    no_source = await app.client.post("/admin/api/import/members", data=GOOD.encode(),
                                      headers=AUTH)
    assert no_source.status == 400 and "source" in (await no_source.json())["error"]
    bad_source = await app.client.post("/admin/api/import/members?source=a:b",
                                       data=GOOD.encode(), headers=AUTH)
    assert bad_source.status == 400
    no_token = await app.client.post("/admin/api/import/members?source=crm", data=GOOD)
    assert no_token.status == 401
    monkeypatch.setattr(admin_import, "MAX_UPLOAD", 40)
    too_big = await app.client.post("/admin/api/import/members?source=crm",
                                    data=GOOD.encode(), headers=AUTH)
    assert too_big.status == 413 and "larger than" in (await too_big.json())["error"]
    assert await profiles(app) == []
