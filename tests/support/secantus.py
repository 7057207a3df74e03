"""A SecantusDB server as a test's own process: a single-node MongoDB wire-protocol server
over WiredTiger (`secantusd-py`, PyPI SecantusDB, GPL-2.0, so never imported: only run).

Started, stopped cleanly or killed with SIGKILL, and started again on the same data
directory, so the tests can see what a real database process does to the app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.conftest import free_port

BINARY = Path(sys.executable).parent / "secantusd-py"


class SecantusServer:
    def __init__(self, data_dir: Path | None = None, port: int | None = None,
                 log: Path | None = None) -> None:
        self.data_dir = data_dir  # None: a throwaway in-memory directory
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 30.0) -> SecantusServer:
        storage = str(self.data_dir) if self.data_dir is not None else ":memory:"
        with open(self.log or os.devnull, "ab") as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [str(BINARY), "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", storage], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with {self.proc.returncode}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"secantusd-py did not answer on port {self.port}")

    def ready(self) -> bool:
        client: MongoClient[dict[str, object]] = MongoClient(
            self.url, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as an out-of-memory kill or a power cut would end it."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
