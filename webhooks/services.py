"""Opening and closing everything one app process holds, in dependency order:

    clients (Redis, store, HTTP session, arq) → shared state → WeChat API and its outlet
    → the core (bot/core.py) → channels → the job worker

Each part gets what it uses through its constructor; nothing is patched afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.cron import CronJob, cron
from arq.worker import Function, Worker, func
from redis.asyncio import Redis

from bot.conversation.rasa import RasaClient
from bot.core import Core, Staff, build_core
from bot.flow_engine.registry import FlowRegistry
from bot.jobs import Job
from bot.logs import hide_secrets
from bot.metrics import Metrics
from store.keys import Keys
from store.mongo import MongoStore
from store.protocols import Store
from store.records import identity_key
from store.redis_state import redis_state
from webhooks.channels import Channel
from webhooks.config import Settings
from webhooks.json_channel import JsonChannel
from webhooks.wechat.api import WeChatAPI
from webhooks.wechat.channel import WeChatChannel
from webhooks.wechat.outlet import JOB_NAME as WECHAT_PUSH_JOB
from webhooks.wechat.outlet import WeChatOutlet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the web app's own routes use (health, admin API, Rasa's action endpoint)."""

    settings: Settings
    store: Store
    redis: Redis
    keys: Keys
    arq: ArqRedis
    rasa: RasaClient
    metrics: Metrics
    core: Core
    wechat: WeChatOutlet
    channels: list[Channel]


SERVICES = aiohttp.web.AppKey("services", Services)


class ArqQueue:
    """The core's JobQueue on arq; job ids namespaced like every other key."""

    def __init__(self, pool: ArqRedis, queue: str) -> None:
        self._pool = pool
        self._queue = queue

    async def enqueue(self, job: str, args: list[Any], job_id: str,
                      at: datetime | None = None, delay: float | None = None) -> None:
        await self._pool.enqueue_job(job, *args, _job_id=f"{self._queue}:{job_id}",
                                     _queue_name=self._queue, _defer_until=at,
                                     _defer_by=delay)


def _ctx_free(job: Job) -> Any:  # an arq WorkerCoroutine
    """arq passes its context first; the core's jobs take only their own arguments."""
    async def run(ctx: dict[str, Any], *args: Any) -> Any:
        return await job(*args)
    return run


def worker_functions(core: Core, outlet: WeChatOutlet) -> list[Function]:
    return [func(_ctx_free(job), name=name) for name, job in core.jobs.items()] + [
        func(outlet.send_late, name=WECHAT_PUSH_JOB)]


def worker_crons(core: Core, queue: str) -> list[CronJob]:
    out = []
    for c in core.crons:
        at = core.calendar.utc_time(c.at)  # cron runs in UTC; the brand's hour in it
        out.append(cron(_ctx_free(c.job), name=f"cron:{c.name}", hour={at.hour},
                        minute={at.minute}, unique=True, job_id=f"{queue}:cron:{c.name}"))
    return out


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


def staff_of(settings: Settings) -> Staff:
    """config.yml names admins and testers by openid: openids of this WeChat account."""
    def keys(openids: list[str]) -> frozenset[str]:
        return frozenset(identity_key("wechat", settings.wechat.app_id, o) for o in openids)
    return Staff(admins=keys(settings.marketing.admins), testers=keys(settings.members.testers))


