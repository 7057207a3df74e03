"""The brand's custom member fields (`members.fields` in config.yml): reading a value from
what a person typed or a spreadsheet cell, showing it, masking it. One place for the rules
of each type, used by flows, import, staff commands, segments, templates and exports.

Values are stored under the profile's `fields.<name>` as: text str, int int, decimal float
rounded to `places`, date "YYYY-MM-DD" (so that ranges compare as strings), enum the
choice's code, bool bool, list a list of str (choice codes when it has choices).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from bot.flow_engine.validators import Invalid, get_validator
from bot.settings import CustomField

# Built-in fields that are sensitive personal information (PIPL: pregnancy data), beside the
# custom fields marked `sensitive: true`.
SENSITIVE_BUILTIN: Final = ("due_date", "baby_birthday")
MAX_TEXT: Final = 200  # a text field's own limit when the config gives none
MAX_ITEMS: Final = 20
_TRUE: Final = frozenset({"yes", "y", "true", "1", "是", "对", "有", "要", "好", "✓"})
_FALSE: Final = frozenset({"no", "n", "false", "0", "否", "不是", "没有", "无", "不", "不要", "✗"})
_LIST_SEP: Final = re.compile(r"\s*[,，、;；|/／]\s*")
_DATE: Final = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?$")
_COMPACT_DATE: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TRIM: Final = " \t\r\n。！!？?~"


class FieldError(ValueError):
    """A value that does not fit its field; `message` (zh) says why, for a person."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip(_TRIM)


