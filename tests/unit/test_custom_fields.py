"""The brand's own member fields (config.yml members.fields): read by type, refused with a
reason, declared with errors that name file and line, asked and stored by flows, hidden
from staff when sensitive, and gone when she withdraws her consent to sensitive data."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.flow_engine.loader import FlowsInvalid
from bot.members.fields import FieldBook, FieldError
from bot.members.variables import member_context
from bot.settings import ConfigError, CustomField
from tests.support.core import CoreHarness, core_harness
from webhooks.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 5, 1)
BOOK = FieldBook({
    "baby_gender": CustomField(type="enum", label={"zh": "宝宝性别", "en": "Baby's gender"},
                               choices={"girl": "女孩", "boy": "男孩"}),
    "children": CustomField(type="int", label="孩子数量", min=0, max=12),
    "spend": CustomField(type="decimal", label="月均花费", places=1),
    "visit": CustomField(type="date", label="到店日期"),
    "vip": CustomField(type="bool", label="有会员卡"),
    "feeding": CustomField(type="list", label="喂养", choices={"breast": "母乳",
                                                            "formula": "奶粉"}),
    "hobbies": CustomField(type="list", label="爱好"),
    "card": CustomField(type="text", label="卡号", max=8),
    "phone2": CustomField(type="text", label="备用手机", validator="cn_mobile"),
    "allergy": CustomField(type="text", label="过敏", sensitive=True),
})


@pytest.mark.parametrize(("name", "raw", "stored"), [
    ("baby_gender", "女孩", "girl"), ("baby_gender", " BOY ", "boy"),
    ("children", "３", 3), ("children", 2, 2), ("children", "2.0", 2),
    ("spend", "¥1,234.56", 1234.6), ("spend", "８.25", 8.2),
    ("visit", "2026年3月5日", "2026-03-05"), ("visit", "2026/3/5", "2026-03-05"),
    ("visit", "20260305", "2026-03-05"),
    ("vip", "是", True), ("vip", "no", False), ("vip", True, True),
    ("feeding", "母乳、奶粉，母乳", ["breast", "formula"]),
    ("hobbies", "读书; 瑜伽", ["读书", "瑜伽"]),
    ("card", " A123 ", "A123"), ("phone2", "138 1234 5678", "13812345678"),
    ("card", "", None),
])
def test_each_type_reads_what_people_and_spreadsheets_write(name, raw, stored):
    assert BOOK.parse(name, raw, TODAY) == stored


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("baby_gender", "双胞胎", "可选: 女孩(girl)、男孩(boy)"),
    ("children", "-1", "不能小于 0"), ("children", "13", "不能大于 12"),
    ("children", "2.5", "要填整数"), ("children", True, "要填整数"),
    ("spend", "一百", "要填数字"), ("spend", "nan", "要填数字"),
    ("visit", "2026-02-30", "不是日期"), ("visit", "明天", "不是日期"),
    ("vip", "也许", "看不懂"), ("feeding", "羊奶", "没有「羊奶」"),
    ("card", "123456789", "最多 8 个字"), ("card", "a\x00b", "控制字符"),
    ("phone2", "12345", "备用手机不对"),
])
def test_a_value_that_does_not_fit_says_why(name, raw, says):
    with pytest.raises(FieldError) as info:
        BOOK.parse(name, raw, TODAY)
    assert says in info.value.message


def test_an_unknown_field_names_the_close_one():
    with pytest.raises(FieldError, match="是不是 children"):
        BOOK.get("childre")


def test_staff_see_sensitive_fields_masked_and_choices_by_label():
    fields = {"baby_gender": "girl", "allergy": "花生", "feeding": ["breast"], "due_date":
              "2026-09-01", "city": "上海"}
    assert BOOK.view(fields) == {"宝宝性别": "女孩", "喂养": "母乳", "过敏": "***"}
    assert BOOK.masked(fields) == {**fields, "allergy": "***", "due_date": "***"}
    assert BOOK.view(fields, masked=False)["过敏"] == "花生"


def test_a_broadcast_says_the_field_as_she_reads_it_and_a_preview_hides_sensitive_ones():
    profile = {"fields": {"baby_gender": "girl", "allergy": "花生"}, "lang": "zh"}
    assert member_context(profile, TODAY, BOOK)["field"] == {"baby_gender": "女孩",
                                                              "allergy": "花生"}
    assert member_context(profile, TODAY, BOOK, masked=True)["field"]["allergy"] == "***"
    assert "field" not in member_context({"fields": {}}, TODAY, BOOK)


def config(tmp_path: Path, fields: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text("wechat: {token: abcd, app_id: wx}\nmembers:\n  fields:\n" + fields,
                    encoding="utf-8")
    return path


@pytest.mark.parametrize(("fields", "says"), [
    ("    mobile: {label: 手机}\n",
     r"config.yml:4 members.fields.mobile.\[key\]: .*'mobile' is built in"),
    ("    Bad-Name: {label: x}\n", r"config.yml:4 members.fields.Bad-Name.\[key\]: .*lower-case"),
    ("    x: {label: x, type: enum}\n", r"config.yml:4 members.fields.x: .*needs choices"),
    ("    x: {label: x, type: colour}\n", r"config.yml:4 members.fields.x.type: "),
    ("    x: {label: x, validator: nope}\n", r"config.yml:4 members.fields.x: .*unknown "
                                             "validator 'nope'"),
    ("    x: {label: x, type: int, choices: [a]}\n", r"choices: only for enum and list"),
    ("    x: {label: {en: X}}\n", r"config.yml:4 members.fields.x.label: .*zh"),
])
def test_a_mistyped_field_in_config_names_the_line(tmp_path, fields, says):
    with pytest.raises(ConfigError, match=says):
        load_settings(config(tmp_path, fields), {})


def flows_with(tmp_path: Path, extra: str) -> Path:
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", folder)
    (folder / "extra.yml").write_text(extra, encoding="utf-8")
    return folder


async def harness(tmp_path: Path, extra: str, **fields: CustomField) -> CoreHarness:
    from tests.support.core import settings

    base = settings().members.fields
    return await core_harness(app={"flows_dir": str(flows_with(tmp_path, extra))},
                              members={"fields": {**base, **fields}})


EXTRA = """\
flows:
  allergy:
    description: 过敏情况
    triggers: {keywords: [过敏登记]}
    steps:
      - collect: field.allergy
      - set: {field.children: 2}
      - say: allergy_saved
