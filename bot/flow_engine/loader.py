"""Read and check `flows/*.yml`: every problem with its file, line and a plain message.

`load_flows` returns the FlowSet (flows, slots, triggers, moments and the template texts:
every file is read once) only when there is no error at all, so a broken file can never
replace a working version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from bot import yamlmarks
from bot.flow_engine.model import (
    END,
    FIELD_PREFIX,
    Branch,
    CustomFields,
    Flow,
    FlowSet,
    Moment,
    Slot,
    Step,
    StepKind,
    Triggers,
)
from bot.flow_engine.sandbox import FLOW_TEMPLATE_LIMIT, bounded_environment, template_problems
from bot.flow_engine.validators import CONFIRMING

LANGS = ("zh", "en")
# What a `collect: field.<name>` asks, and asks again, when the step names no ask: of its
# own (the field's label is given to both as `label`, {zh, en}).
FIELD_ASK = "field_ask"
FIELD_REASK = "field_reask"
STEP_KINDS: tuple[StepKind, ...] = ("collect", "say", "action", "tag", "award", "link", "set")
STEP_KEYS = {*STEP_KINDS, "id", "next", "ask", "reask"}
FLOW_KEYS = {"description", "triggers", "steps", "cancellable", "interrupts", "draft"}
TRIGGER_KEYS = {"intents", "keywords", "menu", "events", "scenes"}
SLOT_KEYS = {"validator", "ask", "reask", "sensitive", "confirm", "optional"}
FILE_KEYS = {"flows", "slots", "templates", "moments"}
MOMENT_KEYS = {"week", "baby_months", "template", "description"}
LIMITS = {"week": (1, 42), "baby_months": (0, 72)}


@dataclass(frozen=True, order=True)
class FlowError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FlowsInvalid(Exception):
    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class Known:
    """Names the flows may refer to, supplied by the code that runs them."""

    validators: Collection[str]
    actions: Collection[str]
    award_rules: Collection[str]
    # Said by the app itself (apology, fallback ...): a reload must not remove them.
    required_templates: Collection[str] = ()
    # What broadcast templates (flows/templates/) may use of a member.
    member_vars: Sequence[str] = ()
    # The brand's member fields (config.yml members.fields) that `field.<name>` may name.
    fields: CustomFields | None = None


def checked_text(env: Any, source: str, what: str, expression: bool = False
                 ) -> tuple[nodes.Template | None, list[str]]:
    """A template text (or a condition) parsed and checked against the sandbox's limits:
    its AST (None if it has a problem) and every problem, named by `what`. Flows and the
    common questions' answers are checked by this one function."""
    text = "{{ " + source + " }}" if expression else source
    if len(text) > FLOW_TEMPLATE_LIMIT:
        return None, [f"{what} is {len(text)} characters long; at most "
                      f"{FLOW_TEMPLATE_LIMIT} are allowed"]
    try:
        ast = env.parse(text)
    except TemplateSyntaxError as e:
        return None, [f"{what} is not valid Jinja2: {e.message}"]
    problems = [f"{what}: {p.message}"
                + (f" (line {p.lineno} of the text)" if p.lineno > 1 and not expression
                   else "") for p in template_problems(ast, env)]
    return (None if problems else ast), problems


