#!/usr/bin/env python
"""One-shot benchmark of the WeChat webhook path, from bare aiohttp up to real Rasa.

Scenarios (every server runs in its own process; this process is only the load generator):

  a  bare aiohttp hello world: POST / -> "success"
  b  the app (`scrm serve`: real Redis, embedded Mongo), POST /wechat, Rasa replaced by a
     stub that answers Rasa's NLU endpoint (/model/parse) after a fixed sleep
     (default 10 ms)
  c  the app against a real Rasa 3.6 server (scrm.rasa_proc; model cached by data hash)
  d  Rasa alone: POST /model/parse (its NLU REST endpoint, what the app calls) on the same
     Rasa; the app runs the dialogue (flows) itself, so this is the like-for-like baseline

Each scenario runs closed loop (fixed concurrency, bounded request count); c and d also run
open loop at a fixed offered rate. Prints a Markdown table and writes JSON to bench/results/.

    .venv/bin/python bench/run.py            # full run (~3-4 min incl. Rasa start)
    .venv/bin/python bench/run.py --quick    # smoke: few requests
    .venv/bin/python bench/run.py --quick --skip-rasa   # a and b only, seconds

Only loopback traffic. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-123"
APP_ID = "wx-bench-app"
TEXT = "你好"
WECHAT_BUDGET_S = 5.0  # WeChat drops a passive reply after 5 s


# --------------------------------------------------------------------------- helper servers
# Run as subprocesses of this script (`--serve hello|stub`), on the default asyncio loop like
# the app, so that (a) and the stub in (b) compete for CPU the same way the app does.

def serve_helper(kind: str, port: int, delay_ms: float) -> None:
    from aiohttp import web

    app = web.Application()
    if kind == "hello":
        async def hello(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text="success")

        app.router.add_post("/", hello)
        app.router.add_post("/wechat", hello)
    else:
        delay = delay_ms / 1000.0

        async def webhook(request: web.Request) -> web.Response:
            # The shape of Rasa's POST /model/parse.
            body = await request.json()
            await asyncio.sleep(delay)
            return web.json_response({
                "text": body.get("text"), "entities": [],
                "intent": {"name": "greet", "confidence": 0.99}})

        async def status(request: web.Request) -> web.Response:
            return web.json_response({"model_file": "stub"})

        app.router.add_post("/model/parse", webhook)
        app.router.add_get("/status", status)
        app.router.add_get("/", status)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                handle_signals=True)


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None,
              method: str = "GET") -> bool:
    """Poll until `url` answers 200 (bounded by `timeout`); False if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            req = urllib.request.Request(url, method=method,
                                         data=b"" if method == "POST" else None)
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def stop_proc(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in KiB, from /proc (empty if the process is gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (children not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (all CPUs, not idle/iowait), from /proc/stat."""
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    ticks = [int(x) for x in parts[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snap = {k: cpu_seconds(p) for k, p in pids.items()}
    snap["_client"] = cpu_seconds(os.getpid())
    snap["_machine"] = machine_busy_seconds()
    snap["_t"] = time.perf_counter()
    return snap


def cpu_usage(pids: dict[str, int], before: dict[str, float], n: int
              ) -> tuple[dict[str, float], float]:
    """CPU ms per request for each server and the load generator; and the share of all
    CPUs busy with anything else (Redis, the kernel, and other people's work), in %."""
    after = cpu_snapshot(pids)
    used = {k: after[k] - before[k] for k in after}
    per_req = {k: round(used[k] * 1000 / max(1, n), 2) for k in pids}
    per_req["client"] = round(used["_client"] * 1000 / max(1, n), 2)
    ours = sum(used[k] for k in pids) + used["_client"]
    other = (used["_machine"] - ours) / max(1e-9, used["_t"] * (os.cpu_count() or 1))
    return per_req, round(max(0.0, other) * 100, 1)


def start_helper(kind: str, port: int, delay_ms: float, log_path: Path
                 ) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port),
         "--stub-delay-ms", str(delay_ms)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )


def write_config(work: Path, port: int, namespace: str, log_level: str) -> Path:
    """config.yml with a private Redis namespace, our port, loopback only."""
    import yaml

    data = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    data["app"].update(host="127.0.0.1", port=port, flows_dir=str(ROOT / "flows"),
                       log_level=log_level)
    data["redis"]["namespace"] = namespace
    path = work / f"config-{port}.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def start_app(config: Path, rasa_url: str, redis_url: str, log_path: Path, work: Path
              ) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": "bench-secret",
        "WECHAT_AES_KEY": "",
        # Late replies (past the 4 s budget) would go to WeChat's API: keep them on loopback,
        # on a port nobody listens on (the job fails and is retried; we delete it at the end).
        "WECHAT_API_BASE": f"http://127.0.0.1:{free_port()}",
        "RASA_URL": rasa_url, "REDIS_URL": redis_url, "MONGODB_URL": "",
        "SCRM_ADMIN_TOKEN": secrets.token_hex(8), "SCRM_JSON_SECRET": "",
        "SCRM_CONFIG": str(config), "SCRM_EMBEDDED_SNAPSHOT": "off",
    }
    log = log_path.open("ab")
    scrm = Path(sys.executable).parent / "scrm"
    # cwd is a scratch dir, so a developer's .env in the checkout is not picked up.
    return subprocess.Popen(
        [str(scrm), "--config", str(config), "serve"],
        env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


# --------------------------------------------------------------------------- load generation

@dataclass
class Outcome:
    latency: float | None  # seconds; None if the request failed
    status: int | None
    kind: str  # greet | apology | no_reply | other | error | non200 | ok
    done: float = 0.0  # perf_counter at completion
    seq: int = 0  # request index (send order)


@dataclass
class Result:
    scenario: str
    mode: str  # closed | open
    target: str  # "conc 8" or "50/s"
    sent: int
    completed: int
    wall_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    counts: dict[str, int]
    over_budget: int  # latencies above WeChat's 5 s
    achieved_rate: float | None = None
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    # Drift within the run, in quarters: closed loop req/s, open loop p99 ms (send order).
    quarters: list[float | None] = field(default_factory=list)
    other_cpu_pct: float | None = None  # machine CPU used by other processes, % of all CPUs



def percentile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    # nearest rank: the smallest value with at least q% of the values at or below it
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100 * len(sorted_vals) - 1e-9) - 1))
    return sorted_vals[k]


