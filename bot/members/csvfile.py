"""Reading the brand's CSV files (members, orders) as Chinese spreadsheets export them, and
the mapping file that says which column is what. One reader for every import: encoding,
header, rows with their true line numbers, and problems by line and column.

A file is UTF-8 (with or without BOM) or else GB18030 (which covers GBK and GB2312);
anything else is refused. A quoted cell may span lines: a row's `line` is the line it
starts on, as a spreadsheet user counts them (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bot.members.fields import FieldBook
from bot.yamlmarks import YamlProblem, line_of, load

FIELD_PREFIX: Final = "field."
MAX_CELL: Final = 10_000  # characters; a longer cell is a broken file, not data
MAX_COLUMNS: Final = 500
_EXCEL_TEXT: Final = re.compile(r'^="(.*)"$', re.S)  # ="0123": Excel's way to keep zeros


@dataclass(frozen=True)
class CsvProblem:
    """What is wrong, and where: `line` is 1-based (0: the file as a whole); `column` the
    header (or mapping key) it concerns, None for the whole row."""

    line: int
    column: str | None
    reason: str
    file: str = ""  # "" for the CSV itself; the mapping file's name for its problems

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: column {self.column}: {self.reason}" if self.column else \
            f"{where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason,
                **({"file": self.file} if self.file else {})}


class CsvError(ValueError):
    """The file or its mapping cannot be used at all; `problems` say where and why."""

    def __init__(self, problems: list[CsvProblem], file: str = "") -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems
        self.file = file  # the mapping file's name when the problems are in it


def column_letter(index: int) -> str:
    """A spreadsheet's name for the 0-based column `index`: A, B, ..., Z, AA, ..."""
    name, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM is dropped), else GB18030; CsvError if neither."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CsvError([CsvProblem(0, None, "the file is UTF-16: save it as CSV (UTF-8) or "
                                            "CSV (GBK) instead")])
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as e:
        utf8_error = e
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        line = data[:utf8_error.start].count(b"\n") + 1
        raise CsvError([CsvProblem(line, None, "not UTF-8 and not GBK/GB18030 text (is it a "
                                               "spreadsheet file rather than CSV?)")]) from None
    return text, "gb18030"


@dataclass(frozen=True)
class CsvRow:
    line: int  # where the row starts
    cells: dict[str, str]  # header -> cell, trimmed ("" when the row is short)
    problems: tuple[CsvProblem, ...] = ()  # the row's shape (cells beyond the header)

    def get(self, header: str | None) -> str:
        return self.cells.get(header, "") if header is not None else ""


