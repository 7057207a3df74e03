"""`scrm import members` through the core, on the embedded store: a dry run writes nothing,
the import creates and matches people, a re-run changes nothing, GBK reads as UTF-8, bad
rows are reported by line and column (and stop the import unless told), and imported
members become the follower they are when she signs up or her unionid first writes, with
nothing sent to them before they consent. (The admin route and CLI:
tests/integration/test_import_route.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.members.fields import FieldBook
from bot.members.importer import ImportOptions, ImportReport, MemberImporter
from bot.messages import InboundMessage
from store.records import identity_key
from tests.conftest import APP_ID
from tests.support.core import CoreHarness, core_harness
from tests.support.marketing import BOSS, bid_in, member_doc, seed

HEADER = "会员编号,手机号,unionid,昵称,城市,标签,积分,宝宝性别\n"


@pytest.fixture
async def core() -> CoreHarness:
    return await core_harness(marketing={"admins": [BOSS]})


def importer(core: CoreHarness) -> MemberImporter:
    settings = core.core.settings
    return MemberImporter(core.store, FieldBook(settings.members.fields), settings,
                          openid_key=lambda o: identity_key("wechat", APP_ID, o))


async def run(core: CoreHarness, text: str | bytes, mapping: str | None = None,
              **options: Any) -> ImportReport:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return await importer(core).run(data, ImportOptions(options.pop("source", "crm"),
                                                        **options), mapping, "map.yml")


async def everyone(core: CoreHarness) -> list[dict[str, Any]]:
    return await core.store._db["profiles"].find({}).to_list(None)


async def imported(core: CoreHarness, row_id: str) -> dict[str, Any] | None:
    return await core.store._db["profiles"].find_one({"identity_keys": f"import:crm:{row_id}"})


def problems(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(p.line, p.column, p.reason) for p in report.problems]


async def sign_up(core: CoreHarness, openid: str, mobile: str) -> None:
    today = core.calendar.today(datetime.now(UTC))
    for text in ("我要注册", "同意", "同意", "小雨", mobile, "1",
                 (today + timedelta(days=100)).isoformat(), "上海"):
        await core.say(openid, text)


async def test_a_dry_run_writes_nothing_the_import_does_and_a_rerun_changes_nothing(core):
    follower = member_doc(1, tags=["老朋友"])
    follower["identities"][0]["unionid"] = "U_follower"
    follower["fields"]["city"] = "杭州"  # she told us herself
    await seed(core, [follower])
    csv = HEADER + (
        "C1,13800000001,,小美,上海,\"VIP，老客\",120,女孩\n"      # new: created
        "C2,,U_follower,妈妈一,北京,VIP,30,\n"                    # the follower, by unionid
    )
    before = await everyone(core)
    dry = await run(core, csv, dry_run=True)
    assert (dry.created, dry.updated, dry.unchanged, dry.points) == (1, 1, 0, 150)
    assert not dry.problems and not dry.written
    assert await everyone(core) == before and await core.store.ledger.entries(
        follower["_id"], 5) == []

    done = await run(core, csv)
    assert (done.created, done.updated, done.unchanged, done.points) == (1, 1, 0, 150)
    new = await imported(core, "C1")
    assert new is not None and new["identities"] == [] and new["member"]["id"].startswith("M")
    assert new["fields"] == {"mobile": "13800000001", "nickname": "小美", "city": "上海",
                             "province": "上海", "baby_gender": "girl"}
    assert new["tags"] == ["VIP", "老客"] and new["source"]["kind"] == "import"
    assert new["imported"]["source"] == "crm" and new["imported"]["id"] == "C1"
    assert "consents" not in new
    assert await core.store.ledger.balance(new["_id"]) == (120, 120)
    mine = await core.store.profiles.get(follower["_id"])
    assert mine["tags"] == ["老朋友", "VIP"] and mine["fields"]["city"] == "杭州"
    assert await core.store.ledger.balance(follower["_id"]) == (30, 30)

    again = await run(core, csv)
    assert (again.created, again.updated, again.unchanged, again.points) == (0, 0, 2, 0)
    assert len(await everyone(core)) == 2
    assert await core.store.ledger.balance(new["_id"]) == (120, 120)
    assert await core.store.ledger.check() == []


async def test_a_gbk_file_with_a_bom_less_header_reads_like_utf8(core):
    csv = HEADER + "C7,13800000007,,林小雨,广州,新客,0,男孩\n"
    report = await run(core, csv.encode("gbk"))
    assert report.encoding == "gb18030" and report.created == 1
    new = await imported(core, "C7")
    assert (new["fields"]["nickname"], new["fields"]["city"], new["tags"]) == (
        "林小雨", "广州", ["新客"])
    utf8 = await run(core, ("\ufeff" + csv).encode("utf-8"))
    assert utf8.encoding == "utf-8" and utf8.unchanged == 1


async def test_bad_rows_are_reported_by_line_and_column_and_nothing_is_written(core):
    csv = HEADER + (
        'C1,13800000001,,"小美\n第二行\n第三行",上海,,10,\n'   # lines 2-4: one quoted cell
        "C2,1380000,,阿花,上海,,10,\n"                           # line 5: mobile
        "C3,13800000003,,阿朵,上海,,-5,双胞胎\n"                 # line 6: points, enum
        "C4,13800000001,,阿月,上海,,,\n"                         # line 7: mobile again
    )
    report = await run(core, csv)
    assert problems(report) == [
        (5, "手机号", "not a mainland China mobile number"),
        (6, "积分", "points are a whole number, 0 or more"),
        (6, "宝宝性别",
         "宝宝性别没有「双胞胎」这一项；可选: 女孩(girl)、男孩(boy)、还不知道(unknown)"),
        (7, "手机号", "the same mobile as line 2"),
    ]
    assert not report.written and await everyone(core) == []
    assert "1380000" not in str(report.as_dict())  # a value is never echoed

    skipped = await run(core, csv, skip_invalid=True)
    assert skipped.written and (skipped.created, skipped.invalid) == (1, 3)
    assert (await imported(core, "C1"))["fields"]["nickname"] == "小美 第二行 第三行"


async def test_a_mapping_names_columns_and_its_mistakes_by_line(core):
    csv = "客户号,电话号码,备注,孩子\n9,13800000009,x,2\n"
    bad = await run(core, csv, "客户号: id\n电话号码: mobile\n备注: remark\n孩子: field.kids\n")
    assert [(p.file, p.line, p.column) for p in bad.problems] == [
        ("map.yml", 3, "备注"), ("map.yml", 4, "孩子")]
    assert "unknown target 'remark'" in bad.problems[0].reason
    assert "children" in bad.problems[1].reason  # the close one is suggested
    good = await run(core, csv, "客户号: id\n电话号码: mobile\n备注: null\n孩子: field.children\n")
    assert good.created == 1 and (await imported(core, "9"))["fields"]["children"] == 2


async def test_sensitive_fields_are_not_taken_from_a_file(core):
    # Allergies (sensitive: true) are kept only with her own consent, which a file lacks.
    csv = "id,mobile,过敏情况\n1,13800000001,花生\n"
    asked = await run(core, csv, "id: id\nmobile: mobile\n过敏情况: field.allergy\n")
    assert [(p.line, p.column) for p in asked.problems] == [(3, "过敏情况")]
    assert await everyone(core) == []
    by_header = await run(core, csv)  # her label alone does not map it
    assert by_header.ignored == ["过敏情况"] and by_header.created == 1
    assert "allergy" not in (await imported(core, "1"))["fields"]


async def test_people_are_found_by_unionid_then_openid_then_mobile(core):
    docs = [member_doc(i) for i in range(1, 6)]
    docs[0]["identities"][0]["unionid"], docs[3]["identities"][0]["unionid"] = "U1", "U4"
    await seed(core, docs)
    csv = ("id,unionid,openid,mobile,tags\n"
           "a,U1,,13900000077,甲\n"                        # her unionid (mobile nobody's)
           "b,,o_m0002,13900000099,乙\n"                   # her openid (mobile nobody's)
           "c,,,13900000003,丙\n"                          # her mobile
           "d,U4,,13900000005,丁\n")                       # unionid and mobile disagree
    report = await run(core, csv, skip_invalid=True)
    assert problems(report) == [(5, "mobile", "names another member than its unionid does")]
    tags = {p["_id"]: p["tags"] for p in await everyone(core)}
    assert [tags[d["_id"]] for d in docs] == [["甲"], ["乙"], ["丙"], [], []]
    assert report.created == 0 and len(tags) == 5
    # Her own mobile stays: the file's differing ones are not taken over them.
    assert [(await core.store.profiles.get(d["_id"]))["fields"]["mobile"] for d in docs[:2]] \
        == ["13900000001", "13900000002"] and report.kept == 2


async def test_an_imported_member_who_signs_up_with_her_mobile_becomes_that_member(core):
    await run(core, HEADER + "C1,13800000001,,旧昵称,北京,VIP,120,女孩\n")
    member_id = (await imported(core, "C1"))["member"]["id"]
    await sign_up(core, "o_new", "13800000001")
    profiles = await everyone(core)
    assert len(profiles) == 1  # one person, one profile
    [her] = profiles
    assert her["identities"][0]["openid"] == "o_new" and her["member"]["id"] == member_id
    assert her["tags"][:1] == ["VIP"] and her["fields"]["baby_gender"] == "girl"
    assert her["fields"]["nickname"] == "小雨"  # what she said herself wins
    assert await core.store.ledger.balance(her["_id"]) == (220, 220)  # 120 + sign-up 100
    assert await core.store.ledger.check() == []
    # The file again: she is found by her row, nothing twice.
    again = await run(core, HEADER + "C1,13800000001,,旧昵称,北京,VIP,120,女孩\n")
    assert again.unchanged == 1 and len(await everyone(core)) == 1
    assert await core.store.ledger.balance(her["_id"]) == (220, 220)


async def test_a_follower_whose_unionid_was_imported_is_that_member_from_her_first_message(core):
    await run(core, HEADER + "C5,,U_five,小五,上海,VIP,40,\n")
    member_id = (await imported(core, "C5"))["member"]["id"]
    msg = InboundMessage(channel="wechat", app_id=APP_ID, sender="o_five", kind="event",
                         dedupe_key="evt:o_five:1", created_at=datetime.now(UTC),
                         event="subscribe", unionid="U_five")
    await core.send(msg)
    [her] = await everyone(core)
    assert her["identities"][0]["openid"] == "o_five" and her["member"]["id"] == member_id
    assert her["tags"] == ["VIP"] and await core.store.ledger.balance(her["_id"]) == (40, 40)
    assert her["source"]["kind"] == "import"  # where she came from: the first record wins
    assert await core.store.ledger.check() == []


async def test_imported_members_get_no_broadcast_until_they_consent(core):
    await run(core, HEADER + "C1,13800000001,,小美,上海,VIP,,\n")
    await core.say(BOSS, "你好")
    preview = await core.say(BOSS, "/broadcast all | 周末活动")
    await core.say(BOSS, f"/confirm {bid_in(preview)}")
    await core.queue.run(core.core)
    pid = (await imported(core, "C1"))["_id"]
    delivery = await core.store.campaigns.delivery(f"{bid_in(preview)}:{pid}")
    assert (delivery["status"], delivery["reason"]) == ("skipped", "no_consent")

    await sign_up(core, "o_mei", "13800000001")  # she agrees to the privacy policy
    preview = await core.say(BOSS, "/broadcast all | 周末活动")
    await core.say(BOSS, f"/confirm {bid_in(preview)}")
    await core.queue.run(core.core)
    assert any("周末活动" in t for t in core.texts_to("o_mei"))


async def test_someone_erased_at_her_request_is_not_imported_again(core):
    row = HEADER + "C9,13800000009,U_nine,小九,上海,VIP,10,\n"
    await run(core, row)
    her = await imported(core, "C9")
    await core.core.rights.erase(her, "member", "她要求注销", datetime.now(UTC))
    again = await run(core, row)
    assert problems(again) == [(2, None, "this person was erased at her request: take her "
                                         "out of the file (she is not imported again)")]
    assert await everyone(core) == [] and not again.written
    other = await run(core, row.replace("C9", "C10").replace("U_nine", "U_ten"))
    assert problems(other)  # the same mobile from another row id is still her


async def test_a_follower_erased_at_her_request_is_not_brought_back_by_her_openid(core):
    await core.say("o_gone", "你好")
    her = await core.profile("o_gone")
    await core.core.rights.erase(her, "member", "她要求注销", datetime.now(UTC))
    again = await run(core, "openid,昵称\no_gone,小雨\n")
    assert [p[2] for p in problems(again)] == [
        "this person was erased at her request: take her out of the file (she is not "
        "imported again)"]
    assert not again.written


async def test_her_order_totals_count_both_profiles_orders_after_the_merge(core):
    from bot.members.orders import OrderBook, order_from_json

    await run(core, HEADER + "C7,13800000007,,小七,上海,,0,\n")
    c = core.core
    book = OrderBook(c.store, c.points, c.settings, ("wechat", APP_ID))
    await core.say("o_seven", "你好")

    def order(oid: str, member: str, amount: str) -> Any:
        return order_from_json({
            "order_id": oid, "member": member, "at": "2026-11-20T10:00:00+08:00",
            "amount": amount, "channel": "tmall",
            "items": [{"name": "奶粉", "category": "奶粉", "qty": 1, "amount": amount}]})

    await book.record(order("T-imp", "13800000007", "100.00"), datetime.now(UTC))
    await book.record(order("T-wx", "o_seven", "50.00"), datetime.now(UTC))
    await sign_up(core, "o_seven", "13800000007")
    [her] = await everyone(core)
    assert her["orders"]["count"] == 2 and her["orders"]["spent"] == 150.0
    assert await c.store.ledger.check() == []
