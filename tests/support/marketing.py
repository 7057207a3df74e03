"""Marketing test helpers: seeded member profiles, the admin who runs commands, and waits
on campaigns reaching a state."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.conftest import APP_ID
from tests.support.chat import Chat

SHANGHAI = ZoneInfo("Asia/Shanghai")
BOSS = "o_boss_admin"


def marketing(**over: Any) -> dict[str, Any]:
    # No quiet hours unless a test asks: the suite must pass at any time of day.
    return {"admins": [BOSS], "quiet_hours": "", "rate_per_second": 200.0, **over}


def member_doc(i: int, *, city: str = "上海", tags: list[str] | None = None,
               last_seen: timedelta = timedelta(hours=1), follow: str = "subscribed",
               due: date | None = None, nickname: str | None = None,
               month_count: int | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    openid = f"o_m{i:04d}"
    doc: dict[str, Any] = {
        "_id": uuid.uuid4().hex, "identity_keys": [f"wechat:{APP_ID}:{openid}"],
        "identities": [{"channel": "wechat", "app_id": APP_ID, "openid": openid,
                        "unionid": None}],
        "first_seen": now - timedelta(days=30), "last_seen": now - last_seen,
        "follow": {"state": follow, "changed_at": now}, "counters": {"inbound": 3},
        "tags": tags or [], "lang": "zh",
        "fields": {"nickname": nickname or f"妈妈{i}", "mobile": f"139{i:08d}", "city": city,
                   "role": "expecting"},
        "member": {"id": f"M{i:010X}", "tier": "普通", "stage": "pregnant"},
        "consents": {"privacy": {"accepted": True, "version": "2026-11", "at": now},
                     "sensitive": {"accepted": True, "version": "2026-11", "at": now}},
    }
    if due is not None:
        doc["fields"]["due_date"] = due.isoformat()
    if month_count is not None:
        doc["broadcasts"] = {datetime.now(SHANGHAI).strftime("%Y-%m"): month_count}
    return doc


async def seed(app, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members as if they had lived: stored, and those who wrote within WeChat's 48 h hold
    the budget her last message opened, in WeChat (the fake) and in the app's count."""
    await app.store._db["profiles"].insert_many([dict(d) for d in docs])
    await wrote(app, docs)
    return docs


async def budgets_open(namespace: str, openids: list[str], fake) -> None:
    """Members of app processes elsewhere wrote just now: their budgets are open in the
    processes' Redis (with the WeChat outlet's numbers) and in WeChat (the fake)."""
    from redis.asyncio import Redis

    from bot.allowance import ContactAllowance, Grant
    from store.keys import Keys
    from store.records import identity_key
    from store.redis_state import RedisAllowances
    from webhooks.wechat.outlet import MESSAGE_SENDS

    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        allowance = ContactAllowance(RedisAllowances(redis, Keys(namespace)),
                                     {"message": Grant(MESSAGE_SENDS, 48 * 3600)})
        for openid in openids:
            await allowance.heard(identity_key("wechat", APP_ID, openid), "message")
            fake.heard(openid)
    finally:
        await redis.aclose()


async def wrote(app, docs: list[dict[str, Any]]) -> None:
    """Each of them wrote at her `last_seen` (if within 48 h): her budget is open."""
    now = datetime.now(UTC)
    outlet = app.services.wechat if hasattr(app, "services") else app.outlet
    fake = app.wechat
    for d in docs:
        seen = d.get("last_seen")
        if seen is None or seen.replace(tzinfo=UTC) < now - timedelta(hours=48):
            continue
        for ident in d.get("identities", []):
            if fake is not None:
                fake.heard(ident["openid"], at=seen.replace(tzinfo=UTC).timestamp())
            await outlet.budget.heard(outlet.address(ident["openid"]), "message")


async def boss(app) -> Chat:
    chat = Chat(app, BOSS)
    await chat.say("你好")  # her profile exists once she has written
    return chat


def texts_to(wechat_api, openid: str) -> list[str]:
    return [c.body["text"]["content"] for c in wechat_api.delivered()
            if c.body.get("touser") == openid and "text" in c.body]


async def until(predicate, timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def status_of(app, bid: str) -> str:
    doc = await app.store.campaigns.get(bid)
    return str(doc["status"]) if doc else "none"


def bid_in(text: str) -> str:
    return text.split("预览 ", 1)[1].split("（", 1)[0]


async def audit(app, command: str | None = None) -> list[dict[str, Any]]:
    log = await app.store.audit.latest(100)
    return [a for a in log if command is None or a["command"] == command]


def member_sends(wechat_api) -> list[Any]:
    return [c for c in wechat_api.delivered() if c.body.get("touser") != BOSS]
