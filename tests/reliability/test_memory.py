"""Memory: the app keeps nothing per message beyond the records it stores.

The soak (bench/soak.py) runs the embedded MongoDB engine inside the app's process, so the
app's RSS grows with every stored interaction by design; RSS alone cannot tell a leak from
data. This test can: an in-process app against the real Rasa server takes 1,500 warm-up
messages, then 1,000 measured ones from 200 followers, posted by a load generator in its
own process (tests/support/load.py), under tracemalloc. The records written during the
measured phase are deleted again, and the heap the app still holds (leaving out only the
embedded engine's own tables, whose dicts keep their size after deletes) is what it kept.

The limit, 350 B a message, is the soak's target read per message: 10 % of the app's
starting RSS (about 100 MiB) spread over the 30,000 messages of 10 minutes at 50 msg/s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import tracemalloc
from typing import Any

import pytest

from tests.conftest import APP_PORT, ROOT, TOKEN, make_settings

pytestmark = pytest.mark.rasa

FOLLOWERS = 200
WARMUP = 300
PRIMER = 1200
MEASURED = 1000
LIMIT_BYTES_PER_MESSAGE = 350

# The embedded engine's internal tables: dicts and sets keep their size after deletes.
# (tests/contract/test_embedded_index.py checks its maps against rebuilt ones.)
ENGINE = ["*/mongomock/*", "*/mongomock_motor/*", "*/store/embedded.py", __file__,
          # and the fake WeChat API in this process, which keeps its own records
          "*/scrm/sandbox.py", "*/tests/support/fake_wechat.py"]


async def _send(url: str, n: int, seed: int, wechat: str) -> None:
    """n messages from the load generator process; every one must get a 200."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.load", url, str(n), "--token", TOKEN,
        "--followers", str(FOLLOWERS), "--prefix", "o_mem", "--seed", str(seed),
        "--wechat", wechat, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]


async def _ids(db: Any) -> dict[str, list[Any]]:
    return {name: [d["_id"] for d in await db[name].find({}, {"_id": 1}).to_list(None)]
            for name in await db.list_collection_names()}


@pytest.fixture
def quiet_root():
    """pytest keeps every captured log record of a test in memory, for its report: at INFO
    that is the test's own growth, not the app's, so this one logs warnings only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)


# On SecantusDB (pure Python, ~20-30 ms a write) under tracemalloc, 2,500 messages take
# 4-6 minutes on 2 cores: this test's time is the database's, not the app's.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["embedded", pytest.param("secantus",
                                                               marks=pytest.mark.server)])
async def test_the_app_keeps_nothing_per_message(start_app, namespace, rasa_server,
                                                 quiet_root, backend, request, wechat_api):
    mongodb = {} if backend == "embedded" else {
        "url": request.getfixturevalue("secantus_url"), "database": namespace.replace("-", "_")}
    # Late answers (the database server is slow) go to a WeChat that takes them, as in
    # production: a send that fails and is retried would keep its traceback in the log.
    wechat_api.keep_calls = 100
    app = await start_app(make_settings(namespace, rasa_server, wechat_api.url,
                                        mongodb=mongodb), port=APP_PORT)
    url = f"http://127.0.0.1:{APP_PORT}"
    db = app.store._db  # the embedded engine's database: the test deletes what it wrote
    await _send(url, WARMUP, 1, wechat_api.url)
    tracemalloc.start(12)
    try:
        # Traced before the start snapshot, so that bounded caches (yarl keeps the last
        # 1,024 parsed queries) replace traced entries and do not look like growth.
        await _send(url, PRIMER, 2, wechat_api.url)
        await app.services.core.orchestrator.drain(10)
        before = await _ids(db)
        gc.collect()
        start = tracemalloc.take_snapshot()
        await _send(url, MEASURED, 3, wechat_api.url)
        await app.services.core.orchestrator.drain(10)
        stored = sum(len(v) for v in (await _ids(db)).values()) - sum(
            len(v) for v in before.values())
        for name, ids in before.items():
            await db[name].delete_many({"_id": {"$nin": ids}})
        gc.collect()
        end = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    filters = [tracemalloc.Filter(False, p, all_frames=True) for p in ENGINE]
    diff = end.filter_traces(filters).compare_to(start.filter_traces(filters), "traceback")
    kept = sum(d.size_diff for d in diff)
    per_message = kept / MEASURED
    print(f"\nmemory: {MEASURED} messages ({stored} records stored, then deleted); the app "
          f"kept {kept / 1024:.1f} KiB = {per_message:.0f} B per message "
          f"(limit {LIMIT_BYTES_PER_MESSAGE}). Largest:")
    for d in diff[:5]:
        print(f"  {d.size_diff / 1024:7.1f} KiB in {d.count_diff:5d} blocks, allocated at "
              f"{d.traceback[-1]}")
    assert stored >= 2 * MEASURED  # every message and its reply were recorded
    assert per_message < LIMIT_BYTES_PER_MESSAGE
