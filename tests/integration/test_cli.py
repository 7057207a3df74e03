"""The `scrm` command as a user runs it: up -> ready, chat, profile show, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import pytest

from tests.conftest import ADMIN, ROOT, TOKEN, closed_port_url, free_port, run_scrm, scrm_bin

pytestmark = pytest.mark.rasa


def env_for(port: int, **extra: str) -> dict[str, str]:
    # A WeChat AppSecret or API base from the shell would turn `scrm up`'s sandbox off.
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("WECHAT_APP_SECRET", "WECHAT_API_BASE")}
    return {**inherited, "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": "wx-cli",
            "SCRM_ADMIN_TOKEN": ADMIN, "SCRM_REDIS_NAMESPACE": f"test-cli-{uuid.uuid4().hex[:8]}",
            "SCRM_LOG_LEVEL": "WARNING", "SCRM_ENV_FILE": "/dev/null", **extra}


def wait_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} within {timeout}s; output: {''.join(seen)[-2000:]}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def scrm_up(env: dict[str, str], port: int, rasa_port: int,
            sandbox_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([scrm_bin(), "up", "--port", str(port), "--rasa-port",
                             str(rasa_port), "--sandbox-port", str(sandbox_port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def test_up_chat_profile_and_stop(rasa_server):
    port, rasa_port, sandbox_port = free_port(), free_port(), free_port()
    env = env_for(port)
    proc = scrm_up(env, port, rasa_port, sandbox_port)
    try:
        ready = wait_line(proc, "ready", 240)
        assert f"http://127.0.0.1:{port}/wechat" in ready and str(rasa_port) in ready
        chat = run_scrm("chat", "--url", f"http://127.0.0.1:{port}", "--openid", "o_cli",
                        "--sandbox", f"http://127.0.0.1:{sandbox_port}", env=env,
                        input_text=":follow\n算了\n你好\n我的资料\nhello\n:quit\n")
        assert chat.returncode == 0, chat.stderr
        out = chat.stdout
        assert "欢迎加入姐妹社区" in out and "隐私政策" in out  # a follow starts sign-up
        assert "已取消" in out and "姐妹社区的小助手" in out
        # follow, 算了, 你好 (in and out each) and this inbound: the action read the store.
        assert "共 7 条消息记录" in out
        assert "sister-community assistant" in out
        show = run_scrm("profile", "show", "o_cli", "--url", f"http://127.0.0.1:{port}",
                        env=env)
        assert show.returncode == 0, show.stderr
        assert "identity   wechat:wx-cli:o_cli" in show.stdout
        assert "follow     subscribed" in show.stdout and "greet" in show.stdout
        as_json = run_scrm("profile", "show", "o_cli", "--json", "--url",
                           f"http://127.0.0.1:{port}", env=env)
        data = json.loads(as_json.stdout)
        assert data["profile"]["counters"] == {"inbound": 5, "outbound": 5}
        assert len(data["interactions"]) == 10
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert not port_open(port) and not port_open(rasa_port) and not port_open(sandbox_port)


def test_sandbox_shows_what_the_bot_sends_in_chat(rasa_server):
    """Without an AppSecret, `scrm up` runs the WeChat API sandbox: a marketer's broadcast,
    its progress and tally, and a referral QR code all reach `scrm chat`."""
    port, rasa_port, sandbox_port = free_port(), free_port(), free_port()
    env = env_for(port, SCRM_ADMINS="o_boss", SCRM_QUIET_HOURS="off")
    proc = scrm_up(env, port, rasa_port, sandbox_port)
    try:
        ready = wait_line(proc, "ready", 240)
        assert f"WeChat API sandbox http://127.0.0.1:{sandbox_port}" in ready
        url = f"http://127.0.0.1:{port}"
        sandbox = ("--sandbox", f"http://127.0.0.1:{sandbox_port}")
        # A member who wrote today (inside WeChat's 48-hour window) asks for her QR code.
        signup = run_scrm("chat", "--url", url, "--openid", "o_fan", *sandbox, env=env,
                          input_text=":follow\n同意\n同意\n小美\n13812345678\n1\n"
                                     "2027-03-25\n上海\n邀请好友\n")
        assert "注册成功" in signup.stdout, signup.stdout
        assert "showqrcode?ticket=TICKET-ref_" in signup.stdout  # the QR the sandbox made
        first = run_scrm("chat", "--url", url, "--openid", "o_boss", *sandbox, env=env,
                         input_text="/broadcast all | 周末亲子活动报名开始啦\n")
        assert first.returncode == 0, first.stderr
        match = re.search(r"/confirm (\S+)", first.stdout)
        assert match, first.stdout
        fan = subprocess.Popen([scrm_bin(), "chat", "--url", url, "--openid", "o_fan",
                                *sandbox, "--wait", "5"], cwd=ROOT, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        # Her chat listens (it says so) before the broadcast goes.
        wait_line(fan, "sandbox connected", 30)
        second = run_scrm("chat", "--url", url, "--openid", "o_boss", *sandbox, "--wait", "10",
                          env=env, input_text=f"/confirm {match.group(1)}\n")
        out, _ = fan.communicate("", timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "bot (客服消息)> 周末亲子活动报名开始啦" in out
    assert out.count("周末亲子活动报名开始啦") == 1  # once, never twice
    assert "已确认" in second.stdout
    assert "bot (客服消息)>" in second.stdout and "发送完成" in second.stdout


def test_serve_alone_apologises_when_rasa_is_down_and_stops_on_sigint():
    port = free_port()
    env = env_for(port, RASA_URL=closed_port_url())
    proc = subprocess.Popen([scrm_bin(), "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_line(proc, "ready", 30)
        chat = run_scrm("chat", "--url", f"http://127.0.0.1:{port}", env=env,
                        input_text="你好\n")
        assert "稍后再试" in chat.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
    assert code == 0 and not port_open(port)


def test_bad_config_fails_fast_naming_the_key():
    env = {k: v for k, v in os.environ.items() if k != "WECHAT_TOKEN"}
    result = run_scrm("serve", env={**env, "WECHAT_APP_ID": "x", "SCRM_ENV_FILE": "/dev/null"},
                      timeout=30)
    assert result.returncode != 0
    assert "wechat.token" in result.stderr and "WECHAT_TOKEN is not set" in result.stderr


def test_profile_show_explains_an_unreachable_server():
    result = run_scrm("profile", "show", "o_x", "--url", closed_port_url(),
                      env=env_for(1), timeout=30)
    assert result.returncode != 0 and "cannot reach" in result.stderr
