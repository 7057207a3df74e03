"""POST /webhooks/json: a generic JSON channel, signed with HMAC-SHA256 of the body.

Body: {"sender": "...", "text": "...", "id": "optional, dedupes retries"}. The answer is
{"replies": [...], "late": false}; when the budget runs out, {"replies": [], "late": true}
and the replies are recorded on the profile only (this channel cannot push).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.conversation.orchestrator import Orchestrator
from bot.messages import InboundMessage
from bot.metrics import Metrics
from store.state import Dedupe
from webhooks.signing import signed


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        # {"sender": "a", "sender": "admin"}: which one is meant? Neither is taken.
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def strict_json(body: bytes) -> Any:
    """The body as JSON, refusing duplicate keys and absurd nesting (ValueError)."""
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"bad JSON: {e}"[:200]) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@:-]+$")
    text: str = Field(min_length=1, max_length=2048)
    id: str | None = Field(None, min_length=1, max_length=128)


class JsonChannel:
    name = "json"

    def __init__(self, secret: str, header: str, budget: float, dedupe: Dedupe,
                 orchestrator: Orchestrator, metrics: Metrics) -> None:
        self._secret = secret.encode()
        self._header = header
        self._budget = budget
        self._dedupe = dedupe
        self._orchestrator = orchestrator
        self._metrics = metrics

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [web.post("/webhooks/json", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        body = await request.read()
        given = request.headers.get(self._header, "")
        if not signed(self._secret, body, given):
            raise web.HTTPForbidden(text="invalid signature")
        try:
            data = _Body.model_validate(strict_json(body))
        except (ValueError, ValidationError) as e:
            first = e.errors()[0] if isinstance(e, ValidationError) else None
            reason = (f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first
                      else str(e) or "bad JSON")
            return web.json_response({"error": reason}, status=400)
        msg = InboundMessage(
            channel="json", app_id="default", sender=data.sender, kind="text",
            # The sender is part of the key: an id reused by another sender is her own message.
            dedupe_key=f"json:{data.sender}:{data.id or uuid.uuid4().hex}",
            created_at=datetime.now(UTC),
            text=data.text,
        )
        if not await self._dedupe.claim(msg.dedupe_key):
            self._metrics.dedupe_hits.labels(self.name).inc()
            earlier = await self._dedupe.wait_result(msg.dedupe_key, self._budget)
            return web.json_response(json.loads(earlier) if earlier else {"replies": [],
                                                                          "late": True})
        turn = self._orchestrator.start(msg, received)
        replies = await turn.answer(self._budget - (time.monotonic() - received))
        answer: dict[str, Any] = {
            "replies": [r.model_dump(mode="json") for r in replies or []],
            "late": replies is None,
        }
        await self._dedupe.publish(msg.dedupe_key, json.dumps(answer, ensure_ascii=False))
        return web.json_response(answer)
