"""Redis restarted under the running app (a test-owned redis-server on its own port): no 5xx
while it is down, the app recovers by itself, and late replies flow again through a new
job worker, with no duplicate customer-service send."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import redis as redis_sync

from scrm.follower import Follower
from tests.conftest import APP_PORT, TOKEN, free_port, make_settings

pytestmark = pytest.mark.rasa  # redis-server itself is installed by .ci/run if missing


def start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis_sync.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis_sync.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def test_redis_restart(start_app, namespace, rasa_proxy, wechat_api):
    port = free_port()
    server = start_redis(port)
    try:
        app = await start_app(make_settings(
            namespace, rasa_proxy.url, wechat_api.url, app={"budget_seconds": 0.8},
            redis={"url": f"redis://127.0.0.1:{port}/0"}), port=APP_PORT)
        f = Follower(token=TOKEN, openid="o_redis")

        async def say(text: str) -> tuple[int, str]:
            status, body = await app.post_wechat(*f.request(f.text(text)))
            return status, f.read_reply(body).get("Content", body)

        assert "姐妹社区" in (await say("你好"))[1]
        server.terminate()
        server.wait(10)
        down = [await say("你好") for _ in range(3)]
        assert [status for status, _ in down] == [200, 200, 200]  # never a 5xx to WeChat
        assert all(body in ("success", "") or "稍后" in body for _, body in down)

        server = start_redis(port)  # back, empty: it keeps nothing on disk
        await asyncio.sleep(1.5)  # the job worker's supervisor starts a new worker
        assert "姐妹社区" in (await say("你好"))[1]  # recovered, without an app restart
        rasa_proxy.delay_for["谢谢"] = 1.5  # slower than the 0.8 s budget: a late reply
        assert await say("谢谢") == (200, "success")
        sends = await wechat_api.wait_sends(1, timeout=10)
        await asyncio.sleep(0.5)
        texts = [s.body["text"]["content"] for s in wechat_api.sends()]
        print(f"\nredis restart: down-time answers {down}, late sends after restart {texts}")
        assert len(sends) == 1 and "不客气" in texts[0]
    finally:
        server.terminate()
        server.wait(10)
