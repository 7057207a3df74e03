"""A load generator in its own process: signed WeChat texts from scripted followers.

`python -m tests.support.load URL N` posts N messages to URL/wechat, 16 at a time, from
--followers followers in turn; exits 1 unless every post got a 200. A separate process, so
that a test measuring the app's memory under tracemalloc measures only the app.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

import aiohttp

from scrm.follower import Follower

TEXTS = ["你好", "我的积分", "签到", "帮助", "宝宝晚上总是哭怎么办", "谢谢", "今天天气真好", "再见"]


async def run(url: str, n: int, followers: list[Follower], seed: int,
              wechat: str | None = None) -> list[int]:
    """`wechat`: the fake WeChat API's URL, told of each message first (as WeChat sees it
    pass), so the app's late answers stay within each follower's budget there."""
    rng = random.Random(seed)
    texts = [rng.choice(TEXTS) for _ in range(n)]
    sem = asyncio.Semaphore(16)
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> None:
            f = followers[i % len(followers)]  # every follower in turn
            query, body = f.request(f.text(texts[i]))
            async with sem:
                if wechat:
                    async with session.post(f"{wechat}/sandbox/inbound", json={
                            "openid": f.openid, "kind": "message"}) as told:
                        assert told.status == 200
                async with session.post(f"{url}/wechat?{query}", data=body.encode()) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("n", type=int)
    p.add_argument("--followers", type=int, default=200)
    p.add_argument("--prefix", default="o_load")
    p.add_argument("--token", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--wechat", default=None, help="the fake WeChat API to tell of messages")
    a = p.parse_args()
    followers = [Follower(token=a.token, openid=f"{a.prefix}_{k:03d}")
                 for k in range(a.followers)]
    statuses = asyncio.run(run(a.url, a.n, followers, a.seed, a.wechat))
    bad = [s for s in statuses if s != 200]
    print(f"posted {len(statuses)}, not 200: {len(bad)}")
    sys.exit(1 if bad or len(statuses) != a.n else 0)


if __name__ == "__main__":
    main()
