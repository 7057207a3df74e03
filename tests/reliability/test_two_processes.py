"""Two real `scrm serve` OS processes sharing one Redis and one real database (a SecantusDB
server process): one access_token refresh at a time across them (first fetch and a forced
refresh after 40001), and one follower's messages handled in send order when they
alternate between the processes while Rasa is slow.

What is checked is what a deployment would see: the fake WeChat API (every call names the
process it came from), the NLU proxy in front of the real Rasa, and the shared store
through either process's admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.messages import InboundMessage
from scrm.follower import Follower
from store.keys import Keys
from tests.conftest import ADMIN, APP_ID, TOKEN
from tests.support.app_process import AppProcess, app_env, loopback_config
from tests.support.chat import TODAY, Chat, sign_up
from tests.support.fake_wechat import Call, FakeWeChatAPI
from tests.support.rasa_proxy import RasaProxy

pytestmark = pytest.mark.rasa

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@dataclass
class WeChatBehindDoors(FakeWeChatAPI):
    """The fake WeChat API with one door (URL prefix) per app process, so every call says
    which process made it. qrcode/create checks the token as WeChat does, and can hold its
    answers until `hold_qr` calls arrived, so both processes are surely mid-call at once."""

    hold_qr: int = 0
    route_prefix: str = "/{door}"
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def base(self, door: str) -> str:
        return f"{self.url}/{door}"

    @staticmethod
    def door(call: Call) -> str:
        return call.path.split("/")[1]

    def _of(self, api: str) -> list[Call]:
        return [c for c in self.calls if c.path.endswith(api)]

    def token_calls(self) -> list[Call]:
        return self._of("/cgi-bin/stable_token")

    def sends(self) -> list[Call]:
        return self._of("/cgi-bin/message/custom/send")

    def qr_calls(self) -> list[Call]:
        return self._of("/cgi-bin/qrcode/create")

    async def qrcode_create(self, request: web.Request) -> web.Response:
        body, _ = await self.read(request)
        self._record(request, body)
        if self.hold_qr and not self._released.is_set():
            if len(self.qr_calls()) >= self.hold_qr:
                self._released.set()
            else:
                with contextlib.suppress(TimeoutError):  # the counts then show what came
                    await asyncio.wait_for(self._released.wait(), 30)
        if request.query.get("access_token") not in self.valid_tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        scene = body["action_info"]["scene"]["scene_str"]
        return web.json_response({"ticket": f"TICKET-{scene}",
                                  "url": f"http://weixin.qq.com/q/{scene}"})


@dataclass
class NluLog(RasaProxy):
    """The Rasa proxy, also noting when each parse is answered and how many of one
    follower's texts the NLU held at once."""

    events: list[tuple[str, str]] = field(default_factory=list)  # ("in"|"out", text)
    busy: Counter[str] = field(default_factory=Counter)
    most_busy: int = 0

    async def forward(self, request: web.Request) -> web.Response:
        if request.path != "/model/parse":
            return await super().forward(request)
        text = str((await request.json()).get("text"))
        who = request.headers.get("X-SCRM-Follower", "")
        self.events.append(("in", text))
        self.busy[who] += 1
        self.most_busy = max(self.most_busy, self.busy[who])
        try:
            return await super().forward(request)
        finally:
            self.busy[who] -= 1
            self.events.append(("out", text))


class Over:
    """What Chat/sign_up need of an app: post_wechat, here over real HTTP to a process."""

    def __init__(self, session: aiohttp.ClientSession, proc: AppProcess) -> None:
        self.session, self.proc = session, proc

    async def post_wechat(self, query: str, body: str) -> tuple[int, str]:
        async with self.session.post(f"{self.proc.url}/wechat?{query}",
                                     data=body.encode()) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def doors():
    api = await WeChatBehindDoors().start()
    yield api
    await api.close()


@pytest.fixture
async def nlu(rasa_server):
    proxy = await NluLog(rasa_server).start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def processes(request, tmp_path, namespace, nlu, doors, secantus_url):
    """Processes a and b: own ports, one real database (SecantusDB) and one Redis
    namespace between them, as two app processes of a deployment share them."""
    config = loopback_config(tmp_path)
    procs = []
    for name in ("a", "b"):
        env = app_env(WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET="s3cret",
                      WECHAT_API_BASE=doors.base(name), RASA_URL=nlu.url,
                      SCRM_ADMIN_TOKEN=ADMIN, SCRM_REDIS_NAMESPACE=namespace,
                      MONGODB_URL=secantus_url, SCRM_MONGODB_DATABASE=namespace.replace("-", "_"),
                      SCRM_ACTION_TOKEN=None, SCRM_LOG_LEVEL="INFO")
        procs.append(AppProcess(name, config, env, tmp_path / f"app-{name}.log").start())
    failed_before = request.session.testsfailed
    try:
        await asyncio.gather(*(p.wait_healthy(120) for p in procs))
        yield procs
    finally:
        codes = [p.stop() for p in procs]
        if request.session.testsfailed > failed_before:
            for p in procs:
                print(f"\n----- log of app process {p.name} (port {p.port}) -----\n{p.tail()}")
        print(f"\nprocesses stopped, exit codes {codes}")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


