"""The one Jinja2 sandbox for everything people type: flow templates, marketers' broadcast
texts, life-stage moments and flow conditions.

Jinja2's own sandbox stops a template from reaching Python internals, but not from costing
the server: `{{ 9**(9**8) }}` is folded while compiling, `{{ 'a'*10**7 }}` builds 10 MB, and
big-int arithmetic holds the GIL, so no thread or timeout protects the event loop. Here every
costly operation is either impossible or bounded, so compiling or rendering a template costs
time and memory bounded by its length and the limits below:

- operators `+ - * / // % **` run at render time (never folded while compiling) through
  `call_binop`: numbers stay within `MAX_INT_BITS`, text and lists within `OUTPUT_LIMIT`,
  `text % args` is refused; `~` is bounded the same way;
- only a short list of methods may be called (`METHODS`), each bounded before it builds;
- only the filters in `FILTERS`, each that can grow its result checked before building it;
  an unknown filter fails at load time;
- `range` is budgeted per render (`RANGE_LIMIT`), loops and per-item filters share a step
  budget (`STEP_LIMIT`), and text built, copied or compared shares a data budget
  (`DATA_LIMIT`);
- macros, call/filter/set blocks, imports, includes, inheritance, recursive and nested loops
  are refused statically (`template_problems`);
- `render_bounded` streams the output and stops past `OUTPUT_LIMIT` (a `BoundedTemplate`'s
  own `render` does the same);
- a function, type, module or object repr is never printed (`finalize`).

Every refusal is a `jinja2.exceptions.SecurityError` (at render) or a
`TemplateAssertionError` (at compile) with a plain message.

Use `bounded_environment()` (strict, for texts) or `bounded_environment(strict=False)` (flow
conditions); `template_problems(ast, env)` lists the static problems of a parsed text, with
its lines, for `scrm flows check`.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Final, cast
from weakref import WeakKeyDictionary

from jinja2 import StrictUndefined, Template, Undefined, nodes, pass_context
from jinja2.environment import Environment
from jinja2.exceptions import (
    FilterArgumentError,
    SecurityError,
    TemplateAssertionError,
    TemplateSyntaxError,
)
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.tests import TESTS as JINJA_TESTS
from jinja2.visitor import NodeTransformer

# -- limits -------------------------------------------------------------------------------
#: characters one render may output; also the most any one text, list or tuple built by an
#: operator, filter or method may hold
OUTPUT_LIMIT: Final = 20_000
#: characters of source: a template under flows/, and a marketer's inline broadcast text
FLOW_TEMPLATE_LIMIT: Final = 4_000
INLINE_TEMPLATE_LIMIT: Final = 2_000
#: numbers `range()` may produce in one render, all calls together
RANGE_LIMIT: Final = 10_000
#: steps one render may take: each loop iteration costs the size of the loop body (in
#: nodes), each item run through map/select/reject/selectattr/rejectattr costs
#: ITEM_STEPS (a filter or test call per item weighs about that many nodes)
STEP_LIMIT: Final = 50_000
ITEM_STEPS: Final = 5
#: characters and items one render may build, copy or compare in all (operators, `~`,
#: filters, methods, slices, comparisons and tests)
DATA_LIMIT: Final = 1_000_000
#: bits of any integer a template computes with (about 77 decimal digits)
MAX_INT_BITS: Final = 256
#: digits `round` may be asked for
MAX_ROUND_DIGITS: Final = 15
#: `for` loops inside one another (1: a loop, but no loop in a loop)
MAX_LOOP_DEPTH: Final = 1
#: depth of the parsed template (expressions inside expressions, blocks inside blocks)
MAX_NESTING: Final = 40
#: depth of nested lists/dicts a value may have to be printed, compared or measured
MAX_VALUE_DEPTH: Final = 20

# -- per-render budget ----------------------------------------------------------------------


class Budget:
    """What one render has used. One per render: keyed by its EvalContext, which a render's
    contexts (the loop-derived ones included) share."""

    __slots__ = ("data", "ranged", "steps")

    def __init__(self) -> None:
        self.ranged = 0
        self.steps = 0
        self.data = 0

    def range(self, n: int) -> None:
        self.ranged += n
        if self.ranged > RANGE_LIMIT:
            raise SecurityError(f"range() may give at most {RANGE_LIMIT} numbers in one "
                                "message")

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > STEP_LIMIT:
            raise SecurityError(f"the template loops too much (more than {STEP_LIMIT} "
                                "steps in one message)")

    def charge(self, n: int) -> None:
        self.data += n
        if self.data > DATA_LIMIT:
            raise SecurityError(f"the template handles too much text (more than "
                                f"{DATA_LIMIT} characters in one message)")

    @property
    def data_left(self) -> int:
        return max(0, DATA_LIMIT - self.data)


_BUDGETS: WeakKeyDictionary[EvalContext, Budget] = WeakKeyDictionary()


def budget_of(context: Context) -> Budget:
    """The budget of the render `context` belongs to."""
    eval_ctx = context.eval_ctx
    budget = _BUDGETS.get(eval_ctx)
    if budget is None:
        budget = _BUDGETS[eval_ctx] = Budget()
    return budget


# -- measuring and printing values ----------------------------------------------------------

_CONTAINERS = (list, tuple, set, frozenset, dict)
_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()), range)
_OBJECT_STR: Any = object.__str__  # what a type without its own text uses


def _too_long() -> SecurityError:
    # what is left of OUTPUT_LIMIT may be less, but the limit a person can act on is this one
    return SecurityError(f"the text would be longer than {OUTPUT_LIMIT} characters")


def _int_digits(n: int) -> int:
    """An upper bound of the decimal digits of n (sign included)."""
    return n.bit_length() * 3 // 10 + 2


def measure(value: Any, cap: int, printing: bool = False) -> int:
    """The size of a value in characters (roughly its text), counted only up to a little past
    `cap`: the walk stops there, so measuring costs at most about `cap` steps.

    With `printing`, everything inside a list or dict must be text, a number, a boolean or
    None (SecurityError otherwise), and a text counts as its quoted form.
    """
    total = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, str):
            if printing and len(item) + 2 <= cap - total:
                total += len(repr(item))
            else:
                total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += _int_digits(item)
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, _CONTAINERS):
            if len(stack) > MAX_VALUE_DEPTH:
                raise SecurityError(f"values nested deeper than {MAX_VALUE_DEPTH} levels "
                                    "are not allowed")
            if isinstance(item, dict):
                total += 2 + 4 * len(item)  # {k: v, ...}
                stack.append(chain.from_iterable(item.items()))
            else:
                total += 2 + 2 * len(item)  # [a, ...]
                stack.append(iter(item))
        elif printing:
            raise SecurityError(f"cannot print a {type(item).__name__} inside a list")
        elif isinstance(item, _VIEWS):
            total += 2 + len(cast(Sized, item))
        else:
            total += 1  # Undefined, loop objects, dates ...: never walked
        if total > cap:
            break
    return total


def _unprintable(value: Any) -> str | None:
    """Why `value` must not be printed (a function, type, module, iterator or object repr)."""
    if callable(value):
        name = getattr(value, "__name__", type(value).__name__)
        return f"cannot print {name!r}: it is a function, not a value (call it, or use a field)"
    if isinstance(value, (types.ModuleType, type)) or hasattr(value, "__next__") or \
            type(value).__str__ is _OBJECT_STR:
        return f"cannot print a {type(value).__name__} object"
    return None


def to_text(value: Any, limit: int = OUTPUT_LIMIT) -> str:
    """`str(value)` for a template, at most `limit` characters; refuses what must not be
    printed before building anything big."""
    if isinstance(value, str):
        if len(value) > limit:
            raise _too_long()
        return value
    if isinstance(value, Undefined):
        return str(value)  # a StrictUndefined raises its 'x' is undefined here
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return str(value)
    if isinstance(value, int):
        if value.bit_length() > 4 * limit + 8:  # over 1.2 * limit digits
            raise _too_long()
    elif isinstance(value, _CONTAINERS):
        if measure(value, limit, printing=True) > limit:
            raise _too_long()
    else:
        why = _unprintable(value)
        if why:
            raise SecurityError(why)
    text = str(value)
    if len(text) > limit:
        raise _too_long()
    return text


@pass_context
def finalize(context: Context, value: Any) -> str:
    """What `{{ value }}` prints: its text, never a function or object repr."""
    return to_text(value, OUTPUT_LIMIT)


# -- operators ------------------------------------------------------------------------------

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}
_SEQUENCES = (str, list, tuple)


def _check_int(n: int) -> None:
    if n.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"numbers larger than {MAX_INT_BITS} bits are not allowed")


def _arithmetic(op: str, left: int | float, right: int | float) -> Any:
    for n in (left, right):
        if isinstance(n, int):
            _check_int(n)
    if op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
            and abs(left) > 1 and right * abs(left).bit_length() > 2 * MAX_INT_BITS:
        # |left| < 2**b, so the result has under right*b bits and, b >= 2, over right*b/2:
        # certainly too large, and never computed.
        raise SecurityError(f"numbers larger than {MAX_INT_BITS} bits are not allowed")
    result = _BINOPS[op](left, right)
    if isinstance(result, int):
        _check_int(result)
    return result


def binop(budget: Budget, op: str, left: Any, right: Any) -> Any:
    """`left op right` for a template, bounded before anything big is computed."""
    if op == "%" and isinstance(left, str):
        raise SecurityError("'%' formatting of text is not allowed; join text with ~")
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return _arithmetic(op, left, right)
    if op == "*" and isinstance(left, int) and isinstance(right, _SEQUENCES):
        left, right = right, left
    if op == "*" and isinstance(left, _SEQUENCES) and isinstance(right, int):
        size = len(left) * max(right, 0)
        if size > OUTPUT_LIMIT:
            raise SecurityError(f"repeating would make {type(left).__name__} longer than "
                                f"{OUTPUT_LIMIT}")
        budget.charge(size)
    elif op == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        size = len(left) + len(right)
        if size > OUTPUT_LIMIT:
            raise SecurityError(f"adding would make {type(left).__name__} longer than "
                                f"{OUTPUT_LIMIT}")
        budget.charge(size)
    return _BINOPS[op](left, right)


# -- methods ------------------------------------------------------------------------------


def _replace_size(s: str, old: str, new: str, count: int) -> int:
    found = s.count(old) if old else len(s) + 1
    if count >= 0:
        found = min(found, count)
    return len(s) + found * (len(new) - len(old))


def _m_replace(budget: Budget, s: str, old: Any, new: Any, count: Any = -1) -> str:
    if not (isinstance(old, str) and isinstance(new, str) and isinstance(count, int)):
        raise TypeError("replace(old, new[, count]) takes two texts and a number")
    size = _replace_size(s, old, new, count)
    if size > OUTPUT_LIMIT:
        raise _too_long()
    budget.charge(len(s) + size)
    return s.replace(old, new, count)


def _m_split(name: str) -> Callable[..., list[str]]:
    def split(budget: Budget, s: str, sep: Any = None, maxsplit: Any = -1) -> list[str]:
        if not ((sep is None or isinstance(sep, str)) and isinstance(maxsplit, int)):
            raise TypeError(f"{name}(sep[, maxsplit]) takes a text and a number")
        pieces = s.count(sep) + 1 if sep else len(s) // 2 + 1
        if maxsplit >= 0:
            pieces = min(pieces, maxsplit + 1)
        if pieces > OUTPUT_LIMIT:
            raise SecurityError(f"{name}() would give more than {OUTPUT_LIMIT} pieces")
        budget.charge(len(s) + pieces)
        result: list[str] = getattr(s, name)(sep, maxsplit)
        return result
    return split


def _m_text(name: str) -> Callable[..., Any]:
    """A str method whose result is at most a few times its input: charged, then checked."""
    def method(budget: Budget, s: str, *args: Any) -> Any:
        budget.charge(len(s) + sum(len(a) for a in args if isinstance(a, str)))
        result = getattr(s, name)(*args)
        if isinstance(result, str) and len(result) > OUTPUT_LIMIT:
            raise _too_long()
        return result
    return method


def _m_plain(name: str) -> Callable[..., Any]:
    """A method that builds nothing (a lookup, a view, a search): charged by its input."""
    def method(budget: Budget, obj: Any, *args: Any) -> Any:
        budget.charge(1 + (len(obj) if isinstance(obj, (str, list, tuple)) else 0))
        return getattr(obj, name)(*args)
    return method


#: the methods a template may call, by the type they belong to
METHODS: Final[dict[type, dict[str, Callable[..., Any]]]] = {
    str: {
        "replace": _m_replace, "split": _m_split("split"), "rsplit": _m_split("rsplit"),
        **{n: _m_text(n) for n in ("upper", "lower", "title", "capitalize", "strip",
                                   "lstrip", "rstrip", "startswith", "endswith", "count",
                                   "find", "rfind", "isdigit", "isalpha", "isalnum",
                                   "isspace")},
    },
    dict: {n: _m_plain(n) for n in ("get", "items", "keys", "values")},
    list: {n: _m_plain(n) for n in ("count", "index")},
    tuple: {n: _m_plain(n) for n in ("count", "index")},
}


def bounded_method(obj: Any) -> Callable[..., Any] | None:
    """The bounded version of a built-in method `obj` (like `'a'.upper`), or None."""
    if not isinstance(obj, types.BuiltinMethodType):
        return None
    owner = getattr(obj, "__self__", None)
    for kind, methods in METHODS.items():
        if isinstance(owner, kind):
            return methods.get(obj.__name__)
    return None


# -- range, `~`, loops, charged values --------------------------------------------------------


@pass_context
def budget_range(context: Context, *args: int) -> range:
    """`range()` for templates: at most RANGE_LIMIT numbers per render, all calls together."""
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = RANGE_LIMIT + 1
    budget_of(context).range(count)
    return numbers


@pass_context
def _concat(context: Context, *parts: Any) -> str:
    """`a ~ b ~ c`: the texts joined, refused before building past OUTPUT_LIMIT."""
    texts = []
    total = 0
    for part in parts:
        text = to_text(part, OUTPUT_LIMIT - total)
        total += len(text)
        texts.append(text)
    budget_of(context).charge(total)
    return "".join(texts)


@pass_context
def _loop(context: Context, iterable: Any, cost: int) -> Iterator[Any]:
    """A loop's items, each iteration charged the size of the loop's body."""
    budget = budget_of(context)
    for item in iterable:
        budget.step(cost)
        yield item


@pass_context
def _charged(context: Context, value: Any) -> Any:
    """`value` unchanged, its size charged (an operand of a comparison, a slice)."""
    budget = budget_of(context)
    budget.charge(measure(value, budget.data_left + 1))
    return value


budget_range.__name__ = "range"  # what an error names it by
_INTERNAL: Final = (budget_range, _concat, _loop, _charged)

# -- filters and tests ----------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    """A filter's input as a list, at most OUTPUT_LIMIT items."""
    if isinstance(value, Undefined):
        iter(value)  # raises for a StrictUndefined
        return []
    items = list(islice(value, OUTPUT_LIMIT + 1))
    if len(items) > OUTPUT_LIMIT:
        raise SecurityError(f"lists longer than {OUTPUT_LIMIT} items are not allowed")
    return items


