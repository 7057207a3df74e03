"""`scrm flows check`: one broken file per kind of error, each reported with file and line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot.core import ACTION_NAMES
from bot.flow_engine.loader import FlowsInvalid, Known, load_flows
from bot.flow_engine.sandbox import bounded_environment
from bot.flow_engine.validators import VALIDATORS
from bot.members.fields import FieldBook
from bot.members.variables import MEMBER_VARS
from webhooks.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ENV = {"WECHAT_TOKEN": "check-only", "WECHAT_APP_ID": "wx-check"}
KNOWN = Known(validators=set(VALIDATORS), actions=ACTION_NAMES,
              award_rules={"signup", "checkin"}, required_templates=("fallback",),
              member_vars=MEMBER_VARS)

BASE = """
slots:
  name: {validator: nickname, ask: ask_name}
flows:
  hello:
    description: say hello
    triggers: {intents: [greet], keywords: [hi]}
    steps:
      - collect: name
      - say: hi_name
templates:
  ask_name: {zh: 叫什么, en: "name?"}
  hi_name: {zh: "你好 {{ slots.name }}", en: "hi {{ slots.name }}"}
  fallback: {zh: 嗯, en: hm}
"""


def check(tmp_path: Path, text: str, extra: str | None = None) -> list[str]:
    (tmp_path / "a.yml").write_text(text)
    if extra is not None:
        (tmp_path / "b.yml").write_text(extra)
    try:
        load_flows(tmp_path, KNOWN)
    except FlowsInvalid as e:
        return [str(x) for x in e.errors]
    return []


def test_the_base_file_is_valid(tmp_path):
    assert check(tmp_path, BASE) == []


def test_shipped_flows_are_valid():
    flows = load_flows(ROOT / "flows", Known(
        validators=set(VALIDATORS), actions=ACTION_NAMES, member_vars=MEMBER_VARS,
        award_rules={"signup", "checkin", "share", "referral", "poll"},
        fields=FieldBook(load_settings(ROOT / "config.yml", ENV).members.fields)))
    assert {"signup", "points_query", "checkin", "redeem", "welcome"} <= set(flows.flows)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("      - collect: name", "      - collect: nmae", "a.yml:9: flow 'hello' step 1: unknown slot 'nmae'"),
    ("{validator: nickname,", "{validator: nickame,", "a.yml:3: slot 'name': unknown validator 'nickame'"),
    ("      - say: hi_name", "      - say: hi_nmae", "a.yml:10: template 'hi_nmae' is not defined in any flow file"),
    ('  hi_name: {zh: "你好 {{ slots.name }}", en: "hi {{ slots.name }}"}', '  hi_name: {zh: "你好 {{ slots.name }}"}', "a.yml:13: template 'hi_name' has no en text"),
    ('  hi_name: {zh: "你好 {{ slots.name }}"', '  hi_name: {zh: "你好 {{ slots.name "', "a.yml:13: template 'hi_name' (zh) is not valid Jinja2"),
    ("      - say: hi_name", "      - say: hi_name\n        next: END\n      - say: ask_name", "a.yml:12: flow 'hello': step 'step3' can never be reached"),
    ("      - collect: name", "      - collect: name\n        next:\n          - if: \"slots.nam == 1\"\n            then: END", "a.yml:11: flow 'hello' step 1: condition uses unknown slot 'nam'"),
    ("      - collect: name", "      - collect: name\n        next:\n          - if: \"slots.name ==\"\n            then: END", "condition 'slots.name ==' is not valid Jinja2"),
    ("      - say: hi_name", "      - action: fly", "a.yml:10: flow 'hello' step 2: unknown action 'fly'"),
    ("      - say: hi_name", "      - award: lottery", "unknown points rule 'lottery'"),
    ("      - say: hi_name", "      - link: nowhere", "a.yml:10: flow 'hello': link to unknown flow 'nowhere'"),
    ("  fallback: {zh: 嗯, en: hm}\n", "", "template 'fallback' is required by the app"),
    ("    description: say hello", "    descripton: say hello", "a.yml:6: flow 'hello': unknown key 'descripton'"),
    ("      - say: hi_name", "      - say: hi_name\n        collect: name", "a.yml:10: flow 'hello' step 2: a step does exactly one of"),
    # the bounded sandbox's static limits (bot/flow_engine/sandbox.py)
    ('{zh: "你好 {{ slots.name }}"', '{zh: "你好 {{ slots.name|center(99) }}"', "a.yml:13: template 'hi_name' (zh): unknown filter 'center' (allowed: abs, "),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "{% for a in slots.name %}{% for b in slots.name %}{% endfor %}{% endfor %}"', "a.yml:13: template 'hi_name' (zh): a loop inside a loop is not allowed"),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "{% for a in slots.name recursive %}{% endfor %}"', "a.yml:13: template 'hi_name' (zh): recursive loops are not allowed"),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "{% macro m() %}x{% endmacro %}{{ m() }}"', "a.yml:13: template 'hi_name' (zh): macros ({% macro %}) are not allowed"),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "{% include \'other\' %}"', "a.yml:13: template 'hi_name' (zh): {% include %} is not allowed"),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "x\\n{{ slots.name|format }}"', "a.yml:13: template 'hi_name' (zh): unknown filter 'format'"),
    ('{zh: "你好 {{ slots.name }}"', '{zh: "' + "长" * 4001 + '"', "a.yml:13: template 'hi_name' (zh) is 4001 characters long; at most 4000 are allowed"),
    ("      - collect: name", "      - collect: name\n        next:\n          - if: \"slots.name|center(9) == 'x'\"\n            then: END", "a.yml:11: flow 'hello' step 1: condition \"slots.name|center(9) == 'x'\": unknown filter 'center'"),
])
def test_each_kind_of_error_names_file_line_and_problem(tmp_path, old, new, expected):
    assert old in BASE
    errors = check(tmp_path, BASE.replace(old, new))
    assert any(expected in e for e in errors), errors


def test_a_problem_on_a_later_line_of_a_text_names_that_line(tmp_path):
    text = BASE.replace('{zh: "你好 {{ slots.name }}"', '{zh: "你好\\n\\n{{ slots.name|wordwrap }}"')
    errors = check(tmp_path, text)
    assert "a.yml:13: template 'hi_name' (zh): unknown filter 'wordwrap' (allowed: " in \
        errors[0] and errors[0].endswith("(line 3 of the text)"), errors


def test_a_broadcast_template_with_a_bad_filter_is_reported_once(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "b.yml").write_text(
        'templates:\n  promo: {zh: "{{ nickname|center(99) }}", en: "{{ nickname }}"}\n')
    errors = check(tmp_path, BASE)
    assert [e for e in errors if "promo" in e] == [
        f"{tmp_path / 'templates' / 'b.yml'}:2: template 'promo' (zh): unknown filter "
        f"'center' (allowed: {', '.join(sorted(bounded_environment().filters))})"], errors


def test_duplicate_trigger_across_files(tmp_path):
    other = ("flows:\n  other:\n    triggers: {keywords: [HI]}\n    steps: [{say: fallback}]\n")
    errors = check(tmp_path, BASE, other)
    assert any("duplicate trigger: keyword 'HI' starts both 'hello' and 'other'" in e
               for e in errors), errors


def test_duplicate_template_across_files(tmp_path):
    errors = check(tmp_path, BASE, "templates:\n  hi_name: {zh: 又一个, en: another}\n")
    assert any("template 'hi_name' is already defined at" in e and "a.yml:13" in e
               for e in errors), errors


def test_the_flow_set_carries_the_template_texts_it_checked(tmp_path):
    (tmp_path / "a.yml").write_text(BASE)
    flows = load_flows(tmp_path, KNOWN)  # the files are read once, texts included
    assert flows.templates["hi_name"] == {"zh": "你好 {{ slots.name }}", "en": "hi {{ slots.name }}"}


def test_yaml_syntax_error_has_a_line(tmp_path):
    errors = check(tmp_path, BASE.replace("steps:\n", "steps: [\n", 1))
    assert f"{tmp_path / 'a.yml'}:9: not valid YAML: expected the node content, but found '-'" \
        in errors


def test_cli_check_exits_1_and_prints_every_problem(tmp_path):
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    signup = tmp_path / "flows" / "signup.yml"
    signup.write_text(signup.read_text().replace("collect: mobile", "collect: phone"))
    scrm = str(Path(__import__("sys").executable).parent / "scrm")
    bad = subprocess.run([scrm, "flows", "check", "--dir", str(tmp_path / "flows")], cwd=ROOT,
                         capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "SCRM_ENV_FILE": "/dev/null"})
    assert bad.returncode == 1
    assert "signup.yml" in bad.stdout and "unknown slot 'phone'" in bad.stdout
    assert "nothing was changed" in bad.stdout
    good = subprocess.run([scrm, "flows", "check"], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/bin:/bin", "SCRM_ENV_FILE": "/dev/null"})
    assert good.returncode == 0 and good.stdout.startswith("ok: ")


def test_a_common_question_that_is_also_an_intent_example_is_reported(tmp_path):
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    service = tmp_path / "flows" / "knowledge" / "service.yml"
    text = service.read_text(encoding="utf-8")
    # 积分能换什么 is how she asks for the catalogue (rewards_list in nlu/data): as a common
    # question too, Rasa would be taught the same words twice.
    service.write_text(text.replace("      - 积分可以抵现金吗\n",
                                    "      - 积分可以抵现金吗\n      - 积分能换什么呀？\n"),
                       encoding="utf-8")
    scrm = str(Path(__import__("sys").executable).parent / "scrm")
    bad = subprocess.run([scrm, "flows", "check", "--dir", str(tmp_path / "flows")], cwd=ROOT,
                         capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "SCRM_ENV_FILE": "/dev/null"})
    assert bad.returncode == 1, bad.stdout
    assert "service.yml:5: entry 'points_how_to_use': question '积分能换什么呀？' is also an " \
        "example of intent rewards_list in nlu/data/nlu_zh.yml" in bad.stdout
    assert "1 problem(s); nothing was changed." in bad.stdout
