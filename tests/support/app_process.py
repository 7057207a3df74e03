"""`scrm serve` as a real OS process: its own environment and loopback port, ready when
/healthz says so, always stopped, and its log kept so a failing test can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ROOT, free_port, scrm_bin


def loopback_config(folder: Path) -> Path:
    """config.yml with the app bound to 127.0.0.1 (the shipped file listens on 0.0.0.0,
    and a test must not open a port beyond loopback)."""
    text, n = re.subn(r"(?m)^(  host:[ \t]*)\S+", r"\g<1>127.0.0.1",
                      (ROOT / "config.yml").read_text())
    assert n == 1, "config.yml: expected exactly one `  host:` line under app:"
    path = folder / "config.yml"
    path.write_text(text)
    return path


@dataclass
class AppProcess:
    """One `scrm serve` process. Everything it prints goes to `log_path`."""

    name: str
    config: Path
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        with self.log_path.open("wb") as log:
            # Its own session: a Ctrl-C in the terminal reaches pytest, which stops it.
            self.proc = subprocess.Popen(
                [scrm_bin(), "--config", str(self.config), "serve", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    async def wait_healthy(self, timeout: float, rasa: bool = True) -> None:
        """Until /healthz answers 200 (or, with `rasa=False`, says the store and Redis are
        up); fails with the log tail if it exits or never does."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with s.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                        checks = await resp.json(content_type=None)
                        if not rasa and checks.get("redis") == "ok" and \
                                checks.get("mongo") in ("ok", "embedded"):
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"app process {self.name} not healthy (exit code "
                             f"{self.proc.poll()}); log tail:\n{self.tail()}")

    def stop(self, grace: float = 20) -> int | None:
        """SIGTERM (the app drains and closes), SIGKILL if it does not exit in `grace`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the process ends where it is, nothing cleaned up (a crash, an OOM kill)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, chars: int = 6000) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-chars:]


def app_env(**values: Any) -> dict[str, str]:
    """The process environment: ours plus `values`; no .env file, so nothing leaks in."""
    env = {**os.environ, "SCRM_ENV_FILE": "/dev/null"}
    env.update({k: "" if v is None else str(v) for k, v in values.items()})
    return env
