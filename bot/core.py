"""The channel-free core, built once in dependency order: nothing is patched afterwards.

    calendar → points → social value → referrals, life stages, matcher → flows (registry)
    → outbound → step actions → engine → sister feedback → campaigns → KOL suggestions
    → audit → commands → orchestrator

The edges (webhooks/services.py) open the store, the shared state and the channels'
outlets first, hand them in, and serve what comes out: the orchestrator for channels,
the action executor for Rasa, and the jobs and daily crons for the worker.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Final

from rasa_sdk.executor import ActionExecutor

from bot.brand_calendar import BrandCalendar
from bot.conversation.orchestrator import Nlu, Orchestrator
from bot.conversation.outbound import Outbound
from bot.conversation.rasa_action import action_executor
from bot.flow_engine.actions import action_names, actions_of
from bot.flow_engine.engine import FlowEngine
from bot.flow_engine.registry import FlowRegistry
from bot.handoff.tickets import IDLE_JOB, Handoff
from bot.jobs import Job, JobQueue
from bot.knowledge.answers import FAQ_FLOW, Knowledge
from bot.marketing.audit import Audit
from bot.marketing.campaigns import Campaigns
from bot.marketing.commands import ROLES, Commands
from bot.marketing.polls import PollActions
from bot.members.actions import LifeStages, MemberActions
from bot.members.fields import FieldBook
from bot.members.orders import recompute_totals
from bot.members.points import Points, award_rules
from bot.members.referrals import QrIssuer, Referrals
from bot.members.social import SOCIAL_JOB, KolSuggestions, Social
from bot.members.variables import MEMBER_VARS
from bot.metrics import Metrics
from bot.outlets import Outlet
from bot.rights.actions import ERASE_JOB, DataRights
from bot.settings import BotSettings
from bot.sisters.actions import FEEDBACK_JOB, SisterActions, SisterFeedback
from bot.sisters.matching import Matcher
from store.protocols import Store
from store.state import State

# The classes whose `@step_action` methods the flows may call: their names are the flows'
# known actions, for the running app and for `scrm flows check` alike.
ACTION_PROVIDERS: Final = (MemberActions, SisterActions, PollActions, DataRights, Handoff,
                           Knowledge)
ACTION_NAMES: Final = action_names(*ACTION_PROVIDERS)
STAGE_REFRESH_AT: Final = time(0, 5)  # brand time: every member's life stage, daily
RETENTION_AT: Final = time(3, 30)  # brand time: old texts stripped, long-gone followers erased
# The KOL suggestion reads the scores the daily recompute (at social.hour) has just written.
KOL_AFTER_MINUTES: Final = 30


def flow_registry(settings: BotSettings) -> FlowRegistry:
    """The checked flows, with every name they may refer to (FlowsInvalid if broken)."""
    return FlowRegistry.for_app(settings.app.flows_dir, ACTION_NAMES,
                                award_rules(settings.points), MEMBER_VARS,
                                settings.app.default_lang, FieldBook(settings.members.fields))


@dataclass(frozen=True)
class Staff:
    """Configured people, as identity keys (channel:account:id): the channel that knows
    what the openids in config.yml belong to resolves them (webhooks/services.py)."""

    admins: frozenset[str] = frozenset()
    testers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Cron:
    """A daily job at a wall-clock time in the brand's calendar."""

    name: str
    job: Job
    at: time


@dataclass(frozen=True)
class Core:
    settings: BotSettings
    calendar: BrandCalendar
    store: Store
    state: State
    flows: FlowRegistry
    points: Points
    referrals: Referrals
    social: Social
    kol: KolSuggestions
    stages: LifeStages
    matcher: Matcher
    outbound: Outbound
    rights: DataRights
    handoff: Handoff
    engine: FlowEngine
    feedback: SisterFeedback
    campaigns: Campaigns
    commands: Commands
    orchestrator: Orchestrator
    executor: ActionExecutor

    @property
    def jobs(self) -> Mapping[str, Job]:
        """Durable jobs by the name they are queued under."""
        return {FEEDBACK_JOB: self.feedback.ask, "campaign_plan": self.campaigns.plan,
                "campaign_send": self.campaigns.send_chunk,
                "campaign_resume": self.campaigns.resume,
                ERASE_JOB: self.rights.erase_when_due,
                IDLE_JOB: self.handoff.idle_close, SOCIAL_JOB: self.social.refresh}

    @property
    def crons(self) -> Sequence[Cron]:
        return [Cron("life-stages", self.stages.refresh_all, STAGE_REFRESH_AT),
                Cron("moments", self.campaigns.run_moments,
                     time(self.settings.marketing.mot_hour, 10)),
                Cron("retention", self.rights.daily_retention, RETENTION_AT),
                Cron("social", self.social.refresh_all, time(self.settings.social.hour, 0)),
                Cron("kol-suggestions", self.kol.weekly,
                     time(self.settings.social.hour, KOL_AFTER_MINUTES))]


