"""`scrm export members|interactions`: CSV and JSON lines, through the admin API."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on `scrm`'s subparsers."""
    return None


def _unused(args: argparse.Namespace) -> None:
    return None
