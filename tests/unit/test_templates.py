"""Reply templates: languages, strictness, the sandbox, and language detection.

The limits of the sandbox (what a template may not cost) are in test_template_limits.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.flow_engine.sandbox import FLOW_TEMPLATE_LIMIT, OUTPUT_LIMIT
from bot.flow_engine.templates import TemplateLibrary, TemplateProblem, detect_lang
from tests.support.core import shipped_templates

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def test_shipped_templates_render_in_both_languages():
    lib = shipped_templates()
    for name in ("greet", "help", "apology", "welcome", "fallback"):
        assert lib.render(name, "zh", profile={})
        assert lib.render(name, "en", profile={})
    assert "小美" in lib.render("greet", "zh", profile={"nickname": "小美"})


def test_unknown_language_falls_back_to_default():
    lib = TemplateLibrary({"hi": {"zh": "你好"}}, default_lang="zh")
    assert lib.render("hi", "fr") == "你好"


def test_missing_variable_is_an_error_not_a_blank():
    lib = TemplateLibrary({"hi": {"zh": "你好 {{ name }}"}})
    with pytest.raises(TemplateProblem, match="'name' is undefined"):
        lib.render("hi", "zh")


def test_sandbox_blocks_attribute_escapes():
    lib = TemplateLibrary({"x": {"zh": "{{ ''.__class__.__mro__ }}"}})
    with pytest.raises(TemplateProblem):
        lib.render("x", "zh")


def test_bad_syntax_is_reported_at_load():
    with pytest.raises(TemplateProblem, match="'broken' \\(zh\\)"):
        TemplateLibrary({"broken": {"zh": "{% if %}"}})


def test_every_shipped_template_fits_the_bounded_sandbox():
    texts: dict[str, dict[str, str]] = {}
    for path in [*FLOWS.glob("*.yml"), *FLOWS.glob("templates/*.yml")]:
        texts.update((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(
            "templates") or {})
    assert len(texts) > 40
    for name, by_lang in texts.items():
        for lang, source in by_lang.items():
            assert len(source) <= FLOW_TEMPLATE_LIMIT, (name, lang)
    TemplateLibrary(texts)  # compiles every one: filters, loops, methods all allowed


POINTS = {"balance": 120, "tier": "银卡", "next_tier": "金卡", "to_next": 80, "entries": [
    {"date": "2026-05-01", "points": 100, "reason": "signup"},
    {"date": "2026-05-02", "points": -20, "reason": "redeem"}]}


@pytest.mark.parametrize(("name", "context", "zh", "en"), [
    ("points_summary", {"points": POINTS}, "2026-05-01 +100 注册", "2026-05-02 -20 redeem"),
    ("rewards_list", {"rewards": {"balance": 60, "gifts": [
        {"code": "wipes", "name": "湿巾", "cost": 50, "in_stock": True, "affordable": True},
        {"code": "diapers", "name": "纸尿裤", "cost": 200, "in_stock": True,
         "affordable": False}]}},
     "· 纸尿裤：200 积分（还差 140 分）", "e.g. \"redeem wipes\""),
    ("poll_question", {"slots": {"question": "周末?", "options": ["好", "不好"]}},
     "周末?\n1. 好\n2. 不好", "2. 不好\nReply"),
    ("sisters_list", {"sisters": [{"nickname": "阿May", "stage": "孕20周"}]},
     "1. 阿May（孕20周）", "1. 阿May (孕20周)"),
    ("whoami", {"summary": {"first_seen": "2026-01-02", "messages": 3, "tags": ["孕中期"],
                            "member": {"id": "M1"}}}, "标签：孕中期", "Tags: 孕中期"),
    ("greet", {"profile": {"nickname": "小美"}}, "你好，小美！", "Hello, 小美!"),
    ("lecture_invite", {"nickname": "小美"}, "小美，本周六", "小美, online class"),
])
def test_shipped_templates_with_loops_filters_and_methods_render(name, context, zh, en):
    lib = shipped_templates()
    assert zh in lib.render(name, "zh", **context)
    assert en in lib.render(name, "en", **context)


def test_a_render_past_the_output_limit_is_a_template_problem():
    lib = TemplateLibrary({"many": {"zh": "{% for o in items %}{{ o }}{% endfor %}"}})
    assert lib.render("many", "zh", items=["x"] * OUTPUT_LIMIT) == "x" * OUTPUT_LIMIT
    with pytest.raises(TemplateProblem, match=r"'many' \(zh\): .*longer than"):
        lib.render("many", "zh", items=["x"] * (OUTPUT_LIMIT + 1))


def test_any_render_failure_is_a_template_problem():
    lib = TemplateLibrary({"div": {"zh": "{{ 1 / n }}"}, "fn": {"zh": "{{ profile.get }}"}})
    with pytest.raises(TemplateProblem, match="ZeroDivisionError"):
        lib.render("div", "zh", n=0)
    with pytest.raises(TemplateProblem, match="cannot print 'get'"):
        lib.render("fn", "zh", profile={})


def test_an_unknown_filter_is_reported_at_load():
    with pytest.raises(TemplateProblem, match="'wide' \\(en\\): unknown filter 'center'"):
        TemplateLibrary({"wide": {"en": "{{ name|center(80) }}"}})


@pytest.mark.parametrize(("text", "lang"), [
    ("你好", "zh"), ("hello", "en"), ("hi 你好", "zh"), ("123", "fb"), (None, "fb"), ("", "fb"),
])
def test_detect_lang(text, lang):
    assert detect_lang(text, "fb") == lang