async def build_core(settings: BotSettings, store: Store, state: State, *, nlu: Nlu,
                     outlets: Sequence[Outlet], queue: JobQueue, qr: QrIssuer | None,
                     metrics: Metrics, staff: Staff, flows: FlowRegistry | None = None
                     ) -> Core:
    """Everything channel-free, each part given what it uses (`flows`: an already checked
    registry of these settings' flows, which tests share between cores)."""
    calendar = BrandCalendar(settings.app.timezone)
    fields = FieldBook(settings.members.fields)
    points = Points(store, settings.points, calendar)
    await points.load_rewards()
    social = Social(store, settings.social, calendar, queue)
    referrals = Referrals(store, points, qr, social)
    stages = LifeStages(store, calendar)
    matcher = Matcher(state.matches, settings.matching)
    flows = flows or flow_registry(settings)
    outbound = Outbound(store, flows, outlets, settings.app.default_lang)
    sisters = SisterActions(store, matcher, settings.members, outbound, queue, social)
    rights = DataRights(store, state, settings.members, calendar, stages, sisters, queue)
    handoff = Handoff(store, outbound, queue, calendar, settings.handoff)
    knowledge = Knowledge(flows, store.faq)  # the registry: a reload swaps the answers too
    actions = actions_of([
        MemberActions(store, points, settings.members, referrals, stages, [matcher]),
        sisters, PollActions(store, points, settings.marketing, social), rights, handoff,
        knowledge,
    ])
    engine = FlowEngine(flows, state.flows, actions, awarder=points, profiles=store.profiles,
                        notifier=outbound, calendar=calendar,
                        fallback_threshold=settings.members.nlu_threshold,
                        fallback_flow=FAQ_FLOW, fields=fields)
    campaigns = Campaigns(store, flows, settings.marketing, [t.name for t in settings.points.tiers],
                          calendar, settings.app.default_lang, state.stops, state.rate,
                          state.flows, queue, notify=outbound.notify_text, outlets=outlets,
                          fields=fields)
    # Admins are staff: the suggestion is a plain note to them, as a broadcast's progress.
    kol = KolSuggestions(store, social, settings.social, calendar, outbound.notify_text,
                         staff.admins, not_candidates=frozenset(ROLES) - {"consumer"})
    commands = Commands(store, campaigns, points, Audit(store), staff.admins,
                        settings.marketing.grant_daily_cap, calendar, rights, handoff,
                        [knowledge.stats], social=social, referrals=referrals,
                        fields=fields)
    orchestrator = Orchestrator(
        store=store, nlu=nlu, engine=engine, calendar=calendar, outbound=outbound,
        order=state.order, outbox=state.outbox, metrics=metrics, commands=commands,
        event_hooks=[referrals], interceptor=handoff,
        order_wait=settings.app.order_wait_seconds,
        testers=staff.testers, max_text=settings.app.max_text_chars,
        after_link=functools.partial(recompute_totals, store))
    return Core(settings=settings, calendar=calendar, store=store, state=state, flows=flows,
                points=points, referrals=referrals, social=social, kol=kol, stages=stages,
                matcher=matcher,
                outbound=outbound, engine=engine, rights=rights, handoff=handoff,
                feedback=SisterFeedback(store, matcher, engine), campaigns=campaigns,
                commands=commands, orchestrator=orchestrator,
                executor=action_executor(engine, calendar))
