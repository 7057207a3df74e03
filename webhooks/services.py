"""Opening and closing everything one app process holds: clients, store, worker, channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import cron
from arq.worker import Worker
from rasa_sdk.executor import ActionExecutor
from redis.asyncio import Redis

from bot.actions import register_actions
from bot.broadcasts import Campaigns
from bot.commands import Commands
from bot.flows.engine import FlowEngine, TurnInput
from bot.flows.registry import FlowRegistry
from bot.journeys import Journeys
from bot.matching import Matcher
from bot.metrics import Metrics
from bot.orchestrator import LateSender, Orchestrator
from bot.points import Points
from bot.rasa import RasaClient
from bot.referrals import Referrals
from bot.settings import Settings
from store.keys import Keys
from store.match_index import MatchIndex
from store.mongo import MongoStore
from store.outbox import Outbox
from store.protocols import Store
from store.redis_state import (
    CampaignStops,
    Dedupe,
    FlowStates,
    FollowerOrder,
    SendMarks,
    SendRate,
    TokenCache,
)
from webhooks.wechat.api import WeChatAPI

if TYPE_CHECKING:
    from webhooks.channels import Channel

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    redis: Redis
    keys: Keys
    session: aiohttp.ClientSession
    rasa: RasaClient
    flows: FlowRegistry
    points: Points
    journeys: Journeys
    referrals: Referrals
    metrics: Metrics
    wechat_api: WeChatAPI
    dedupe: Dedupe
    order: FollowerOrder
    tokens: TokenCache
    marks: SendMarks
    arq: ArqRedis
    orchestrator: Orchestrator
    executor: ActionExecutor
    campaigns: Campaigns
    commands: Commands
    late_senders: dict[str, LateSender] = field(default_factory=dict)
    job_ctx: dict[str, Any] = field(default_factory=dict)
    job_functions: list[Callable[..., Any]] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)


async def stop_task(task: asyncio.Task[Any], name: str, timeout: float = 5.0) -> None:
    """Cancel a background task and wait for it, at most `timeout` s: a cancellation lost
    inside the task (seen once with the outbox writer) must not hold up shutdown."""
    if not task.done():
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("background task did not stop", extra={"task": name})
    elif not task.cancelled() and task.exception() is not None:
        log.warning("background task failed", extra={"task": name,
                                                      "error": repr(task.exception())[:200]})


async def supervise(make_worker: Callable[[], Worker], pause: float = 1.0) -> None:
    """Run the job worker for the life of the app; start a new one when it dies.

    arq's worker loop ends on a Redis connection error: without this, late replies and
    scheduled jobs would stop after a Redis restart until the app itself restarted.
    """
    while True:
        worker = make_worker()
        try:
            await worker.async_run()
            return  # closed on purpose
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("job worker stopped; starting a new one",
                        extra={"error": f"{type(e).__name__}: {e}"[:200]})
            with contextlib.suppress(Exception):
                await worker.close()
            await asyncio.sleep(pause)


class _WeChatQr:
    """Referral QR codes through the official account's API."""

    def __init__(self, api: WeChatAPI) -> None:
        self._api = api

    async def create(self, scene: str) -> dict[str, str]:
        return await self._api.create_qr(scene)


class _Awarder:
    """The engine's award step, on the points service."""

    def __init__(self, points: Points) -> None:
        self._points = points

    async def award(self, profile_id: str, rule: str, turn: TurnInput) -> dict[str, Any]:
        return await self._points.award(profile_id, rule, turn.now, turn.source)


async def match_feedback(ctx: dict[str, Any], match_id: str) -> int:
    """Seven days after two sisters were introduced: ask both whether it helped."""
    journeys: Journeys = ctx["journeys"]
    return await journeys.ask_feedback(match_id, datetime.now(UTC))


async def campaign_plan(ctx: dict[str, Any], broadcast_id: str) -> int:
    """A confirmed broadcast (or a day's life-stage moment): deliveries and chunk jobs."""
    campaigns: Campaigns = ctx["campaigns"]
    return await campaigns.plan(broadcast_id)


async def campaign_send(ctx: dict[str, Any], broadcast_id: str, chunk: int, ids: list[str]
                        ) -> dict[str, int]:
    campaigns: Campaigns = ctx["campaigns"]
    return await campaigns.send_chunk(broadcast_id, chunk, ids)


