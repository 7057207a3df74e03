"""The docs name what the code has: every flow action a manager may use is in the README,
and every file ARCHITECTURE.md points at exists."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core import ACTION_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_lists_every_flow_action():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    flows_section = readme.split("## Flows, for community managers", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in ACTION_NAMES if f"`{name}`" not in flows_section)
    assert missing == []


def test_every_path_in_architecture_md_exists():
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:bot|store|webhooks|tests|flows|scrm)/[\w/.]*)`", text))
    assert paths, "ARCHITECTURE.md names no paths"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