Request = tuple[str, str, bytes, dict[str, str]]  # method, url, body, headers
Classifier = Callable[[int, bytes], str]


class Load:
    def __init__(self, session: Any, timeout: float) -> None:
        import aiohttp

        self._s = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.started: float | None = None

    async def one(self, req: Request, classify: Classifier, started: float | None = None
                  ) -> tuple[Outcome, bytes]:
        import aiohttp

        method, url, body, headers = req
        t0 = time.perf_counter() if started is None else started
        try:
            async with self._s.request(method, url, data=body, headers=headers,
                                       timeout=self._timeout) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return (Outcome(None, None, "error", time.perf_counter()),
                    f"{type(e).__name__}: {e}".encode())
        done = time.perf_counter()
        latency = done - t0
        if status != 200:
            return Outcome(latency, status, "non200", done), data[:200]
        return Outcome(latency, status, classify(status, data), done), data

    async def closed(self, make: Callable[[int], Request], classify: Classifier, n: int,
                     concurrency: int, deadline_s: float, first: int = 0
                     ) -> tuple[list[Outcome], float, list[str]]:
        """n requests, `concurrency` in flight; stops early at the deadline."""
        outcomes: list[Outcome] = []
        samples: list[str] = []
        nxt = iter(range(first, first + n))
        stop_at = time.perf_counter() + deadline_s

        async def worker() -> None:
            for i in nxt:
                if time.perf_counter() > stop_at:
                    return
                out, data = await self.one(make(i), classify)
                out.seq = i
                outcomes.append(out)
                if out.kind not in ("greet", "ok") and len(samples) < 3:
                    samples.append(f"{out.kind}: {data[:160].decode(errors='replace')}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        self.started = t0
        return outcomes, time.perf_counter() - t0, samples

    async def open(self, make: Callable[[int], Request], classify: Classifier, rate: float,
                   duration: float, first: int, grace: float
                   ) -> tuple[list[Outcome], float, float, int, list[str]]:
        """rate*duration requests at fixed send times; latency counted from the *scheduled*
        send time (no coordinated omission). Waits at most `grace` s for stragglers."""
        n = max(1, int(rate * duration))
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome] = []
        samples: list[str] = []
        tasks: list[asyncio.Task[None]] = []

        async def fire(i: int, scheduled_perf: float) -> None:
            out, data = await self.one(make(i), classify, started=scheduled_perf)
            out.seq = i
            outcomes.append(out)
            if out.kind not in ("greet", "ok") and len(samples) < 3:
                samples.append(f"{out.kind}: {data[:160].decode(errors='replace')}")

        t0_loop = loop.time() + 0.05
        t0_perf = time.perf_counter() + 0.05
        for k in range(n):
            delay = t0_loop + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(first + k, t0_perf + k / rate)))
        send_span = time.perf_counter() - t0_perf
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for t in pending:
            t.cancel()
        wall = time.perf_counter() - t0_perf
        achieved = n / send_span if send_span > 0 else float("nan")
        return outcomes, wall, achieved, len(pending), samples


