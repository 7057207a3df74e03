"""Importing the brand's existing members (and orders) from CSV, channel-free.

Every row is checked before anything is written: by default one bad row means nothing is
written and every problem is reported by line and column; `skip_invalid` imports the good
rows. A row finds her profile by the key of her earlier import (source and row id), then by
unionid, openid, mobile; the rest become members without a WeChat identity, linked when she
writes or signs up (store/imports.py `merge`). Re-running a file changes nothing: tags are
a set, a value she gave herself is never overwritten by the file, and her points are one
ledger entry keyed by source and row id. Imported members have no consent, so nothing is
sent to them until they give it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from bot.brand_calendar import BrandCalendar
from bot.flow_engine.validators import Invalid, get_validator
from bot.members.actions import new_member_id
from bot.members.csvfile import (
    MEMBER_TARGETS,
    ORDER_TARGETS,
    ColumnMap,
    CsvError,
    CsvProblem,
    CsvRow,
    auto_mapping,
    load_mapping,
    read_csv,
)
from bot.members.fields import FieldBook, FieldDef, FieldError
from bot.members.orders import Order, OrderBook, OrderError, order_from_json
from bot.members.points import Points, tier_status
from bot.privacy import mask_phones
from bot.settings import BotSettings
from store.imports import import_key
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

LEDGER_REASON: Final = "import"
CHUNK: Final = 500  # rows per write (and between yields to the event loop)
MAX_PROBLEMS: Final = 1000  # listed in a report; a file wrong throughout says so soon enough
MAX_TAGS: Final = 50
MAX_TAG: Final = 30
_SOURCE: Final = re.compile(r"^[\w.\-]{1,40}$")  # no ":" (it separates key parts)
_WECHAT_ID: Final = re.compile(r"^[A-Za-z0-9_\-]{1,128}$", re.ASCII)
_TAG_SEP: Final = re.compile(r"\s*[,，、;；|]\s*")
_POINTS: Final = FieldDef("points", "int", "积分", "points", None, (), 0, 10**9, 0, False)
_REASONS: Final = {  # flow validators' codes, as the CLI and admin API say them
    "not_a_mobile": "not a mainland China mobile number", "empty": "empty",
    "too_long": "too long", "looks_like_phone": "looks like a phone number, not a name",
}

Clock = Callable[[], datetime]


def check_source(name: str) -> str:
    """The source name (whose rows' keys it prefixes), or ValueError saying why not."""
    name = unicodedata.normalize("NFKC", name).strip()
    if not _SOURCE.fullmatch(name):
        raise ValueError("source: 1-40 letters, digits, '_', '-' or '.' (e.g. crm_2025)")
    return name


@dataclass(frozen=True)
class ImportOptions:
    source: str
    dry_run: bool = False
    skip_invalid: bool = False


@dataclass(frozen=True)
class Progress:
    phase: str  # "checking", "matching", "writing"
    done: int
    total: int


ProgressFn = Callable[[Progress], Awaitable[None]]


@dataclass
class ImportReport:
    """What an import did (or, dry, would do); `problems` by line and column."""

    kind: str
    source: str
    dry_run: bool
    encoding: str = ""
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0  # rows not imported because of their problems
    points: int = 0  # credited (or, dry, to credit)
    kept: int = 0  # values not taken from the file: she gave her own
    columns: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    problems: list[CsvProblem] = field(default_factory=list)
    written: bool = False

    def as_dict(self, limit: int = MAX_PROBLEMS) -> dict[str, Any]:
        """The report as JSON; the first `limit` problems (all are counted)."""
        return {"kind": self.kind, "source": self.source, "dry_run": self.dry_run,
                "encoding": self.encoding, "rows": self.rows, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "invalid": self.invalid,
                "points": self.points, "kept": self.kept, "columns": self.columns,
                "ignored": self.ignored, "written": self.written,
                "problems": [p.as_dict() for p in self.problems[:limit]],
                "problems_total": len(self.problems)}


@dataclass
class _Row:
    """One checked row."""

    line: int
    row_id: str
    unionid: str | None
    openid: str | None
    mobile: str | None
    values: dict[str, Any]  # field name -> stored value (built-in and custom)
    tags: list[str]
    points: int


@dataclass
class _Plan:
    row: _Row
    profile: Profile | None  # None: to create
    sets: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    credit: int = 0
    kept: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.profile is None or self.sets or self.tags or self.credit)


