"""WeChat retry storm: each message posted 4 times at once, then again at +5, +10, +15 s
(WeChat's retries), against the real Rasa server: exactly one Rasa call, one stored inbound
and one reply per message, and every copy answered the same."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from scrm.follower import Follower
from tests.conftest import APP_PORT, TOKEN, make_settings

pytestmark = pytest.mark.rasa

MESSAGES = 200


async def test_retry_storm(start_app, namespace, rasa_proxy):
    app = await start_app(make_settings(namespace, rasa_proxy.url), port=APP_PORT)
    # 50 followers with 4 messages each: per-follower order is exercised too.
    requests = []
    for i in range(MESSAGES):
        f = Follower(token=TOKEN, openid=f"o_storm_{i % 50:02d}")
        requests.append(f.request(f.text(["你好", "谢谢", "帮助", "再见"][i // 50])))
    answers: dict[int, set[str]] = {i: set() for i in range(MESSAGES)}
    statuses: Counter[int] = Counter()

    async def post(i: int) -> None:
        status, body = await app.post_wechat(*requests[i])
        statuses[status] += 1
        answers[i].add(body)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(post(i) for i in range(MESSAGES) for _ in range(4)))
    for at in (5, 10, 15):  # WeChat's retries, with the same signature and MsgId
        await asyncio.sleep(max(0.0, started + at - loop.time()))
        await asyncio.gather(*(post(i) for i in range(MESSAGES)))
    await app.services.core.orchestrator.drain(10)

    sent = MESSAGES * 7
    rasa_calls = len(rasa_proxy.turns)
    inbound = sum([await app.store.interactions.count(p["_id"])
                   for p in [await app.store.profiles.find_by_identity(
                       "wechat", app.services.settings.wechat.app_id, f"o_storm_{k:02d}")
                       for k in range(50)]])
    distinct = [len(a) for a in answers.values()]
    print(f"\nretry storm: {MESSAGES} messages, {sent} posts, statuses {dict(statuses)}, "
          f"Rasa calls {rasa_calls}, stored interactions {inbound} "
          f"(in + out), answers per message distinct: {Counter(distinct)}")
    assert statuses == Counter({200: sent})
    assert rasa_calls == MESSAGES  # one NLU call per message, none per retry
    assert inbound == 2 * MESSAGES  # one inbound and one reply each, nothing duplicated
    assert all(n == 1 for n in distinct)  # every copy of a message got the same answer
    assert all("success" not in a for a in answers.values())  # answered within the budget