templates:
  allergy_saved:
    zh: "记下了"
    en: "Saved"
"""


async def test_a_flow_naming_an_unknown_field_or_a_bad_value_is_refused_with_its_line(
        tmp_path):
    extra = EXTRA.replace("field.allergy", "field.alergy").replace("children: 2",
                                                                   "children: 20")
    with pytest.raises(FlowsInvalid) as info:
        await harness(tmp_path, extra)
    text = str(info.value)
    assert "extra.yml:6: flow 'allergy' step 1: unknown member field 'alergy'" in text
    assert "allergy" in text and "baby_gender" in text  # the declared ones are listed
    assert "extra.yml:7: flow 'allergy' step 2: 20 does not fit member field 'children'" \
        in text


async def sign_up(core: CoreHarness, who: str, sensitive: str) -> None:
    answers = ["我要注册", "同意", sensitive, "小安", "13812340000", "1"]
    if sensitive == "同意":
        today = core.calendar.today(datetime.now(UTC))
        answers.append((today + timedelta(days=100)).isoformat())
    for text in [*answers, "上海"]:
        await core.say(who, text)


async def test_baby_details_are_asked_checked_and_stored_by_their_codes(tmp_path):
    core = await core_harness()
    assert "注册" in await core.say("o_nm", "完善资料")  # not a member yet
    await sign_up(core, "o_bd", "同意")
    assert "男孩还是女孩" in await core.say("o_bd", "完善资料")
    again = await core.say("o_bd", "双胞胎")
    assert "宝宝性别没看懂" in again and "女孩(girl)" in again
    assert (await core.profile("o_bd"))["fields"].get("baby_gender") is None  # nothing kept
    assert "喂养方式" in await core.say("o_bd", "女孩")  # the generic question, by label
    assert "记下啦" in await core.say("o_bd", "母乳、奶粉")
    fields = (await core.profile("o_bd"))["fields"]
    assert fields["baby_gender"] == "girl" and fields["feeding"] == ["breast", "formula"]
    mine = await core.say("o_bd", "我的数据")  # what we keep, as she said it
    assert "宝宝性别 Baby's gender：女孩" in mine and "喂养方式 Feeding：母乳、奶粉" in mine


async def test_a_sensitive_field_is_kept_only_with_consent_and_goes_when_it_is_withdrawn(
        tmp_path):
    core = await harness(tmp_path, EXTRA)
    await sign_up(core, "o_no", "不同意")
    await core.say("o_no", "过敏登记")
    assert "记下了" in await core.say("o_no", "花生")
    fields = (await core.profile("o_no"))["fields"]
    assert "allergy" not in fields and fields["children"] == 2  # the rest is stored

    await sign_up(core, "o_yes", "同意")
    await core.say("o_yes", "过敏登记")
    await core.say("o_yes", "花生")
    assert (await core.profile("o_yes"))["fields"]["allergy"] == "花生"
    await core.say("o_yes", "撤回孕育信息授权")
    await core.say("o_yes", "同意")
    fields = (await core.profile("o_yes"))["fields"]
    assert "allergy" not in fields and "due_date" not in fields and fields["children"] == 2
