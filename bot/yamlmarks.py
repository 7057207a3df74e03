"""YAML to plain Python, remembering the line of every key, so errors can point at it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

Path_ = tuple[str, ...]
Lines = dict[Path_, int]
ScalarHook = Callable[[str, Path_, int], Any]


class YamlProblem(Exception):
    """Not valid YAML; the message carries the file and line."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line
        self.problem = message.split(": ", 1)[-1]


def load(text: str, fname: str, on_str: ScalarHook | None = None) -> tuple[Any, Lines]:
    """(data, lines): lines maps a key path like ("flows", "signup", "steps", "0") to its
    1-based line. `on_str` may rewrite string scalars (config.yml expands ${ENV} with it)."""
    try:
        # libyaml's composer when present (several times faster: flows are read for every
        # core); on a mistake, the pure-Python one, whose messages say more.
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        node = _compose_slowly(text, fname)
    lines: Lines = {}
    if node is None:
        return None, lines
    loader = yaml.SafeLoader("")  # one constructor for every scalar of this document
    try:
        return _walk(node, (), lines, on_str, loader), lines
    finally:
        loader.dispose()


def _compose_slowly(text: str, fname: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise YamlProblem(f"{fname}:{line}: not valid YAML: {getattr(e, 'problem', e)}",
                          line) from e


def _walk(node: yaml.Node, path: Path_, lines: Lines, on_str: ScalarHook | None,
          loader: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = str(k.value)
            lines[(*path, key)] = k.start_mark.line + 1
            out[key] = _walk(v, (*path, key), lines, on_str, loader)
            lines[(*path, key)] = k.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*path, str(i)), lines, on_str, loader)
                for i, v in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if on_str is not None and node.tag == "tag:yaml.org,2002:str":
        return on_str(node.value, path, lines[path])
    return loader.construct_object(node, deep=True)


def line_of(path: Path_, lines: Lines) -> int:
    """The line of `path`, or of its nearest ancestor that has one (a missing key)."""
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1
