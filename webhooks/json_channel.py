"""POST /webhooks/json: a generic JSON channel, signed with HMAC-SHA256 of the body.

Body: {"sender": "...", "text": "...", "id": "optional, dedupes retries"}. The answer is
{"replies": [...], "late": false}; when the budget runs out, {"replies": [], "late": true}
and the replies are recorded on the profile only (this channel cannot push).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.messages import InboundMessage
from webhooks.channels import register_channel
from webhooks.services import Services


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@:-]+$")
    text: str = Field(min_length=1, max_length=2048)
    id: str | None = Field(None, min_length=1, max_length=128)


class JsonChannel:
    name = "json"
    late_sender = None
    job_functions: Sequence[Any] = ()

    def __init__(self, services: Services, secret: str) -> None:
        self._svc = services
        self._secret = secret.encode()
        self._header = services.settings.json_channel.header
        self._budget = services.settings.app.budget_seconds

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [web.post("/webhooks/json", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        body = await request.read()
        given = request.headers.get(self._header, "")
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().removeprefix("sha256="), expected):
            raise web.HTTPForbidden(text="invalid signature")
        try:
            data = _Body.model_validate(json.loads(body))
        except (ValueError, ValidationError) as e:
            first = e.errors()[0] if isinstance(e, ValidationError) else None
            reason = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else "bad JSON"
            return web.json_response({"error": reason}, status=400)
        msg = InboundMessage(
            channel="json", app_id="default", sender=data.sender, kind="text",
            dedupe_key=f"json:{data.id or uuid.uuid4().hex}", created_at=datetime.now(UTC),
            text=data.text,
        )
        svc = self._svc
        if not await svc.dedupe.claim(msg.dedupe_key):
            svc.metrics.dedupe_hits.labels(self.name).inc()
            earlier = await svc.dedupe.wait_result(msg.dedupe_key, self._budget)
            return web.json_response(json.loads(earlier) if earlier else {"replies": [],
                                                                          "late": True})
        turn = svc.orchestrator.start(msg, received)
        replies = await turn.answer(self._budget - (time.monotonic() - received))
        answer: dict[str, Any] = {
            "replies": [r.model_dump(mode="json") for r in replies or []],
            "late": replies is None,
        }
        await svc.dedupe.publish(msg.dedupe_key, json.dumps(answer, ensure_ascii=False))
        return web.json_response(answer)


@register_channel("json")
def build(services: Services) -> JsonChannel | None:
    secret = services.settings.json_channel.secret
    return JsonChannel(services, secret) if secret else None