class _Checker:
    def __init__(self, known: Known) -> None:
        self.known = known
        self.errors: list[FlowError] = []
        self.env = bounded_environment()  # the sandbox the texts will run in: its filters
        self.templates: dict[str, tuple[str, int]] = {}  # name -> (file, line)
        self.texts: dict[str, dict[str, str]] = {}  # name -> lang -> Jinja2 source
        self.slots: dict[str, Slot] = {}
        self.flows: dict[str, Flow] = {}
        self.template_refs: list[tuple[str, str, int]] = []  # (name, file, line)
        self.slot_refs: list[tuple[str, str, int, str]] = []  # (slot, file, line, where)
        self.condition_refs: list[tuple[set[str], str, int, str]] = []
        self.field_values: list[tuple[str, Any, str, int, str]] = []  # set: field.x values
        self.moments: dict[str, Moment] = {}
        self.moment_lines: dict[str, tuple[str, int]] = {}
        self.broadcast_templates: set[str] = set()
        self.parsed: dict[tuple[str, str], nodes.Template] = {}  # (name, lang) -> checked AST

    def err(self, file: str, line: int, message: str) -> None:
        self.errors.append(FlowError(file, line, message))

    # -- files ------------------------------------------------------------------------
    def _load(self, path: Path) -> tuple[Any, yamlmarks.Lines] | None:
        """The file's data and line marks; None (error recorded) if unreadable or empty."""
        try:
            data, lines = yamlmarks.load(path.read_text(encoding="utf-8"), str(path))
        except yamlmarks.YamlProblem as e:
            self.err(str(path), e.line, e.problem)
            return None
        return None if data is None else (data, lines)

    def read_templates(self, path: Path) -> None:
        """A file under flows/templates/: broadcast and life-stage texts only."""
        fname = str(path)
        loaded = self._load(path)
        if loaded is None:
            return
        data, lines = loaded
        if not isinstance(data, dict) or set(data) - {"templates"}:
            self.err(fname, 1, "a file in flows/templates/ holds only templates:")
            return
        section = data.get("templates") or {}
        before = set(self.templates)
        self._templates(section, fname, lines)
        for name in set(self.templates) - before:
            self.broadcast_templates.add(name)
            by_lang = section.get(name)
            if not isinstance(by_lang, dict):
                continue
            for lang in by_lang:
                ast = self.parsed.get((str(name), str(lang)))
                if ast is None:
                    continue  # its problem is reported by _templates
                used = set(meta.find_undeclared_variables(ast))
                for var in sorted(used - set(self.known.member_vars)):
                    self.err(fname, lines.get(("templates", name, lang), lines[("templates",
                                                                              name)]),
                             f"template {name!r} ({lang}) uses {var!r}, which members do not "
                             f"have (available: {', '.join(self.known.member_vars)})")

    def _moments(self, section: Any, fname: str, lines: yamlmarks.Lines) -> None:
        if not isinstance(section, dict):
            self.err(fname, lines[("moments",)], "moments: must map names to a milestone "
                     "and a template")
            return
        for name, spec in section.items():
            line = lines[("moments", name)]
            if name in self.moments or name in self.moment_lines:
                self.err(fname, line, f"moment {name!r} is defined twice")
                continue
            self.moment_lines[name] = (fname, line)
            if not isinstance(spec, dict):
                self.err(fname, line, f"moment {name!r}: expected {{week: 12, template: ...}}")
                continue
            for key in spec:
                if key not in MOMENT_KEYS:
                    self.err(fname, lines[("moments", name, key)],
                             f"moment {name!r}: unknown key {key!r} (expected one of: "
                             f"{', '.join(sorted(MOMENT_KEYS))})")
            marks = [k for k in LIMITS if k in spec]
            if len(marks) != 1:
                self.err(fname, line, f"moment {name!r} needs exactly one of week: or "
                         "baby_months:")
                continue
            mark = marks[0]
            value = spec[mark]
            low, high = LIMITS[mark]
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not low <= value <= high:
                self.err(fname, lines[("moments", name, mark)],
                         f"moment {name!r}: {mark} must be a whole number {low}..{high}")
                continue
            template = spec.get("template")
            if not template:
                self.err(fname, line, f"moment {name!r} has no template:")
                continue
            self.template_refs.append((str(template), fname, lines[("moments", name,
                                                                    "template")]))
            self.moments[name] = Moment(
                id=str(name), template=str(template), description=str(spec.get(
                    "description", "")), file=fname,
                week=value if mark == "week" else None,
                baby_months=value if mark == "baby_months" else None)

    def read(self, path: Path) -> None:
        fname = str(path)
        loaded = self._load(path)
        if loaded is None:
            return
        data, lines = loaded
        if not isinstance(data, dict):
            self.err(fname, 1, "a flow file is a mapping with flows:, slots: and templates:")
            return
        for key in data:
            if key not in FILE_KEYS:
                self.err(fname, lines[(key,)], f"unknown section {key!r} "
                         f"(expected one of: {', '.join(sorted(FILE_KEYS))})")
        self._templates(data.get("templates") or {}, fname, lines)
        if "moments" in data:
            self._moments(data.get("moments") or {}, fname, lines)
        self._slots(data.get("slots") or {}, fname, lines)
        for flow_id, body in (data.get("flows") or {}).items():
            self._flow(flow_id, body, fname, lines)

    def _templates(self, section: Any, fname: str, lines: yamlmarks.Lines) -> None:
        if not isinstance(section, dict):
            self.err(fname, lines[("templates",)], "templates: must map names to zh/en texts")
            return
        for name, by_lang in section.items():
            line = lines[("templates", name)]
            if name in self.templates:
                first = self.templates[name]
                self.err(fname, line, f"template {name!r} is already defined at "
                         f"{first[0]}:{first[1]}")
                continue
            self.templates[name] = (fname, line)
            if not isinstance(by_lang, dict):
                self.err(fname, line, f"template {name!r} needs a zh: and an en: text")
                continue
            self.texts[name] = {str(k): str(v) for k, v in by_lang.items()}
            for lang in LANGS:
                if lang not in by_lang:
                    self.err(fname, line, f"template {name!r} has no {lang} text")
            for lang, source in by_lang.items():
                where = lines.get(("templates", name, lang), line)
                ast = self._check_text(str(source), fname, where,
                                       f"template {name!r} ({lang})")
                if ast is not None:
                    self.parsed[(str(name), str(lang))] = ast

    def _check_text(self, source: str, fname: str, line: int, what: str,
                    expression: bool = False) -> nodes.Template | None:
        """A template text (or a condition, `expression`) parsed and checked against the
        sandbox's limits: its AST, or None with every problem recorded at `line`."""
        ast, problems = checked_text(self.env, source, what, expression)
        for problem in problems:
            self.err(fname, line, problem)
        return ast

    def _slots(self, section: Any, fname: str, lines: yamlmarks.Lines) -> None:
        if not isinstance(section, dict):
            self.err(fname, lines[("slots",)], "slots: must map slot names to settings")
            return
        for name, spec in section.items():
            line = lines[("slots", name)]
            spec = spec or {}
            if not isinstance(spec, dict):
                self.err(fname, line, f"slot {name!r}: expected a mapping like "
                         "{validator: cn_mobile}")
                continue
            for key in spec:
                if key not in SLOT_KEYS:
                    self.err(fname, lines[("slots", name, key)], f"slot {name!r}: unknown "
                             f"setting {key!r}")
            validator = str(spec.get("validator", "text"))
            if validator not in self.known.validators:
                self.err(fname, lines.get(("slots", name, "validator"), line),
                         f"slot {name!r}: unknown validator {validator!r} (known: "
                         f"{', '.join(sorted(self.known.validators))})")
            if name in self.slots:
                self.err(fname, line, f"slot {name!r} is defined twice")
            if validator in CONFIRMING and not spec.get("confirm"):
                # its estimates are kept only once she says yes to this question
                self.err(fname, line, f"slot {name!r}: validator {validator!r} may ask her "
                         "to confirm its reading: give the slot a confirm: template")
            for key in ("ask", "reask", "confirm"):
                if spec.get(key):
                    self.template_refs.append((str(spec[key]), fname,
                                               lines[("slots", name, key)]))
            self.slots[name] = Slot(name, validator, spec.get("ask"), spec.get("reask"),
                                    bool(spec.get("sensitive", False)), spec.get("confirm"),
                                    bool(spec.get("optional", False)))

    def _flow(self, flow_id: str, body: Any, fname: str, lines: yamlmarks.Lines) -> None:
        base = ("flows", flow_id)
        line = lines[base]
        if flow_id in self.flows:
            self.err(fname, line, f"flow {flow_id!r} is defined twice")
            return
        if not isinstance(body, dict):
            self.err(fname, line, f"flow {flow_id!r}: expected description, triggers, steps")
            return
        for key in body:
            if key not in FLOW_KEYS:
                self.err(fname, lines[(*base, key)], f"flow {flow_id!r}: unknown key {key!r}")
        raw_triggers = body.get("triggers") or {}
        if not isinstance(raw_triggers, dict):
            self.err(fname, lines[(*base, "triggers")], f"flow {flow_id!r}: triggers must be "
                     "a mapping of intents/keywords/menu/events")
            raw_triggers = {}
        for key in raw_triggers:
            if key not in TRIGGER_KEYS:
                self.err(fname, lines[(*base, "triggers", key)],
                         f"flow {flow_id!r}: unknown trigger kind {key!r}")
        triggers = Triggers(**{k: tuple(str(v) for v in (raw_triggers.get(k) or ()))
                               for k in TRIGGER_KEYS})
        raw_steps = body.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.err(fname, line, f"flow {flow_id!r} has no steps")
            raw_steps = []
        steps = [self._step(flow_id, i, s, fname, lines) for i, s in enumerate(raw_steps)]
        flow = Flow(
            id=flow_id, description=str(body.get("description", "")), triggers=triggers,
            steps=tuple(s for s in steps if s is not None),
            cancellable=bool(body.get("cancellable", True)),
            interrupts=bool(body.get("interrupts", False)), draft=bool(body.get("draft", False)),
            file=fname,
        )
        self.flows[flow_id] = flow
        if len(flow.steps) == len(steps):
            self._graph(flow, fname)

    def _step(self, flow_id: str, i: int, raw: Any, fname: str, lines: yamlmarks.Lines
              ) -> Step | None:
        path = ("flows", flow_id, "steps", str(i))
        line = lines[path]
        where = f"flow {flow_id!r} step {i + 1}"
        if not isinstance(raw, dict):
            self.err(fname, line, f"{where}: expected a mapping like {{say: template}}")
            return None
        for key in raw:
            if key not in STEP_KEYS:
                self.err(fname, lines[(*path, key)], f"{where}: unknown key {key!r}")
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            self.err(fname, line, f"{where}: a step does exactly one of "
                     f"{', '.join(STEP_KINDS)} (found {', '.join(kinds) or 'none'})")
            return None
        kind = kinds[0]
        arg = raw[kind]
        step_id = str(raw.get("id") or f"step{i + 1}")
        if kind == "collect":
            # Checked when every file is read: slots are shared between files.
            self.slot_refs.append((str(arg), fname, lines[(*path, kind)], where))
        elif kind == "say":
            self.template_refs.append((str(arg), fname, lines[(*path, kind)]))
        elif kind == "action" and str(arg) not in self.known.actions:
            self.err(fname, lines[(*path, kind)], f"{where}: unknown action {arg!r} (known: "
                     f"{', '.join(sorted(self.known.actions))})")
        elif kind == "award" and str(arg) not in self.known.award_rules:
            self.err(fname, lines[(*path, kind)], f"{where}: unknown points rule {arg!r} "
                     f"(rules in config.yml points.rules: "
                     f"{', '.join(sorted(self.known.award_rules))})")
        elif kind == "tag" and not (isinstance(arg, dict) and set(arg) <= {"add", "remove"}):
            self.err(fname, lines[(*path, kind)], f"{where}: tag takes add: [...] and/or "
                     "remove: [...]")
        elif kind == "set" and not isinstance(arg, dict):
            self.err(fname, lines[(*path, kind)], f"{where}: set takes a mapping of slots")
        elif kind == "set":
            for slot, value in arg.items():
                self.slot_refs.append((str(slot), fname, lines[(*path, kind, slot)], where))
                if str(slot).startswith(FIELD_PREFIX):
                    self.field_values.append((str(slot).removeprefix(FIELD_PREFIX), value,
                                              fname, lines[(*path, kind, slot)], where))
        for key in ("ask", "reask"):
            if raw.get(key):
                self.template_refs.append((str(raw[key]), fname, lines[(*path, key)]))
        branches = self._branches(raw.get("next"), where, fname, (*path, "next"), lines)
        return Step(id=step_id, kind=kind, arg=arg, ask=raw.get("ask"), reask=raw.get("reask"),
                    branches=branches, line=line)

    def _branches(self, raw: Any, where: str, fname: str, path: yamlmarks.Path_,
                  lines: yamlmarks.Lines) -> tuple[Branch, ...]:
        if raw is None:
            return ()
        if isinstance(raw, str):
            return (Branch(None, raw),)
        if not isinstance(raw, list):
            self.err(fname, lines[path], f"{where}: next is a step id, END, or a list of "
                     "if/then and else")
            return ()
        out = []
        for j, item in enumerate(raw):
            line = lines[(*path, str(j))]
            if isinstance(item, dict) and "if" in item and "then" in item:
                expr = str(item["if"])
                ast = self._check_text(expr, fname, line, f"{where}: condition {expr!r}",
                                       expression=True)
                if ast is None:
                    continue
                slots = {n.attr for n in ast.find_all(nodes.Getattr)
                         if isinstance(n.node, nodes.Name) and n.node.name == "slots"}
                self.condition_refs.append((slots, fname, line, where))
                out.append(Branch(expr, str(item["then"])))
            elif isinstance(item, dict) and set(item) == {"else"}:
                out.append(Branch(None, str(item["else"])))
            else:
                self.err(fname, line, f"{where}: each next entry is {{if: ..., then: ...}} "
                         "or {else: ...}")
        return tuple(out)

    def _graph(self, flow: Flow, fname: str) -> None:
        ids = [s.id for s in flow.steps]
        for s in flow.steps:
            if ids.count(s.id) > 1:
                self.err(fname, s.line, f"flow {flow.id!r}: step id {s.id!r} is used twice")
        for s in flow.steps:
            for b in s.branches:
                if b.target != END and b.target not in ids:
                    self.err(fname, s.line, f"flow {flow.id!r} step {s.id!r}: next goes to "
                             f"unknown step {b.target!r}")
        reachable: set[int] = set()
        todo = [0] if flow.steps else []
        while todo:
            i = todo.pop()
            if i in reachable or i >= len(flow.steps):
                continue
            reachable.add(i)
            step = flow.steps[i]
            if step.kind == "link":
                continue  # the flow ends where it hands over
            targets = [b.target for b in step.branches]
            if not step.branches or all(b.condition is not None for b in step.branches):
                targets.append(flow.steps[i + 1].id if i + 1 < len(flow.steps) else END)
            todo.extend(ids.index(t) for t in targets if t in ids)
        for i, s in enumerate(flow.steps):
            if i not in reachable:
                self.err(fname, s.line, f"flow {flow.id!r}: step {s.id!r} can never be "
                         "reached")

    # -- across files -----------------------------------------------------------------
    def _field_slot(self, slot: str, fname: str, line: int, where: str) -> None:
        """The slot a `field.<name>` stands for, made from the field (once), or an error
        naming the fields config.yml declares."""
        name = slot.removeprefix(FIELD_PREFIX)
        fields = self.known.fields
        if fields is None or name not in fields:
            declared = ", ".join(fields.names) if fields is not None and fields.names else \
                "none declared"
            self.err(fname, line, f"{where}: unknown member field {name!r} (config.yml "
                     f"members.fields: {declared})")
            return
        if slot not in self.slots:
            self.slots[slot] = Slot(slot, slot, FIELD_ASK, FIELD_REASK,
                                    sensitive=name in fields.sensitive)
            self.template_refs += [(FIELD_ASK, fname, line), (FIELD_REASK, fname, line)]

    def finish(self, flows_dir: str) -> None:
        for slot, fname, line, where in self.slot_refs:
            if slot.startswith(FIELD_PREFIX):
                self._field_slot(slot, fname, line, where)
        for name, value, fname, line, where in self.field_values:
            if self.known.fields is not None and name in self.known.fields:
                try:
                    self.known.fields.parse(name, value)
                except ValueError as e:
                    self.err(fname, line, f"{where}: {value!r} does not fit member field "
                             f"{name!r}: {getattr(e, 'message', e)}")
        for slot, fname, line, where in self.slot_refs:
            if slot not in self.slots and not slot.startswith(FIELD_PREFIX):
                self.err(fname, line, f"{where}: unknown slot {slot!r}")
        for name in sorted(set(self.known.required_templates) - set(self.templates)):
            self.err(flows_dir, 1, f"template {name!r} is required by the app and is not "
                     "defined in any flow file")
        for flow in self.flows.values():
            for s in flow.steps:
                if s.kind == "collect" and s.ask is None and str(s.arg) in self.slots and \
                        self.slots[str(s.arg)].ask is None:
                    self.err(flow.file, s.line, f"flow {flow.id!r} step {s.id!r}: collect "
                             f"needs an ask: template (on the step or on slot {s.arg!r})")
        for name, fname, line in self.template_refs:
            if name not in self.templates:
                self.err(fname, line, f"template {name!r} is not defined in any flow file")
        for name, (fname, line) in self.moment_lines.items():
            moment = self.moments.get(name)
            if moment and moment.template in self.templates and \
                    moment.template not in self.broadcast_templates:
                self.err(fname, line, f"moment {name!r}: template {moment.template!r} must be "
                         "in flows/templates/ (a broadcast template)")
        for slots, fname, line, where in self.condition_refs:
            for slot in sorted(slots - set(self.slots)):
                self.err(fname, line, f"{where}: condition uses unknown slot {slot!r}")
        for flow in self.flows.values():
            for s in flow.steps:
                if s.kind == "link" and str(s.arg) not in self.flows:
                    self.err(flow.file, s.line, f"flow {flow.id!r}: link to unknown flow "
                             f"{s.arg!r}")
        seen: dict[tuple[bool, str, str], str] = {}
        for flow in self.flows.values():
            t = flow.triggers
            for kind, values in (("intent", t.intents), ("keyword", t.keywords),
                                 ("menu", t.menu), ("event", t.events), ("scene", t.scenes)):
                for v in values:
                    # A draft may share a live flow's trigger: that is how it is tried out.
                    key = (flow.draft, kind, v.casefold())
                    if key in seen and seen[key] != flow.id:
                        self.err(flow.file, 1, f"duplicate trigger: {kind} {v!r} starts both "
                                 f"{seen[key]!r} and {flow.id!r}")
                    seen.setdefault(key, flow.id)


