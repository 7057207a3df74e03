"""A broadcast's app process killed with SIGKILL mid-send: two real `scrm serve` OS
processes share one Redis (the arq jobs) and one real database (a SecantusDB server
process); one of them dies while its worker is sending, and the other finishes the
broadcast once arq sees the dead process's jobs abandoned.

Nobody is messaged twice. Every planned member ends sent, or, for a delivery the dead
process had claimed and may or may not have handed to WeChat, failed: interrupted (never
resent: a mother is not messaged twice). The marketer gets the final tally.
"""

from __future__ import annotations

import re
from collections import Counter

import aiohttp
import pytest
from pymongo import MongoClient

from scrm.follower import Follower
from tests.conftest import ADMIN, APP_ID, TOKEN, closed_port_url
from tests.support.app_process import AppProcess, app_env, loopback_config
from tests.support.marketing import BOSS, bid_in, budgets_open, member_doc, member_sends, until

pytestmark = pytest.mark.server
MEMBERS = 60
KILL_AFTER = 17  # member sends WeChat has accepted when the process dies


def marketing_config(folder) -> object:
    """config.yml for the processes: small chunks, a quick job timeout, no quiet hours."""
    path = loopback_config(folder)
    text = path.read_text()
    for key, value in (("chunk_size", "10"), ("rate_per_second", "40"),
                       ("job_timeout_seconds", "5")):
        text, n = re.subn(rf"(?m)^(  {key}:[ \t]*)\S+", rf"\g<1>{value}", text)
        assert n == 1, key
    path.write_text(text)
    return path


async def say(http: aiohttp.ClientSession, proc: AppProcess, f: Follower, text: str,
              wechat=None) -> str:
    xml = f.text(text)
    if wechat is not None:
        wechat.heard_xml(xml)  # WeChat sees her message pass: her budget opens
    query, body = f.request(xml)
    async with http.post(f"{proc.url}/wechat?{query}", data=body.encode()) as resp:
        assert resp.status == 200
        return f.read_reply(await resp.text()).get("Content", "")


def done_notes(wechat_api) -> list:
    return [c for c in wechat_api.delivered() if c.body["touser"] == BOSS
            and "发送完成" in c.body.get("text", {}).get("content", "")]


@pytest.mark.timeout(240)
async def test_sigkill_of_a_sending_process_messages_nobody_twice(
        tmp_path, namespace, secantus_url, wechat_api):
    database = namespace.replace("-", "_")
    config = marketing_config(tmp_path)
    env = app_env(WECHAT_TOKEN=TOKEN, WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET="s3cret",
                  WECHAT_API_BASE=wechat_api.url, RASA_URL=closed_port_url(),
                  SCRM_ADMIN_TOKEN=ADMIN, SCRM_REDIS_NAMESPACE=namespace,
                  MONGODB_URL=secantus_url, SCRM_MONGODB_DATABASE=database,
                  SCRM_ADMINS=BOSS, SCRM_QUIET_HOURS="off", SCRM_ACTION_TOKEN=None)
    doomed = AppProcess("doomed", config, env, tmp_path / "doomed.log").start()
    rescuer: AppProcess | None = None
    db = MongoClient(secantus_url)[database]
    try:
        await doomed.wait_healthy(60, rasa=False)
        docs = [member_doc(i) for i in range(MEMBERS)]
        db["profiles"].insert_many(docs)
        await budgets_open(namespace, [d["identities"][0]["openid"] for d in docs], wechat_api)
        boss = Follower(token=TOKEN, openid=BOSS, app_id=APP_ID)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await say(http, doomed, boss, "你好", wechat_api)
            bid = bid_in(await say(http, doomed, boss, "/broadcast member:yes | 周末活动通知",
                                     wechat_api))
            assert "已确认" in await say(http, doomed, boss, f"/confirm {bid}", wechat_api)

            async def sending() -> bool:
                return len(member_sends(wechat_api)) >= KILL_AFTER
            assert await until(sending, 60), doomed.tail()
            doomed.kill()  # SIGKILL while its worker is sending
            at_kill = len(member_sends(wechat_api))

            rescuer = AppProcess("rescuer", config, env, tmp_path / "rescuer.log").start()
            await rescuer.wait_healthy(60, rasa=False)

            async def finished() -> bool:
                doc = db["broadcasts"].find_one({"_id": bid})
                return bool(doc and doc["status"] == "done")
            assert await until(finished, 120), rescuer.tail()

            async def told() -> bool:  # the marketer's tally is a push: a job of its own
                return bool(done_notes(wechat_api))
            await until(told, 30)
        sends = Counter(c.body["touser"] for c in member_sends(wechat_api))
        tally = Counter()
        for d in db["deliveries"].find({"broadcast": bid}):
            tally[d["status"] if d["status"] != "failed" else f"failed:{d.get('reason')}"] += 1
        duplicated = sum(n - 1 for n in sends.values() if n > 1)
        print(f"\nbroadcast SIGKILL: {MEMBERS} members; {at_kill} sent before the kill, "
              f"{len(sends)} messaged in all; duplicated {duplicated}; deliveries {dict(tally)}")
        assert duplicated == 0
        interrupted = tally["failed:interrupted"]
        assert tally["sent"] + interrupted == MEMBERS
        assert interrupted <= MEMBERS // 10  # at most one per chunk the dead process held
        assert tally["sent"] <= len(sends) <= tally["sent"] + interrupted
        assert len(done_notes(wechat_api)) == 1  # the marketer's final tally, once
    finally:
        doomed.kill()
        if rescuer is not None:
            rescuer.stop()
        db.client.close()