@dataclass(frozen=True)
class FieldDef:
    """One custom field, checked once at start-up."""

    name: str
    type: str
    label_zh: str
    label_en: str
    validator: str | None
    choices: tuple[tuple[str, str], ...]  # (code, label); label == code without labels
    low: float | None
    high: float | None
    places: int
    sensitive: bool

    @classmethod
    def of(cls, name: str, spec: CustomField) -> FieldDef:
        label = spec.label if isinstance(spec.label, dict) else {"zh": spec.label}
        pairs = (tuple(spec.choices.items()) if isinstance(spec.choices, dict)
                 else tuple((c, c) for c in spec.choices))
        return cls(name=name, type=spec.type, label_zh=label["zh"],
                   label_en=label.get("en") or label["zh"], validator=spec.validator,
                   choices=pairs, low=spec.min, high=spec.max, places=spec.places,
                   sensitive=spec.sensitive)

    def label(self, lang: str = "zh") -> str:
        return self.label_en if lang == "en" else self.label_zh

    def hint(self) -> str:
        """What a good value looks like, for error messages and `/field` help."""
        if self.choices:
            shown = "、".join(lab if lab == code else f"{lab}({code})" for code, lab in
                             self.choices)
            return f"可选: {shown}" + ("，可多选，用逗号分开" if self.type == "list" else "")
        return {"int": "整数", "decimal": "数字", "date": "日期，如 2026-03-15",
                "bool": "是 / 否", "list": "用逗号分开的几项"}.get(self.type, "文字")

    # -- reading ------------------------------------------------------------------------
    def parse(self, raw: Any, today: date | None = None) -> Any:
        """The stored value for `raw` (typed text, a spreadsheet cell, a JSON value), or
        FieldError. None and "" mean "no value" and are returned as None."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if self.validator is not None and isinstance(raw, str) and today is not None:
            checked = get_validator(self.validator)(raw, today)
            if isinstance(checked, Invalid):
                raise FieldError(self.name, f"{self.label_zh}不对（{checked.reason}）")
            raw = checked.value
        reader = _READERS[self.type]
        return reader(self, raw)

    def _fail(self, why: str) -> FieldError:
        return FieldError(self.name, f"{self.label_zh}{why}；{self.hint()}")

    def _bounded(self, value: float, what: str) -> None:
        if self.low is not None and value < self.low:
            raise self._fail(f"{what}不能小于 {_num(self.low)}")
        if self.high is not None and value > self.high:
            raise self._fail(f"{what}不能大于 {_num(self.high)}")

    def choice(self, raw: Any) -> str:
        """The code of the choice `raw` names (its code or its label, any case/width)."""
        text = _fold(str(raw))
        for code, lab in self.choices:
            if text in (_fold(code), _fold(lab)):
                return code
        raise self._fail(f"没有「{str(raw)[:20]}」这一项")

    # -- showing ------------------------------------------------------------------------
    def show(self, value: Any, lang: str = "zh", masked: bool = False) -> str:
        """The value as a person reads it; masked (`***`) when the field is sensitive and
        `masked` is asked for (what staff and exports see by default)."""
        if value is None or value == "" or value == []:
            return ""
        if masked and self.sensitive:
            return "***"
        labels = dict(self.choices)
        if self.type == "bool":
            return ("是" if value else "否") if lang != "en" else ("yes" if value else "no")
        if self.type == "enum":
            return labels.get(str(value), str(value))
        if self.type == "list":
            return "、".join(labels.get(str(v), str(v)) for v in value)
        if self.type == "decimal":
            return f"{float(value):.{self.places}f}"
        return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _text(f: FieldDef, raw: Any) -> str:
    text = unicodedata.normalize("NFC", str(raw)).strip()
    if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t" for ch in text):
        raise f._fail("含有看不见的控制字符")
    high = f.high if f.high is not None else MAX_TEXT
    if len(text) > high:
        raise f._fail(f"最多 {_num(high)} 个字")
    if f.low is not None and len(text) < f.low:
        raise f._fail(f"至少 {_num(f.low)} 个字")
    return text


def _int(f: FieldDef, raw: Any) -> int:
    if isinstance(raw, bool):
        raise f._fail("要填整数")
    if isinstance(raw, int):
        value = raw
    else:
        text = _fold(str(raw)).replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise f._fail("要填整数") from None
        if not number.is_finite() or number != number.to_integral_value() or \
                abs(number) >= 10**15:
            raise f._fail("要填整数")
        value = int(number)
    f._bounded(value, "")
    return value


def _decimal(f: FieldDef, raw: Any) -> float:
    if isinstance(raw, bool):
        raise f._fail("要填数字")
    text = _fold(str(raw)).replace(",", "").removeprefix("¥").removeprefix("￥")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise f._fail("要填数字") from None
    if not number.is_finite() or abs(number) >= 10**13:
        raise f._fail("要填数字")
    value = float(round(number, f.places))
    f._bounded(value, "")
    return value


def _date(f: FieldDef, raw: Any) -> str:
    if isinstance(raw, date):
        return raw.isoformat()
    text = _fold(str(raw))
    m = _DATE.match(text) or _COMPACT_DATE.match(text)
    if m is None:
        raise f._fail("不是日期")
    try:
        return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        raise f._fail("不是日期") from None


def _enum(f: FieldDef, raw: Any) -> str:
    return f.choice(raw)


def _bool(f: FieldDef, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _fold(str(raw))
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise f._fail(f"看不懂「{str(raw)[:20]}」")


def _list(f: FieldDef, raw: Any) -> list[str]:
    items: Iterable[Any] = raw if isinstance(raw, list | tuple) else _LIST_SEP.split(
        unicodedata.normalize("NFKC", str(raw)).strip())
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        value = f.choice(text) if f.choices else _text(_ITEM, text)
        if value not in out:
            out.append(value)
    if len(out) > MAX_ITEMS:
        raise f._fail(f"最多 {MAX_ITEMS} 项")
    return out


_ITEM: Final = FieldDef("item", "text", "每一项", "item", None, (), None, 50, 0, False)
_READERS: Final = {"text": _text, "int": _int, "decimal": _decimal, "date": _date,
                   "enum": _enum, "bool": _bool, "list": _list}  # fmt: skip


class FieldBook:
    """Every custom field of the brand, by name."""

    def __init__(self, specs: Mapping[str, CustomField]) -> None:
        self._defs = {name: FieldDef.of(name, spec) for name, spec in specs.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def __iter__(self) -> Any:
        return iter(self._defs.values())

    def __len__(self) -> int:
        return len(self._defs)

    @property
    def names(self) -> list[str]:
        return list(self._defs)

    @property
    def sensitive(self) -> list[str]:
        """The custom fields marked sensitive."""
        return [d.name for d in self._defs.values() if d.sensitive]

    @property
    def all_sensitive(self) -> list[str]:
        """Every sensitive field of a profile: pregnancy data and the custom ones."""
        return [*SENSITIVE_BUILTIN, *self.sensitive]

    def masked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A profile's `fields` as staff may see them: sensitive values as ***."""
        hidden = set(self.all_sensitive)
        return {k: ("***" if k in hidden and v not in (None, "", []) else v)
                for k, v in fields.items()}

    def get(self, name: str) -> FieldDef:
        """The field, or FieldError naming the known ones (and a close one)."""
        found = self._defs.get(name)
        if found is None:
            raise FieldError(name, self.unknown(name))
        return found

    def unknown(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, self._defs, n=1, cutoff=0.5)
        known = ", ".join(self._defs) or "（config.yml members.fields 里还没有字段）"
        return f"没有字段「{name[:32]}」" + (f"，是不是 {close[0]}？" if close else
                                           f"；已有: {known}")

    def parse(self, name: str, raw: Any, today: date | None = None) -> Any:
        return self.get(name).parse(raw, today)

    def labels(self, name: str) -> dict[str, str]:
        found = self.get(name)
        return {"zh": found.label_zh, "en": found.label_en}

    def view(self, fields: Mapping[str, Any], lang: str = "zh", masked: bool = True
             ) -> dict[str, str]:
        """A member's custom fields as text, by label; sensitive ones masked unless told."""
        return {d.label(lang): d.show(fields.get(d.name), lang, masked)
                for d in self._defs.values() if fields.get(d.name) not in (None, "", [])}
