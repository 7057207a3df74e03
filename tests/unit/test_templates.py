"""Reply templates: languages, strictness, the sandbox, and language detection."""

from __future__ import annotations

import pytest

from bot.flow_engine.templates import TemplateLibrary, TemplateProblem, detect_lang
from tests.support.core import shipped_templates


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


@pytest.mark.parametrize(("text", "lang"), [
    ("你好", "zh"), ("hello", "en"), ("hi 你好", "zh"), ("123", "fb"), (None, "fb"), ("", "fb"),
])
def test_detect_lang(text, lang):
    assert detect_lang(text, "fb") == lang