async def campaign_resume(ctx: dict[str, Any], broadcast_id: str) -> None:
    campaigns: Campaigns = ctx["campaigns"]
    await campaigns.resume(broadcast_id)


async def life_stage_moments(ctx: dict[str, Any]) -> dict[str, int]:
    """Daily: each life-stage moment's cohort gets its message (once per member, ever)."""
    campaigns: Campaigns = ctx["campaigns"]
    return await campaigns.run_moments()


class ArqQueue:
    """Campaign jobs on the shared arq queue; ids namespaced like every other job."""

    def __init__(self, pool: ArqRedis, queue: str) -> None:
        self._pool = pool
        self._queue = queue

    async def enqueue(self, job: str, args: list[Any], job_id: str,
                      at: datetime | None = None) -> None:
        await self._pool.enqueue_job(job, *args, _job_id=f"{self._queue}:{job_id}",
                                     _queue_name=self._queue, _defer_until=at)


def utc_hour(local_hour: int, zone: str) -> int:
    """The UTC hour of a local hour today (cron runs in UTC; Shanghai has no DST)."""
    from zoneinfo import ZoneInfo

    local = datetime.now(ZoneInfo(zone)).replace(hour=local_hour, minute=0)
    return local.astimezone(UTC).hour


async def refresh_life_stages(ctx: dict[str, Any]) -> int:
    """Daily job: recompute every member's life-stage tags from their dates."""
    journeys: Journeys = ctx["journeys"]
    points: Points = ctx["points"]
    store: Store = ctx["store"]
    today = points.today(datetime.now(UTC))
    count = 0
    async for profile in store.profiles.members():
        await journeys.refresh_stage(profile, today)
        count += 1
    return count


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, store: Store | None = None, run_worker: bool = True
) -> AsyncIterator[Services]:
    """Everything the app needs, opened in order and closed in reverse."""
    keys = Keys(settings.redis.namespace)
    redis = Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=2)
    own_store = store is None
    if store is None:
        store = await MongoStore.open(settings.mongodb.url, settings.mongodb.database)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    arq_settings = RedisSettings.from_dsn(settings.redis.url)
    pool = await create_pool(arq_settings, default_queue_name=keys.queue)
    metrics = Metrics()
    points = Points(store, settings.points)
    await points.load_rewards()
    wechat_api = WeChatAPI(session, settings.wechat.api_base, settings.wechat.app_id,
                           settings.wechat.app_secret or "", TokenCache(redis, keys))
    referrals = Referrals(store, points, _WeChatQr(wechat_api))
    matcher = Matcher(MatchIndex(redis, keys), settings.matching)
    journeys = Journeys(store, points, settings.members, referrals, matcher)
    # One dict the engine keeps: the campaign actions are filled in once campaigns exist.
    actions = dict(journeys.actions())
    flows = FlowRegistry.for_app(settings.app.flows_dir, [*actions, "answer_poll"],
                                 settings.points.rules, settings.app.default_lang)
    engine = FlowEngine(flows, FlowStates(redis, keys), actions,
                        awarder=_Awarder(points), tagger=store.profiles,
                        fallback_threshold=settings.members.nlu_threshold)
    rasa = RasaClient(session, settings.rasa.url, settings.rasa.timeout_seconds)
    order = FollowerOrder(redis, keys)
    late_senders: dict[str, LateSender] = {}
    orchestrator = Orchestrator(
        store=store, rasa=rasa, engine=engine, today=points.today, templates=flows,
        order=order, metrics=metrics,
        late_senders=late_senders, referrals=referrals, outbox=Outbox(redis, keys),
        default_lang=settings.app.default_lang, order_wait=settings.app.order_wait_seconds,
        testers=settings.members.testers,
    )
    async def schedule(job: str, arg: str, delay: int) -> None:
        # Job id per (job, argument): asking twice schedules once.
        await pool.enqueue_job(job, arg, _job_id=f"{keys.queue}:{job}:{arg}",
                               _queue_name=keys.queue, _defer_by=delay)

    journeys.bind(engine, orchestrator.notify, schedule)
    campaigns = Campaigns(store, flows, settings, points, CampaignStops(redis, keys),
                          SendRate(redis, keys, settings.marketing.rate_per_second),
                          FlowStates(redis, keys), ArqQueue(pool, keys.queue),
                          notify=orchestrator.notify_text)
    actions["answer_poll"] = campaigns.answer_poll
    commands = Commands(store, campaigns, points, settings)
    orchestrator.commands = commands
    executor = ActionExecutor()
    register_actions(executor, engine, points)
    services = Services(
        settings=settings, store=store, redis=redis, keys=keys, session=session, rasa=rasa,
        flows=flows, points=points, journeys=journeys, referrals=referrals, metrics=metrics,
        wechat_api=wechat_api,
        dedupe=Dedupe(redis, keys, settings.app.dedupe_ttl_seconds), order=order,
        tokens=TokenCache(redis, keys), marks=SendMarks(redis, keys), arq=pool,
        orchestrator=orchestrator, executor=executor, late_senders=late_senders,
        campaigns=campaigns, commands=commands,
    )
    services.job_ctx.update(store=store, metrics=metrics, send_marks=services.marks,
                            journeys=journeys, points=points, campaigns=campaigns)
    services.job_functions.extend([match_feedback, campaign_plan, campaign_send,
                                   campaign_resume])
    from webhooks.channels import REGISTRY, load_builtin_channels

    load_builtin_channels()
    for name, factory in REGISTRY.items():
        channel = factory(services)
        if channel is None:
            log.info("channel not configured", extra={"channel": name})
            continue
        services.channels[name] = channel
        if channel.late_sender is not None:
            late_senders[name] = channel.late_sender
        services.job_functions.extend(channel.job_functions)

    stopping = asyncio.Event()

    async def write_outbox_forever(every: float = 1.0) -> None:
        # Messages kept while the database was down are written as soon as it is back.
        # The flag, not only cancel(), ends the loop: once its cancellation was lost and
        # shutdown waited minutes on it (tests/reliability/test_memory.py).
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
                return
            with contextlib.suppress(Exception):
                await orchestrator.replay_outbox()

    outbox_task = asyncio.create_task(write_outbox_forever())
    # The matching index is derived from profiles: after a Redis restart it is rebuilt in
    # the background while the app already answers (matching just finds fewer sisters).
    rebuild = asyncio.create_task(matcher.ensure_built(store.profiles.members()))
    current: list[Worker] = []

    def make_worker() -> Worker:
        worker = Worker(
            functions=services.job_functions, queue_name=keys.queue,
            cron_jobs=[cron(refresh_life_stages, hour={16}, minute={5}, unique=True,
                            job_id=f"{keys.queue}:cron:life-stages"),  # 00:05 in Shanghai
                       cron(life_stage_moments, hour={utc_hour(settings.marketing.mot_hour,
                                                               settings.points.timezone)},
                            minute={10}, unique=True, job_id=f"{keys.queue}:cron:moments")],
            redis_settings=arq_settings, handle_signals=False, ctx=services.job_ctx,
            poll_delay=0.05, max_tries=8,
            # A job whose worker died is run again once its in-progress mark expires
            # (this timeout + 10 s): a killed broadcast resumes by itself.
            job_timeout=settings.marketing.job_timeout_seconds, keep_result=3600,
            log_results=False, timezone=UTC,
        )
        current[:] = [worker]
        return worker

    worker_task: asyncio.Task[None] | None = None
    if run_worker and services.job_functions:
        # The job worker runs inside every app process, so several processes share the work.
        worker_task = asyncio.create_task(supervise(make_worker))
    try:
        yield services
    finally:
        await orchestrator.drain(timeout=settings.rasa.timeout_seconds + 1)
        stopping.set()
        await stop_task(outbox_task, "outbox")
        await stop_task(rebuild, "matching rebuild")
        if worker_task is not None:
            await stop_task(worker_task, "job supervisor")  # then close its worker
        for worker in current:
            # Closing cancels its running jobs; their CancelledError ends here (the jobs
            # stay in Redis and run again), not in the caller's shutdown.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await worker.close()
        await pool.aclose()
        await session.close()
        await redis.aclose()
        if own_store:
            await store.close()
