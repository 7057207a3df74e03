"""Dependencies point webhooks -> bot -> store; bot holds no web server or WeChat types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "store": ("bot", "webhooks", "scrm", "aiohttp", "wechatpy", "rasa_sdk"),
    "bot": ("webhooks", "scrm", "aiohttp.web", "wechatpy"),
    "webhooks": ("scrm",),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package):
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_motor_is_only_used_inside_store():
    users = [p.relative_to(ROOT) for pkg in ("bot", "webhooks", "scrm")
             for p in (ROOT / pkg).rglob("*.py")
             if any(n.startswith(("motor", "mongomock_motor", "pymongo")) for n in imports_of(p))]
    assert users == []