async def _no_progress(p: Progress) -> None:
    return None


class MemberImporter:
    """`run` one file: checked, matched, written (unless dry), reported."""

    def __init__(self, store: Store, fields: FieldBook, settings: BotSettings,
                 clock: Clock = lambda: datetime.now(UTC),
                 openid_key: Callable[[str], str] | None = None) -> None:
        """`openid_key`: the identity key of an openid in the file (the channel that knows
        whose openids they are tells); without it, openids are not matched."""
        self._store = store
        self._fields = fields
        self._settings = settings
        self._clock = clock
        self._calendar = BrandCalendar(settings.app.timezone)
        self._points = Points(store, settings.points, self._calendar)
        self._openid_key = openid_key

    async def run(self, data: bytes, options: ImportOptions, mapping: str | None = None,
                  mapping_file: str = "mapping.yml", progress: ProgressFn | None = None
                  ) -> ImportReport:
        report = ImportReport("members", options.source, options.dry_run)
        tell = progress or _no_progress
        now = self._clock()
        today = self._calendar.today(now)
        try:
            table = read_csv(data)
            columns, ignored = (
                (load_mapping(mapping, mapping_file, MEMBER_TARGETS, self._fields), [])
                if mapping is not None else
                auto_mapping(table.headers, MEMBER_TARGETS, self._fields))
        except CsvError as e:
            report.problems = _in_file(e)
            return report
        report.encoding, report.columns, report.ignored = table.encoding, columns.columns, ignored
        head = [CsvProblem(p.line, p.column, p.reason, mapping_file)
                for p in columns.check(table.headers)]
        for name, header in columns.fields().items():
            if self._fields.get(name).sensitive:
                # Sensitive personal information is kept only with her separate consent
                # (PIPL), which a file cannot give: she gives it here, or it stays out.
                head.append(CsvProblem(columns.lines.get(header, 1), header,
                                       f"{name} is sensitive: it is kept only with the "
                                       "member's own consent, not imported",
                                       mapping_file if columns.lines else ""))
        if head:
            report.problems = head
            return report
        if not any(columns.header(t) for t in ("id", "unionid", "openid", "mobile")):
            report.problems = [CsvProblem(1, None, "no column says who she is: map one of "
                                                   "id, unionid, openid, mobile")]
            return report

        rows: list[_Row] = []
        seen: dict[tuple[str, str], int] = {}
        bad_lines: set[int] = set()
        for raw in table.rows():
            report.rows += 1
            checked, problems = self._check(raw, columns, today, seen)
            if problems:
                bad_lines.add(raw.line)
                report.problems += problems
            elif checked is not None:
                rows.append(checked)
            if report.rows % CHUNK == 0:
                await tell(Progress("checking", report.rows, 0))
                await asyncio.sleep(0)  # the app's messages share this loop
        await tell(Progress("checking", report.rows, report.rows))
        report.invalid = len(bad_lines)

        plans = await self._plan(rows, options.source, report, tell)
        blocked = bool(report.problems) and not options.skip_invalid
        for plan in plans:
            if plan.profile is None:
                report.created += 1
            elif plan.changes:
                report.updated += 1
            else:
                report.unchanged += 1
            report.points += plan.credit
            report.kept += plan.kept
        if options.dry_run or blocked:
            await self._audit(report, "dry_run" if options.dry_run else "refused", now)
            return report
        await self._write(plans, options.source, now, report, tell)
        report.written = True
        await self._audit(report, "ok", now)
        log.info("members imported", extra=_counts(report))
        return report

    # -- checking ---------------------------------------------------------------------------

    def _check(self, raw: CsvRow, columns: ColumnMap, today: date,
               seen: dict[tuple[str, str], int]) -> tuple[_Row | None, list[CsvProblem]]:
        problems = list(raw.problems)
        line = raw.line

        def bad(target: str, reason: str) -> None:
            problems.append(CsvProblem(line, columns.header(target) or target,
                                       mask_phones(reason)))

        def cell(target: str) -> str:
            return raw.get(columns.header(target))

        values: dict[str, Any] = {}
        ids: dict[str, str] = {}
        for target in ("unionid", "openid"):
            text = cell(target)
            if text and not _WECHAT_ID.fullmatch(text):
                bad(target, f"a WeChat {target} is letters, digits, '_' and '-'")
            elif text:
                ids[target] = text
        mobile = cell("mobile")
        if mobile:
            read = get_validator("cn_mobile")(mobile, today)
            if isinstance(read, Invalid):
                bad("mobile", _REASONS.get(read.reason, read.reason))
            else:
                ids["mobile"] = values["mobile"] = str(read.value)
        row_id = cell("id")
        if row_id and (len(row_id) > 64 or not row_id.isprintable()):
            bad("id", "an id is at most 64 printable characters")
            row_id = ""
        # Sign-up's own checks: a nickname and a city read as they would be in the chat.
        for target, what in (("nickname", "a nickname"), ("city", "a city")):
            text = cell(target)
            if not text:
                continue
            read = get_validator(target)(text, today)
            if isinstance(read, Invalid):
                bad(target, f"not {what} ({_REASONS.get(read.reason, read.reason)})")
            elif target == "nickname":
                values["nickname"] = read.value
            else:
                values["city"] = read.value["city"]
                if read.value.get("province"):
                    values["province"] = read.value["province"]
        province = cell("province")
        if province:
            if len(province) > 20 or not province.isprintable():
                bad("province", "at most 20 printable characters")
            else:
                values["province"] = province
        tags: list[str] = []
        for header in columns.headers("tags"):
            for tag in _TAG_SEP.split(unicodedata.normalize("NFC", raw.get(header))):
                tag = tag.strip()
                if not tag:
                    continue
                if len(tag) > MAX_TAG or not tag.isprintable() or tag.startswith("$"):
                    problems.append(CsvProblem(line, header, f"a tag is at most {MAX_TAG} "
                                                             "printable characters"))
                elif tag not in tags:
                    tags.append(tag)
        if len(tags) > MAX_TAGS:
            bad("tags", f"at most {MAX_TAGS} tags")
        points = 0
        if cell("points"):
            try:
                points = int(_POINTS.parse(cell("points")) or 0)
            except FieldError:
                bad("points", "points are a whole number, 0 or more")
        for name, header in columns.fields().items():
            try:
                value = self._fields.parse(name, raw.get(header), today)
            except FieldError as e:
                problems.append(CsvProblem(line, header, mask_phones(e.message)))
                continue
            if value is not None:
                values[name] = value

        row_id = row_id or ids.get("unionid") or ids.get("openid") or ids.get("mobile") or ""
        if not row_id and not problems:
            problems.append(CsvProblem(line, None, "nothing says who she is: an id, unionid, "
                                                   "openid or mobile is needed"))
        given = {**ids, **({"id": row_id} if cell("id") and row_id else {})}
        for what, value in given.items():
            first = seen.setdefault((what, value), line)
            if first != line:
                problems.append(CsvProblem(line, columns.header(what) or what,
                                           f"the same {what} as line {first}"))
        if problems:
            return None, problems
        return _Row(line, row_id, ids.get("unionid"), ids.get("openid"), ids.get("mobile"),
                    values, tags, points), []

    # -- matching ---------------------------------------------------------------------------

    async def _plan(self, rows: list[_Row], source: str, report: ImportReport,
                    tell: ProgressFn) -> list[_Plan]:
        await tell(Progress("matching", 0, len(rows)))
        plans = await self._plan_rows(rows, source, report)
        await tell(Progress("matching", len(rows), len(rows)))
        taken: dict[str, int] = {}
        good: list[_Plan] = []
        for plan in plans:  # two rows of the file for one person: the later is a problem
            if plan.profile is not None:
                first = taken.setdefault(plan.profile["_id"], plan.row.line)
                if first != plan.row.line:
                    report.problems.append(CsvProblem(plan.row.line, None, "the same member "
                                                      f"as line {first}"))
                    report.invalid += 1
                    continue
            good.append(plan)
        return good

    async def _plan_rows(self, rows: list[_Row], source: str, report: ImportReport
                         ) -> list[_Plan]:
        lookup = self._store.imports.lookup
        by: dict[tuple[str, str], Profile] = {}
        # Each profile is read about once: her row from an earlier run first, then the
        # other rows' unionids, openids and mobiles, then the identifiers of rows already
        # found that no profile read so far holds (someone else's would be a conflict).
        _index(by, await lookup([import_key(source, r.row_id) for r in rows], [], []))
        again = [r for r in rows if ("key", import_key(source, r.row_id)) in by]
        first = [r for r in rows if ("key", import_key(source, r.row_id)) not in by]
        for todo in (first, again):
            _index(by, await lookup(
                [k for r in todo if (k := self._key_of(r.openid)) and ("key", k) not in by],
                [r.unionid for r in todo if r.unionid and ("unionid", r.unionid) not in by],
                [r.mobile for r in todo if r.mobile and ("mobile", r.mobile) not in by]))
        found = [r for r in rows if any(k in by for k in self._tries(r, source) if k)]
        credited = await self._store.imports.credited(
            [import_key(source, r.row_id) for r in found if r.points > 0])
        new = [r for r in rows if not any(k in by for k in self._tries(r, source) if k)]
        erased = await self._store.member_data.erased_among(
            [v for r in new for v in (import_key(source, r.row_id), r.mobile, r.unionid,
                                      r.openid) if v])
        new_lines = {r.line for r in new} if erased else set()
        plans = []
        for row in rows:
            ledger_key = import_key(source, row.row_id)
            if row.line in new_lines and \
                    erased & {ledger_key, row.mobile, row.unionid, row.openid}:
                report.problems.append(CsvProblem(
                    row.line, None, "this person was erased at her request: take her out of "
                    "the file (she is not imported again)"))
                report.invalid += 1
                continue
            hits = [(what, by[k]) for what, k in zip(("id", "unionid", "openid", "mobile"),
                                                      self._tries(row, source), strict=True)
                    if k is not None and k in by]
            profile = hits[0][1] if hits else None
            other = next((what for what, p in hits if p["_id"] != hits[0][1]["_id"]), None)
            if other is not None:
                report.problems.append(CsvProblem(
                    row.line, report_column(report, other),
                    f"names another member than its {hits[0][0]} does"))
                report.invalid += 1
                continue
            plans.append(self._changes(row, profile, ledger_key, ledger_key in credited))
        return plans

    def _tries(self, row: _Row, source: str) -> list[tuple[str, str] | None]:
        """Where to look for her, in order: her earlier import, unionid, openid, mobile."""
        key = self._key_of(row.openid)
        return [("key", import_key(source, row.row_id)),
                ("unionid", row.unionid) if row.unionid else None,
                ("key", key) if key else None,
                ("mobile", row.mobile) if row.mobile else None]

    def _changes(self, row: _Row, profile: Profile | None, key: str, credited: bool) -> _Plan:
        plan = _Plan(row, profile, credit=0 if credited else row.points)
        if profile is None:
            plan.tags = list(row.tags)
            return plan
        # Her own values (she has talked to the brand here) win over the file's; a member
        # known only from files takes the file's.
        owned = not profile.get("identities")
        have = profile.get("fields") or {}
        for name, value in row.values.items():
            current = have.get(name)
            if current == value:
                continue
            if current in (None, "", []) or owned:
                plan.sets[f"fields.{name}"] = value
            else:
                plan.kept += 1
        if owned:
            imported = dict(profile.get("imported") or {})
            for name, value in (("unionid", row.unionid),
                                ("identity_key", self._key_of(row.openid))):
                if value and imported.get(name) != value:
                    plan.sets[f"imported.{name}"] = value
        current_tags = set(profile.get("tags") or [])
        plan.tags = [t for t in row.tags if t not in current_tags]
        if key not in profile.get("identity_keys", []):
            plan.keys = [key]  # bookkeeping: the next run finds her by her row
        return plan

    def _key_of(self, openid: str | None) -> str | None:
        return self._openid_key(openid) if openid and self._openid_key else None

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, plans: list[_Plan], source: str, now: datetime,
                     report: ImportReport, tell: ProgressFn) -> None:
        total, done = len(plans), 0
        tiers = self._settings.points.tiers
        creates = [p for p in plans if p.profile is None]
        member_ids = await self._member_ids(len(creates))
        for start in range(0, len(creates), CHUNK):
            batch = creates[start:start + CHUNK]
            docs = [self._new_doc(p.row, source, now, member_ids.pop(), tiers) for p in batch]
            taken = await self._store.imports.insert(docs)
            for plan, doc in zip(batch, docs, strict=True):
                key = import_key(source, plan.row.row_id)
                if key in taken:  # another run imported her meanwhile: its points count
                    report.created -= 1
                    report.unchanged += 1
                    report.points -= plan.credit
                    continue
                if plan.credit:
                    await self._store.ledger.award(doc["_id"], key, plan.credit, LEDGER_REASON,
                                                   source, now=now)
            done += len(batch)
            await tell(Progress("writing", done, total))
            await asyncio.sleep(0)  # the app's messages share this loop
        updates = [p for p in plans if p.profile is not None and (p.changes or p.keys)]
        for start in range(0, len(updates), CHUNK):
            batch = updates[start:start + CHUNK]
            await self._store.imports.apply([(p.profile["_id"], _update(p)) for p in batch
                                             if p.profile is not None])
            for plan in batch:
                assert plan.profile is not None
                if not plan.credit:
                    continue
                pid = plan.profile["_id"]
                award = await self._store.ledger.award(
                    pid, import_key(source, plan.row.row_id), plan.credit, LEDGER_REASON,
                    source, now=now)
                if not award.applied:
                    report.points -= plan.credit
                elif (plan.profile.get("member") or {}).get("id"):
                    await self._points.refresh_tier(pid, award.earned)
            done += len(batch)
            await tell(Progress("writing", done, total))
            await asyncio.sleep(0)
        await tell(Progress("writing", total, total))

    async def _member_ids(self, n: int) -> list[str]:
        """`n` new member ids, none already someone's (40 bits: at 100,000 a collision
        among them would otherwise be likely enough to happen once in a while)."""
        out: set[str] = set()
        while len(out) < n:
            fresh = {new_member_id() for _ in range(n - len(out))} - out
            out |= fresh - await self._taken_member_ids(fresh)
        return list(out)

    async def _taken_member_ids(self, ids: set[str]) -> set[str]:
        taken: set[str] = set()
        batch = sorted(ids)
        for i in range(0, len(batch), 200):
            async for p in self._store.profiles.fields_where(
                    {"member.id": {"$in": batch[i:i + 200]}}, ["member.id"]):
                taken.add(str((p.get("member") or {}).get("id")))
        return taken

    def _new_doc(self, row: _Row, source: str, now: datetime, member_id: str,
                 tiers: Any) -> dict[str, Any]:
        imported: dict[str, Any] = {"source": source, "id": row.row_id, "at": now}
        if row.unionid:
            imported["unionid"] = row.unionid
        openid_key = self._key_of(row.openid)
        if openid_key:
            imported["identity_key"] = openid_key
        return {
            "_id": uuid.uuid4().hex, "identity_keys": [import_key(source, row.row_id)],
            "identities": [], "first_seen": now, "last_seen": None,
            "follow": {"state": "unknown", "changed_at": None}, "counters": {},
            "tags": list(row.tags), "fields": dict(row.values),
            "member": {"id": member_id, "since": now,
                       "tier": tier_status(row.points, tiers).tier},
            "imported": imported,
            "source": {"kind": "import", "scene": None, "campaign": source, "by": None,
                       "at": now},
        }

    async def _audit(self, report: ImportReport, result: str, now: datetime) -> None:
        counts = {k: v for k, v in report.as_dict().items()
                  if k in ("rows", "created", "updated", "unchanged", "invalid", "points")}
        await self._store.audit.add({
            "_id": uuid.uuid4().hex, "at": now, "actor": None, "role": "staff",
            "command": f"import_{report.kind}", "text": f"/import {report.kind} "
            f"{report.source}", "result": result,
            "detail": json.dumps(counts, ensure_ascii=False)[:300], "source": "admin-api"})