def load_flows(flows_dir: str | Path, known: Known) -> FlowSet:
    """The checked FlowSet, or FlowsInvalid listing every problem (sorted by file, line)."""
    files = sorted(Path(flows_dir).glob("*.yml"))
    template_files = sorted(Path(flows_dir).glob("templates/*.yml"))
    checker = _Checker(known)
    for path in files:
        checker.read(path)
    for path in template_files:
        checker.read_templates(path)
    checker.finish(str(flows_dir))
    if checker.errors:
        raise FlowsInvalid(sorted(set(checker.errors)))
    digest = hashlib.sha256()
    for path in files + template_files:
        digest.update(str(path.relative_to(flows_dir)).encode() + path.read_bytes())
    flows = checker.flows
    live: dict[tuple[str, str], str] = {}
    drafts: dict[tuple[str, str], str] = {}
    for flow in flows.values():
        table = drafts if flow.draft else live
        for kind in ("intents", "keywords", "menu", "events", "scenes"):
            for v in getattr(flow.triggers, kind):
                table[(kind, v.casefold() if kind == "keywords" else v)] = flow.id
    return FlowSet(flows=flows, slots=checker.slots, version=digest.hexdigest()[:12],
                   live=live, drafts=drafts, moments=checker.moments,
                   broadcast_templates=frozenset(checker.broadcast_templates),
                   templates=checker.texts)