def build_channels(settings: Settings, core: Core, outlet: WeChatOutlet, metrics: Metrics
                   ) -> list[Channel]:
    """Every configured channel, each with what it uses."""
    budget, dedupe = settings.app.budget_seconds, core.state.dedupe
    channels: list[Channel] = [WeChatChannel(settings.wechat, budget, dedupe, core.state.nonces,
                                             core.orchestrator, outlet, metrics)]
    cfg = settings.json_channel
    if cfg.secret:
        channels.append(JsonChannel(cfg.secret, cfg.header, budget, dedupe, core.orchestrator,
                                    metrics))
    else:
        log.info("channel not configured", extra={"channel": "json"})
    return channels


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, store: Store | None = None, run_worker: bool = True,
    flows: FlowRegistry | None = None,
) -> AsyncIterator[Services]:
    """Everything the app needs, opened in order and closed in reverse (`flows`: an already
    checked registry of these settings' flows, which tests share between apps)."""
    hide_secrets([settings.wechat.token, settings.wechat.app_secret, settings.wechat.aes_key,
                  settings.admin.token, settings.json_channel.secret,
                  settings.rasa.action_token, settings.shop.secret])
    keys = Keys(settings.redis.namespace)
    redis = Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=2)
    own_store = store is None
    if store is None:
        cfg = settings.mongodb
        store = await MongoStore.open(cfg.url, cfg.database,
                                      Path(cfg.snapshot) if cfg.snapshot else None)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    arq_settings = RedisSettings.from_dsn(settings.redis.url)
    pool = await create_pool(arq_settings, default_queue_name=keys.queue)
    metrics = Metrics()
    state = redis_state(redis, keys, dedupe_ttl=settings.app.dedupe_ttl_seconds,
                        rate_per_second=settings.marketing.rate_per_second)
    wechat_api = WeChatAPI(session, settings.wechat.api_base, settings.wechat.app_id,
                           settings.wechat.app_secret or "", state.tokens)
    outlet = WeChatOutlet(settings.wechat, wechat_api, pool, keys.queue, state.marks, store,
                          metrics, state.allowances)
    rasa = RasaClient(session, settings.rasa.url, settings.rasa.timeout_seconds)
    core = await build_core(settings, store, state, nlu=rasa, outlets=[outlet],
                            queue=ArqQueue(pool, keys.queue), qr=wechat_api, metrics=metrics,
                            staff=staff_of(settings), flows=flows)
    services = Services(settings=settings, store=store, redis=redis, keys=keys, arq=pool,
                        rasa=rasa, metrics=metrics, core=core, wechat=outlet,
                        channels=build_channels(settings, core, outlet, metrics))

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
                await core.orchestrator.replay_outbox()

    async def checkpoint_forever(every: float) -> None:
        # The embedded engine's snapshot (a no-op on a real server), at most `every` old.
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
                return
            try:
                await store.checkpoint()
            except Exception as e:
                log.warning("store checkpoint failed", extra={"error": str(e)[:200]})

    outbox_task = asyncio.create_task(write_outbox_forever())
    checkpoint_task = asyncio.create_task(checkpoint_forever(settings.mongodb.snapshot_seconds))
    # The matching index is derived from profiles: after a Redis restart it is rebuilt in
    # the background while the app already answers (matching just finds fewer sisters).
    rebuild = asyncio.create_task(core.matcher.ensure_built(store.profiles.members()))
    current: list[Worker] = []
    functions, crons = worker_functions(core, outlet), worker_crons(core, keys.queue)

    def make_worker() -> Worker:
        worker = Worker(
            functions=functions, queue_name=keys.queue, cron_jobs=crons,
            redis_settings=arq_settings, handle_signals=False, poll_delay=0.05, max_tries=8,
            # A job whose worker died is run again once its in-progress mark expires
            # (this timeout + 10 s): a killed broadcast resumes by itself.
            job_timeout=settings.marketing.job_timeout_seconds, keep_result=3600,
            log_results=False, timezone=UTC,
        )
        current[:] = [worker]
        return worker

    worker_task: asyncio.Task[None] | None = None
    if run_worker:
        # The job worker runs inside every app process, so several processes share the work.
        worker_task = asyncio.create_task(supervise(make_worker))
    try:
        yield services
    finally:
        await core.orchestrator.drain(timeout=settings.rasa.timeout_seconds + 1)
        stopping.set()
        await stop_task(outbox_task, "outbox")
        await stop_task(checkpoint_task, "checkpoint")
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