def report_column(report: ImportReport, target: str) -> str:
    """The header that fills `target` in this report's columns (or the target's name)."""
    return next((h for h, t in report.columns.items() if t == target), target)


def _index(by: dict[tuple[str, str], Profile], found: list[Profile]) -> None:
    """Every identifier of the profiles found, to the profile (the first found keeps it)."""
    for p in found:
        for k in p.get("identity_keys", []):
            by.setdefault(("key", k), p)
        for ident in p.get("identities", []):
            if ident.get("unionid"):
                by.setdefault(("unionid", str(ident["unionid"])), p)
        imported = dict(p.get("imported") or {})
        if imported.get("unionid"):
            by.setdefault(("unionid", str(imported["unionid"])), p)
        if imported.get("identity_key"):
            by.setdefault(("key", str(imported["identity_key"])), p)
        mobile = (p.get("fields") or {}).get("mobile")
        if mobile:
            by.setdefault(("mobile", str(mobile)), p)


def _counts(report: ImportReport) -> dict[str, Any]:
    """For the log (`created` is a LogRecord attribute of its own)."""
    return {"source": report.source, "rows": report.rows, "new": report.created,
            "updated": report.updated, "unchanged": report.unchanged,
            "invalid": report.invalid, "points": report.points}


def _update(plan: _Plan) -> dict[str, Any]:
    update: dict[str, Any] = {}
    if plan.sets:
        update["$set"] = dict(plan.sets)
    add: dict[str, Any] = {}
    if plan.tags:
        add["tags"] = {"$each": plan.tags}
    if plan.keys:
        add["identity_keys"] = {"$each": plan.keys}
    if add:
        update["$addToSet"] = add
    return update


