#!/usr/bin/env python
"""Soak test: minutes of signed WeChat text at a fixed rate through the full path.

The app (`scrm serve`, its own process: real Redis, the embedded MongoDB engine or
`--mongodb-url`) asks a real Rasa (cached model) and sends late replies to a fake WeChat
API in this process, which is otherwise only the load generator: an open loop of `--rate`
new messages/s from `--followers` scripted followers (greetings, 积分, 签到, 帮助, sign-up and
its answers, chatter), each with its own MsgId, `--retry-share` of them posted again as
WeChat retries. Measured: errors, latency, passive vs late answers, the app's RSS every
30 s; then, via the admin API and the fake WeChat API, that every message was stored once
and answered exactly once.

    .venv/bin/python bench/soak.py                  # 10 min at 50 msg/s, 500 followers
    .venv/bin/python bench/soak.py --minutes 1      # short check

Markdown on stdout, progress on stderr, JSON in bench/results/soak-<run>.json. Exits 0 even
when a target is missed (the table says "NOT met"); stops the load early when more than
half of a minute's posts failed (--abort-above), since more minutes only grow the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import run as bench_run  # noqa: E402 - bench/run.py: process helpers shared with the benchmark

ROOT = bench_run.ROOT
RESULTS = bench_run.RESULTS
RSS_EVERY_S = 30.0
ADMIN_LIMIT = 200  # the admin API's maximum interactions per profile

# What followers say. Weights are per turn of a follower who is not in the middle of sign-up.
GREETINGS = ["你好", "您好", "哈喽", "早上好", "在吗", "hello"]
POINTS = ["我的积分", "查积分", "我有多少积分"]
CHECKIN = ["签到", "打卡"]
HELP = ["帮助", "你能做什么"]
CHATTER = ["宝宝晚上总是哭怎么办", "今天天气真好", "奶粉怎么选比较好", "周末带娃去哪里玩",
           "你们有什么活动吗", "哈哈哈", "好累啊", "推荐一本育儿书", "孕晚期睡不好",
           "what can you do", "谢谢", "好的", "再见", "我的资料", "兑换"]
CITIES = ["上海", "北京", "杭州", "成都", "广州", "南京"]
MIX = [("greet", 18), ("points", 15), ("checkin", 12), ("help", 10), ("chatter", 38),
       ("signup", 7)]


class Script:
    """One follower's side of the conversation: single questions, or sign-up and its answers.

    Replies are not read back (an open loop does not wait for them); a wrong guess about
    where the flow is only earns a re-ask, which is a real answer too.
    """

    def __init__(self, index: int, rng: random.Random) -> None:
        self._rng = rng
        self._index = index
        self._pending: list[str] = []
        self.member = False

    def next_text(self) -> str:
        rng = self._rng
        if self._pending:
            # Sometimes the member asks something else mid-sign-up (积分 interrupts the flow).
            if rng.random() < 0.05:
                return rng.choice(POINTS)
            return self._pending.pop(0)
        kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "signup" and (not self.member or rng.random() < 0.1):
            k = self._index
            birthday = (datetime.now(UTC).date() - timedelta(days=rng.randint(30, 900)))
            self._pending = ["同意", "同意", f"小美{k}", f"139{k:08d}", "2",
                             birthday.isoformat(), rng.choice(CITIES)]
            self.member = True
            return "我要注册"
        pool = {"greet": GREETINGS, "points": POINTS, "checkin": CHECKIN, "help": HELP}
        return rng.choice(pool.get(kind, CHATTER))


@dataclass
class Post:
    retry: bool
    latency: float | None = None  # s from the scheduled send time
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # transport error or timeout

    @property
    def kind(self) -> str:
        if self.error is not None:
            return "timeout" if "Timeout" in self.error else "error"
        if self.status != 200:
            return "non200"
        return "success" if self.body in (b"", b"success") else "passive"


@dataclass
class Msg:
    seq: int
    msg_id: int
    follower: int
    text: str
    xml: str
    measured: bool  # sent after the warm-up
    posts: list[Post] = field(default_factory=list)

    def answer(self) -> Post | None:
        """What the follower got: the first post that was answered (a retry if needed)."""
        return next((p for p in self.posts if p.kind in ("passive", "success")), None)


@dataclass
class Soak:
    args: argparse.Namespace
    bench: Any  # bench_run.Bench: processes, logs, Redis namespace, MsgIds for cleanup
    followers: list[Any] = field(default_factory=list)  # scrm.follower.Follower
    wechat: Any = None  # the fake WeChat API: it sees each message pass, as WeChat does
    msgs: list[Msg] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)
    timeline: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    app_pid: int = 0
    rasa_pid: int = 0
    measure_wall: float = 0.0  # time.time() when the measured phase began
    retries_sent: int = 0
    send_rate: float = 0.0
    checks: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    store_bytes_per_interaction: float | None = None
    aborted: str = ""
    database: str = ""  # with --mongodb-url: this run's own database, dropped at the end

    def log(self, msg: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

def start_app(config: Path, rasa_url: str, redis_url: str, wechat_api: str, admin_token: str,
              log_path: Path, work: Path, mongodb_url: str = "", profile: Path | None = None
              ) -> subprocess.Popen[bytes]:
    """`scrm serve` like bench_run.start_app, but with WeChat's API on our fake server (late
    replies are part of what is checked) and an admin token we know."""
    env = {
        **os.environ,
        "WECHAT_TOKEN": bench_run.TOKEN, "WECHAT_APP_ID": bench_run.APP_ID,
        "WECHAT_APP_SECRET": "bench-secret", "WECHAT_AES_KEY": "",
        "WECHAT_API_BASE": wechat_api, "RASA_URL": rasa_url, "REDIS_URL": redis_url,
        "MONGODB_URL": mongodb_url, "SCRM_ADMIN_TOKEN": admin_token, "SCRM_JSON_SECRET": "",
        "SCRM_CONFIG": str(config),
    }
    log = log_path.open("ab")
    scrm = Path(sys.executable).parent / "scrm"
    # cwd is a scratch dir, so a developer's .env in the checkout is not picked up.
    # cProfile writes its file when `scrm serve` returns after SIGTERM.
    prof = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else []
    return subprocess.Popen(
        [*prof, str(scrm), "--config", str(config), "serve"],
        env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def tune_config(config: Path, database: str | None, budget: float | None) -> None:
    """This run's own database on a real MongoDB; the passive-reply budget if given."""
    import yaml

    if database is None and budget is None:
        return
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    if database is not None:
        data["mongodb"]["database"] = database
    if budget is not None:
        data["app"]["budget_seconds"] = budget
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")


