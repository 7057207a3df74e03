"""Exports of the brand's data for spreadsheets and analysis: members of a segment as CSV
(UTF-8 with BOM, Chinese headers), interactions as JSON lines. Channel-free: the admin API
streams what this yields; segments are compiled by the marketers' own rules, handed in.

Masked by default, as everything staff see: mobiles (138****5678), nicknames (小*),
pregnancy dates and sensitive custom fields (***), phone numbers in any text. Unmasked only
with a reason, and every unmasked export is audited before its first row and when it ends.
A cell a spreadsheet would run as a formula is neutralised. Members whose erasure is
pending are left out: a file outlives the erasure.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import compress
from typing import Any, Final, Literal

from bot.brand_calendar import BrandCalendar
from bot.members.fields import SENSITIVE_BUILTIN, FieldBook, FieldDef
from bot.members.labels import ROLE_NAMES, SOURCE_NAMES, STAGE_NAMES
from bot.members.lifestage import is_stage_tag
from bot.privacy import mask_name, mask_phones
from bot.settings import BotSettings
from store.protocols import Store

log = logging.getLogger(__name__)

BOM: Final = "\ufeff"
MAX_REASON: Final = 200
MAX_BY: Final = 64
FIELD_PREFIX: Final = "field."
Header = Literal["labels", "names"]
Cell = Callable[[Any], str]
# The marketers' segments, compiled where they live (bot/marketing: Campaigns.segment, with
# the brand's tiers and fields): query, now -> a filter over profiles; ExportError (its
# message saying what is wrong with the query) for one that cannot be understood.
Segments = Callable[[str, datetime], dict[str, Any]]


class ExportError(ValueError):
    """A request that cannot be exported as asked; `message` says why, for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- cells

# What Excel, LibreOffice and Sheets start a formula with (OWASP's list, and the
# full-width forms an IME types).
_FORMULA: Final = frozenset("=+-@\t\r＝＋－＠")
_NUMBER: Final = re.compile(r"-?\d+(\.\d+)?")
_LINE_BREAK: Final = re.compile("[\r\n\u2028\u2029]")
_BREAKS: Final = str.maketrans({"\r": " ", "\n": " ", "\u2028": " ", "\u2029": " "})
_MEMO_LIMIT: Final = 4096


def safe_cell(text: str) -> str:
    """A text cell as a spreadsheet may open it: one line (so a row is one line of the
    file), and never a formula (a leading ' makes it text); a plain number stays one."""
    if _LINE_BREAK.search(text):
        text = text.translate(_BREAKS)
    if text and text[0] in _FORMULA and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _batch(cell: Cell, repeats: bool, listy: bool) -> Callable[[list[Any]], list[str]]:
    """`cell` over a batch's column. Values that repeat (cities, tiers, tags, choices) are
    shown once per distinct value and looked up for the rest: the per-row work is then
    `map`, in C."""
    if not repeats:
        return lambda values: list(map(cell, values))

    def column(values: list[Any]) -> list[str]:
        hashable = [tuple(v) if isinstance(v, list) else v for v in values] if listy \
            else values
        keys = list(zip(map(type, hashable), hashable, strict=True))  # 1 and True apart
        try:
            distinct = dict(zip(keys, values, strict=True))
        except TypeError:  # an unhashable value (a list of dicts): each on its own
            return list(map(cell, values))
        shown = {k: cell(v) for k, v in distinct.items()}
        return list(map(shown.__getitem__, keys))

    return column


_STORED_MOBILE: Final = re.compile(r"1[3-9]\d{9}")


def _mask_number(text: str) -> str:
    """A mobile as staff see it. As sign-up and import store it (11 ASCII digits) it is
    masked here the way mask_phones masks it, without its reading of every way of writing
    digits (a third of a masked export's time); anything else goes through mask_phones,
    and a number that is not a mainland mobile (a landline, a foreign one) shows only its
    last 4 characters."""
    if _STORED_MOBILE.fullmatch(text):
        return f"{text[:3]}****{text[-4:]}"
    masked = mask_phones(text)
    if masked != text or not any(c.isdigit() for c in text):
        return masked
    return "*" * max(4, len(text) - 4) + text[-4:] if len(text) > 4 else "****"