@pass_context
def f_join(context: Context, value: Any, d: Any = "", attribute: Any = None) -> str:
    budget = budget_of(context)
    items = _items(value)
    if attribute is not None:
        getter = make_attrgetter(context.environment, attribute)
        items = [getter(item) for item in items]
    sep = to_text(d)
    texts = []
    total = 0
    for i, item in enumerate(items):
        if i:
            total += len(sep)
        text = to_text(item, max(OUTPUT_LIMIT - total, -1))
        total += len(text)
        texts.append(text)
    if total > OUTPUT_LIMIT:
        raise _too_long()
    budget.charge(total + len(items))
    return sep.join(texts)


@pass_context
def f_replace(context: Context, s: Any, old: Any, new: Any, count: Any = None) -> str:
    return _m_replace(budget_of(context), to_text(s), to_text(old), to_text(new),
                      -1 if count is None else count)


@pass_context
def f_string(context: Context, value: Any) -> str:
    text = to_text(value)
    budget_of(context).charge(len(text))
    return text


@pass_context
def f_list(context: Context, value: Any) -> list[Any]:
    items = _items(value)
    budget_of(context).charge(len(items))
    return items


def _text_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """upper, lower, title, capitalize, trim: their text input bounded and charged first."""
    @pass_context
    def text_filter(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        text = to_text(value)
        budget_of(context).charge(len(text) + measure((args, kwargs), OUTPUT_LIMIT))
        result = context.call(original, text, *args, **kwargs)
        if isinstance(result, str) and len(result) > OUTPUT_LIMIT:
            raise _too_long()
        return result
    return text_filter


def _collection_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """sort, unique, min, max: the items materialised, their size charged (what
    comparing them costs), then the original filter."""
    @pass_context
    def collection_filter(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = _items(value)
        budget = budget_of(context)
        budget.charge(measure(items, budget.data_left + 1))
        return context.call(original, items, *args, **kwargs)
    return collection_filter


def _stepped_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """map, select, reject, selectattr, rejectattr: one step per item they look at."""
    @pass_context
    def stepped_filter(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = budget_of(context)

        def stepped(items: Iterable[Any]) -> Iterator[Any]:
            for item in items:
                budget.step(ITEM_STEPS)
                yield item
        return context.call(original, stepped(_items(value)), *args, **kwargs)
    return stepped_filter


@pass_context
def f_sum(context: Context, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, (int, float)):
        raise SecurityError("sum() adds numbers only")
    items = _items(value)
    if attribute is not None:
        getter = make_attrgetter(context.environment, attribute)
        items = [getter(item) for item in items]
    budget_of(context).charge(len(items))
    total: Any = start
    for item in items:
        if not isinstance(item, (int, float)):
            raise SecurityError("sum() adds numbers only")
        total = _arithmetic("+", total, item)
    return total


def _charge_parse(context: Context, value: Any) -> None:
    """int and float read text: as costly as its length."""
    if isinstance(value, str):
        if len(value) > OUTPUT_LIMIT:
            raise _too_long()
        budget_of(context).charge(len(value))


@pass_context
def f_int(context: Context, value: Any, default: Any = 0, base: Any = 10) -> Any:
    _charge_parse(context, value)
    result = context.call(JINJA_FILTERS["int"], value, default, base)
    if isinstance(result, int):
        _check_int(result)
    return result


@pass_context
def f_float(context: Context, value: Any, default: Any = 0.0) -> Any:
    _charge_parse(context, value)
    return context.call(JINJA_FILTERS["float"], value, default)


@pass_context
def f_truncate(context: Context, s: Any, length: Any = 255, killwords: Any = False,
               end: Any = "...", leeway: Any = None) -> str:
    text, end = to_text(s), to_text(end)
    if leeway is None:
        leeway = context.environment.policies["truncate.leeway"]
    if not (isinstance(length, int) and isinstance(leeway, int)) or length < len(end) or \
            leeway < 0:
        raise FilterArgumentError(f"truncate() needs a length of at least {len(end)} and a "
                                  "leeway of 0 or more")
    budget_of(context).charge(len(text) + len(end))
    result: str = JINJA_FILTERS["truncate"](context.environment, text, length, killwords, end,
                                            leeway)
    return result


@pass_context
def f_round(context: Context, value: Any, precision: Any = 0, method: Any = "common") -> Any:
    if not isinstance(precision, int) or abs(precision) > MAX_ROUND_DIGITS:
        raise SecurityError(f"round() takes a precision of at most {MAX_ROUND_DIGITS} digits")
    if isinstance(value, int):
        _check_int(value)
    return context.call(JINJA_FILTERS["round"], value, precision, method)


_PLAIN_FILTERS = ("default", "d", "length", "count", "first", "last", "abs")
_TEXT_FILTERS = ("upper", "lower", "title", "capitalize", "trim")
_COLLECTION_FILTERS = ("sort", "unique", "min", "max")
_STEPPED_FILTERS = ("map", "select", "reject", "selectattr", "rejectattr")

#: the filters a template may use; anything else is an error when it is loaded
FILTERS: Final[dict[str, Callable[..., Any]]] = {
    **{n: JINJA_FILTERS[n] for n in _PLAIN_FILTERS},
    **{n: _text_filter(JINJA_FILTERS[n]) for n in _TEXT_FILTERS},
    **{n: _collection_filter(JINJA_FILTERS[n]) for n in _COLLECTION_FILTERS},
    **{n: _stepped_filter(JINJA_FILTERS[n]) for n in _STEPPED_FILTERS},
    "join": f_join, "replace": f_replace, "string": f_string, "list": f_list, "sum": f_sum,
    "int": f_int, "float": f_float, "round": f_round, "truncate": f_truncate,
}


def _charged_test(original: Callable[..., Any]) -> Callable[..., Any]:
    """A test with the size of what it looks at charged (`eq`, `in` compare whole values)."""
    @pass_context
    def test(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = budget_of(context)
        budget.charge(measure((value, args, kwargs), budget.data_left + 1))
        return context.call(original, value, *args, **kwargs)
    return test


#: the tests a template may use (`is defined`, `is odd`, `is in` ...)
TESTS: Final[dict[str, Callable[..., Any]]] = {
    name: _charged_test(cast(Callable[..., Any], test)) for name, test in JINJA_TESTS.items()}

#: the filters whose first argument names a filter, or a test (position of the name)
_NAMES_FILTER: Final = {"map": 0}
_NAMES_TEST: Final = {"select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1}

# -- the static checks ----------------------------------------------------------------------

_REFUSED: Final[dict[type[nodes.Node], str]] = {
    nodes.Macro: "macros ({% macro %}) are not allowed",
    nodes.CallBlock: "{% call %} blocks are not allowed",
    nodes.Import: "{% import %} is not allowed",
    nodes.FromImport: "{% from ... import %} is not allowed",
    nodes.Include: "{% include %} is not allowed",
    nodes.Extends: "{% extends %} is not allowed",
    nodes.Block: "{% block %} is not allowed",
    nodes.AssignBlock: "{% set %}...{% endset %} blocks are not allowed; use "
                       "{% set x = ... %}",
    nodes.FilterBlock: "{% filter %} blocks are not allowed; apply the filter with |",
    nodes.EvalContextModifier: "{% autoescape %} is not allowed",
}


@dataclass(frozen=True, order=True)
class Problem:
    """Something a template may not do, and the line (of the template) where it does it."""

    lineno: int
    message: str


def template_problems(ast: nodes.Template, env: Environment) -> list[Problem]:
    """Every structure the bounded sandbox refuses, found without running the template:
    refused statements, recursive or nested loops, unknown filters and tests, numbers over
    MAX_INT_BITS, nesting deeper than MAX_NESTING. Walks iteratively: safe on any AST."""
    problems: set[Problem] = set()
    deep = False
    todo: list[tuple[nodes.Node, int, int]] = [(ast, 0, 0)]  # node, depth, loops around it
    while todo:
        node, depth, loops = todo.pop()
        line = node.lineno or 1
        if depth > MAX_NESTING and not deep:
            deep = True
            problems.add(Problem(line, f"the template is nested too deeply (more than "
                                       f"{MAX_NESTING} levels)"))
        for kind, message in _REFUSED.items():
            if isinstance(node, kind):
                problems.add(Problem(line, message))
        if isinstance(node, nodes.For):
            if node.recursive:
                problems.add(Problem(line, "recursive loops are not allowed"))
            if loops >= MAX_LOOP_DEPTH:
                problems.add(Problem(line, "a loop inside a loop is not allowed"))
        elif isinstance(node, nodes.Filter) and node.name not in env.filters:
            problems.add(Problem(line, f"unknown filter {node.name!r} (allowed: "
                                       f"{', '.join(sorted(env.filters))})"))
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            problems.add(Problem(line, f"unknown test {node.name!r} (allowed: "
                                       f"{', '.join(sorted(env.tests))})"))
        elif isinstance(node, (nodes.Call, nodes.Filter, nodes.Test)) and \
                (node.dyn_args is not None or node.dyn_kwargs is not None):
            problems.add(Problem(line, "*args and **kwargs are not allowed in calls"))
        elif isinstance(node, nodes.Const) and isinstance(node.value, int) and \
                node.value.bit_length() > MAX_INT_BITS:
            problems.add(Problem(line, f"numbers larger than {MAX_INT_BITS} bits are not "
                                       "allowed"))
        if isinstance(node, nodes.Filter):
            for table, known, what in ((_NAMES_FILTER, env.filters, "filter"),
                                       (_NAMES_TEST, env.tests, "test")):
                at = table.get(node.name)
                arg = node.args[at] if at is not None and len(node.args) > at else None
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and \
                        arg.value not in known:
                    problems.add(Problem(line, f"{node.name}(): unknown {what} "
                                               f"{arg.value!r}"))
        inner = loops + 1 if isinstance(node, nodes.For) else loops
        todo.extend((child, depth + 1, inner) for child in node.iter_child_nodes())
    return sorted(problems)


# -- compiling: the AST made bounded --------------------------------------------------------


def _helper(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), args, [], None, None,
                      lineno=lineno)


def _size(body: Iterable[nodes.Node]) -> int:
    count = 0
    todo = list(body)
    while todo:
        node = todo.pop()
        count += 1
        todo.extend(node.iter_child_nodes())
    return count


class _Bounder(NodeTransformer):
    """Rewrites a checked AST so what the sandbox cannot intercept goes through it: `~`
    (Concat), each loop's items, comparison operands and slices."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        cost = max(1, _size([*node.body, *([node.test] if node.test else [])]))
        self.generic_visit(node)
        node.iter = _helper("bounded_loop", [cast(nodes.Expr, node.iter), nodes.Const(cost)],
                            node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _helper("bounded_concat", list(node.nodes), node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _helper("charged", [node.expr], node.lineno)
        for op in node.ops:
            op.expr = _helper("charged", [op.expr], op.lineno or node.lineno)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.arg, nodes.Slice) and node.ctx == "load":
            return _helper("charged", [node], node.lineno)
        return node


class BoundedTemplate(Template):
    """A template whose `render` streams and stops past OUTPUT_LIMIT."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        return render_bounded(self, dict(*args, **kwargs))


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with every costly operation bounded (see the module's doc)."""

    intercepted_binops = frozenset(_BINOPS)
    template_class = BoundedTemplate
    #: longest source `parse`/`from_string` accept (callers apply their own, lower limits)
    max_source = FLOW_TEMPLATE_LIMIT

    # helpers the rewritten AST calls (nodes.EnvironmentAttribute): not reachable by name
    bounded_concat = staticmethod(_concat)
    bounded_loop = staticmethod(_loop)
    charged = staticmethod(_charged)

    def __init__(self, **options: Any) -> None:
        options.setdefault("undefined", StrictUndefined)
        options["autoescape"] = False
        options["finalize"] = finalize
        super().__init__(**options)
        self.globals.clear()
        self.globals["range"] = budget_range
        self.filters = dict(FILTERS)
        self.tests = dict(TESTS)

    # -- compiling --
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if len(source) > self.max_source:
            raise TemplateSyntaxError(f"the template is {len(source)} characters long; at "
                                      f"most {self.max_source} are allowed", 1, name, filename)
        try:
            return super()._parse(source, name, filename)
        except RecursionError:
            raise TemplateSyntaxError("the template is nested too deeply", 1, name,
                                      filename) from None

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        problems = template_problems(source, self)
        if problems:
            raise TemplateAssertionError("; ".join(p.message for p in problems),
                                         problems[0].lineno, name, filename)
        bounded = _Bounder().visit(source)
        bounded.set_environment(self)
        return super()._generate(bounded, name, filename, defer_init)

    # -- running --
    def wrap_str_format(self, value: Any) -> None:
        """`'...'.format` stays a plain method, which `call` refuses."""
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return binop(budget_of(context), operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, Undefined):
            return context.call(obj, *args, **kwargs)  # raises its 'x' is undefined
        kwargs.pop("_loop_vars", None)
        kwargs.pop("_block_vars", None)
        if any(obj is f for f in _INTERNAL):
            return obj(context, *args, **kwargs)
        method = bounded_method(obj)
        if method is None:
            name = getattr(obj, "__name__", type(obj).__name__)
            raise SecurityError(f"calling {name!r} is not allowed in templates")
        return method(budget_of(context), obj.__self__, *args, **kwargs)


def bounded_environment(*, strict: bool = True) -> BoundedEnvironment:
    """The environment for templates and flow conditions: StrictUndefined (a missing
    variable is an error) unless `strict=False` (conditions: a missing slot is false)."""
    return BoundedEnvironment(undefined=StrictUndefined if strict else Undefined)


def render_bounded(template: Template, context: dict[str, Any],
                   limit: int = OUTPUT_LIMIT) -> str:
    """The template's output, generated piece by piece: SecurityError as soon as it passes
    `limit` characters, so a long output is never built whole."""
    parts: list[str] = []
    total = 0
    pieces = template.generate(context)
    try:
        for piece in pieces:
            total += len(piece)
            if total > limit:
                raise SecurityError(f"the message would be longer than {limit} characters")
            parts.append(piece)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # stop the template where it is
    return "".join(parts)


__all__ = [
    "DATA_LIMIT", "FILTERS", "FLOW_TEMPLATE_LIMIT", "INLINE_TEMPLATE_LIMIT", "ITEM_STEPS",
    "MAX_INT_BITS", "MAX_LOOP_DEPTH", "MAX_NESTING", "MAX_ROUND_DIGITS", "MAX_VALUE_DEPTH",
    "METHODS", "OUTPUT_LIMIT", "RANGE_LIMIT", "STEP_LIMIT", "TESTS", "BoundedEnvironment",
    "BoundedTemplate", "Budget", "Problem", "binop", "bounded_environment", "bounded_method",
    "budget_of", "budget_range", "finalize", "measure", "render_bounded", "template_problems",
    "to_text",
]