def drop_database(url: str, name: str) -> str:
    from pymongo import MongoClient

    try:
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(name)
        return f"dropped {name}"
    except Exception as e:
        return f"could not drop {name}: {type(e).__name__}"


def rss_kib(pid: int) -> int:
    return bench_run.proc_status(pid).get("VmRSS", 0)


# --------------------------------------------------------------------------- load

async def post(session: Any, url: str, follower: Any, msg: Msg, p: Post, started: float,
               timeout: Any) -> None:
    import aiohttp

    # Every post is signed anew (WeChat signs each retry with a new timestamp and nonce);
    # the XML, and so the MsgId, stays the same.
    query, body = follower.request(msg.xml)
    try:
        async with session.post(f"{url}?{query}", data=body.encode(), timeout=timeout,
                                headers={"Content-Type": "text/xml"}) as resp:
            p.body = await resp.read()
            p.status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        p.error = f"{type(e).__name__}: {e}"[:200]
    p.latency = time.perf_counter() - started


async def drive(s: Soak, session: Any, url: str) -> None:
    """The open loop: warm-up, then the measured minutes; RSS sampled along the way."""
    import aiohttp

    a = s.args
    rng = random.Random(a.seed)
    scripts = [Script(k, rng) for k in range(a.followers)]
    order = list(range(a.followers))
    rng.shuffle(order)
    timeout = aiohttp.ClientTimeout(total=a.timeout)
    base_id = secrets.randbelow(10**9) * 10**8 + 10**17
    warm_n = int(a.rate * a.warmup)
    total = warm_n + int(a.rate * a.minutes * 60)
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()

    async def retry_later(msg: Msg, delay: float) -> None:
        await asyncio.sleep(delay)
        p = Post(retry=True)
        msg.posts.append(p)
        await post(session, url, s.followers[msg.follower], msg, p, time.perf_counter(),
                   timeout)

    async def sample_rss(stop: asyncio.Event) -> None:
        t0 = time.perf_counter()
        while True:
            sent = sum(1 for m in s.msgs if m.measured)
            answered = sum(1 for m in s.msgs if m.answer() is not None)
            s.rss.append({"t_s": round(time.perf_counter() - t0, 1),
                          "rss_kib": rss_kib(s.app_pid), "rasa_rss_kib": rss_kib(s.rasa_pid),
                          "messages_sent": len(s.msgs), "measured_sent": sent,
                          "answered": answered})
            try:
                await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
                return
            except TimeoutError:
                pass

    s.log(f"open loop: {a.rate:g} msg/s, warm-up {warm_n} messages ({a.warmup:g} s), then "
          f"{total - warm_n} measured ({a.minutes:g} min), {a.retry_share:.0%} re-posted")
    stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    t0_loop = loop.time() + 0.05
    t0_perf = time.perf_counter() + 0.05
    cpu0: dict[str, float] = {}
    for k in range(total):
        if k == warm_n:
            # The warm-up (imports, pools, first profiles) is over: RSS "at start" is now.
            s.measure_wall = time.time()
            cpu0 = {"app": bench_run.cpu_seconds(s.app_pid),
                    "rasa": bench_run.cpu_seconds(s.rasa_pid),
                    "client": bench_run.cpu_seconds(os.getpid()),
                    "t": time.perf_counter()}
            sampler = asyncio.create_task(sample_rss(stop))
            s.log("warm-up done; measuring")
        scheduled = t0_perf + k / a.rate
        delay = t0_loop + k / a.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        fidx = order[k % a.followers]
        text = scripts[fidx].next_text()
        msg_id = base_id + k
        s.bench.msg_ids.append(msg_id)
        msg = Msg(seq=k, msg_id=msg_id, follower=fidx, text=text,
                  xml=s.followers[fidx].text(text, MsgId=msg_id), measured=k >= warm_n)
        s.msgs.append(msg)
        s.wechat.heard_xml(msg.xml)
        p = Post(retry=False)
        msg.posts.append(p)
        tasks.append(asyncio.create_task(
            post(session, url, s.followers[fidx], msg, p, scheduled, timeout)))
        if rng.random() < a.retry_share:
            # Some retries land while the first post is still being answered (the dedupe
            # marker must hold them), most after it (the stored result must be replayed).
            later = rng.uniform(0.0, 0.1) if rng.random() < 0.4 else rng.uniform(1.0, 5.0)
            s.retries_sent += 1
            tasks.append(asyncio.create_task(retry_later(msg, later)))
        if k and k % max(1, int(a.rate * 60)) == 0:
            done = [m.posts[0] for m in s.msgs[-int(a.rate * 60):] if m.posts[0].latency]
            bad = sum(1 for q in done if q.kind not in ("passive", "success"))
            s.log(f"{k}/{total} sent; last minute: {bad} of {len(done)} finished posts failed, "
                  f"app RSS {rss_kib(s.app_pid) / 1024:.0f} MiB")
            if done and bad / len(done) > a.abort_above:
                # Overloaded: more minutes only grow the app's backlog (and heat a shared
                # machine); what was measured so far is reported.
                s.aborted = (f"load stopped after {len(s.msgs)} of {total} messages: {bad} "
                             f"of {len(done)} posts of the last minute failed (--abort-above "
                             f"{a.abort_above:g})")
                s.log(s.aborted)
                break
    send_span = time.perf_counter() - t0_perf
    s.send_rate = round(len(s.msgs) / send_span, 2) if send_span > 0 else 0.0
    _, pending = await asyncio.wait(tasks, timeout=a.timeout + 10) if tasks else (set(), set())
    for t in pending:
        t.cancel()
    if pending:
        s.notes.append(f"{len(pending)} posts still open {a.timeout + 10:g} s after the last "
                       "send (cancelled, counted as timeouts)")
    stop.set()
    if sampler is not None:
        await sampler
    if cpu0:
        span = time.perf_counter() - cpu0["t"]
        n = max(1, sum(1 for m in s.msgs if m.measured))
        s.cpu = {f"{k} CPU ms/msg": round((bench_run.cpu_seconds(pid) - cpu0[k]) * 1000 / n, 2)
                 for k, pid in (("app", s.app_pid), ("rasa", s.rasa_pid),
                                ("client", os.getpid()))}
        s.cpu["measured span s"] = round(span, 1)