def _local(zone: Any) -> Cell:
    def cell(v: Any) -> str:
        if isinstance(v, datetime):
            return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(zone).isoformat(
                timespec="seconds")
        return "" if v is None else str(v)

    return cell


def _number(places: int | None) -> Cell:
    def cell(v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return ""
        return str(int(v)) if places is None else f"{float(v):.{places}f}"

    return cell


def _text(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if v is None or v == "":
            return ""
        return safe_cell(mask_phones(str(v)) if masked else str(v))

    return cell


def _plain(v: Any) -> str:
    """Identifiers as they are: a hex id may hold a digit run that looks like a mobile."""
    return "" if v is None else safe_cell(str(v))


def _choice(labels: dict[str, str], missing: str = "") -> Cell:
    def cell(v: Any) -> str:
        if v is None or v == "":
            return missing
        return safe_cell(labels.get(str(v), str(v)))

    return cell


def _listed(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if not isinstance(v, list) or not v:
            return ""
        text = "、".join(str(x) for x in v)
        return safe_cell(mask_phones(text) if masked else text)

    return cell


def _tags(masked: bool) -> Cell:
    """Her tags; masked, without the life-stage ones (孕25周 says what her due date does)."""
    listed = _listed(masked)

    def cell(v: Any) -> str:
        if masked and isinstance(v, list):
            v = [t for t in v if not is_stage_tag(str(t))]
        return listed(v)

    return cell


def _categories(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if not isinstance(v, dict) or not v:
            return ""
        ranked = sorted(v.items(), key=lambda kv: -float(kv[1] or 0))
        text = "、".join(f"{k}:{float(x or 0):.2f}" for k, x in ranked)
        return safe_cell(mask_phones(text) if masked else text)

    return cell


def _nickname(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if v is None or v == "":
            return ""
        return safe_cell(mask_name(v) if masked else str(v))

    return cell


def _mobile(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if v is None or v == "":
            return ""
        return safe_cell(_mask_number(str(v)) if masked else str(v))

    return cell


def _sensitive_day(masked: bool) -> Cell:
    def cell(v: Any) -> str:
        if v is None or v == "":
            return ""
        return "***" if masked else safe_cell(str(v))

    return cell


def _custom(d: FieldDef, masked: bool) -> Cell:
    def cell(v: Any) -> str:
        text = d.show(v, masked=masked)
        return safe_cell(mask_phones(text) if masked else text) if text else ""

    return cell


# --------------------------------------------------------------------------- columns

_ROLES: Final = {"expecting": "准妈妈", "mother": "宝妈", "other": "其他"}
_FOLLOW: Final = {"subscribed": "已关注", "unsubscribed": "已取关", "unknown": "未知"}


@dataclass(frozen=True)
class Column:
    """One exportable column: machine name (`--fields`, `--header names`), Chinese label,
    the profile path it reads, and how a value becomes a cell (masked or not)."""

    name: str
    label: str
    path: str
    cell: Callable[[bool, Any], Cell]  # (masked, brand zone) -> value -> text
    memo: bool = True  # values repeat (each shown once a batch); False for ids, times
    listy: bool = False  # values are lists (tags, list fields)

    def column(self, masked: bool, zone: Any) -> Callable[[list[Any]], list[str]]:
        """The batch's values of this column -> its cells."""
        return _batch(self.cell(masked, zone), self.memo, self.listy)


# (masked, zone) -> formatter, for each kind of column
def _k_plain(m: bool, z: Any) -> Cell:
    return _plain


def _k_int(m: bool, z: Any) -> Cell:
    return _number(None)


def _k_money(m: bool, z: Any) -> Cell:
    return _number(2)


def _k_time(m: bool, z: Any) -> Cell:
    return _local(z)


def _k_text(m: bool, z: Any) -> Cell:
    return _text(m)


def _k_choice(labels: dict[str, str], missing: str = "") -> Callable[[bool, Any], Cell]:
    def make(m: bool, z: Any) -> Cell:
        return _choice(labels, missing)

    return make


BUILTIN_COLUMNS: Final[tuple[Column, ...]] = (
    Column("member_id", "会员号", "member.id", _k_plain, memo=False),
    Column("profile_id", "档案号", "_id", _k_plain, memo=False),
    Column("nickname", "昵称", "fields.nickname", lambda m, z: _nickname(m), memo=False),
    Column("mobile", "手机号", "fields.mobile", lambda m, z: _mobile(m), memo=False),
    Column("city", "城市", "fields.city", _k_text),
    Column("province", "省份", "fields.province", _k_text),
    Column("role", "身份", "fields.role", _k_choice(_ROLES)),
    Column("stage", "阶段", "member.stage", _k_choice(STAGE_NAMES)),
    Column("tier", "等级", "member.tier", _k_text),
    Column("points", "积分", "points.balance", _k_int),
    Column("earned", "累计积分", "points.earned", _k_int),
    Column("tags", "标签", "tags", lambda m, z: _tags(m), listy=True),
    Column("joined", "入会时间", "member.since", _k_time, memo=False),
    Column("first_seen", "首次来访", "first_seen", _k_time, memo=False),
    Column("last_seen", "最近来访", "last_seen", _k_time, memo=False),
    Column("follow", "关注状态", "follow.state", _k_choice(_FOLLOW)),
    # Pregnancy data: sensitive (bot/members/fields.py SENSITIVE_BUILTIN), *** when masked.
    *(Column(name, label, f"fields.{name}", lambda m, z: _sensitive_day(m))
      for name, label in (("due_date", "预产期"), ("baby_birthday", "宝宝生日"))
      if name in SENSITIVE_BUILTIN),
    Column("lang", "语言", "lang", _k_text),
    Column("staff_role", "角色", "role", _k_choice(ROLE_NAMES, missing="会员")),
    Column("orders.count", "订单数", "orders.count", _k_int),
    Column("orders.spent", "消费金额", "orders.spent", _k_money),
    Column("orders.last_at", "最近下单", "orders.last_at", _k_time, memo=False),
    Column("orders.top_category", "常买品类", "orders.top_category", _k_text),
    Column("orders.categories", "品类消费", "orders.categories",
             lambda m, z: _categories(m), memo=False),
    Column("social.score", "社交价值", "social.score", _k_money),
    Column("source.kind", "来源", "source.kind", _k_choice(SOURCE_NAMES)),
    Column("source.campaign", "来源活动", "source.campaign", _k_text),
    Column("source.scene", "来源二维码", "source.scene", _k_text),
    Column("source.at", "来源时间", "source.at", _k_time, memo=False),
    Column("imported.source", "导入来源", "imported.source", _k_text),
)
_BEFORE_CUSTOM: Final = ("member_id", "nickname", "mobile", "city", "province", "role",
                         "stage", "tier", "points", "earned", "tags", "joined", "last_seen",
                         "follow")
_AFTER_CUSTOM: Final = ("orders.count", "orders.spent", "orders.last_at",
                        "orders.top_category", "social.score", "source.kind",
                        "source.campaign")


class Columns:
    """Every column the brand's members can be exported with: the built-ins, then each
    custom field of `members.fields` as `field.<name>` under its label."""

    def __init__(self, book: FieldBook) -> None:
        custom = [Column(f"{FIELD_PREFIX}{d.name}", d.label_zh, f"fields.{d.name}",
                         self._custom_cell(d), listy=d.type == "list") for d in book]
        self._all = {c.name: c for c in (*BUILTIN_COLUMNS, *custom)}
        self.default = [self._all[n] for n in _BEFORE_CUSTOM] + custom + \
            [self._all[n] for n in _AFTER_CUSTOM]

    @staticmethod
    def _custom_cell(d: FieldDef) -> Callable[[bool, Any], Cell]:
        def make(m: bool, z: Any) -> Cell:
            return _custom(d, m)

        return make

    @property
    def names(self) -> list[str]:
        return list(self._all)

    def pick(self, wanted: str | Sequence[str] | None) -> list[Column]:
        """The columns `wanted` names (comma-separated, or a list; a custom field also by
        its bare name), in that order; the default set when empty. ExportError naming
        every unknown one and listing the known."""
        names = _split(wanted)
        if not names:
            return list(self.default)
        found: list[Column] = []
        unknown: list[str] = []
        for name in names:
            col = self._all.get(name) or self._all.get(FIELD_PREFIX + name)
            if col is None:
                unknown.append(name)
            elif col not in found:
                found.append(col)
        if unknown:
            import difflib

            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, self._all, n=1, cutoff=0.6)
                hints.append(f"'{name[:40]}'" + (f" (did you mean {close[0]}?)" if close
                                                 else ""))
            raise ExportError(f"unknown field{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(hints)}; known: {', '.join(self._all)}")
        return found


def _split(wanted: str | Sequence[str] | None) -> list[str]:
    if wanted is None:
        return []
    items = re.split(r"[,，\s]+", wanted) if isinstance(wanted, str) else list(wanted)
    return [i.strip() for i in items if i and i.strip()]


# --------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class MemberExport:
    """A checked members export: what to read, how to show it, and for whom."""

    segment: str  # the segment as compiled back to text ("all" for everyone)
    filter: dict[str, Any]
    columns: tuple[Column, ...]
    header: Header
    masked: bool
    reason: str
    by: str


@dataclass(frozen=True)
class InteractionExport:
    since: datetime
    until: datetime
    segment: str | None
    filter: dict[str, Any] | None  # over profiles, when a segment was given
    masked: bool
    reason: str
    by: str


@dataclass
class Progress:
    """What a running export has written so far (the audit and the log read it)."""

    rows: int = 0
    left_out: int = 0  # members whose erasure is pending
    done: bool = False


_AGO: Final = re.compile(r"^(\d{1,5})\s*([hdw])$", re.I)
_AGO_HOURS: Final = {"h": 1, "d": 24, "w": 168}
_INTERACTION_PATHS: Final = ("ts", "profile_id", "channel", "direction", "type", "intent",
                             "confidence", "outcome", "text")


class Exporter:
    """Exports over one store, with the brand's fields, tiers and calendar."""

    def __init__(self, store: Store, settings: BotSettings, calendar: BrandCalendar,
                 segments: Segments) -> None:
        self._store = store
        self._calendar = calendar
        self._segments = segments
        self.columns = Columns(FieldBook(settings.members.fields))

    # -- checking a request -------------------------------------------------------------
    def _segment(self, query: str | None, now: datetime) -> tuple[str, dict[str, Any]]:
        text = (query or "").strip() or "all"
        return text, self._segments(text, now)

    async def _who(self, unmasked: bool, reason: str | None, by: str | None, what: str,
                   detail: dict[str, Any], now: datetime) -> tuple[str, str]:
        who = (by or "").strip()[:MAX_BY] or "admin-api"
        why = (reason or "").strip()
        if unmasked and not why:
            await self._audit(who, what, "refused", "", now,
                              {**detail, "unmasked": True, "rows": 0},
                              note="unmasked without a reason")
            raise ExportError("an unmasked export needs a reason (it is kept in the audit): "
                              "give reason=... (scrm: --reason TEXT)")
        if len(why) > MAX_REASON:
            raise ExportError(f"the reason is at most {MAX_REASON} characters")
        return who, why

    async def members(self, *, segment: str | None = None,
                      fields: str | Sequence[str] | None = None, header: str = "labels",
                      unmasked: bool = False, reason: str | None = None,
                      by: str | None = None, now: datetime | None = None) -> MemberExport:
        """A checked members export; ExportError (nothing exported) for a bad segment,
        unknown fields, an unknown header style, or unmasked without a reason (that
        refusal is audited)."""
        now = now or datetime.now(UTC)
        query, flt = self._segment(segment, now)
        columns = self.columns.pick(fields)
        if header not in ("labels", "names"):
            raise ExportError("header is labels (Chinese, the default) or names")
        detail = {"segment": query, "fields": [c.name for c in columns]}
        who, why = await self._who(unmasked, reason, by, "export_members", detail, now)
        return MemberExport(segment=query, filter=flt, columns=tuple(columns),
                            header="names" if header == "names" else "labels",
                            masked=not unmasked, reason=why, by=who)

    def _instant(self, text: str, what: str, now: datetime) -> datetime:
        raw = text.strip()
        ago = _AGO.match(raw)
        if ago:
            return now - timedelta(hours=int(ago[1]) * _AGO_HOURS[ago[2].lower()])
        try:
            if len(raw) == 10:
                day = date.fromisoformat(raw)
                return datetime.combine(day, datetime.min.time(), tzinfo=self._calendar.zone)
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise ExportError(f"{what}: {raw[:40]!r} is not a date; give an ISO date "
                              "(2026-11-01, the brand's midnight), a date and time "
                              "(2026-11-01T09:30), or a time ago (30d, 12h, 2w)") from None
        return when if when.tzinfo else when.replace(tzinfo=self._calendar.zone)

    async def interactions(self, *, since: str | None, until: str | None = None,
                           segment: str | None = None, unmasked: bool = False,
                           reason: str | None = None, by: str | None = None,
                           now: datetime | None = None) -> InteractionExport:
        """A checked interactions export: `since` is required, `until` defaults to now."""
        now = now or datetime.now(UTC)
        if not (since or "").strip():
            raise ExportError("since is required: an ISO date (2026-11-01), a date and time, "
                              "or a time ago (30d)")
        start = self._instant(str(since), "since", now)
        end = self._instant(until, "until", now) if until and until.strip() else now
        if end <= start:
            raise ExportError("until must be after since")
        query, flt = self._segment(segment, now) if (segment or "").strip() else (None, None)
        detail = {"segment": query, "since": start.isoformat(), "until": end.isoformat()}
        who, why = await self._who(unmasked, reason, by, "export_interactions", detail, now)
        return InteractionExport(since=start, until=end, segment=query, filter=flt,
                                 masked=not unmasked, reason=why, by=who)

    # -- counting (for a progress bar) --------------------------------------------------
    async def count_members(self, plan: MemberExport) -> int:
        return await self._store.profiles.count_where(plan.filter)

    async def count_interactions(self, plan: InteractionExport) -> int:
        return await self._store.exports.count("interactions", self._ts(plan))

    @staticmethod
    def _ts(plan: InteractionExport) -> dict[str, Any]:
        return {"ts": {"$gte": plan.since.astimezone(UTC), "$lt": plan.until.astimezone(UTC)}}

    # -- streaming ----------------------------------------------------------------------
    async def members_csv(self, plan: MemberExport, progress: Progress | None = None,
                          batch: int = 1000) -> AsyncGenerator[bytes, None]:
        """The CSV, in chunks: the BOM and header first, then about `batch` rows a chunk.
        Unmasked: audited before the first row; every export audited when it ends."""
        progress = progress if progress is not None else Progress()
        started = time.perf_counter()
        columns = [c.column(plan.masked, self._calendar.zone) for c in plan.columns]
        paths = [c.path for c in plan.columns] + ["erasure"]
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow([c.name if plan.header == "names" else c.label for c in plan.columns])
        what = "export_members"
        detail = {"segment": plan.segment, "fields": [c.name for c in plan.columns]}
        if not plan.masked:
            await self._audit_plan(plan.by, what, "started", plan, detail, progress)
        try:
            yield (BOM + buf.getvalue()).encode()
            async for values in self._store.exports.columns("profiles", plan.filter,
                                                                paths, batch):
                erasure = values.pop()
                if any(v is not None for v in erasure):
                    keep = [v is None for v in erasure]
                    progress.left_out += keep.count(False)
                    values = [list(compress(col, keep)) for col in values]
                if not values or not values[0]:
                    continue
                buf.seek(0)
                buf.truncate()
                out.writerows(zip(*(f(col) for f, col in zip(columns, values, strict=True)),
                                  strict=True))
                progress.rows += len(values[0])
                yield buf.getvalue().encode()
            progress.done = True
        finally:
            await self._finish(plan.by, what, plan, detail, progress, started)

    async def interactions_jsonl(self, plan: InteractionExport,
                                 progress: Progress | None = None, batch: int = 1000
                                 ) -> AsyncGenerator[bytes, None]:
        """One JSON object a line, in stored order (about time order): ts (brand time
        zone), profile and member id, channel, direction, type, intent, confidence,
        outcome, text (phones masked unless unmasked)."""
        progress = progress if progress is not None else Progress()
        started = time.perf_counter()
        exports = self._store.exports
        what = "export_interactions"
        detail = {"segment": plan.segment, "since": plan.since.isoformat(),
                  "until": plan.until.isoformat()}
        members: dict[str, str | None] = {}
        gone: set[str] = set()
        async for cols in exports.columns("profiles", plan.filter or {},
                                          ["_id", "member.id", "erasure"], 5000):
            for pid, member_id, erasure in zip(*cols, strict=True):
                members[pid] = member_id
                if erasure is not None:
                    gone.add(pid)
        query = self._ts(plan)
        if plan.filter is not None and len(members) <= 1000:
            # A small segment: its members' interactions by the profile index.
            query = {"$and": [query, {"profile_id": {"$in": list(members)}}]}
        zone = self._calendar.zone
        if not plan.masked:
            await self._audit_plan(plan.by, what, "started", plan, detail, progress)
        try:
            async for cols in exports.columns("interactions", query, _INTERACTION_PATHS,
                                              batch):
                lines = []
                for ts, pid, channel, direction, kind, intent, conf, outcome, text in zip(
                        *cols, strict=True):
                    if pid in gone or (plan.filter is not None and pid not in members):
                        continue
                    if isinstance(text, str) and plan.masked:
                        text = mask_phones(text)
                    lines.append(json.dumps({
                        "ts": ts.astimezone(zone).isoformat(timespec="milliseconds")
                        if isinstance(ts, datetime) else ts,
                        "profile_id": pid, "member_id": members.get(pid),
                        "channel": channel, "direction": direction, "type": kind,
                        "intent": intent, "confidence": conf, "outcome": outcome,
                        "text": text}, ensure_ascii=False))
                if lines:
                    progress.rows += len(lines)
                    yield ("\n".join(lines) + "\n").encode()
            progress.done = True
        finally:
            await self._finish(plan.by, what, plan, detail, progress, started)

    # -- the audit ----------------------------------------------------------------------
    async def _audit_plan(self, by: str, what: str, result: str,
                          plan: MemberExport | InteractionExport, detail: dict[str, Any],
                          progress: Progress) -> None:
        await self._audit(by, what, result, plan.reason, datetime.now(UTC),
                          {**detail, "unmasked": not plan.masked, "rows": progress.rows})

    async def _finish(self, by: str, what: str, plan: MemberExport | InteractionExport,
                      detail: dict[str, Any], progress: Progress, started: float) -> None:
        result = "ok" if progress.done else "aborted"
        await self._audit_plan(by, what, result, plan, {**detail,
                               "left_out": progress.left_out}, progress)
        log.info("export", extra={"export": what, "result": result, "rows": progress.rows,
                                  "masked": plan.masked,
                                  "seconds": round(time.perf_counter() - started, 2)})

    async def _audit(self, by: str, what: str, result: str, reason: str, now: datetime,
                     extra: dict[str, Any], note: str = "") -> None:
        # Shaped like the staff commands' records (bot/marketing/audit.py), plus what
        # was exported: segment, fields, rows, unmasked, reason.
        text = f"/{what.replace('_', ' ')} {extra.get('segment') or ''}".strip()
        await self._store.audit.add({
            "_id": uuid.uuid4().hex, "at": now, "actor": by, "openid": None, "role": "admin",
            "command": what, "text": mask_phones(text)[:500], "result": result,
            "detail": mask_phones(note or reason)[:300], "source": "admin-api",
            **extra, "reason": mask_phones(reason)[:MAX_REASON]})
