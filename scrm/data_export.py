"""`scrm export members|interactions`: CSV and JSON lines, through the admin API.

The file is streamed as it arrives (a progress bar on a terminal, nothing when piped) and
written as FILE.part, renamed to FILE only when the server sent all of it: an export cut
short leaves no file that looks whole.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from scrm.cli import _settings

MEMBERS_PATH = "/admin/api/export/members"
INTERACTIONS_PATH = "/admin/api/export/interactions"
CHUNK = 1 << 16


def _by(args: argparse.Namespace) -> str:
    """Who runs it, for the audit: --by, else the login name."""
    if args.by:
        return str(args.by)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _error(e: urllib.error.HTTPError) -> str:
    raw = e.read()
    try:
        return str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:200] or f"HTTP {e.code}"


def _download(args: argparse.Namespace, path: str, params: dict[str, str], header_lines: int,
              what: str) -> None:
    settings = _settings(args)
    base = args.url or f"http://127.0.0.1:{settings.app.port}"
    if not settings.admin.token:
        sys.exit("scrm: SCRM_ADMIN_TOKEN is not set; the admin API refuses every call")
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    req = urllib.request.Request(  # noqa: S310 - the operator's own server
        f"{base}{path}?{query}", headers={"Authorization": f"Bearer {settings.admin.token}"})
    out = Path(args.out) if args.out else None
    part = out.with_name(out.name + ".part") if out else None
    lines = 0
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:  # noqa: S310
            expected = int(resp.headers.get("X-SCRM-Rows") or 0)
            masked = resp.headers.get("X-SCRM-Masked", "yes") != "no"
            sink: IO[bytes] = part.open("wb") if part else sys.stdout.buffer
            bar = tqdm(total=expected or None, unit=" rows", unit_scale=True, leave=False,
                       file=sys.stderr, disable=not sys.stderr.isatty())
            try:
                while chunk := resp.read(CHUNK):
                    sink.write(chunk)
                    # A cell never holds a line break (bot/members/export.py): one row,
                    # one line.
                    lines += chunk.count(b"\n")
                    bar.update(max(0, lines - header_lines) - bar.n)
            finally:
                bar.close()
                if part:
                    sink.close()
                else:
                    sink.flush()
    except urllib.error.HTTPError as e:
        sys.exit(f"scrm: {_error(e)}")
    except urllib.error.URLError as e:
        sys.exit(f"scrm: cannot reach {base}: {e.reason} (is the server running?)")
    except (http.client.HTTPException, OSError) as e:  # IncompleteRead among them
        if part is not None:
            part.unlink(missing_ok=True)
        sys.exit(f"scrm: the export was cut short after {max(0, lines - header_lines):,} "
                 f"rows ({type(e).__name__}); no file was kept, run it again")
    if out is not None and part is not None:
        os.replace(part, out)
    rows = max(0, lines - header_lines)
    where = str(out) if out else "stdout"
    shown = "masked" if masked else "UNMASKED (audited; keep the file safe, delete it after use)"
    print(f"{what}: {rows:,} rows to {where}, {shown}", file=sys.stderr)


def cmd_export_members(args: argparse.Namespace) -> None:
    _download(args, MEMBERS_PATH, {
        "segment": args.segment, "fields": args.fields, "header": args.header,
        "unmasked": "1" if args.unmasked else "", "reason": args.reason or "",
        "by": _by(args)}, header_lines=1, what="members")


def cmd_export_interactions(args: argparse.Namespace) -> None:
    _download(args, INTERACTIONS_PATH, {
        "since": args.since, "until": args.until or "", "segment": args.segment or "",
        "unmasked": "1" if args.unmasked else "", "reason": args.reason or "",
        "by": _by(args)}, header_lines=0, what="interactions")


def _common(p: Any) -> None:
    p.add_argument("--out", default=None, help="write to this file (default: stdout)")
    p.add_argument("--unmasked", action="store_true",
                   help="phones, names and sensitive fields in full: needs --reason; audited")
    p.add_argument("--reason", default=None, help="why the unmasked export (kept in the audit)")
    p.add_argument("--by", default=None, help="who asks, for the audit (default: login name)")
    p.add_argument("--timeout", type=float, default=300, help="seconds without data")
    p.add_argument("--url", default=None)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on `scrm`'s subparsers."""
    export = sub.add_parser("export", help="the brand's data out: members CSV, interactions "
                                           "JSON lines")
    esub = export.add_subparsers(dest="ecmd", required=True)
    members = esub.add_parser("members", help="a segment's members as CSV (UTF-8 with BOM, "
                                              "opens in Excel); masked by default")
    members.add_argument("--segment", default=None,
                         help="a segment as /segment takes it, e.g. 'city:上海 source:qr' "
                              "(default: all)")
    members.add_argument("--fields", default=None,
                         help="columns, comma-separated (default: a standard set); an "
                              "unknown name lists the known ones")
    members.add_argument("--header", choices=("labels", "names"), default="labels",
                         help="Chinese labels (default) or the machine names of --fields")
    _common(members)
    members.set_defaults(func=cmd_export_members)
    inter = esub.add_parser("interactions", help="messages in and out as JSON lines, for "
                                                 "analysis elsewhere")
    inter.add_argument("--since", required=True,
                       help="ISO date (brand time zone), date and time, or 30d / 12h / 2w")
    inter.add_argument("--until", default=None, help="same forms (default: now)")
    inter.add_argument("--segment", default=None, help="only these members' interactions")
    _common(inter)
    inter.set_defaults(func=cmd_export_interactions)