def summarize(scenario: str, mode: str, target: str, sent: int, outcomes: list[Outcome],
              wall: float, samples: list[str], achieved: float | None = None,
              started: float | None = None) -> Result:
    lat = sorted(o.latency for o in outcomes if o.latency is not None and o.kind != "error")
    counts = Counter(o.kind for o in outcomes)
    counts["lost"] = sent - len(outcomes)  # cancelled at the deadline / grace
    good = sum(1 for o in outcomes if o.kind not in ("error", "non200"))

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    quarters: list[float | None] = []
    if mode == "closed" and started is not None and len(outcomes) >= 8:
        done = sorted(o.done for o in outcomes)
        edges = [started] + [done[(len(done) * k) // 4 - 1] for k in (1, 2, 3, 4)]
        for k in range(4):
            span = edges[k + 1] - edges[k]
            count = (len(done) * (k + 1)) // 4 - (len(done) * k) // 4
            quarters.append(round(count / span, 1) if span > 0 else None)
    elif mode == "open" and len(outcomes) >= 8:
        by_seq = sorted(outcomes, key=lambda o: o.seq)
        for k in range(4):
            part = by_seq[(len(by_seq) * k) // 4:(len(by_seq) * (k + 1)) // 4]
            q = percentile(sorted(o.latency for o in part if o.latency is not None), 99)
            quarters.append(None if q is None else round(q * 1000, 1))

    return Result(
        scenario=scenario, mode=mode, quarters=quarters, target=target, sent=sent,
        completed=len(outcomes),
        wall_s=round(wall, 3), rps=round(good / wall, 1) if wall > 0 else 0.0,
        p50_ms=ms(percentile(lat, 50)), p99_ms=ms(percentile(lat, 99)),
        max_ms=ms(lat[-1] if lat else None), counts=dict(counts),
        over_budget=sum(1 for v in lat if v > WECHAT_BUDGET_S),
        achieved_rate=None if achieved is None else round(achieved, 1), samples=samples,
    )


# --------------------------------------------------------------------------- request makers

class WeChatTraffic:
    """Distinct, signed text messages from a pool of followers (round robin), each with its
    own MsgId, so no two messages of one follower are in flight together at low concurrency."""

    def __init__(self, base_url: str, prefix: str, followers: int, msg_ids: list[int]) -> None:
        from scrm.follower import Follower

        self._url = base_url.rstrip("/") + "/wechat"
        self._followers = [Follower(token=TOKEN, openid=f"{prefix}_{k:04d}", app_id=APP_ID)
                           for k in range(followers)]
        self._base_id = secrets.randbelow(10**12) * 10**6 + 10**17
        self._ids = msg_ids  # every MsgId used, for cleanup of late-reply jobs

    def make(self, i: int) -> Request:
        follower = self._followers[i % len(self._followers)]
        msg_id = self._base_id + i
        self._ids.append(msg_id)
        query, body = follower.request(follower.text(TEXT, MsgId=msg_id))
        return ("POST", f"{self._url}?{query}", body.encode(),
                {"Content-Type": "text/xml"})


def wechat_classifier(greet: str, apology: str) -> Classifier:
    g, a = greet.encode(), apology.encode()

    def classify(status: int, data: bytes) -> str:
        if data == b"success" or not data:
            return "no_reply"
        if g in data:
            return "greet"
        if a in data:
            return "apology"
        return "other"

    return classify


def hello_classifier(status: int, data: bytes) -> str:
    return "ok" if data == b"success" else "other"


class RasaTraffic:
    def __init__(self, rasa_url: str, prefix: str, followers: int) -> None:
        self._url = rasa_url.rstrip("/") + "/model/parse"
        self._prefix = prefix
        self._n = followers

    def make(self, i: int) -> Request:
        body = {"text": TEXT}  # NLU has no conversation: every request costs the same
        return ("POST", self._url, json.dumps(body, ensure_ascii=False).encode(),
                {"Content-Type": "application/json"})


def rasa_classifier(status: int, data: bytes) -> str:
    try:
        parsed = json.loads(data)
    except ValueError:
        return "other"
    if not isinstance(parsed, dict):
        return "other"
    return "greet" if (parsed.get("intent") or {}).get("name") == "greet" else "other"


# --------------------------------------------------------------------------- the run

@dataclass
class Bench:
    args: argparse.Namespace
    run_id: str
    work: Path
    log_dir: Path
    namespace: str
    redis_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    msg_ids: list[int] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_before: str = field(default_factory=lambda: loadavg())

    def spawn(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def run_closed(b: Bench, load: Load, name: str, make: Callable[[int], Request],
                     classify: Classifier, n: int, pids: dict[str, int]) -> int:
    a = b.args
    warm = a.warmup
    b.log(f"{name}: warm-up {warm}, then {n} requests at concurrency {a.concurrency}")
    await load.closed(make, classify, warm, a.concurrency, a.scenario_timeout)
    cpu0 = cpu_snapshot(pids)
    outs, wall, samples = await load.closed(make, classify, n, a.concurrency,
                                            a.scenario_timeout, first=warm)
    res = summarize(name, "closed", f"conc {a.concurrency}", n, outs, wall, samples,
                    started=load.started)
    res.cpu_ms_per_req, res.other_cpu_pct = cpu_usage(pids, cpu0, len(outs))
    b.results.append(res)
    b.log(f"{name}: {res.rps} req/s, p50 {res.p50_ms} ms, p99 {res.p99_ms} ms, {res.counts}")
    return int(warm + n)


async def run_open(b: Bench, load: Load, name: str, make: Callable[[int], Request],
                   classify: Classifier, first: int, pids: dict[str, int]) -> None:
    a = b.args
    b.log(f"{name}: open loop {a.rate}/s for {a.duration} s")
    cpu0 = cpu_snapshot(pids)
    outs, wall, achieved, _, samples = await load.open(
        make, classify, a.rate, a.duration, first, grace=a.timeout + 5)
    n = max(1, int(a.rate * a.duration))
    res = summarize(name, "open", f"{a.rate:g}/s", n, outs, wall, samples, achieved)
    res.cpu_ms_per_req, res.other_cpu_pct = cpu_usage(pids, cpu0, len(outs))
    b.results.append(res)
    b.log(f"{name}: p50 {res.p50_ms} ms, p99 {res.p99_ms} ms, sent at {achieved:.1f}/s, "
          f"{res.counts}")


def shipped_templates() -> Any:
    """The shipped flows' templates, as the app loads them (config.yml's points rules)."""
    from bot.core import flow_registry
    from webhooks.config import load_settings

    settings = load_settings(ROOT / "config.yml", {"WECHAT_TOKEN": "bench", "WECHAT_APP_ID": "wx"})
    return flow_registry(settings.model_copy(update={"app": settings.app.model_copy(
        update={"flows_dir": str(ROOT / "flows")})})).templates


async def scenarios(b: Bench) -> None:
    import aiohttp

    from scrm import rasa_proc

    a = b.args
    lib = shipped_templates()
    classify_wechat = wechat_classifier(lib.render("greet", "zh", profile={}, lang="zh"),
                                        lib.render("apology", "zh", profile={}, lang="zh"))
    # Connection pool large enough for the open loop; closed loops use `concurrency` of it.
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=256, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(session, a.timeout)

        # (a) bare aiohttp
        port = free_port()
        hello = b.spawn(start_helper("hello", port, 0, b.log_dir / f"hello-{b.run_id}.log"))
        if not wait_http(f"http://127.0.0.1:{port}/", 30, hello, method="POST"):
            raise RuntimeError("hello-world server did not start")
        await run_closed(b, load, "a: bare aiohttp",
                         lambda i: ("POST", f"http://127.0.0.1:{port}/", b"<xml/>", {}),
                         hello_classifier, a.requests, {"server": hello.pid})
        b.memory["a: hello server"] = proc_status(hello.pid)
        stop_proc(hello)

        # (b) app + stub Rasa
        stub_port, app_port = free_port(), free_port()
        stub = b.spawn(start_helper("stub", stub_port, a.stub_delay_ms,
                                    b.log_dir / f"stub-{b.run_id}.log"))
        if not wait_http(f"http://127.0.0.1:{stub_port}/status", 30, stub):
            raise RuntimeError("Rasa stub did not start")
        cfg = write_config(b.work, app_port, b.namespace, a.log_level)
        app_log = b.log_dir / f"app-b-{b.run_id}.log"
        app_b = b.spawn(start_app(cfg, f"http://127.0.0.1:{stub_port}", b.redis_url, app_log,
                                  b.work))
        if not wait_http(f"http://127.0.0.1:{app_port}/healthz", 60, app_b):
            raise RuntimeError(f"app (b) did not start; see {app_log}")
        traffic = WeChatTraffic(f"http://127.0.0.1:{app_port}", f"o_bench_{b.run_id}_b",
                                a.followers, b.msg_ids)
        await run_closed(b, load, f"b: app + stub Rasa ({a.stub_delay_ms:g} ms)",
                         traffic.make, classify_wechat, a.requests,
                         {"app": app_b.pid, "stub": stub.pid})
        b.memory["b: app (stub Rasa)"] = proc_status(app_b.pid)
        stop_proc(app_b)
        stop_proc(stub)

        if a.skip_rasa:
            b.notes.append("c and d skipped (--skip-rasa)")
            return

        # (c) app + real Rasa, (d) Rasa alone
        model = rasa_proc.train(ROOT)
        rasa_port, app_port = free_port(), free_port()
        rasa_url = f"http://127.0.0.1:{rasa_port}"
        rasa_log = b.log_dir / f"rasa-{b.run_id}.log"
        b.log(f"starting Rasa on {rasa_url} (model {model.name}, log {rasa_log}) ...")
        t0 = time.monotonic()
        rasa = b.spawn(rasa_proc.start_rasa(
            ROOT, model, rasa_port, f"http://127.0.0.1:{app_port}/rasa/webhook", rasa_log))
        if not await asyncio.to_thread(wait_http, f"{rasa_url}/status", a.rasa_start_timeout,
                                       rasa):
            raise RuntimeError(f"Rasa did not start; see {rasa_log}")
        b.notes.append(f"Rasa ready in {time.monotonic() - t0:.0f} s")
        b.log(f"Rasa ready in {time.monotonic() - t0:.0f} s")
        cfg = write_config(b.work, app_port, b.namespace, a.log_level)
        app_log = b.log_dir / f"app-c-{b.run_id}.log"
        app_c = b.spawn(start_app(cfg, rasa_url, b.redis_url, app_log, b.work))
        if not wait_http(f"http://127.0.0.1:{app_port}/healthz", 60, app_c):
            raise RuntimeError(f"app (c) did not start; see {app_log}")
        pids = {"app": app_c.pid, "rasa": rasa.pid}

        c_traffic = WeChatTraffic(f"http://127.0.0.1:{app_port}", f"o_bench_{b.run_id}_c",
                                  a.followers, b.msg_ids)
        used = await run_closed(b, load, "c: app + real Rasa", c_traffic.make,
                                classify_wechat, a.rasa_requests, pids)
        await run_open(b, load, "c: app + real Rasa", c_traffic.make, classify_wechat,
                       used, pids)

        d_traffic = RasaTraffic(rasa_url, f"bench_{b.run_id}_d", a.followers)
        used = await run_closed(b, load, "d: Rasa REST alone", d_traffic.make,
                                rasa_classifier, a.rasa_requests, {"rasa": rasa.pid})
        await run_open(b, load, "d: Rasa REST alone", d_traffic.make, rasa_classifier, used,
                       {"rasa": rasa.pid})
        b.memory["c: app (real Rasa)"] = proc_status(app_c.pid)
        b.memory["c/d: Rasa server"] = proc_status(rasa.pid)
        stop_proc(app_c)
        rasa_proc.stop(rasa)


def cleanup_redis(b: Bench) -> dict[str, int]:
    """Delete the namespace's keys and any late-reply arq jobs for our MsgIds."""
    import redis as redis_sync

    r = redis_sync.Redis.from_url(b.redis_url, socket_timeout=5)
    deleted = {"namespace": 0, "arq_jobs": 0}
    try:
        keys = list(r.scan_iter(f"{b.namespace}:*", count=1000))
        for k in range(0, len(keys), 500):
            deleted["namespace"] += int(r.delete(*keys[k:k + 500]))  # type: ignore[arg-type]
        arq = list(r.scan_iter(f"arq:*{b.namespace}:jobs:cs:*", count=1000))
        if arq:
            deleted["arq_jobs"] = int(r.delete(*arq))  # type: ignore[arg-type]
        deleted["left"] = sum(1 for _ in r.scan_iter(f"{b.namespace}:*", count=1000))
    finally:
        r.close()
    return deleted


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def report(b: Bench, redis_cleanup: dict[str, int], command: str) -> dict[str, Any]:
    a = b.args
    by = {(r.scenario[0], r.mode): r for r in b.results}
    lines = [
        "| scenario | mode | load | n | req/s | p50 ms | p99 ms | max ms | greet/ok | "
        "apology | no reply | other | errors | non-200 | lost | CPU ms/req | other CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in b.results:
        c = r.counts
        rate = fmt(r.rps) if r.mode == "closed" else f"({fmt(r.achieved_rate)} sent/s)"
        cpu = ", ".join(f"{k} {v:g}" for k, v in r.cpu_ms_per_req.items())
        lines.append(
            f"| {r.scenario} | {r.mode} | {r.target} | {r.sent} | {rate} | {fmt(r.p50_ms)} | "
            f"{fmt(r.p99_ms)} | {fmt(r.max_ms)} | {c.get('greet', 0) + c.get('ok', 0)} | "
            f"{c.get('apology', 0)} | {c.get('no_reply', 0)} | {c.get('other', 0)} | "
            f"{c.get('error', 0)} | {c.get('non200', 0)} | {c.get('lost', 0)} | {cpu} | "
            f"{fmt(r.other_cpu_pct)} |")
    ratios: dict[str, float | None] = {}
    if ("a", "closed") in by and ("b", "closed") in by and by[("a", "closed")].rps:
        ratios["b/a throughput"] = round(by[("b", "closed")].rps / by[("a", "closed")].rps, 3)
    if ("c", "closed") in by and ("d", "closed") in by and by[("d", "closed")].rps:
        ratios["c/d throughput"] = round(by[("c", "closed")].rps / by[("d", "closed")].rps, 3)
    target: dict[str, Any] = {}
    if ("c", "open") in by:
        p99 = by[("c", "open")].p99_ms
        target = {"c open-loop p99 ms": p99, "limit ms": a.p99_target_ms,
                  "pass": p99 is not None and p99 <= a.p99_target_ms
                  and not by[("c", "open")].counts.get("error")}

    out = ["", "\n".join(lines), ""]
    for k, v in ratios.items():
        out.append(f"- **{k}**: {v}")
    if target:
        verdict = "PASS" if target["pass"] else "FAIL"
        out.append(f"- **target** p99 of (c) at {a.rate:g} msg/s ≤ {a.p99_target_ms:g} ms: "
                   f"{fmt(target['c open-loop p99 ms'])} ms → {verdict}")
    for name, mem in b.memory.items():
        if mem:
            out.append(f"- peak RSS {name}: {mem.get('VmHWM', 0) / 1024:.1f} MiB "
                       f"(RSS at end {mem.get('VmRSS', 0) / 1024:.1f} MiB)")
    for r in b.results:
        if r.quarters:
            what = "req/s" if r.mode == "closed" else "p99 ms"
            out.append(f"- drift {r.scenario} {r.mode}, {what} by quarter of the run: "
                       + " → ".join(fmt(q) for q in r.quarters))
    for r in b.results:
        if r.over_budget:
            out.append(f"- {r.scenario} {r.mode}: {r.over_budget} answers slower than 5 s")
        for s in r.samples:
            out.append(f"- sample from {r.scenario} {r.mode}: `{s[:120]}`")
    out.extend(f"- {n}" for n in b.notes)
    out.append(f"- load average (1 min) before/after: {b.load_before} / {loadavg()} "
               "(other work on this machine skews every number)")
    out.append(f"- Redis cleanup: {redis_cleanup}")
    out.append(f"- machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
               f"client loop {'uvloop' if a.uvloop else 'asyncio'}; command: `{command}`")
    print("\n".join(out))
    return {
        "run_id": b.run_id, "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command, "options": vars(a), "cpus": os.cpu_count(),
        "python": platform.python_version(), "results": [asdict(r) for r in b.results],
        "ratios": ratios, "target": target, "memory_kib": b.memory, "notes": b.notes,
        "redis_cleanup": redis_cleanup, "markdown": "\n".join(out),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=None,
                   help="closed-loop requests for a and b (default 1000; quick 150)")
    p.add_argument("--rasa-requests", type=int, default=None,
                   help="closed-loop requests for c and d (default 300; quick 40)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=None,
                   help="unmeasured requests before each closed loop (default 2×concurrency)")
    p.add_argument("--rate", type=float, default=50.0, help="open-loop msg/s for c and d")
    p.add_argument("--duration", type=float, default=None,
                   help="open-loop seconds (default 10; quick 2)")
    p.add_argument("--stub-delay-ms", type=float, default=10.0)
    p.add_argument("--followers", type=int, default=100,
                   help="distinct followers per scenario (round robin)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    p.add_argument("--scenario-timeout", type=float, default=300.0,
                   help="a closed loop stops after this many seconds")
    p.add_argument("--rasa-start-timeout", type=float, default=240.0)
    p.add_argument("--p99-target-ms", type=float, default=300.0)
    p.add_argument("--log-level", default="INFO", help="the app's log level (as deployed)")
    p.add_argument("--skip-rasa", action="store_true", help="only a and b")
    p.add_argument("--quick", action="store_true", help="smoke run: few requests")
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   help="load generator on asyncio's loop (default: uvloop if installed)")
    p.add_argument("--out", type=Path, default=None, help="JSON output path")
    p.add_argument("--serve", choices=["hello", "stub"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    q = a.quick
    a.requests = a.requests or (150 if q else 1000)
    a.rasa_requests = a.rasa_requests or (40 if q else 300)
    a.duration = a.duration or (2.0 if q else 10.0)
    a.warmup = a.warmup if a.warmup is not None else 2 * a.concurrency
    for name in ("requests", "rasa_requests", "concurrency", "followers"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.rate <= 0 or a.duration <= 0 or a.rate * a.duration > 100_000:
        p.error("--rate and --duration must be positive (and at most 100000 messages)")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve_helper(args.serve, args.port, args.stub_delay_ms)
        return 0
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            args.uvloop = False
    command = " ".join([Path(sys.executable).as_posix(), *sys.argv])
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scrm-bench-"))
    b = Bench(args=args, run_id=run_id, work=work, log_dir=log_dir,
              namespace=f"bench-{run_id}",
              redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    b.log(f"run {run_id}: Redis namespace {b.namespace}, logs in {log_dir}")
    failed: BaseException | None = None
    try:
        if args.uvloop:
            uvloop.run(scenarios(b))
        else:
            asyncio.run(scenarios(b))
    except (Exception, KeyboardInterrupt) as e:  # still report what ran, and clean up
        failed = e
        b.notes.append(f"run aborted: {type(e).__name__}: {e}")
        b.log(f"aborted: {type(e).__name__}: {e}")
    finally:
        for proc in reversed(b.procs):
            stop_proc(proc)
        shutil.rmtree(work, ignore_errors=True)
        try:
            cleaned = cleanup_redis(b)
        except Exception as e:
            cleaned = {"error": f"{type(e).__name__}: {e}"}  # type: ignore[dict-item]
    data = report(b, cleaned, command)
    out = args.out or RESULTS / f"bench-{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str),
                   encoding="utf-8")
    print(f"\nJSON: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