async def settle_late(s: Soak, fake: Any) -> None:
    """Wait for the late-reply jobs: every message answered 'success' expects a send."""
    expected = sum(1 for m in s.msgs if (ans := m.answer()) is not None
                   and ans.kind == "success")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.args.settle
    last, quiet_since = -1, loop.time()
    while loop.time() < deadline:
        n = len(fake.sends())
        if n != last:
            last, quiet_since = n, loop.time()
        # arq retries a failed send after a few seconds: wait for a quiet spell, not a count.
        if n >= expected and loop.time() - quiet_since > 3.0:
            break
        await asyncio.sleep(0.5)
    s.log(f"late replies: {len(fake.sends())} customer-service sends "
          f"({expected} messages got 'success')")


# --------------------------------------------------------------------------- verification

async def fetch_store(s: Soak, session: Any, base: str, token: str
                      ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each follower's profile and interactions (newest first), via GET /admin/api/profiles."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    sem = asyncio.Semaphore(4)  # the app answers these one store scan at a time anyway
    used = sorted({m.follower for m in s.msgs})

    async def one(fidx: int) -> None:
        openid = s.followers[fidx].openid
        async with sem:
            try:
                async with session.get(f"{base}/admin/api/profiles", headers=headers,
                                       params={"openid": openid, "limit": str(ADMIN_LIMIT)},
                                       timeout=aiohttp.ClientTimeout(total=120)) as resp:
                    if resp.status == 404:
                        out[openid] = {"profile": None, "interactions": []}
                        return
                    if resp.status != 200:
                        problems.append(f"{openid}: HTTP {resp.status}")
                        return
                    out[openid] = await resp.json()
            except (aiohttp.ClientError, TimeoutError) as e:
                problems.append(f"{openid}: {type(e).__name__}")

    await asyncio.gather(*(one(k) for k in used))
    return out, problems


async def scrape_metrics(session: Any, base: str) -> dict[str, float]:
    """The app's own counters (Prometheus text), summed per name+labels."""
    out: dict[str, float] = {}
    try:
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
    except Exception as e:
        return {"error": float("nan"), f"unreachable: {type(e).__name__}": 0.0}
    for line in text.splitlines():
        if line.startswith("scrm_") and "_created" not in line.split(" ")[0]:
            name, _, value = line.rpartition(" ")
            if name.endswith(("_bucket", "_sum")) or "_bucket{" in name:
                continue
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def verify(s: Soak, store: dict[str, dict[str, Any]], fake: Any, apologies: set[str]
           ) -> dict[str, Any]:
    """Exactly once, from three sides: what the follower got over HTTP, what the app stored,
    and what the fake WeChat API received as customer-service sends."""
    from bot.privacy import mask_phones
    from scrm.follower import Follower

    reader = Follower(token=bench_run.TOKEN, openid="reader")
    ours = {f"in:wechat:msg:{reader.account}:{s.followers[m.follower].openid}:{m.msg_id}": m
            for m in s.msgs}
    inbound: Counter[str] = Counter()
    outs: dict[str, list[dict[str, Any]]] = {}
    cs_stored: dict[str, Counter[str]] = {}
    unexpected_inbound = 0
    truncated = 0
    counters_inbound = 0
    with_intent = 0
    stored_total = 0
    stored_before_measure = 0
    measure_start = datetime.fromtimestamp(s.measure_wall, UTC) if s.measure_wall else None
    for openid, data in store.items():
        rows = data.get("interactions") or []
        profile = data.get("profile") or {}
        counters_inbound += int((profile.get("counters") or {}).get("inbound", 0))
        if len(rows) >= ADMIN_LIMIT:
            truncated += 1
        stored_total += len(rows)
        for row in rows:
            key = str(row.get("dedupe_key") or "")
            if measure_start and datetime.fromisoformat(row["ts"]) < measure_start:
                stored_before_measure += 1
            if row.get("direction") == "in":
                inbound[key] += 1
                if key not in ours:
                    unexpected_inbound += 1
                if row.get("intent"):
                    with_intent += 1
            else:
                base, _, index = key.rpartition(":out:")
                outs.setdefault(base, []).append({**row, "_index": int(index or 0)})
                if row.get("delivery") == "customer_service":
                    cs_stored.setdefault(openid, Counter())[str(row.get("text") or "")] += 1

    cs_sent: dict[str, Counter[str]] = {}
    for call in fake.sends():
        body = call.body
        content = (body.get("text") or {}).get("content", "") if body.get("msgtype") == "text" \
            else json.dumps(body.get(body.get("msgtype", ""), ""), ensure_ascii=False)
        cs_sent.setdefault(str(body.get("touser")), Counter())[mask_phones(content)] += 1
    cs_extra = sum(sum((cs_sent.get(o, Counter()) - cs_stored.get(o, Counter())).values())
                   for o in set(cs_sent) | set(cs_stored))
    cs_missing = sum(sum((cs_stored.get(o, Counter()) - cs_sent.get(o, Counter())).values())
                     for o in set(cs_sent) | set(cs_stored))

    c: Counter[str] = Counter()
    samples: list[str] = []

    lost_ids: set[int] = set()
    unstored_ids: set[int] = set()

    def flag(what: str, m: Msg, detail: str = "") -> None:
        c[what] += 1
        if what == "lost":
            lost_ids.add(m.msg_id)
        elif what == "not stored":
            unstored_ids.add(m.msg_id)
        if len(samples) < 8:
            samples.append(f"{what}: MsgId {m.msg_id} {m.text!r} {detail}"[:200])

    for key, m in ours.items():
        n_in = inbound.get(key, 0)
        if n_in == 0:
            flag("not stored", m)
        elif n_in > 1:
            flag("stored more than once", m, f"x{n_in}")
        for p in m.posts:
            c[f"post {p.kind}"] += 1
        # Every post of one message must get the same answer (the stored result).
        bodies = {p.body for p in m.posts if p.kind in ("passive", "success")}
        retries = [p for p in m.posts if p.retry]
        if retries:
            c["retried messages"] += 1
            if len(bodies) > 1:
                flag("retry answered differently", m,
                     " vs ".join(b[:60].decode(errors="replace") for b in bodies))
        rows = sorted(outs.get(key, []), key=lambda r: r["_index"])
        ans = m.answer()
        cs_sent_for_it = [r for r in rows if r.get("delivery") == "customer_service"
                          and r.get("outcome") == "sent"]
        if ans is None:
            # No post of it was answered over HTTP: only a customer-service send can count.
            if cs_sent_for_it:
                c["answered by customer service only"] += 1
            else:
                flag("lost", m, "no HTTP answer and no customer-service send")
            continue
        if ans.kind == "passive":
            c["answered passively"] += 1
            content = mask_phones(reader.read_reply(ans.body.decode()).get("Content", ""))
            if content in apologies:
                flag("apology", m)
            first = rows[0] if rows else None
            if first is None or mask_phones(str(first.get("text") or "")) != content:
                flag("passive reply not the stored reply", m)
            c["extra replies by customer service"] += len(rows) - 1 if rows else 0
        else:
            c["answered late ('success', then customer service)"] += 1
            if not rows:
                flag("lost", m, "'success' and no reply stored")
            elif not cs_sent_for_it:
                flag("lost", m, "late reply stored but never sent: "
                     + ", ".join(str(r.get("outcome")) for r in rows))
            elif any(mask_phones(str(r.get("text"))) in apologies for r in rows):
                flag("apology", m)

    c["customer-service sends, fake API"] = len(fake.sends())
    c["customer-service sends beyond the stored replies"] = cs_extra
    c["stored customer-service replies never sent"] = cs_missing
    c["unexpected inbound records"] = unexpected_inbound
    c["followers whose listing hit the admin limit"] = truncated
    duplicates = (c["stored more than once"] + cs_extra + c["retry answered differently"])
    # Per message: nothing reached the follower, or the app has no record of it. (Stored
    # replies missing at the fake API are those same messages, seen from the other side.)
    lost = len(lost_ids | unstored_ids)
    return {
        "counts": dict(c), "duplicates": duplicates, "lost": lost, "samples": samples,
        "profiles_counters_inbound": counters_inbound,
        "inbound_with_intent": with_intent, "stored_interactions": stored_total,
        "stored_before_measure": stored_before_measure,
        "complete": truncated == 0,
    }


async def bytes_per_interaction(store: dict[str, dict[str, Any]], n: int = 2000
                                ) -> float | None:
    """Python heap bytes one stored interaction takes in the embedded engine as the app
    runs it (mongomock with the app's indexes and store/embedded.py's hash maps), measured
    here with tracemalloc on copies of the real records. RSS growth beyond this × the
    records stored is what a leak would show as."""
    import copy
    import tracemalloc

    from mongomock_motor import AsyncMongoMockClient

    from store.mongo import MongoStore

    rows = [r for d in store.values() for r in (d.get("interactions") or [])][:n]
    if not rows:
        return None
    docs = []
    for r in rows:
        doc = copy.deepcopy(r)
        doc["ts"] = datetime.fromisoformat(doc["ts"])  # stored as a datetime, not text
        docs.append(doc)

    engine = MongoStore(AsyncMongoMockClient(tz_aware=True), "soak", embedded=True)
    await engine.interactions.ensure_indexes()
    # The lookups the app makes, so the maps it keeps exist before measuring.
    await engine.interactions.get("none")
    await engine.interactions.latest("none", 1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for doc in docs:
        await engine.interactions.add(doc)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / len(docs)


# --------------------------------------------------------------------------- the run

async def soak(s: Soak) -> None:
    import aiohttp

    from scrm import rasa_proc
    from scrm.follower import Follower
    from tests.support.fake_wechat import FakeWeChatAPI

    a, b = s.args, s.bench
    t_start = time.monotonic()
    lib = bench_run.shipped_templates()
    apologies = {lib.render("apology", lang, profile={}, lang=lang) for lang in ("zh", "en")}
    prefix = f"o_soak_{b.run_id.replace('-', '_')}"
    s.followers = [Follower(token=bench_run.TOKEN, openid=f"{prefix}_{k:04d}",
                            app_id=bench_run.APP_ID) for k in range(a.followers)]

    fake = await FakeWeChatAPI().start()
    s.wechat = fake
    try:
        model = rasa_proc.train(ROOT)
        rasa_port, app_port = bench_run.free_port(), bench_run.free_port()
        rasa_url = f"http://127.0.0.1:{rasa_port}"
        rasa_log = b.log_dir / f"soak-rasa-{b.run_id}.log"
        s.log(f"starting Rasa on {rasa_url} (model {model.name}, log {rasa_log}) ...")
        rasa = b.spawn(rasa_proc.start_rasa(
            ROOT, model, rasa_port, f"http://127.0.0.1:{app_port}/rasa/webhook", rasa_log))
        s.rasa_pid = rasa.pid
        if not await asyncio.to_thread(bench_run.wait_http, f"{rasa_url}/status",
                                       a.rasa_start_timeout, rasa):
            raise RuntimeError(f"Rasa did not start; see {rasa_log}")
        s.timeline["rasa ready s"] = round(time.monotonic() - t_start, 1)
        cfg = bench_run.write_config(b.work, app_port, b.namespace, a.log_level)
        app_log = b.log_dir / f"soak-app-{b.run_id}.log"
        token = secrets.token_hex(12)
        tune_config(cfg, s.database if a.mongodb_url else None, a.budget)
        if a.budget is not None:
            s.notes.append(f"the app's passive-reply budget was set to {a.budget:g} s "
                           "(--budget; config.yml has 4 s)")
        app = b.spawn(start_app(cfg, rasa_url, b.redis_url, fake.url, token, app_log, b.work,
                                a.mongodb_url, a.profile_app))
        s.app_pid = app.pid
        base = f"http://127.0.0.1:{app_port}"
        if not await asyncio.to_thread(bench_run.wait_http, f"{base}/healthz", 60, app):
            raise RuntimeError(f"app did not start; see {app_log}")
        s.timeline["app ready s"] = round(time.monotonic() - t_start, 1)
        s.log(f"Rasa and app ready in {s.timeline['app ready s']:.0f} s "
              f"(app pid {app.pid}, log {app_log})")

        connector = aiohttp.TCPConnector(limit=512, limit_per_host=512)
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.monotonic()
            await drive(s, session, f"{base}/wechat")
            s.timeline["load s"] = round(time.monotonic() - t0, 1)
            await settle_late(s, fake)
            # RSS at the end: right after the load, before the verification queries below
            # make the app build large answers.
            s.rss.append({"t_s": "end", "rss_kib": rss_kib(s.app_pid),
                          "rasa_rss_kib": rss_kib(s.rasa_pid),
                          "messages_sent": len(s.msgs),
                          "measured_sent": sum(1 for m in s.msgs if m.measured),
                          "answered": sum(1 for m in s.msgs if m.answer() is not None)})
            s.checks["app VmHWM kib"] = bench_run.proc_status(s.app_pid).get("VmHWM", 0)
            s.metrics = await scrape_metrics(session, base)
            t0 = time.monotonic()
            store, problems = await fetch_store(s, session, base, token)
            s.timeline["verification s"] = round(time.monotonic() - t0, 1)
            if problems:
                s.notes.append(f"admin API failed for {len(problems)} followers: "
                               f"{problems[:3]}")
        s.checks.update(verify(s, store, fake, apologies))
        bench_run.stop_proc(app)
        rasa_proc.stop(rasa)
        # With a real MongoDB the records live in its server, not in the app's RSS.
        s.store_bytes_per_interaction = (0.0 if a.mongodb_url
                                         else await bytes_per_interaction(store))
    finally:
        await fake.close()


def pct(vals: list[float], q: float) -> float | None:
    v = bench_run.percentile(sorted(vals), q)
    return None if v is None else round(v * 1000, 1)


def report(s: Soak, command: str, cleaned: dict[str, Any]) -> dict[str, Any]:
    a = s.args
    measured = [m for m in s.msgs if m.measured]
    firsts = [m.posts[0] for m in measured]
    kinds = Counter(p.kind for p in firsts)
    all_posts = [p for m in s.msgs for p in m.posts]
    post_kinds = Counter(p.kind for p in all_posts)
    bad = post_kinds["error"] + post_kinds["timeout"] + post_kinds["non200"]
    error_rate = bad / len(all_posts) if all_posts else None
    passive = [p.latency for p in firsts if p.kind == "passive" and p.latency is not None]
    # Timeouts count with the time waited (a lower bound), so an overload shows in p99.
    answered = [p.latency for p in firsts if p.kind in ("passive", "success", "timeout")
                and p.latency is not None]
    retry_lat = [p.latency for m in s.msgs for p in m.posts
                 if p.retry and p.latency is not None and p.kind in ("passive", "success")]
    p99 = pct(answered, 99)
    ck = s.checks
    counts = ck.get("counts", {})

    rss_start = s.rss[0]["rss_kib"] if s.rss else 0
    rss_end = s.rss[-1]["rss_kib"] if s.rss else 0
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else None
    stored_in_window = ck.get("stored_interactions", 0) - ck.get("stored_before_measure", 0)
    per_1k = ((rss_end - rss_start) / 1024 / (stored_in_window / 1000)
              if stored_in_window else None)
    explained_mib = (s.store_bytes_per_interaction * stored_in_window / 2**20
                     if s.store_bytes_per_interaction else None)
    unexplained = (((rss_end - rss_start) / 1024 - explained_mib) / (rss_start / 1024) * 100
                   if explained_mib is not None and rss_start else None)

    def ok(flag: bool | None) -> str:
        return "?" if flag is None else ("met" if flag else "**NOT met**")

    def f(v: Any, nd: int = 1) -> str:
        if v is None:
            return "-"
        return f"{v:.{nd}f}" if isinstance(v, float) else str(v)

    complete = ck.get("complete", False)
    rows = [
        ("error rate (non-200, transport errors, timeouts / all posts)", "0",
         f"{f(error_rate * 100 if error_rate is not None else None, 3)} % ({bad} of "
         f"{len(all_posts)})", ok(bad == 0)),
        (f"p99 of the answer at {a.rate:g} msg/s (measured phase, from scheduled send)",
         f"≤ {a.p99_target_ms:g} ms", f"{f(p99)} ms", ok(p99 is not None
                                                           and p99 <= a.p99_target_ms)),
        ("app RSS growth, start → end of the measured phase", "< 10 %",
         f"{f(growth)} % ({rss_start / 1024:.1f} → {rss_end / 1024:.1f} MiB)",
         ok(growth is not None and growth < 10)),
        ("duplicates (stored twice, sent twice, retry answered differently)", "0",
         f(ck.get("duplicates")), ok(ck.get("duplicates") == 0 if complete else None)),
        ("lost (no answer, not stored, stored reply never sent)", "0", f(ck.get("lost")),
         ok(ck.get("lost") == 0 if complete else None)),
        ("apology answers (a turn failed or Rasa was down)", "0",
         f(counts.get("apology", 0)), ok(counts.get("apology", 0) == 0)),
    ]
    lines = ["| target | limit | measured | |", "|---|---|---|---|"]
    lines += [f"| {n} | {lim} | {v} | {verdict} |" for n, lim, v, verdict in rows]

    unique = len(s.msgs)
    retried = counts.get("retried messages", 0)
    differently = counts.get("retry answered differently", 0)
    late = counts.get("answered late ('success', then customer service)", 0)
    figures = [
        ("store", "real MongoDB (--mongodb-url)" if a.mongodb_url
         else "embedded engine (mongomock, in the app's process)"),
        ("messages (unique MsgIds), of which measured", f"{unique}, {len(measured)}"),
        ("offered rate, achieved send rate", f"{a.rate:g}/s, {s.send_rate:g}/s"),
        ("retries posted (same MsgId), answered identically",
         f"{s.retries_sent}, {retried - differently} of {retried}"),
        ("all posts by result", ", ".join(f"{k} {v}" for k, v in sorted(post_kinds.items()))),
        ("measured first posts: passive reply / 'success' (late)",
         f"{kinds['passive']} / {kinds['success']}"),
        (f"latency p50 / p95 / p99 / max, ms (measured first posts; a timeout counts as "
         f"{a.timeout:g} s)",
         f"{f(pct(answered, 50))} / {f(pct(answered, 95))} / {f(p99)} / "
         f"{f(round(max(answered) * 1000, 1) if answered else None)}"),
        ("  of passive replies only: p50 / p99, ms", f"{f(pct(passive, 50))} / "
         f"{f(pct(passive, 99))}"),
        ("  retries: p50 / p99, ms", f"{f(pct(retry_lat, 50))} / {f(pct(retry_lat, 99))}"),
        ("first posts slower than WeChat's 5 s (WeChat would have dropped them)",
         str(sum(1 for v in answered if v > 5))),
        ("late replies: messages answered 'success', customer-service sends (fake API)",
         f"{late}, {counts.get('customer-service sends, fake API', 0)}"),
        ("customer-service sends beyond the stored replies / stored replies never sent",
         f"{counts.get('customer-service sends beyond the stored replies', 0)} / "
         f"{counts.get('stored customer-service replies never sent', 0)}"),
        ("stored inbound per MsgId: not stored / more than once / unknown MsgIds",
         f"{counts.get('not stored', 0)} / {counts.get('stored more than once', 0)} / "
         f"{counts.get('unexpected inbound records', 0)}"),
        ("profiles' inbound counters (sum) vs unique MsgIds",
         f"{ck.get('profiles_counters_inbound')} vs {unique}"),
        ("Rasa /model/parse calls (inbound records with an intent; + app's Rasa errors)",
         f"{ck.get('inbound_with_intent')} (+{int(_metric(s, 'scrm_rasa_errors_total'))}) "
         f"for {unique} messages"),
        ("app: dedupe hits / late replies / CS sends (its /metrics)",
         f"{int(_metric(s, 'scrm_dedupe_hits_total'))} / "
         f"{int(_metric(s, 'scrm_late_replies_total'))} / "
         f"{int(_metric(s, 'scrm_customer_service_sends_total'))}"),
        ("stored interactions, of which during the measured phase",
         f"{ck.get('stored_interactions')}, {stored_in_window}"),
        ("app RSS growth per 1,000 stored interactions", f"{f(per_1k, 2)} MiB"),
        ("passive replies that differ from the stored reply",
         str(counts.get("passive reply not the stored reply", 0))),
        ("embedded store: heap per interaction (tracemalloc on the real records)",
         f"{f(s.store_bytes_per_interaction, 0)} B → {f(explained_mib, 2)} MiB for the "
         "measured phase"),
        ("app RSS growth not explained by stored records", f"{f(unexplained)} %"),
        ("app peak RSS (VmHWM)", f"{ck.get('app VmHWM kib', 0) / 1024:.1f} MiB"),
        ("CPU per message (measured phase)",
         ", ".join(f"{k} {v:g}" for k, v in s.cpu.items())),
        ("start-up: Rasa ready / app ready / load / verification, s",
         " / ".join(f(s.timeline.get(k)) for k in ("rasa ready s", "app ready s", "load s",
                                                    "verification s"))),
    ]
    out = [""]
    if s.aborted:
        out += [f"**Aborted early**: {s.aborted}.", ""]
    out += ["\n".join(lines), "", "| figure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in figures]
    out += ["", f"App RSS every {RSS_EVERY_S:g} s of the measured phase (MiB; Rasa alongside):",
            "", "| t s | app RSS | Rasa RSS | messages sent | answered |", "|---|---|---|---|---|"]
    out += [f"| {r['t_s']} | {r['rss_kib'] / 1024:.1f} | {r['rasa_rss_kib'] / 1024:.1f} | "
            f"{r['messages_sent']} | {r['answered']} |" for r in s.rss]
    out.append("")
    if not complete:
        out.append("- **accounting incomplete**: some followers had more interactions than the "
                   f"admin API lists ({ADMIN_LIMIT}); run with more --followers")
    out += [f"- sample: `{x}`" for x in ck.get("samples", [])]
    out += [f"- {n}" for n in s.notes]
    out.append(f"- load average (1 min) before/after: {s.bench.load_before} / "
               f"{bench_run.loadavg()}; {os.cpu_count()} CPUs, Python "
               f"{platform.python_version()}; Redis cleanup {cleaned}")
    out.append(f"- command: `{command}`")
    print("\n".join(out))
    return {
        "run_id": s.bench.run_id, "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command, "options": vars(a),
        "targets": {n: {"limit": lim, "measured": v, "verdict": verdict.strip("*")}
                    for n, lim, v, verdict in rows},
        "figures": dict(figures), "rss_series": s.rss, "checks": ck, "metrics": s.metrics,
        "cpu": s.cpu, "timeline": s.timeline, "notes": s.notes, "aborted": s.aborted,
        "error_rate": error_rate, "p50_ms": pct(answered, 50), "p95_ms": pct(answered, 95),
        "p99_ms": p99, "rss_start_kib": rss_start, "rss_end_kib": rss_end,
        "rss_growth_pct": growth, "rss_mib_per_1k_interactions": per_1k,
        "store_bytes_per_interaction": s.store_bytes_per_interaction,
        "rss_growth_unexplained_pct": unexplained, "markdown": "\n".join(out),
    }


def _metric(s: Soak, prefix: str) -> float:
    """Sum of the app's counters whose name (labels aside) is `prefix`."""
    return sum(v for k, v in s.metrics.items() if k.split("{")[0] == prefix)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="measured phase")
    p.add_argument("--rate", type=float, default=50.0, help="new messages per second")
    p.add_argument("--followers", type=int, default=500)
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds at the same rate before measuring (RSS 'start' is after it)")
    p.add_argument("--retry-share", type=float, default=0.05,
                   help="share of messages posted a second time with the same MsgId")
    p.add_argument("--timeout", type=float, default=10.0, help="per-post timeout, s")
    p.add_argument("--abort-above", type=float, default=0.5,
                   help="stop the load when more than this share of a minute's posts failed "
                        "(1 = never)")
    p.add_argument("--settle", type=float, default=60.0,
                   help="at most this many s to wait for late customer-service sends")
    p.add_argument("--rasa-start-timeout", type=float, default=240.0)
    p.add_argument("--p99-target-ms", type=float, default=300.0)
    p.add_argument("--log-level", default="INFO", help="the app's log level (as deployed)")
    p.add_argument("--seed", type=int, default=None, help="follower scripts (default random)")
    p.add_argument("--mongodb-url", default="",
                   help="a real MongoDB instead of the embedded engine; the run uses its own "
                        "database (soak_<run>), dropped at the end")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="the app's passive-reply budget (config: 4 s); a small one (0.25) "
                        "sends many answers late, through the customer-service API")
    p.add_argument("--profile-app", type=Path, default=None, metavar="FILE",
                   help="run the app under cProfile, stats to FILE (slows the app about 2x)")
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    p.add_argument("--out", type=Path, default=None, help="JSON output path")
    a = p.parse_args(argv)
    if a.minutes <= 0 or a.rate <= 0 or a.followers < 1 or a.warmup < 0:
        p.error("--minutes, --rate and --followers must be positive, --warmup not negative")
    if not 0 <= a.retry_share <= 1:
        p.error("--retry-share is a share between 0 and 1")
    if a.rate * (a.minutes * 60 + a.warmup) > 200_000:
        p.error("at most 200,000 messages per run")
    per_follower = a.rate * (a.minutes * 60 + a.warmup) / a.followers
    if per_follower * 2 > ADMIN_LIMIT * 0.9:
        p.error(f"about {per_follower:.0f} messages per follower: the admin API lists at most "
                f"{ADMIN_LIMIT} interactions per profile, so the store check would be "
                "incomplete; use more --followers")
    if a.seed is None:
        a.seed = secrets.randbelow(2**31)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            args.uvloop = False
    command = " ".join([Path(sys.executable).as_posix(), *sys.argv])
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scrm-soak-"))
    b = bench_run.Bench(args=args, run_id=run_id, work=work, log_dir=log_dir,
                        namespace=f"soak-{run_id}",
                        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    s = Soak(args=args, bench=b, database=f"soak_{run_id.replace('-', '_')}")
    s.log(f"run {run_id}: Redis namespace {b.namespace}, logs in {log_dir}, seed {args.seed}")
    try:
        if args.uvloop:
            uvloop.run(soak(s))
        else:
            asyncio.run(soak(s))
    except (Exception, KeyboardInterrupt) as e:  # still report what ran, and clean up
        s.notes.append(f"run aborted: {type(e).__name__}: {e}")
        s.log(f"aborted: {type(e).__name__}: {e}")
    finally:
        for proc in reversed(b.procs):
            bench_run.stop_proc(proc)
        shutil.rmtree(work, ignore_errors=True)
        try:
            cleaned = bench_run.cleanup_redis(b)
        except Exception as e:
            cleaned = {"error": f"{type(e).__name__}: {e}"}
        if args.mongodb_url:
            cleaned["mongodb"] = drop_database(args.mongodb_url, s.database)
    data = report(s, command, cleaned)
    out = args.out or RESULTS / f"soak-{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str),
                   encoding="utf-8")
    print(f"\nJSON: {out}")
    return 0  # a benchmark reports; the table says what was not met


if __name__ == "__main__":
    sys.exit(main())