def _in_file(e: CsvError) -> list[CsvProblem]:
    return [CsvProblem(p.line, p.column, p.reason, e.file or p.file) for p in e.problems]



# --- orders -------------------------------------------------------------------------------

_ORDER_LEVEL: Final = ("at", "amount", "channel", "status", "member_id", "unionid", "openid",
                       "mobile")
_MEMBER_KEYS: Final = ("member_id", "unionid", "openid", "mobile")  # the first given names her
_ITEM_PATH: Final = re.compile(r"^(items|refunds)\[(\d+)\]\.?(\w*)")
_ITEM_COLUMN: Final = {"amount": "item_amount", "name": "name", "category": "category",
                       "qty": "qty", "sku": "sku"}
_REFUND_COLUMN: Final = {"amount": "refund_amount", "at": "refund_at",
                         "refund_id": "refund_id"}
DEFAULT_CHANNEL: Final = "import"


@dataclass
class _OrderRows:
    """The rows of one order, and which of them gave each item and refund."""

    order_id: str
    rows: list[CsvRow] = field(default_factory=list)
    item_rows: list[CsvRow] = field(default_factory=list)
    refund_rows: list[CsvRow] = field(default_factory=list)


class OrderImporter:
    """`run` one orders file: its rows grouped into orders of the shop webhook's shape,
    each checked by `order_from_json` and its member found before anything is written,
    then recorded by the shop's OrderBook (the same rules: once per order id, refunds once
    per refund id, points by the `order` rule)."""

    def __init__(self, store: Store, book: OrderBook, settings: BotSettings,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._book = book
        self._clock = clock
        self._zone = BrandCalendar(settings.app.timezone).zone

    async def run(self, data: bytes, options: ImportOptions, mapping: str | None = None,
                  mapping_file: str = "mapping.yml", progress: ProgressFn | None = None
                  ) -> ImportReport:
        report = ImportReport("orders", options.source, options.dry_run)
        tell = progress or _no_progress
        try:
            table = read_csv(data)
            columns, ignored = (
                (load_mapping(mapping, mapping_file, ORDER_TARGETS), [])
                if mapping is not None else auto_mapping(table.headers, ORDER_TARGETS))
        except CsvError as e:
            report.problems = _in_file(e)
            return report
        report.encoding, report.columns, report.ignored = table.encoding, columns.columns, ignored
        missing = [t for t in ("order_id", "at") if columns.header(t) is None]
        if not any(columns.header(t) for t in _MEMBER_KEYS):
            missing.append("member_id, unionid, openid or mobile")
        head = [CsvProblem(p.line, p.column, p.reason, mapping_file)
                for p in columns.check(table.headers)]
        if missing:
            head.append(CsvProblem(1, None, f"no column for {', '.join(missing)}"))
        if head:
            report.problems = head
            return report

        groups: dict[str, _OrderRows] = {}
        bad: set[int] = set()
        for raw in table.rows():
            report.rows += 1
            if raw.problems:
                report.problems += raw.problems
                bad.add(raw.line)
                continue
            order_id = raw.get(columns.header("order_id"))
            if not order_id:
                report.problems.append(CsvProblem(raw.line, columns.header("order_id"),
                                                  "required: the order id"))
                bad.add(raw.line)
                continue
            groups.setdefault(order_id, _OrderRows(order_id)).rows.append(raw)
        orders: list[tuple[_OrderRows, Order]] = []
        for n, group in enumerate(groups.values(), 1):
            checked = await self._check(group, columns, report)
            if checked is None:
                bad.update(r.line for r in group.rows)
            else:
                orders.append((group, checked))
            if n % CHUNK == 0:
                await tell(Progress("checking", n, len(groups)))
        await tell(Progress("checking", len(groups), len(groups)))
        report.invalid = len(bad)
        blocked = bool(report.problems) and not options.skip_invalid
        now = self._clock()
        if options.dry_run or blocked:
            for _group, order in orders:
                stored = await self._store.orders.get(order.order_id)
                known = {r["refund_id"] for r in (stored or {}).get("refunds", [])}
                if stored is None:
                    report.created += 1
                elif {r.refund_id for r in order.refunds} - known:
                    report.updated += 1
                else:
                    report.unchanged += 1
            return report
        for n, (group, order) in enumerate(orders, 1):
            result = await self._book.record(order, now)
            if result.outcome == "conflict":
                report.problems.append(CsvProblem(group.rows[0].line,
                                                  columns.header("order_id"),
                                                  mask_phones(result.reason or "conflict")))
                report.invalid += len(group.rows)
            elif result.outcome == "created":
                report.created += 1
            elif result.outcome == "updated":
                report.updated += 1
            else:
                report.unchanged += 1
            report.points += result.points
            if n % CHUNK == 0:
                await tell(Progress("writing", n, len(orders)))
                await asyncio.sleep(0)
        await tell(Progress("writing", len(orders), len(orders)))
        report.written = True
        log.info("orders imported", extra=_counts(report))
        return report

    async def _check(self, group: _OrderRows, columns: ColumnMap, report: ImportReport
                     ) -> Order | None:
        """The order of these rows (as the shop would post it), or None with its problems
        in the report."""
        first = group.rows[0]
        problems: list[CsvProblem] = []
        doc: dict[str, Any] = {"order_id": group.order_id}
        for target in _ORDER_LEVEL:
            header = columns.header(target)
            if header is None:
                continue
            values = {r.get(header) for r in group.rows} - {""}
            if len(values) > 1:
                later = next(r for r in group.rows[1:] if r.get(header) not in ("", first.get(
                    header)))
                problems.append(CsvProblem(later.line, header, f"differs from line {first.line}"
                                                               " of the same order"))
            if values:
                doc[target] = next(r.get(header) for r in group.rows if r.get(header))
        member = next(((k, doc.pop(k)) for k in _MEMBER_KEYS if k in doc), None)
        for k in _MEMBER_KEYS:
            doc.pop(k, None)
        doc["member"] = {member[0]: member[1]} if member else None
        if "at" in doc:
            doc["at"] = self._time(doc["at"])
        doc.setdefault("channel", DEFAULT_CHANNEL)
        items, refunds = [], []
        for row in group.rows:
            item: dict[str, Any] = {key: row.get(columns.header(target))
                                    for key, target in _ITEM_COLUMN.items()
                                    if row.get(columns.header(target))}
            if item:
                qty = item.get("qty")
                if qty is not None and qty.isdigit():
                    item["qty"] = int(qty)
                items.append(item)
                group.item_rows.append(row)
            refund = {key: row.get(columns.header(target))
                      for key, target in _REFUND_COLUMN.items() if row.get(columns.header(target))}
            if refund:
                if "at" in refund:
                    refund["at"] = self._time(refund["at"])
                refunds.append(refund)
                group.refund_rows.append(row)
        doc["items"] = items
        doc["refunds"] = refunds
        if "amount" not in doc and items:
            doc["amount"] = _sum_amounts(items)
        if not problems:
            try:
                order = order_from_json(doc)
            except OrderError as e:
                problems.append(self._where(e, group, columns))
            else:
                if await self._book.resolve(order.member) is None:
                    problems.append(CsvProblem(first.line, columns.header(order.member.kind),
                                               f"no member with {order.member}"))
                else:
                    return order
        report.problems += problems
        return None

    def _time(self, text: str) -> str:
        """A spreadsheet's time as ISO 8601; without a zone it is the brand's local time."""
        try:
            when = datetime.fromisoformat(text.strip().replace("/", "-"))
        except ValueError:
            return text  # order_from_json says what is wrong with it
        if when.tzinfo is None:
            when = when.replace(tzinfo=self._zone)
        return when.isoformat()

    def _where(self, e: OrderError, group: _OrderRows, columns: ColumnMap) -> CsvProblem:
        """Where in the file the order's field `e.field` came from."""
        line, target = group.rows[0].line, e.field.split(".", 1)[0]
        m = _ITEM_PATH.match(e.field)
        if m:
            kind, index, key = m.group(1), int(m.group(2)), m.group(3)
            rows = group.item_rows if kind == "items" else group.refund_rows
            names = _ITEM_COLUMN if kind == "items" else _REFUND_COLUMN
            if index < len(rows):
                line = rows[index].line
            target = names.get(key, "item_amount" if kind == "items" else "refund_amount")
        elif e.field == "refunds" and group.refund_rows:
            line, target = group.refund_rows[0].line, "refund_amount"
        elif e.field == "items":
            target = "name"
        elif e.field.startswith("member"):
            target = e.field.split(".", 1)[1] if "." in e.field else "mobile"
        return CsvProblem(line, columns.header(target) or (target or None),
                          mask_phones(e.message))


def _sum_amounts(items: list[dict[str, Any]]) -> str:
    try:
        return str(sum((Decimal(str(i.get("amount", "0")).strip()) for i in items),
                       Decimal(0)))
    except InvalidOperation:
        return ""  # order_from_json names the item whose amount is not one