async def qr(http: aiohttp.ClientSession, proc: AppProcess, openid: str) -> tuple[int, Any]:
    async with http.post(f"{proc.url}/admin/api/qrcode", params={"openid": openid},
                         headers=AUTH) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.timeout(240)
async def test_one_token_refresh_at_a_time_across_processes(processes, doors, http):
    a, b = processes
    due = (TODAY + timedelta(days=100)).isoformat()
    # Two members on each process (each has its own database): the first pair needs the
    # first token, the second pair meets the revoked one. A QR code is created once per
    # member, so each pair is fresh when its phase starts.
    members = {"a1": a, "b1": b, "a2": a, "b2": b}
    await asyncio.gather(*(sign_up(Chat(Over(http, p), f"o_2p_{m}"), date_answer=due)
                           for m, p in members.items()))
    assert doors.calls == []  # nothing so far needed WeChat: the token cache is empty

    # Phase 1: three QR requests at each process at once, no token yet, a slow stable_token.
    doors.token_delay = 1.0
    first = await asyncio.gather(*(qr(http, p, f"o_2p_{m}") for m, p in
                                   [("a1", a)] * 3 + [("b1", b)] * 3))
    first_qr = doors.qr_calls()
    print(f"\ntoken, first fetch: 6 QR requests (3 at each process), answers "
          f"{Counter(s for s, _ in first)}, stable_token calls {len(doors.token_calls())} "
          f"(from {[doors.door(c) for c in doors.token_calls()]}), qrcode/create calls by "
          f"process {dict(Counter(doors.door(c) for c in first_qr))}, tokens used "
          f"{sorted({c.query['access_token'] for c in first_qr})}")
    assert [s for s, _ in first] == [200] * 6
    assert len(doors.token_calls()) == 1
    assert doors.token_calls()[0].body["force_refresh"] is False
    assert {doors.door(c) for c in first_qr} == {"a", "b"}  # both processes needed it
    assert {c.query["access_token"] for c in first_qr} == {"TOKEN-1"}

    # Phase 2: WeChat no longer takes TOKEN-1. The fake holds the first six answers until
    # all six arrived, then answers each 40001: both processes hold a rejected token at once.
    doors.valid_tokens.discard("TOKEN-1")
    doors.token_delay = 0.5
    doors.hold_qr = len(first_qr) + 6
    second = await asyncio.gather(*(qr(http, p, f"o_2p_{m}") for m, p in
                                    [("a2", a)] * 3 + [("b2", b)] * 3))
    calls = doors.qr_calls()[len(first_qr):]
    rejected = [c for c in calls if c.query["access_token"] == "TOKEN-1"]
    retried = [c for c in calls if c.query["access_token"] != "TOKEN-1"]
    forced = [c for c in doors.token_calls() if c.body["force_refresh"]]
    print(f"token, forced refresh: 6 QR requests, answers {Counter(s for s, _ in second)}, "
          f"rejected with 40001 by process {dict(Counter(doors.door(c) for c in rejected))}, "
          f"forced refreshes {len(forced)} (from {[doors.door(c) for c in forced]}), retries "
          f"by process {dict(Counter(doors.door(c) for c in retried))} with "
          f"{sorted({c.query['access_token'] for c in retried})}")
    assert Counter(doors.door(c) for c in rejected) == {"a": 3, "b": 3}
    assert len(forced) == 1  # six rejected callers in two processes: one refresh
    assert len(doors.token_calls()) == 2
    assert {c.query["access_token"] for c in retried} == {"TOKEN-2"}
    assert Counter(doors.door(c) for c in retried) == {"a": 3, "b": 3}  # each retried once
    assert [s for s, _ in second] == [200] * 6
    assert all(q["ticket"].startswith("TICKET-ref_") for _, q in first + second)


