"""`scrm import members|orders FILE`: the brand's existing data, through the admin API.

The file (CSV, UTF-8 or GBK) and its mapping go to the running server, which checks every
row before writing. Problems are printed as `FILE:LINE: column X: reason` (a mapping
file's problems name the mapping file); the exit code is 1 if there were any, else 0. A
progress bar shows on a terminal (stderr), never in a pipe.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

PHASES = {"checking": "checking", "matching": "matching", "writing": "writing"}
_NOT_SOURCE = re.compile(r"[^\w.\-]+")


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on `scrm`'s subparsers."""
    imp = sub.add_parser("import", help="import the brand's members or orders from CSV")
    isub = imp.add_subparsers(dest="icmd", required=True)
    for kind, text in (
        ("members", "members: matched by unionid, openid or mobile, the rest created"),
        ("orders", "orders: one row per order line, recorded as the shop webhook does"),
    ):
        p = isub.add_parser(kind, help=text)
        p.add_argument("file", help="CSV file, UTF-8 (with or without BOM) or GBK")
        p.add_argument("--mapping", default=None,
                       help="YAML `source header: target` (default: headers that name a "
                            "target, e.g. 手机号, 昵称, 积分, field.<name>)")
        p.add_argument("--dry-run", action="store_true",
                       help="write nothing: check every row and say what would happen")
        p.add_argument("--skip-invalid", action="store_true",
                       help="import the good rows even if others have problems")
        p.add_argument("--source", default=None,
                       help="the system the file comes from (default: the file name); "
                            "re-runs and points are keyed by it: keep it the same")
        p.add_argument("--url", default=None)
        p.set_defaults(func=cmd_import, kind=kind)


def source_of(path: Path) -> str:
    """A source name from a file name: what the admin API accepts (letters, digits, _-.)."""
    name = _NOT_SOURCE.sub("_", path.stem).strip("_.-")[:40]
    return name or "import"


def _multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = f"scrm-{uuid.uuid4().hex}"
    body = bytearray()
    for name, filename, data in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{urllib.parse.quote(filename)}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def problem_line(problem: dict[str, Any], file: str, mapping: str | None = None) -> str:
    """`FILE:LINE: column X: reason` (the mapping file for the problems in it)."""
    name = (mapping or problem["file"]) if problem.get("file") else file
    where = f"{name}:{problem['line']}" if problem.get("line") else name
    column = f" column {problem['column']}:" if problem.get("column") else ""
    return f"{where}:{column} {problem['reason']}"


def summary_line(s: dict[str, Any]) -> str:
    if s["dry_run"]:
        return (f"dry run ({s['rows']} rows, nothing written): would create {s['created']}, "
                f"update {s['updated']}, leave {s['unchanged']} unchanged; "
                f"{s['points']} points to credit; {s['invalid']} rows with problems")
    if not s["written"]:
        return (f"nothing written: {s['invalid']} of {s['rows']} rows have problems "
                "(fix them, or --skip-invalid to import the others)")
    kept = f"; {s['kept']} values kept as the member gave them" if s.get("kept") else ""
    return (f"imported {s['rows']} rows: created {s['created']}, updated {s['updated']}, "
            f"unchanged {s['unchanged']}; {s['points']} points credited; "
            f"{s['invalid']} rows not imported{kept}")


def cmd_import(args: argparse.Namespace) -> None:
    from scrm.cli import _settings

    settings = _settings(args)
    base = args.url or f"http://127.0.0.1:{settings.app.port}"
    if not settings.admin.token:
        sys.exit("scrm: SCRM_ADMIN_TOKEN is not set; the admin API refuses every call")
    path = Path(args.file)
    try:
        parts = [("file", path.name, path.read_bytes())]
        if args.mapping:
            mapping = Path(args.mapping)
            parts.append(("mapping", mapping.name, mapping.read_bytes()))
    except OSError as e:
        sys.exit(f"scrm: cannot read {e.filename}: {e.strerror}")
    body, content_type = _multipart(parts)
    query = {"source": args.source or source_of(path)}
    query.update({k: "1" for k, on in (("dry_run", args.dry_run),
                                       ("skip_invalid", args.skip_invalid)) if on})
    req = urllib.request.Request(  # noqa: S310 - the operator's own server
        f"{base}/admin/api/import/{args.kind}?{urllib.parse.urlencode(query)}", data=body,
        method="POST", headers={"Authorization": f"Bearer {settings.admin.token}",
                                "Content-Type": content_type})
    summary = _send(req, base)
    problems = summary.get("problems", [])
    for p in problems:
        print(problem_line(p, args.file, args.mapping))
    if summary.get("problems_total", len(problems)) > len(problems):
        print(f"... and {summary['problems_total'] - len(problems)} more problems")
    print(f"source {summary['source']}: {summary_line(summary)}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def _send(req: urllib.request.Request, base: str) -> dict[str, Any]:
    """POST the file; show progress; the summary (exits on an error answer)."""
    bar: tqdm[Any] | None = None
    phase = ""
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310
            for raw in resp:
                doc = json.loads(raw)
                if "progress" in doc:
                    p = doc["progress"]
                    if sys.stderr.isatty() and p["phase"] != phase:
                        if bar is not None:
                            bar.close()
                        phase = p["phase"]
                        bar = tqdm(total=p["total"] or None, desc=PHASES.get(phase, phase),
                                   unit="row", file=sys.stderr, leave=False)
                    if bar is not None:
                        bar.total = p["total"] or bar.total
                        bar.update(p["done"] - bar.n)
                elif "summary" in doc:
                    return dict(doc["summary"])
                elif "error" in doc:
                    sys.exit(f"scrm: {doc['error']}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            message = json.loads(raw).get("error", f"HTTP {e.code}")
        except ValueError:
            message = raw.decode(errors="replace")[:200] or f"HTTP {e.code}"
        sys.exit(f"scrm: {message}")
    except urllib.error.URLError as e:
        sys.exit(f"scrm: cannot reach {base}: {e.reason} (is the server running?)")
    finally:
        if bar is not None:
            bar.close()
    sys.exit("scrm: the server ended the answer without a summary")
