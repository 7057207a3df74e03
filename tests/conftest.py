"""Shared fixtures: settings on a private Redis namespace, the real Rasa server (one per
run, model cached by data hash), a counting proxy in front of it, the fake WeChat API, and
app instances on real HTTP.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient, TestServer

from bot.logs import json_handler
from scrm import rasa_proc
from scrm.follower import Follower
from store.mongo import MongoStore
from tests.support import log_check
from tests.support.fake_wechat import FakeWeChatAPI
from tests.support.rasa_proxy import RasaProxy
from webhooks.app import SERVICES, create_app
from webhooks.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
# No test, and no process a test starts, keeps an embedded snapshot unless it asks to.
os.environ["SCRM_EMBEDDED_SNAPSHOT"] = "off"
TOKEN = "test-token-123"
APP_ID = "wx-test-app"
ADMIN = "admin-secret"
JSON_SECRET = "json-secret"
SHOP_SECRET = "shop-secret-for-tests"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters


# Everything the app logs during the run, as it would in production (INFO, JSON lines),
# checked at the end for message texts, secrets and phone numbers (tests/support/log_check).
RUN_LOG = Path(tempfile.gettempdir()) / f"scrm-test-run-{os.getpid()}.jsonl"
SENT_TEXTS: list[str] = []
TEST_SECRETS = (TOKEN, ADMIN, JSON_SECRET, SHOP_SECRET, AES_KEY, "s3cret")


@pytest.fixture(scope="session", autouse=True)
def run_log() -> Iterator[Path]:
    handler = json_handler(logging.FileHandler(RUN_LOG, mode="w", encoding="utf-8"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    original = Follower.text

    def text(self: Follower, content: str, **extra: Any) -> str:
        SENT_TEXTS.append(content)  # what followers typed: none of it may reach the log
        return original(self, content, **extra)

    Follower.text = text  # type: ignore[method-assign]
    yield RUN_LOG
    Follower.text = original  # type: ignore[method-assign]
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


LEAKS: list[str] = []  # what the workers' logs showed (pytest-xdist runs the fast tier)
LOGGED: list[int] = []


def _check_run_log() -> tuple[list[str], int]:
    if not RUN_LOG.exists():
        return [], 0
    found = log_check.leaks(RUN_LOG.read_text(encoding="utf-8"), SENT_TEXTS, TEST_SECRETS)
    size = RUN_LOG.stat().st_size
    if not found:
        RUN_LOG.unlink()
    return found, size


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A pytest-xdist worker is done: its log check comes back with it."""
    out = getattr(node, "workeroutput", {})
    LEAKS.extend(out.get("log_leaks", []))
    LOGGED.append(int(out.get("log_size", 0)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found, size = _check_run_log()
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: the controller reports for all
        worker_output["log_leaks"] = [f"{RUN_LOG}: {f}" for f in found]
        worker_output["log_size"] = size
        return
    found, size = found + LEAKS, size + sum(LOGGED)
    if found:
        print(f"\nthe app's log of this run ({RUN_LOG}) shows what it must not:\n  "
              + "\n  ".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif size:
        print(f"\nlog check: {size:,} bytes of app log, no message text, secret or phone number")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Rasa calls actions at a fixed URL, so every app that should serve actions binds here.
APP_PORT = free_port()


@pytest.fixture(scope="session")
def rasa_server() -> Iterator[str]:
    """A real Rasa server with the trained model, started once per test run."""
    model = rasa_proc.train(ROOT, quiet=True)
    port = free_port()
    log = rasa_proc.cache_dir() / "logs" / f"rasa-test-{port}.log"
    proc = rasa_proc.start_rasa(ROOT, model, port,
                                f"http://127.0.0.1:{APP_PORT}/rasa/webhook", log)
    url = f"http://127.0.0.1:{port}"
    if not rasa_proc.wait_http(f"{url}/status", 240, proc):
        rasa_proc.stop(proc)
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        pytest.fail(f"Rasa did not start; log tail:\n{tail}")
    yield url
    rasa_proc.stop(proc)


@pytest.fixture(scope="session")
def secantus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SecantusDB server (a real MongoDB wire-protocol process) for the session."""
    from tests.support.secantus import SecantusServer

    server = SecantusServer(log=tmp_path_factory.mktemp("secantus") / "server.log").start()
    yield server.url
    server.stop()


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:10]}"
    yield ns
    r = redis_sync.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    keys = list(r.scan_iter(f"{ns}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture
async def wechat_api() -> AsyncIterator[FakeWeChatAPI]:
    api = await FakeWeChatAPI().start()
    yield api
    await api.close()
    # WeChat's budget rules hold in every test: the app never tries a customer-service
    # send that WeChat would refuse as outside 48 h (45015) or beyond the budget (45047).
    assert api.refusals == api.expected_refusals, "sends beyond a follower's budget"


def make_settings(namespace: str, rasa_url: str, api_base: str = "http://127.0.0.1:9",
                  **sections: dict[str, Any]) -> Settings:
    env = {
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": "s3cret",
        "WECHAT_API_BASE": api_base, "RASA_URL": rasa_url, "SCRM_ADMIN_TOKEN": ADMIN,
        "SCRM_JSON_SECRET": JSON_SECRET, "SCRM_EMBEDDED_SNAPSHOT": "off",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    settings = load_settings(ROOT / "config.yml", env)
    updates: dict[str, Any] = {"redis": settings.redis.model_copy(update={"namespace": namespace}),
                               "app": settings.app.model_copy(
                                   update={"flows_dir": str(ROOT / "flows")})}
    for name, values in sections.items():
        base = updates.get(name, getattr(settings, name))
        updates[name] = base.model_copy(update=values)
    return settings.model_copy(update=updates)


class AppHarness:
    """One running app instance on real HTTP, with handles on its services."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def services(self) -> Any:
        return self.client.server.app[SERVICES]

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def wechat(self) -> FakeWeChatAPI | None:
        """The fake WeChat API this app calls, if the test started one."""
        return FakeWeChatAPI.serving(self.services.settings.wechat.api_base)

    async def post_wechat(self, query: str, body: str) -> tuple[int, str]:
        fake = self.wechat
        if fake is not None:
            fake.heard_xml(body)  # WeChat sees her message pass before the app does
        resp = await self.client.post(f"/wechat?{query}", data=body.encode())
        return resp.status, await resp.text()


@pytest.fixture
async def start_app() -> AsyncIterator[Any]:
    """Factory: `await start_app(settings, store=None, port=None)` -> AppHarness."""
    clients: list[TestClient] = []

    async def start(settings: Settings, store: MongoStore | None = None,
                    port: int | None = None, run_worker: bool = True) -> AppHarness:
        from tests.support.core import shared_flows

        app = create_app(settings, store=store, run_worker=run_worker,
                         flows=shared_flows(settings))
        # No access log, as in production (scrm serve/up run the app with access_log=None):
        # a request line carries the path, and a member's export link is a secret.
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server(access_log=None)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return AppHarness(client)

    yield start
    for c in reversed(clients):
        await c.close()


@pytest.fixture
async def rasa_proxy(rasa_server: str) -> AsyncIterator[RasaProxy]:
    proxy = await RasaProxy(rasa_server).start()
    yield proxy
    await proxy.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def scrm_bin() -> str:
    path = Path(os.sys.executable).parent / "scrm"  # type: ignore[attr-defined]
    return str(path)


def run_scrm(*args: str, env: dict[str, str] | None = None, input_text: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([scrm_bin(), *args], cwd=ROOT, env=env, input=input_text,
                          capture_output=True, text=True, timeout=timeout, check=False)
