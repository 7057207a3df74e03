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


# Inside bot/: features depend on the flow engine and shared modules, never on the
# conversation layer or on each other upwards; only bot/core.py wires them together.
BOT_RULES = {
    "bot.flow_engine": ("bot.conversation", "bot.members", "bot.sisters", "bot.marketing",
                        "bot.rights", "bot.core"),
    "bot.members": ("bot.conversation", "bot.sisters", "bot.marketing", "bot.rights",
                    "bot.core"),
    "bot.sisters": ("bot.conversation", "bot.marketing", "bot.rights", "bot.core"),
    "bot.marketing": ("bot.conversation", "bot.rights", "bot.handoff", "bot.core"),  # ports
    "bot.rights": ("bot.conversation", "bot.marketing", "bot.handoff", "bot.core"),
    "bot.handoff": ("bot.conversation", "bot.marketing", "bot.rights", "bot.sisters",
                    "bot.core"),
    "bot.conversation": ("bot.members", "bot.sisters", "bot.marketing", "bot.rights",
                         "bot.core"),
}


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("package", sorted(BOT_RULES))
def test_bot_features_point_one_way(package):
    bad = []
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in BOT_RULES[package]):
                bad.append(f"{module_of(path)} imports {name}")
    assert bad == []


WECHAT_ERRCODES = {40001, 42001, 45009, 45015, 45047}


def test_wechat_rules_stay_in_the_channel():
    """No WeChat errcode, and no branch on the channel's name, anywhere in bot/ or store/."""
    found = []
    for pkg in ("bot", "store"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and (
                        (node.value in WECHAT_ERRCODES and not isinstance(node.value, bool))
                        or node.value == "wechat"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []
