"""The core without servers: the embedded store, in-memory state, the app's own WeChat
outlet over an in-process transport to the tests' fake WeChat API (its errcodes and
records), an in-memory job queue and an NLU that knows the training examples.

For unit tests of journeys, commands and campaigns that run in milliseconds. The NLU here
is not Rasa: it recognises only the exact training examples in nlu/data (so a test can
say "我的积分" and mean the intent); tests of understanding use the real Rasa server.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from bot.brand_calendar import BrandCalendar
from bot.conversation.rasa import Parsed
from bot.core import Core, build_core, flow_registry
from bot.flow_engine.registry import FlowRegistry
from bot.flow_engine.templates import TemplateLibrary
from bot.messages import InboundMessage, Reply
from bot.metrics import Metrics
from scrm.rasa_proc import nlu_examples
from scrm.sandbox import shown_text
from store.memory_state import MemorySendMarks, memory_state
from store.mongo import MongoStore
from store.records import Profile
from store.state import Allowances
from tests.conftest import APP_ID, ROOT, SENT_TEXTS, make_settings
from tests.support.fake_wechat import FakeWeChatAPI
from webhooks.config import Settings
from webhooks.services import staff_of
from webhooks.wechat.outlet import WeChatOutlet
from webhooks.wechat.settings import WeChatSettings


def settings(**sections: dict[str, Any]) -> Settings:
    """config.yml as the tests use it (no Redis or Rasa is contacted here)."""
    return make_settings("core", "http://127.0.0.1:9", **sections)


def shipped_templates() -> TemplateLibrary:
    return flow_registry(settings()).templates


class ExampleNlu:
    """Intents for the exact training examples of nlu/data; anything else is not understood."""

    _read: ClassVar[dict[Path, dict[str, str]]] = {}  # the examples, read once per run

    def __init__(self, root: Path = ROOT) -> None:
        if root not in ExampleNlu._read:
            found: dict[str, str] = {}
            for intent, text, _ in nlu_examples(root):
                found.setdefault(text.casefold(), intent)
            ExampleNlu._read[root] = found
        self.intents = dict(ExampleNlu._read[root])
        self.calls: list[str] = []

    async def parse(self, text: str, follower: str = "") -> Parsed:
        self.calls.append(text)
        intent = self.intents.get(text.strip().casefold())
        return Parsed(intent or "nlu_fallback", 1.0 if intent else 0.3, [])


class InProcessAPI:
    """The calls WeChatAPI makes, answered by the tests' fake WeChat API without HTTP: the
    same errcodes and records (`fake.sends()`, `fake.delivered()`, `fake.errcode_for`)."""

    def __init__(self, fake: FakeWeChatAPI) -> None:
        self.fake = fake
        self.token = "TOKEN-in-process"
        fake.valid_tokens.add(self.token)

    async def send_custom(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("/cgi-bin/message/custom/send", body)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(json.dumps(body, ensure_ascii=False))  # what WeChat would read
        self.fake.record(path, {"access_token": self.token}, body)
        code = await self.fake.answer_send(body, self.token)
        body["_errcode"] = code
        return {"errcode": code, "errmsg": "ok" if code == 0 else "error"}

    async def create_qr(self, scene: str) -> dict[str, str]:
        self.fake.record("/cgi-bin/qrcode/create", {"access_token": self.token},
                         {"action_info": {"scene": {"scene_str": scene}}})
        return {"ticket": f"TICKET-{scene}", "url": f"http://weixin.qq.com/q/{scene}",
                "image": f"https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=TICKET-{scene}"}


class InProcessOutlet(WeChatOutlet):
    """The app's WeChat outlet (its window, template and errcode rules), whose pushes run
    at once instead of as an arq job: the job's own code, without Redis."""

    def __init__(self, settings: WeChatSettings, api: InProcessAPI, store: MongoStore,
                 allowances: Allowances) -> None:
        super().__init__(settings, api, None, "core", MemorySendMarks(), store,  # type: ignore[arg-type]
                         Metrics(), allowances)

    async def push(self, address: str, replies: list[Reply], keys: list[str],
                   answering: str | None = None) -> None:
        await self.send_late({}, address, [r.model_dump(mode="json") for r in replies], keys,
                             answering)

    async def _enqueue(self, address: str, replies: list[dict[str, Any]], keys: list[str],
                       answering: str | None, first: str, defer: float | None = None) -> None:
        await self.send_late({}, address, replies, keys, answering)


@dataclass
class QueuedJob:
    job: str
    args: list[Any]
    job_id: str
    at: datetime | None


class MemoryQueue:
    """Jobs as the core enqueues them; `run` executes them (once per job id, like arq).

    With `eager`, a job due now runs the moment it is enqueued, inside the code that
    enqueued it: as a busy worker picks a chunk job up while the planner is still planning.
    """

    def __init__(self) -> None:
        self.jobs: list[QueuedJob] = []
        self._ids: set[str] = set()
        self.eager: Core | None = None

    async def enqueue(self, job: str, args: list[Any], job_id: str,
                      at: datetime | None = None, delay: float | None = None) -> None:
        if job_id in self._ids:
            return
        self._ids.add(job_id)
        if delay is not None:
            at = datetime.now(UTC) + timedelta(seconds=delay)
        if self.eager is not None and at is None:
            await self.eager.jobs[job](*args)
            return
        self.jobs.append(QueuedJob(job, list(args), job_id, at))

    def named(self, job: str) -> list[QueuedJob]:
        return [j for j in self.jobs if j.job == job]

    async def run(self, core: Core, until: datetime | None = None, limit: int = 10_000) -> int:
        """Run every job due by `until` (default: now), including those they enqueue."""
        done = 0
        for _ in range(limit):
            due = [j for j in self.jobs if j.at is None or j.at <= (until or datetime.now(UTC))]
            if not due:
                return done
            job = due[0]
            self.jobs.remove(job)
            await core.jobs[job.job](*job.args)
            done += 1
        raise RuntimeError("jobs keep enqueuing jobs")


class CoreHarness:
    """The core, and a follower's-eye way to talk to it."""

    def __init__(self, core: Core, wechat: FakeWeChatAPI, queue: MemoryQueue,
                 nlu: ExampleNlu, outlet: InProcessOutlet) -> None:
        self.core = core
        self.outlet = outlet
        self.store = core.store
        self.wechat = wechat
        self.queue = queue
        self.nlu = nlu
        self.calendar: BrandCalendar = core.calendar
        self._ids = itertools.count(1)

    def message(self, openid: str, kind: str = "text", text: str | None = None,
                event: str | None = None, event_key: str | None = None,
                channel: str = "wechat") -> InboundMessage:
        n = next(self._ids)
        key = f"msg:{openid}:{n}" if kind != "event" else f"evt:{openid}:{n}:{event}"
        app_id = APP_ID if channel == "wechat" else "default"
        return InboundMessage(channel=channel, app_id=app_id, sender=openid, kind=kind,  # type: ignore[arg-type]
                              dedupe_key=key, created_at=datetime.now(UTC), text=text,
                              event=event, event_key=event_key)

    async def send(self, msg: InboundMessage) -> list[Reply]:
        outlet = self.outlet if msg.channel == "wechat" else None
        if outlet is not None:
            # As WeChat and the WeChat channel do: her budget opens, one send held.
            self.wechat.heard_xml(_as_xml(msg))
            await outlet.heard(msg)
        turn = self.core.orchestrator.start(msg)
        replies = await turn.answer(5.0)
        assert turn.task is not None
        await turn.task  # its records are written too
        if outlet is not None and replies is not None:
            await outlet.answered(msg)
        return replies or []

    async def say(self, openid: str, text: str, channel: str = "wechat") -> str:
        SENT_TEXTS.append(text)  # checked against the run's log (tests/conftest.py)
        msg = self.message(openid, text=text, channel=channel)
        return "\n\n".join(r.text for r in await self.send(msg))

    async def event(self, openid: str, event: str, key: str | None = None) -> str:
        replies = await self.send(self.message(openid, "event", event=event, event_key=key))
        return "\n\n".join(r.text for r in replies)

    async def profile(self, openid: str) -> Profile | None:
        return await self.store.profiles.find_by_identity("wechat", APP_ID, openid)

    def texts_to(self, openid: str) -> list[str]:
        """What WeChat delivered to her outside replies (pushes, campaigns), in order."""
        return [shown_text(c.body) for c in self.wechat.delivered()
                if c.body.get("touser") == openid]


async def core_harness(**sections: dict[str, Any]) -> CoreHarness:
    """A fresh core on a fresh embedded store (no quiet hours unless asked)."""
    marketing = {"quiet_hours": "", "rate_per_second": 1000.0, **sections.pop("marketing", {})}
    cfg = settings(marketing=marketing, **sections)
    store = await MongoStore.open(None, f"core_{uuid.uuid4().hex[:8]}")
    wechat, queue, nlu = FakeWeChatAPI(), MemoryQueue(), ExampleNlu()
    api = InProcessAPI(wechat)
    state = memory_state()
    outlet = InProcessOutlet(cfg.wechat, api, store, state.allowances)
    core = await build_core(cfg, store, state, nlu=nlu, outlets=[outlet], queue=queue,
                            qr=api, metrics=Metrics(), staff=staff_of(cfg),
                            flows=shared_flows(cfg))
    return CoreHarness(core, wechat, queue, nlu, outlet)


_REGISTRIES: dict[str, FlowRegistry] = {}


def shared_flows(cfg: Settings) -> FlowRegistry:
    """The shipped flows, checked once per run and per set of what they may refer to (a
    quarter of a second each time): the cores and apps of the run share it. A test that
    edits flows uses a flows folder of its own, so a registry of its own."""
    key = repr((cfg.app.flows_dir, cfg.points.rules, cfg.app.default_lang, cfg.members.fields))
    if key not in _REGISTRIES:
        _REGISTRIES[key] = flow_registry(cfg)
    return _REGISTRIES[key]


def _as_xml(msg: InboundMessage) -> str:
    """The message as WeChat relays it, for the fake's count of her budget."""
    kind = "event" if msg.kind == "event" else "text"
    event = f"<Event>{msg.event}</Event>" if msg.event else ""
    return (f"<xml><FromUserName>{msg.sender}</FromUserName><MsgType>{kind}</MsgType>"
            f"{event}</xml>")