@dataclass
class CsvTable:
    """A decoded file with a good header; `rows()` reads it (once)."""

    encoding: str
    headers: list[str]
    _reader: Iterator[list[str]] = field(repr=False)
    _lines: Any = field(repr=False)  # the csv reader, for its line count
    _done: bool = False

    def rows(self) -> Iterator[CsvRow]:
        """Each non-blank row in file order. A row the CSV syntax cannot read (a quote
        left open) is the last one: its problem says where it started."""
        if self._done:
            raise RuntimeError("a CsvTable is read once")
        self._done = True
        last = self._lines.line_num
        while True:
            start = last + 1
            try:
                raw = next(self._reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield CsvRow(start, {}, (CsvProblem(start, None, f"not valid CSV ({e}); "
                                                    "nothing after this line was read"),))
                return
            last = self._lines.line_num
            if not any(c.strip() for c in raw):
                continue  # blank lines and rows of empty cells, as spreadsheets leave them
            yield self._row(start, raw)

    def _row(self, line: int, raw: list[str]) -> CsvRow:
        cells = {h: _cell(raw[i]) if i < len(raw) else "" for i, h in enumerate(self.headers)}
        problems = []
        extra = [i for i in range(len(self.headers), len(raw)) if raw[i].strip()]
        if extra:
            problems.append(CsvProblem(line, column_letter(extra[0]),
                                       f"a cell beyond the last header ({len(self.headers)} "
                                       "columns): is a comma in an unquoted cell?"))
        for header, value in cells.items():
            if len(value) > MAX_CELL:
                problems.append(CsvProblem(line, header, f"cell longer than {MAX_CELL} "
                                                         "characters"))
        return CsvRow(line, cells, tuple(problems))


def _cell(raw: str) -> str:
    text = raw.strip()
    m = _EXCEL_TEXT.match(text)
    return m.group(1).strip() if m else text


def _header(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip().strip("\ufeff").strip()


def read_csv(data: bytes | str) -> CsvTable:
    """The file's header checked (blank or duplicate names are errors naming the column);
    CsvError for a file that cannot be read at all."""
    text, encoding = decode(data) if isinstance(data, bytes) else (data, "utf-8")
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise CsvError([CsvProblem(text[:text.index("\x00")].count("\n") + 1, None,
                                   "the file holds NUL bytes: not a CSV text file")])
    lines = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(lines, None)
        while first is not None and not any(c.strip() for c in first):
            first = next(lines, None)  # blank lines above the header
    except csv.Error as e:
        raise CsvError([CsvProblem(lines.line_num or 1, None, f"not valid CSV ({e})")]) \
            from None
    if first is None:
        raise CsvError([CsvProblem(0, None, "the file is empty: no header row")])
    line = lines.line_num
    headers = [_header(h) for h in first]
    while headers and not headers[-1] and len(headers) > 1:
        headers.pop()  # a trailing separator after the last header
    problems = []
    if len(headers) > MAX_COLUMNS:
        problems.append(CsvProblem(line, None, f"more than {MAX_COLUMNS} columns"))
    seen: dict[str, int] = {}
    for i, h in enumerate(headers):
        if not h:
            problems.append(CsvProblem(line, column_letter(i), "the header is blank"))
        elif h in seen:
            problems.append(CsvProblem(line, h, f"two columns have this header "
                                                f"({column_letter(seen[h])} and "
                                                f"{column_letter(i)})"))
        else:
            seen[h] = i
    if problems:
        raise CsvError(problems)
    return CsvTable(encoding, headers, lines, lines)


# --- the mapping: source header -> target ----------------------------------------------


@dataclass(frozen=True)
class Targets:
    """What the columns of one kind of file may be (members, orders): target names, the
    headers that name a target by themselves (手机号 → mobile), which targets several
    columns may fill, and whether custom fields (`field.<name>`) are targets."""

    kind: str
    names: tuple[str, ...]
    aliases: dict[str, str]
    repeatable: frozenset[str] = frozenset()
    custom_fields: bool = False

    def describe(self) -> str:
        return ", ".join(self.names) + (", field.<name>" if self.custom_fields else "")


MEMBER_TARGETS: Final = Targets(
    kind="members",
    names=("id", "unionid", "openid", "mobile", "nickname", "city", "province", "tags",
           "points"),
    aliases={
        "会员id": "id", "会员编号": "id", "会员号": "id", "编号": "id", "客户编号": "id",
        "客户id": "id", "用户id": "id",
        "手机": "mobile", "手机号": "mobile", "手机号码": "mobile", "联系电话": "mobile",
        "电话": "mobile", "mobile phone": "mobile", "phone": "mobile",
        "昵称": "nickname", "微信昵称": "nickname", "称呼": "nickname", "name": "nickname",
        "城市": "city", "所在城市": "city", "市": "city",
        "省份": "province", "省": "province", "所在省份": "province",
        "标签": "tags", "tag": "tags",
        "积分": "points", "积分余额": "points", "当前积分": "points",
    },
    repeatable=frozenset({"tags"}),
    custom_fields=True,
)


ORDER_TARGETS: Final = Targets(
    kind="orders",
    # One row per order line: rows with the same order_id are one order, whose own columns
    # (member, at, amount, channel, status) the rows repeat; a row may carry one refund.
    names=("order_id", "member_id", "mobile", "openid", "unionid", "at", "amount", "channel",
           "status", "sku", "name", "category", "qty", "item_amount", "refund_id",
           "refund_amount", "refund_at"),
    aliases={
        "订单号": "order_id", "订单编号": "order_id", "订单id": "order_id",
        "会员编号": "member_id", "会员id": "member_id", "会员号": "member_id",
        "手机": "mobile", "手机号": "mobile", "手机号码": "mobile",
        "下单时间": "at", "支付时间": "at", "订单时间": "at", "时间": "at",
        "实付金额": "amount", "订单金额": "amount", "支付金额": "amount",
        "渠道": "channel", "订单状态": "status", "状态": "status",
        "商品编码": "sku", "商品名称": "name", "商品": "name", "品类": "category",
        "类目": "category", "分类": "category", "数量": "qty", "商品金额": "item_amount",
        "小计": "item_amount", "退款单号": "refund_id", "退款金额": "refund_amount",
        "退款时间": "refund_at",
    },
)


@dataclass(frozen=True)
class ColumnMap:
    """Which header fills which target; `lines` are the mapping file's lines (empty when
    the headers mapped themselves)."""

    columns: dict[str, str]  # header -> target
    file: str = ""
    lines: dict[str, int] = field(default_factory=dict)
    _first: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for h, t in self.columns.items():  # read for every cell of a big file: kept
            self._first.setdefault(t, h)

    def header(self, target: str) -> str | None:
        """The (first) header that fills `target`."""
        return self._first.get(target)

    def headers(self, target: str) -> list[str]:
        return [h for h, t in self.columns.items() if t == target]

    def fields(self) -> dict[str, str]:
        """Custom field name -> header."""
        return {t.removeprefix(FIELD_PREFIX): h for h, t in self.columns.items()
                if t.startswith(FIELD_PREFIX)}

    def check(self, headers: Iterable[str]) -> list[CsvProblem]:
        """A mapped header the file does not have (by the mapping file's line)."""
        present = set(headers)
        return [CsvProblem(self.lines.get(h, 0), h, "the mapping names this column, but the "
                                                    "file has no such header")
                for h in self.columns if h not in present]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().replace("_", " ").strip()


def _target_problem(target: str, targets: Targets, fields: FieldBook | None) -> str | None:
    if target.startswith(FIELD_PREFIX) and targets.custom_fields:
        name = target.removeprefix(FIELD_PREFIX)
        if fields is None or name not in fields:
            return (fields.unknown(name) if fields is not None else
                    f"unknown custom field {name!r}")
        return None
    if target in targets.names:
        return None
    return f"unknown target {target!r}; known: {targets.describe()}"


def load_mapping(text: str, file: str, targets: Targets, fields: FieldBook | None = None
                 ) -> ColumnMap:
    """The mapping file (YAML, `source header: target`; a null target ignores the column);
    CsvError naming the mapping file's line for anything it cannot use."""
    try:
        data, lines = load(text, file)
    except YamlProblem as e:
        raise CsvError([CsvProblem(e.line, None, e.problem)], file) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CsvError([CsvProblem(1, None, "a mapping file is `source header: target` "
                                            "lines")], file)
    columns: dict[str, str] = {}
    at: dict[str, int] = {}
    problems = []
    for key, target in data.items():
        line = line_of((key,), lines)
        header = _header(str(key))
        if target is None:
            continue
        if not isinstance(target, str):
            problems.append(CsvProblem(line, header, "the target must be a name, e.g. mobile"))
            continue
        target = target.strip()
        why = _target_problem(target, targets, fields)
        if why is not None:
            problems.append(CsvProblem(line, header, why))
            continue
        taken = [h for h, t in columns.items() if t == target]
        if taken and target not in targets.repeatable:
            problems.append(CsvProblem(line, header, f"{target} is already filled by column "
                                                     f"{taken[0]} (line {at[taken[0]]})"))
            continue
        columns[header], at[header] = target, line
    if problems:
        raise CsvError(problems, file)
    return ColumnMap(columns, file, at)


def auto_mapping(headers: Iterable[str], targets: Targets, fields: FieldBook | None = None
                 ) -> tuple[ColumnMap, list[str]]:
    """Without a mapping file: headers that are target names, their usual Chinese, or a
    custom field's name or label map themselves. (map, the headers left unused)."""
    by_name: dict[str, str] = {_fold(n): n for n in targets.names}
    by_name.update({_fold(k): v for k, v in targets.aliases.items()})
    if targets.custom_fields and fields is not None:
        for d in fields:
            if d.sensitive:
                continue  # never taken from a file without being asked for (PIPL)
            for spelling in (d.name, f"{FIELD_PREFIX}{d.name}", d.label_zh, d.label_en):
                by_name.setdefault(_fold(spelling), f"{FIELD_PREFIX}{d.name}")
    columns: dict[str, str] = {}
    unused = []
    for h in headers:
        target = by_name.get(_fold(h))
        if target is None or (target in columns.values() and target not in targets.repeatable):
            unused.append(h)
        else:
            columns[h] = target
    return ColumnMap(columns), unused
