"""The bounded sandbox: every template an outside tester used to freeze the server, and the
class of template around it, is refused or bounded, wherever templates are compiled or
rendered (flow templates, marketers' inline texts, flow conditions).

Before the sandbox, the render-time cases here returned (after minutes, or with megabytes of
text) instead of raising; the static ones compiled. No test measures wall-clock time: each
asserts the error, or the bound.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from bot.flow_engine.sandbox import (
    FLOW_TEMPLATE_LIMIT,
    INLINE_TEMPLATE_LIMIT,
    MAX_INT_BITS,
    OUTPUT_LIMIT,
    RANGE_LIMIT,
    bounded_environment,
    render_bounded,
)
from bot.flow_engine.templates import TemplateLibrary, TemplateProblem
from bot.members.variables import MEMBER_VARS
from tests.support.core import core_harness
from tests.support.marketing import BOSS, member_doc, seed

MEMBER = {"nickname": "小美", "points": 120}
CHAIN = "|replace('', 'xxxxxxxxxx')" * 6
METHOD_CHAIN = ".replace('', 'xxxxxxxxxx')" * 6


def render(source: str, **context: object) -> str:
    """A flow template (flows/*.yml) rendered the way the bot renders it."""
    return TemplateLibrary({"t": {"zh": source}}).render("t", "zh", **context)


def inline(source: str, **context: object) -> str:
    """A marketer's inline broadcast text (`/broadcast all | ...`), as campaigns render it."""
    lib = TemplateLibrary({})
    return lib.compile_inline(source, MEMBER_VARS).render(**{**MEMBER, **context})


# -- what the tester sent, and its class: refused when rendered ------------------------------

AT_RENDER = [
    ("{{ 9**(9**8) }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ 9**9**9**9 }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ 2**256 }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ (2**200) * (2**200) }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ 'a'*10**7 }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ 10**7*'a' }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ ('a'*5000)*5000 }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ [1]*10**7 }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ ('a'*15000) + ('a'*15000) }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ ('a'*15000) ~ ('a'*15000) }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ 'a'.ljust(10**8) }}", "calling 'ljust' is not allowed"),
    ("{{ 'a'.rjust(10**8) }}", "calling 'rjust' is not allowed"),
    ("{{ 'a'.center(10**8) }}", "calling 'center' is not allowed"),
    ("{{ 'a'.zfill(10**8) }}", "calling 'zfill' is not allowed"),
    ("{{ ('\t'*10).expandtabs(10**7) }}", "calling 'expandtabs' is not allowed"),
    ("{{ ','.join(['a', 'b']) }}", "calling 'join' is not allowed"),
    ("{{ '{:>100000000}'.format(1) }}", "calling 'format' is not allowed"),
    ("{{ '{x:>100000000}'.format_map({'x': 1}) }}", "calling 'format_map' is not allowed"),
    ("{{ '%100000000s' % 'a' }}", "'%' formatting of text is not allowed"),
    ("{{ '%s' % 1 }}", "'%' formatting of text is not allowed"),
    ("{{ range(10**6)|join(',') }}", f"at most {RANGE_LIMIT} numbers"),
    ("{{ range(10**30)|length }}", f"at most {RANGE_LIMIT} numbers"),
    ("{{ range(6000)|length }}{{ range(6000)|length }}", f"at most {RANGE_LIMIT} numbers"),
    ("{{ range(9000)|join(',') }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ 'abc'" + CHAIN + " }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ 'abc'" + METHOD_CHAIN + " }}", f"longer than {OUTPUT_LIMIT}"),
    ("{{ ('a'*20000).split('') }}", "empty separator"),
    ("{{ (','*20000).split(',') }}", f"more than {OUTPUT_LIMIT} pieces"),
    ("{{ range }}", "cannot print 'range': it is a function"),
    ("{{ nickname.upper }}", "cannot print 'upper': it is a function"),
    ("{{ 'x'.format }}", "cannot print 'format'"),
    ("{{ range(3) }}", "cannot print a range object"),
    ("{{ {'a': 1}.items() }}", "cannot print a dict_items object"),
    ("{{ [1, 2]|map('string') }}", "cannot print a generator object"),
    ("{{ 1.5|round(10**5, 'floor') }}", "precision of at most"),
    ("{{ [[1], [2]]|sum(start=[]) }}", "adds numbers only"),
    ("{{ ('9'*200)|int(base=16) }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ [].append(1) }}", "calling 'append' is not allowed"),
    ("{{ {'a': 1}.pop('a') }}", "calling 'pop' is not allowed"),
    ("{{ 'a'.encode() }}", "calling 'encode' is not allowed"),
]


@pytest.mark.parametrize(("source", "message"), AT_RENDER)
def test_a_flow_template_that_would_cost_the_server_is_refused_when_rendered(source, message):
    with pytest.raises(TemplateProblem, match=message):
        render(source, **MEMBER)


@pytest.mark.parametrize(("source", "message"), AT_RENDER)
def test_a_broadcast_text_compiles_without_computing_and_is_refused_when_rendered(source,
                                                                                   message):
    # compile_inline is what `/broadcast all | ...` runs when the marketer sends it: nothing
    # is folded while compiling, so it cannot freeze the loop there.
    with pytest.raises(TemplateProblem, match=message):
        inline(source)


@pytest.mark.parametrize("source", ["{{ 9**(9**8) }}", "{{ 'a'*10**7 }}", "{{ range }}",
                                    "{{ '%100000000s' % 'a' }}", "{{ 'a'.ljust(10**8) }}"])
def test_the_sandbox_itself_raises_security_error(source):
    with pytest.raises(SecurityError):
        bounded_environment().from_string(source).render(nickname="x")


def test_the_bounds_are_exact_at_the_edge():
    assert render("{{ 2**255 }}") == str(2**255)
    assert render("{{ 'a'*20000 }}") == "a" * OUTPUT_LIMIT
    with pytest.raises(TemplateProblem, match=f"longer than {OUTPUT_LIMIT}"):
        render("{{ 'a'*20001 }}")
    assert render("{{ range(10000)|length }}") == str(RANGE_LIMIT)
    assert render("{{ 'ab'|replace('', '-') }}") == "-a-b-"
    assert render("{{ 'ab'.replace('b', 'cc') }}") == "acc"


async def test_the_testers_broadcast_is_answered_with_the_problem_not_a_frozen_server():
    core = await core_harness(marketing={"admins": [BOSS]})
    await core.say(BOSS, "你好")
    await seed(core, [member_doc(1, tags=["会员"])])
    reply = await core.say(BOSS, "/broadcast all | {{ 9**(9**8) }}")
    assert f"larger than {MAX_INT_BITS} bits" in reply
    reply = await core.say(BOSS, "/broadcast all | {{ 'a'|center(10**8) }}")
    assert "unknown filter 'center'" in reply
    assert "小助手" in await core.say("o_someone", "你好")  # and the bot still answers


# -- refused before it ever runs: when loaded, and in compile_inline --------------------------

STATIC = [
    ("{{ 'a'|center(10**8) }}", "unknown filter 'center'"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "a loop inside a loop is not allowed"),
    ("{% for i in range(3) %}{% if i %}{% for j in range(3) %}{% endfor %}{% endif %}"
     "{% endfor %}", "a loop inside a loop is not allowed"),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", "macros"),
    ("{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}", "recursive loops"),
    ("{% call range(3) %}x{% endcall %}", "call"),
    ("{% include 'other' %}", "include"),
    ("{% extends 'other' %}", "extends"),
    ("{% import 'other' as o %}", "import"),
    ("{% from 'other' import o %}", "import"),
    ("{% block b %}x{% endblock %}", "block"),
    ("{% set x %}{{ 'a' }}{% endset %}", "endset"),
    ("{% filter upper %}x{% endfilter %}", "filter"),
    ("{% autoescape true %}x{% endautoescape %}", "autoescape"),
    ("{{ range(3)|map('center', 10**8)|join }}", "map\\(\\): unknown filter 'center'"),
    ("{{ range(3)|select('nope')|list }}", "select\\(\\): unknown test 'nope'"),
    ("{{ 3 is nope }}", "unknown test 'nope'"),
    ("{{ 'a'.replace(*['a', 'b']) }}", "\\*args and \\*\\*kwargs"),
    ("{{ 0x" + "f" * 80 + " }}", f"larger than {MAX_INT_BITS} bits"),
    ("{{ " + " + ".join(["1"] * 60) + " }}", "nested too deeply"),
    ("{{ " + "(" * 300 + "1" + ")" * 300 + " }}", "nested too deeply"),
    *[("{{ 'a'|" + name + args + " }}", f"unknown filter {name!r}")
      for name, args in (("indent", ""), ("format", ""), ("wordwrap", ""), ("pprint", ""),
                         ("xmlattr", ""), ("urlize", ""), ("tojson", ""),
                         ("filesizeformat", ""), ("batch", "(3)"), ("slice", "(3)"),
                         ("center", ""), ("attr", "('x')"), ("safe", ""))],
]


@pytest.mark.parametrize(("source", "message"), STATIC)
def test_a_flow_template_that_could_cost_the_server_is_refused_when_loaded(source, message):
    with pytest.raises(TemplateProblem, match=message):
        TemplateLibrary({"t": {"zh": source}})


@pytest.mark.parametrize(("source", "message"), STATIC)
def test_a_broadcast_text_that_could_cost_the_server_is_refused_when_sent(source, message):
    with pytest.raises(TemplateProblem, match=message):
        TemplateLibrary({}).compile_inline(source, MEMBER_VARS)


def test_a_template_longer_than_the_limit_is_refused():
    long_flow = "x" * (FLOW_TEMPLATE_LIMIT + 1)
    with pytest.raises(TemplateProblem, match=f"at most {FLOW_TEMPLATE_LIMIT}"):
        TemplateLibrary({"t": {"zh": long_flow}})
    assert render("x" * FLOW_TEMPLATE_LIMIT) == "x" * FLOW_TEMPLATE_LIMIT
    with pytest.raises(TemplateProblem, match=f"最多 {INLINE_TEMPLATE_LIMIT} 字"):
        TemplateLibrary({}).compile_inline("x" * (INLINE_TEMPLATE_LIMIT + 1), MEMBER_VARS)
    assert inline("x" * INLINE_TEMPLATE_LIMIT) == "x" * INLINE_TEMPLATE_LIMIT


def test_only_range_is_a_global():
    env = bounded_environment()
    assert set(env.globals) == {"range"}
    for name in ("lipsum(10**6)", "namespace()", "cycler(1)", "joiner()", "dict(a=1)"):
        with pytest.raises(TemplateProblem, match="is undefined"):
            render("{{ " + name + " }}")


# -- budgets: output, loops, data ---------------------------------------------------------------


def test_a_long_output_stops_at_the_limit_and_is_never_built_whole():
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(10**6):
            pulled += 1
            yield i

    with pytest.raises(TemplateProblem, match=f"longer than {OUTPUT_LIMIT} characters"):
        render("{% for i in items %}{{ pad }}{% endfor %}", items=items(), pad="x" * 100)
    # the loop stopped as soon as the message passed the limit: 200 items of 100 characters
    assert pulled <= OUTPUT_LIMIT // 100 + 2
    with pytest.raises(TemplateProblem, match=f"longer than {OUTPUT_LIMIT} characters"):
        inline("{% for i in range(5000) %}{{ nickname }}，你好！{% endfor %}")


def test_render_bounded_stops_any_template():
    template = bounded_environment().from_string("{% for i in range(10) %}abc{% endfor %}")
    assert render_bounded(template, {}, limit=30) == "abc" * 10
    with pytest.raises(SecurityError, match="longer than 29"):
        render_bounded(template, {}, limit=29)


def test_loops_share_one_step_budget():
    # 20,000 iterations of a 5-node body: well under the output limit, over the steps
    source = ("{% for c in text %}{% if c == 'b' %}{{ c }}{% endif %}{% endfor %}")
    with pytest.raises(TemplateProblem, match="loops too much"):
        render(source, text="a" * 20_000)
    assert render(source, text="ab" * 100) == "b" * 100


def test_per_item_filters_are_steps_too():
    with pytest.raises(TemplateProblem, match="loops too much"):
        render("{{ ('a'*20000)|list|map('upper')|join }}")


def test_comparing_and_copying_big_values_is_charged():
    twin = "a" * 20_000
    with pytest.raises(TemplateProblem, match="handles too much text"):
        render("{% for i in range(100) %}{% if s == t %}{% endif %}{% endfor %}",
               s=twin, t="".join(["a"] * 20_000))
    with pytest.raises(TemplateProblem, match="handles too much text"):
        render("{% for i in range(1000) %}{{ s[1:]|length > 0 }}{% endfor %}", s=twin)
    with pytest.raises(TemplateProblem, match="handles too much text"):
        render("{{ ([s]*20000)|sort|length }}", s=twin)


def test_budgets_are_per_render_not_per_library():
    lib = TemplateLibrary({"t": {"zh": "{{ range(9000)|length }}"}})
    for _ in range(5):
        assert lib.render("t", "zh") == "9000"


# -- what still works ----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ ['b', 'a']|join('、') }}", "b、a"),
    ("{{ x|default('d') }}{{ x|d('e') }}", "de"),
    ("{{ 'aB'|upper }}{{ 'aB'|lower }}{{ 'a b'|title }}{{ 'ab'|capitalize }}", "ABabA BAb"),
    ("{{ ' a '|trim }}|{{ 'foo bar baz qux'|truncate(9) }}", "a|foo..."),
    ("{{ [1, 2]|length }}{{ 'abc'|count }}{{ [1, 2]|first }}{{ [1, 2]|last }}", "2312"),
    ("{{ '42'|int + 1 }} {{ '1.5'|float }} {{ 2.567|round(2) }} {{ -3|abs }}", "43 1.5 2.57 3"),
    ("{{ 7|string ~ 'x' }}{{ 'aXa'|replace('a', 'b') }}{{ 'ab'|list }}", "7xbXb['a', 'b']"),
    ("{{ [3, 1, 2]|sort|join }}{{ [1, 1, 2]|unique|join }}{{ [3, 1]|min }}{{ [3, 1]|max }}",
     "12312" + "13"),
    ("{{ [1, 2, 3]|sum }} {{ range(5)|select('odd')|join }} {{ range(4)|reject('even')|join }}",
     "6 13 13"),
    ("{{ [1, 2]|map('string')|join('+') }}", "1+2"),
    ("{{ rows|selectattr('ok')|map(attribute='n')|join }}{{ rows|rejectattr('ok')|list|length }}",
     "a1"),
    ("{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b', 'z') }}{{ {'a': 1}.keys()|list }}", "1z['a']"),
    ("{{ 'a,b'.split(',')|join('+') }} {{ 'Ab'.lower() }} {{ ' x '.strip() }} "
     "{{ 'abc'.startswith('a') }} {{ 'abc'.find('c') }} {{ 'aab'.count('a') }}",
     "a+b ab x True 2 2"),
    ("{{ [1, 'a'] }} {{ {'k': [1, 2]} }} {{ none }} {{ 1.5 }} {{ day }}",
     "[1, 'a'] {'k': [1, 2]} None 1.5 2026-05-20"),
    ("{% for e in rows %}{{ loop.index }}{{ e.n }}{% endfor %}", "1a2b"),
    ("{% set n = 3 %}{{ n * 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1 / 4 }}",
     "6 3 1 1024 0.25"),
    ("{{ 'a' if 2 > 1 else 'b' }}{{ 2 in [1, 2] }}{{ x is defined }}", "aTrueFalse"),
])
def test_message_friendly_templates_still_render(source, expected):
    rows = [{"n": "a", "ok": True}, {"n": "b", "ok": False}]
    assert render(source, rows=rows, day=dt.date(2026, 5, 20)) == expected


def test_a_missing_variable_is_still_named():
    with pytest.raises(TemplateProblem, match="'nickname' is undefined"):
        TemplateLibrary({}).compile_inline("{{ nickname }}好", MEMBER_VARS).render(points=1)


def test_flow_conditions_in_the_bounded_sandbox():
    # engine.py's conditions: a non-strict environment, an expression compiled per turn
    env = bounded_environment(strict=False)
    assert env.compile_expression("slots.x == 1")(slots={}) is False
    assert env.compile_expression("slots.x|int > 3")(slots={"x": "5"}) is True
    condition = env.compile_expression("9**(9**8) > 1")  # compiles: nothing is folded
    with pytest.raises(SecurityError):
        condition(slots={})
    with pytest.raises(TemplateError, match="unknown filter 'center'"):
        env.compile_expression("slots.x|center(10**8)")


# -- any small expression: a bounded answer or a clean refusal -----------------------------------

ATOMS = st.sampled_from([
    "0", "1", "2", "7", "9", "-3", "99", "10**8", "2**200", "0.5", "1e308", "'a'", "'ab'",
    "''", "'%s'", "'{}'", "' x '", "nickname", "points", "[1, 2]", "['a', 'b']", "(1,)",
    "{'k': 'v'}", "range(3)", "range(10**5)", "none", "true", "missing",
])
BINARY = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "==", "<", "in", "and"])
FILTERS = st.sampled_from([
    "|upper", "|join(',')", "|join", "|replace('', 'xyz')", "|replace('a', 'aaaa')", "|list",
    "|length", "|string", "|int", "|float", "|round(2)", "|truncate(5)", "|sum", "|first",
    "|last", "|sort", "|unique|list", "|min", "|max", "|abs", "|trim", "|title",
    "|default('d')", "|map('upper')|join", "|select('odd')|list", "|center(9)",
    "|indent(10**6)", "|format(1)",
])
METHODS = st.sampled_from([
    ".upper()", ".replace('', 'xyz')", ".split()", ".split('a')", ".strip()", ".count('a')",
    ".find('b')", ".get('k')", ".items()", ".ljust(10**6)", ".format(1)", ".zfill(99)",
    ".startswith('a')", ".index(1)",
])


def _expressions() -> st.SearchStrategy[str]:
    return st.recursive(ATOMS, lambda inner: st.one_of(
        st.tuples(inner, BINARY, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, FILTERS).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, METHODS).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}:]"),
    ), max_leaves=10)


TEMPLATES = st.one_of(
    _expressions().map(lambda e: "{{ " + e + " }}"),
    st.tuples(_expressions(), _expressions()).map(
        lambda t: "{% for i in " + t[0] + " %}{{ " + t[1] + " }}{% endfor %}"),
    st.tuples(_expressions(), _expressions()).map(
        lambda t: "{% set x = " + t[0] + " %}{{ x }}{{ " + t[1] + " }}{{ x ~ x }}"),
)
CLEAN_CAUSES = (TemplateError, ArithmeticError, TypeError, ValueError)


# Python warns about the code Jinja2 writes for `1[0:]`; the template fails cleanly anyway
@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(TEMPLATES)
def test_any_small_template_renders_within_the_limit_or_is_refused_cleanly(source):
    try:
        lib = TemplateLibrary({"t": {"zh": source}})
        out = lib.render("t", "zh", **MEMBER)
    except TemplateProblem as e:
        # refused, or the template's own mistake (1/0, 'a' + 1): never out of memory, never
        # too deep, never something the sandbox did not expect
        assert isinstance(e.__cause__, CLEAN_CAUSES), repr(e.__cause__)
        assert not isinstance(e.__cause__, RecursionError)
    else:
        assert len(out) <= OUTPUT_LIMIT
        assert "<function" not in out and "<built-in" not in out and " object at 0x" not in out