async def stored_turns(http: aiohttp.ClientSession, proc: AppProcess, openid: str
                       ) -> list[dict[str, Any]]:
    """The follower's interactions, read through this process (the store both share)."""
    async with http.get(f"{proc.url}/admin/api/profiles",
                        params={"openid": openid, "limit": "200"}, headers=AUTH) as resp:
        if resp.status == 404:
            return []
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["interactions"])


@pytest.mark.timeout(240)
async def test_one_followers_messages_keep_their_order_across_processes(
        processes, nlu, doors, http, namespace):
    a, b = processes
    f = Follower(token=TOKEN, openid="o_2p_order", app_id=APP_ID)
    texts = [f"第{n:02d}条消息" for n in range(1, 13)]
    nlu.delay_for[texts[0]] = 2.0  # Rasa is slow on the first: the rest must queue behind it
    her = InboundMessage(channel="wechat", app_id=APP_ID, sender=f.openid, kind="text",
                         dedupe_key="-", created_at=datetime.now(UTC)).follower
    tickets = Keys(namespace).order_next(her)  # her place-in-line counter, shared by both
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    posts, unseen = [], 0
    try:
        for n, text in enumerate(texts, start=1):
            doors.heard(f.openid)  # as WeChat sees her message pass: its budget opens
            posts.append(asyncio.create_task(Over(http, (a, b)[(n - 1) % 2]).post_wechat(
                *f.request(f.text(text)))))
            # The next one is posted once this one has arrived (took its place in line), not
            # after it was answered: a follower typing fast, her messages spread over both.
            for _ in range(200):
                if int(await redis.get(tickets) or 0) >= n or posts[-1].done():
                    break
                await asyncio.sleep(0.05)
            else:
                unseen += 1
        answers = await asyncio.gather(*posts)
    finally:
        await redis.aclose()
    assert unseen == 0, "a message never took its place in line: the premise did not hold"

    passive = [f.read_reply(body).get("Content") for _, body in answers]
    late = sum(1 for _, body in answers if body == "success")
    sends = await doors.wait_sends(late, timeout=30) if late else []
    nlu_order = [t for kind, t in nlu.events if kind == "in" and t in texts]
    nlu_pairs = [(kind, t) for kind, t in nlu.events if t in texts]
    # One store behind both: either process shows the same records. Each inbound must
    # come after the reply to the one before, whichever process stored either.
    for _ in range(100):  # the records are written just after each answer went out
        log = await stored_turns(http, a, f.openid)
        if len(log) >= 2 * len(texts):
            break
        await asyncio.sleep(0.1)
    assert log == await stored_turns(http, b, f.openid)
    inbound = {i["text"]: i for i in log if i["direction"] == "in"}
    stored_in = [i["text"] for i in log if i["direction"] == "in"]
    replies = {i["dedupe_key"].rsplit(":out:", 1)[0]: i for i in log if i["direction"] == "out"}
    at = datetime.fromisoformat
    stored_out_of_order = sum(
        1 for prev, nxt in pairwise(texts)
        if prev not in inbound or nxt not in inbound
        or inbound[prev]["dedupe_key"] not in replies
        or at(inbound[nxt]["ts"]) < at(replies[inbound[prev]["dedupe_key"]]["ts"]))
    in_order = sum(1 for i, t in enumerate(nlu_order) if i < len(texts) and t == texts[i])
    print(f"\norder across processes: sent {len(texts)} (alternating a/b), HTTP "
          f"{dict(Counter(s for s, _ in answers))}, answered at once {len(texts) - late}, "
          f"late {late} (customer-service sends {len(sends)}); NLU took {len(nlu_order)} in "
          f"order {in_order}, out of order {len(nlu_order) - in_order}, at most "
          f"{nlu.most_busy} of hers at once; stored {len(stored_in)} in the shared store, "
          f"lost {len(set(texts) - set(stored_in))}, duplicated "
          f"{len(stored_in) - len(set(stored_in))}, stored out of order {stored_out_of_order}")
    assert [s for s, _ in answers] == [200] * len(texts)
    assert nlu_order == texts  # the NLU saw them in send order ...
    assert nlu.most_busy == 1  # ... one at a time: the slow first held up the other process
    assert nlu_pairs == [(k, t) for t in texts for k in ("in", "out")]
    assert sorted(stored_in) == sorted(texts)  # none lost, none twice
    assert stored_out_of_order == 0
    assert all(p for p, (_, body) in zip(passive, answers, strict=True) if body != "success")
    # A reply that missed the window still came, once, and WeChat took it: how many are
    # late depends on the machine's speed, so every late one must be within her budget.
    assert len(sends) == late and all(c.body.get("_errcode", 0) == 0 for c in sends), sends
