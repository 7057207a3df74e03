"""Rasa killed under the running app and started again: the apology within the budget and
never a 5xx while it is gone, and answers again by themselves once it is back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from scrm import rasa_proc
from scrm.follower import Follower
from tests.conftest import APP_PORT, ROOT, TOKEN, free_port, make_settings

pytestmark = pytest.mark.rasa


def start(port: int):
    model = rasa_proc.train(ROOT, quiet=True)
    log = rasa_proc.cache_dir() / "logs" / f"rasa-restart-{port}.log"
    proc = rasa_proc.start_rasa(ROOT, model, port, f"http://127.0.0.1:{APP_PORT}/rasa/webhook",
                                log)
    assert rasa_proc.wait_http(f"http://127.0.0.1:{port}/status", 240, proc), "Rasa down"
    return proc


async def test_rasa_killed_and_restarted(start_app, namespace):
    port = free_port()
    rasa = await asyncio.to_thread(start, port)
    try:
        app = await start_app(make_settings(namespace, f"http://127.0.0.1:{port}"),
                              port=APP_PORT)
        f = Follower(token=TOKEN, openid="o_rasa_restart")
        loop = asyncio.get_running_loop()

        async def say(text: str) -> tuple[int, str, float]:
            started = loop.time()
            status, body = await app.post_wechat(*f.request(f.text(text)))
            return status, f.read_reply(body).get("Content", body), loop.time() - started

        assert "姐妹社区" in (await say("你好"))[1]
        os.killpg(rasa.pid, signal.SIGKILL)  # killed, not stopped: no goodbye
        rasa.wait(10)
        while_down = [await say("你好") for _ in range(3)]
        budget = app.services.settings.app.budget_seconds
        assert all(status == 200 and "稍后再试" in text and took < budget
                   for status, text, took in while_down), while_down

        rasa = await asyncio.to_thread(start, port)  # back on the same address
        status, text, _ = await say("谢谢")
        print(f"\nrasa restart: while down {[(s, t[:12], round(d, 2)) for s, t, d in while_down]}"
              f", after restart {status} {text[:12]}")
        assert status == 200 and "不客气" in text  # recovered without an app restart
    finally:
        rasa_proc.stop(rasa)
