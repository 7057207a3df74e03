"""Exports as the brand's staff see them: a members CSV that Excel opens (BOM, Chinese
headers), masked unless an audited, reasoned unmasked export is asked for, of exactly the
segment asked for, with nothing a spreadsheet would run; interactions as JSON lines; the
admin API's refusals; and `scrm export` writing the file through the route.
(The store's column reads against every backend: tests/integration/test_export_backends.py.)
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.brand_calendar import BrandCalendar
from bot.marketing.segments import SegmentError, compile_segment
from bot.members.export import Exporter, ExportError, safe_cell
from bot.members.fields import FieldBook
from bot.privacy import mask_phones
from store.mongo import MongoStore
from store.records import new_interaction
from tests.conftest import ADMIN, closed_port_url, make_settings
from tests.support.core import settings
from tests.support.marketing import member_doc

HEADERS = {"Authorization": f"Bearer {ADMIN}"}
PHONE = "13912345678"


def people() -> list[dict[str, Any]]:
    """Four members in three cities and one follower who never joined."""
    now = datetime.now(UTC)
    a = member_doc(1, city="上海", nickname="林小雨", tags=["会员", "孕中期"],
                   due=(now + timedelta(days=100)).date())
    a["fields"].update({"mobile": PHONE, "allergy": "青霉素", "baby_gender": "girl",
                        "feeding": ["breast", "formula"], "card_no": "VIP001"})
    a["member"].update({"tier": "银卡", "since": now - timedelta(days=3)})
    a["points"] = {"balance": 120, "earned": 300}
    a["orders"] = {"count": 2, "spent": 399.5, "last_at": now, "top_category": "纸尿裤",
                   "categories": {"纸尿裤": 300.0, "湿巾": 99.5}}
    a["social"] = {"score": 12.5, "parts": {}, "at": now}
    a["source"] = {"kind": "qr", "scene": "spring", "campaign": "spring", "by": None,
                   "at": now}
    b = member_doc(2, city="北京", nickname="周周")
    b["source"] = {"kind": "referral", "scene": None, "campaign": None, "by": a["_id"],
                   "at": now}
    c = member_doc(3, city="北京", nickname="阿青")
    c["erasure"] = {"due": now + timedelta(days=7), "by": "member"}  # asked to be forgotten
    d = member_doc(4, city="杭州", nickname="小鹿")
    e = member_doc(5, city="上海")
    del e["member"]
    e["fields"] = {}
    return [a, b, c, d, e]


@pytest.fixture
async def store() -> MongoStore:
    store = await MongoStore.open(None, f"export_{uuid.uuid4().hex[:8]}")
    await store._db["profiles"].insert_many(people())
    return store


@pytest.fixture
def exporter(store: MongoStore) -> Exporter:
    cfg = settings()
    calendar = BrandCalendar(cfg.app.timezone)
    book = FieldBook(cfg.members.fields)

    def segments(query: str, now: datetime) -> dict[str, Any]:  # as Campaigns.segment
        try:
            return compile_segment(query, now=now, today=calendar.today(now), fields=book,
                                   tiers=[t.name for t in cfg.points.tiers]).filter
        except SegmentError as e:
            raise ExportError(f"segment: {e}") from None

    return Exporter(store, cfg, calendar, segments)


async def csv_bytes(exporter: Exporter, **kwargs: Any) -> bytes:
    plan = await exporter.members(**kwargs)
    return b"".join([chunk async for chunk in exporter.members_csv(plan)])


def table(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


async def test_the_csv_opens_in_excel_utf8_with_bom_and_chinese_headers(exporter):
    data = await csv_bytes(exporter)
    assert data.startswith(codecs.BOM_UTF8)  # Excel reads UTF-8 only after a BOM
    assert data.count(codecs.BOM_UTF8) == 1
    header = next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert header[:4] == ["会员号", "昵称", "手机号", "城市"]
    # The brand's own fields by their labels, then orders, social value and source.
    assert {"宝宝性别", "会员卡号", "喂养方式", "过敏情况"} <= set(header)
    assert header[-7:] == ["订单数", "消费金额", "最近下单", "常买品类", "社交价值", "来源",
                           "来源活动"]
    rows = {r["会员号"]: r for r in table(data)}
    lin = rows["M0000000001"]
    assert lin["城市"] == "上海" and lin["等级"] == "银卡" and lin["积分"] == "120"
    assert lin["标签"] == "会员" and lin["宝宝性别"] == "女孩"  # no life-stage tag, masked
    assert lin["喂养方式"] == "母乳、奶粉" and lin["消费金额"] == "399.50"
    assert lin["来源"] == "二维码" and lin["来源活动"] == "spring"
    assert lin["入会时间"].endswith("+08:00")  # the brand's time zone, ISO
    datetime.fromisoformat(lin["入会时间"])
    assert rows[""]["关注状态"] == "已关注"  # the follower who never joined is there too


async def test_masked_by_default_mobile_nickname_sensitive_field_and_due_date(exporter):
    data = await csv_bytes(exporter, fields="member_id,nickname,mobile,due_date,field.allergy,"
                                            "field.card_no,tags")
    text = data.decode("utf-8-sig")
    assert PHONE not in text and "林小雨" not in text and "青霉素" not in text
    lin = next(r for r in table(data) if r["会员号"] == "M0000000001")
    assert lin["手机号"] == "139****5678" and lin["昵称"] == "林**"
    assert lin["过敏情况"] == "***" and lin["预产期"] == "***"
    assert lin["会员卡号"] == "VIP001"  # not sensitive: shown
    assert lin["标签"] == "会员"  # 孕中期 would say what the masked due date does


async def test_a_mobile_as_stored_masks_exactly_as_mask_phones(exporter, store):
    numbers = ["13912345678", "15000000000", "19987654321", "+86 139 1234 5678", "021-6212345"]
    for i, number in enumerate(numbers):
        doc = member_doc(100 + i)
        doc["fields"]["mobile"] = number
        await store._db["profiles"].insert_one(doc)
    rows = table(await csv_bytes(exporter, segment="city:上海", fields="member_id,mobile"))
    shown = {r["会员号"]: r["手机号"] for r in rows}
    for i, number in enumerate(numbers[:4]):
        assert shown[f"M{100 + i:010X}"] == mask_phones(number)
    assert shown[f"M{104:010X}"] == "*******2345"  # a landline: only its end


async def test_a_segment_and_a_source_select_the_right_members(exporter):
    ids = [r["会员号"] for r in table(await csv_bytes(exporter, segment="city:北京,杭州"))]
    # 阿青 (北京) asked to be erased: left out of every file, which would outlive it.
    assert sorted(ids) == ["M0000000002", "M0000000004"]
    ids = [r["会员号"] for r in table(await csv_bytes(exporter, segment="member:yes tier>=银卡"))]
    assert ids == ["M0000000001"]
    ids = [r["会员号"] for r in table(await csv_bytes(exporter, segment="source:referral,qr"))]
    assert sorted(ids) == ["M0000000001", "M0000000002"]
    ids = [r["会员号"] for r in table(await csv_bytes(exporter, segment="campaign:spring"))]
    assert ids == ["M0000000001"]
    ids = [r["会员号"] for r in table(await csv_bytes(exporter, segment="field.baby_gender:女孩"))]
    assert ids == ["M0000000001"]


async def test_unknown_fields_header_style_and_bad_segments_are_clear_errors(exporter):
    with pytest.raises(ExportError) as e:
        await exporter.members(fields="member_id,mobil,colour")
    assert "'mobil' (did you mean mobile?)" in e.value.message and "'colour'" in e.value.message
    assert "known: member_id, profile_id, nickname, mobile" in e.value.message
    assert "field.allergy" in e.value.message
    with pytest.raises(ExportError, match="segment: 「tier>=钻石」"):
        await exporter.members(segment="tier>=钻石")
    with pytest.raises(ExportError, match=r"labels .* or names"):
        await exporter.members(header="fancy")


async def test_header_names_and_chosen_columns_in_the_order_given(exporter):
    data = await csv_bytes(exporter, segment="city:上海 member:yes", header="names",
                           fields="mobile, baby_gender,orders.count,source.kind")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines == ["mobile,field.baby_gender,orders.count,source.kind",
                     "139****5678,女孩,2,二维码"]


async def test_cells_a_spreadsheet_would_run_are_neutralised(exporter, store):
    doc = member_doc(9, city="+上海", nickname="=HYPERLINK(\"http://x\",\"点我\")",
                     tags=["@SUM(A1)", "-1+2"])
    doc["fields"].update({"card_no": "\t=1+1", "province": "第一行\r\n=第二行"})
    doc["points"] = {"balance": -5, "earned": 10}
    await store._db["profiles"].insert_one(doc)
    data = await csv_bytes(exporter, segment="city:+上海", unmasked=True, reason="CSV 测试",
                           fields="nickname,city,province,tags,field.card_no,points")
    assert data.decode("utf-8-sig").count("\r\n") == 2  # every row one line of the file
    row = table(data)[0]
    assert row["昵称"] == "'=HYPERLINK(\"http://x\",\"点我\")"
    assert row["城市"] == "'+上海" and row["标签"] == "'@SUM(A1)、-1+2"
    assert row["会员卡号"] == "'\t=1+1" and row["省份"] == "第一行  =第二行"
    assert row["积分"] == "-5"  # a number stays a number
    assert safe_cell("-12.5") == "-12.5" and safe_cell("－1") == "'－1"
    assert safe_cell("@x") == "'@x" and safe_cell("普通") == "普通"


async def test_an_export_is_audited_when_it_ends_even_cut_short(exporter, store):
    plan = await exporter.members(unmasked=True, reason="迁移到新系统", by="cli:lin")
    chunks = exporter.members_csv(plan, batch=1)
    await chunks.__anext__()  # the header
    await chunks.__anext__()  # one row, then the client goes away
    await chunks.aclose()
    log = [a for a in await store.audit.latest(10) if a["command"] == "export_members"]
    assert sorted(a["result"] for a in log) == ["aborted", "started"]
    end = next(a for a in log if a["result"] == "aborted")
    assert end["rows"] == 1 and end["actor"] == "cli:lin" and end["unmasked"]


async def seed_interactions(store: MongoStore) -> dict[str, str]:
    """Messages of two members, one of them two days old; a phone in one text."""
    profiles = {p["fields"].get("nickname"): p["_id"]
                async for p in store.profiles.fields_where({}, ["fields.nickname"])}
    now = datetime.now(UTC)
    docs = []
    for who, text, ago in (("林小雨", f"我的手机 {PHONE}", 1), ("林小雨", "签到", 49),
                           ("周周", "你好", 2), ("阿青", "我要注销", 1)):
        doc = new_interaction(profiles[who], "wechat", "in", "text", text, {},
                              now - timedelta(hours=ago))
        doc.update({"intent": "chitchat", "confidence": 0.9, "outcome": "replied",
                    "dedupe_key": uuid.uuid4().hex})
        docs.append(doc)
    for doc in docs:
        await store.interactions.add(doc)
    return profiles


async def jsonl(exporter: Exporter, **kwargs: Any) -> list[dict[str, Any]]:
    plan = await exporter.interactions(**kwargs)
    data = b"".join([c async for c in exporter.interactions_jsonl(plan)])
    return [json.loads(line) for line in data.decode().splitlines()]


async def test_interactions_as_json_lines_since_until_segment_masked(exporter, store):
    ids = await seed_interactions(store)
    day = await jsonl(exporter, since="1d")
    # 阿青's erasure is pending: her messages stay out too.
    assert sorted(r["text"] for r in day) == ["你好", "我的手机 139****5678"]
    first = next(r for r in day if r["profile_id"] == ids["林小雨"])
    assert first["member_id"] == "M0000000001" and first["direction"] == "in"
    assert first["type"] == "text" and first["intent"] == "chitchat"
    assert first["confidence"] == 0.9 and first["outcome"] == "replied"
    assert first["channel"] == "wechat" and first["ts"].endswith("+08:00")
    assert [r["text"] for r in await jsonl(exporter, since="3d", until="1d")] == ["签到"]
    mine = await jsonl(exporter, since="3d", segment="city:上海")
    assert sorted(r["text"] for r in mine) == ["我的手机 139****5678", "签到"]
    whole = await jsonl(exporter, since="3d", segment="city:上海", unmasked=True,
                        reason="客服质检", by="qa")
    assert f"我的手机 {PHONE}" in [r["text"] for r in whole]
    log = [a for a in await store.audit.latest(10) if a["command"] == "export_interactions"
           and a["reason"] == "客服质检"]
    assert sorted((a["result"], a["rows"], a["actor"]) for a in log) == [
        ("ok", 2, "qa"), ("started", 0, "qa")]
    local = (datetime.now(UTC) - timedelta(days=3)).astimezone(exporter._calendar.zone)
    assert len(await jsonl(exporter, since=local.date().isoformat())) == 3


async def test_interactions_need_a_since_and_a_range_that_makes_sense(exporter):
    for since, until, why in ((None, None, "since is required"),
                              ("last week", None, "not a date"),
                              ("2d", "3d", "until must be after since"),
                              ("2026-11-01", "2026-13-01", "until: '2026-13-01' is not")):
        with pytest.raises(ExportError, match=why):
            await exporter.interactions(since=since, until=until)


# ------------------------------------------------------------------ the admin API


@pytest.fixture
async def app(start_app, namespace, store):
    return await start_app(make_settings(namespace, closed_port_url()), store=store)


async def test_the_route_streams_csv_with_bom_and_a_row_count(app):
    resp = await app.client.get("/admin/api/export/members", headers=HEADERS,
                                params={"segment": "city:北京,杭州"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["X-SCRM-Rows"] == "3"  # counted before; 阿青 is then left out
    assert resp.headers["X-SCRM-Masked"] == "yes"
    assert "attachment" in resp.headers["Content-Disposition"]
    data = await resp.read()
    assert data.startswith(codecs.BOM_UTF8) and len(table(data)) == 2
    assert (await app.client.get("/admin/api/export/members")).status == 401


async def test_unmasked_without_a_reason_is_refused_audited_and_nothing_exported(app):
    resp = await app.client.get("/admin/api/export/members", headers=HEADERS,
                                params={"unmasked": "1", "by": "cli:wang"})
    assert resp.status == 400 and resp.content_type == "application/json"
    assert "needs a reason" in (await resp.json())["error"]
    log = [a for a in await app.store.audit.latest(10) if a["command"] == "export_members"]
    assert [(a["result"], a["actor"], a["rows"]) for a in log] == [("refused", "cli:wang", 0)]


async def test_unmasked_with_a_reason_is_whole_and_audited(app):
    resp = await app.client.get("/admin/api/export/members", headers=HEADERS, params={
        "segment": "city:上海", "fields": "member_id,mobile,nickname,due_date",
        "unmasked": "1", "reason": f"门店核对 {PHONE}", "by": "cli:wang"})
    assert resp.status == 200 and resp.headers["X-SCRM-Masked"] == "no"
    lin = next(r for r in table(await resp.read()) if r["会员号"] == "M0000000001")
    assert lin["手机号"] == PHONE and lin["昵称"] == "林小雨" and lin["预产期"]
    log = [a for a in await app.store.audit.latest(10) if a["command"] == "export_members"]
    assert sorted(a["result"] for a in log) == ["ok", "started"]  # before and after
    done = next(a for a in log if a["result"] == "ok")
    assert done["actor"] == "cli:wang" and done["unmasked"] is True
    assert done["reason"] == "门店核对 139****5678"  # the audit masks phones as well
    assert done["segment"] == "city:上海" and done["rows"] == 1
    assert done["fields"] == ["member_id", "mobile", "nickname", "due_date"]
    assert isinstance(done["at"], datetime)


async def test_bad_parameters_are_400s_with_a_message(app):
    for path, params, why in (
            ("members", {"fields": "nope"}, "unknown field 'nope'"),
            ("members", {"segment": "$where:1"}, "segment:"),
            ("interactions", {}, "since is required"),
            ("interactions", {"since": "yesterday"}, "not a date")):
        resp = await app.client.get(f"/admin/api/export/{path}", headers=HEADERS,
                                    params=params)
        assert resp.status == 400, params
        assert why in (await resp.json())["error"]


async def test_the_route_streams_interactions_as_ndjson(app):
    await seed_interactions(app.store)
    resp = await app.client.get("/admin/api/export/interactions", headers=HEADERS,
                                params={"since": "1d"})
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    assert resp.headers["X-SCRM-Rows"] == "3"
    lines = (await resp.text()).splitlines()
    assert len(lines) == 2 and PHONE not in "".join(lines)


# ------------------------------------------------------------------ the CLI


async def scrm(monkeypatch, port: int, *args: str) -> int:
    """`scrm ...` in this process (a thread, so that this loop serves the route)."""
    from scrm.cli import main

    monkeypatch.setenv("SCRM_ENV_FILE", "/dev/null")
    monkeypatch.setenv("WECHAT_TOKEN", "cli-test-token")
    monkeypatch.setenv("WECHAT_APP_ID", "wx-cli")
    monkeypatch.setenv("SCRM_ADMIN_TOKEN", ADMIN)

    def run() -> int:
        try:
            main([*args, "--url", f"http://127.0.0.1:{port}"])
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)  # as the interpreter shows it
            return e.code if isinstance(e.code, int) else 1
        return 0

    return await asyncio.to_thread(run)


async def test_the_cli_writes_the_files_through_the_route(app, tmp_path, monkeypatch, capsys):
    port = app.client.server.port
    out = tmp_path / "members.csv"
    assert await scrm(monkeypatch, port, "export", "members", "--segment", "city:上海",
                      "--fields", "member_id,mobile", "--out", str(out)) == 0
    assert table(out.read_bytes()) == [{"会员号": "M0000000001", "手机号": "139****5678"}]
    assert f"members: 1 rows to {out}, masked" in capsys.readouterr().err
    assert not (tmp_path / "members.csv.part").exists()
    # Refused: the server's message, and no file.
    refused = tmp_path / "whole.csv"
    assert await scrm(monkeypatch, port, "export", "members", "--unmasked",
                      "--out", str(refused)) != 0
    assert "needs a reason" in capsys.readouterr().err and not refused.exists()
    await seed_interactions(app.store)
    lines = tmp_path / "talk.jsonl"
    assert await scrm(monkeypatch, port, "export", "interactions", "--since", "3d",
                      "--segment", "city:北京", "--out", str(lines)) == 0
    assert [json.loads(x)["text"] for x in lines.read_text("utf-8").splitlines()] == ["你好"]
    assert "interactions: 1 rows" in capsys.readouterr().err


class FailingAfterOneBatch:
    """The store's export reads, losing the database after the first batch (as a server
    going away mid-export would): a failure that cannot be made to happen here for real."""

    def __init__(self, real: Any) -> None:
        self._real = real

    async def count(self, collection: str, query: dict[str, Any]) -> int:
        return await self._real.count(collection, query)

    async def columns(self, collection: str, query: dict[str, Any], paths: Any,
                      batch: int = 1000) -> Any:
        from store.errors import StoreUnavailable

        async for cols in self._real.columns(collection, query, paths, 1):
            yield cols
            raise StoreUnavailable("AutoReconnect: connection closed")


async def test_an_export_cut_short_is_never_taken_for_a_whole_file(app, tmp_path, monkeypatch,
                                                                  capsys):

    app.store.exports = FailingAfterOneBatch(app.store.exports)
    out = tmp_path / "members.csv"
    code = await scrm(monkeypatch, app.client.server.port, "export", "members", "--out",
                      str(out))
    assert code != 0 and "the export was cut short" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "members.csv.part").exists()
    log = [a for a in await app.store.audit.latest(10) if a["command"] == "export_members"]
    assert [(a["result"], a["rows"]) for a in log] == [("aborted", 1)]
