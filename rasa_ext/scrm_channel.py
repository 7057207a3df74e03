"""A Rasa input channel that answers with the bot's messages and the intent it acted on.

Rasa's REST channel returns only the messages; learning the intent would cost a second
request that reloads the whole tracker. This channel runs the same steps as Rasa 3.6.21's
`MessageProcessor.handle_message` (3.6.21 is the final open-source release, so these
internals no longer move) under the same per-conversation lock, and keeps the tracker it
built to read `latest_message` from.

POST /webhooks/scrm/webhook {"sender", "message", "metadata"}
  -> {"messages": [...as the REST channel...], "intent": {"name", "confidence"}}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse


async def _handle(processor: Any, message: UserMessage) -> Any:
    tracker = await processor.log_message(message, should_save_tracker=False)
    tracker = await processor.run_action_extract_slots(message.output_channel, tracker)
    await processor._run_prediction_loop(message.output_channel, tracker)
    await processor.run_anonymization_pipeline(tracker)
    await processor.save_tracker(tracker)
    return tracker


class ScrmInput(RestInput):
    @classmethod
    def name(cls) -> str:
        return "scrm"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("scrm_webhook", __name__)

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = request.json or {}
            sender, text = body.get("sender"), body.get("message")
            if not isinstance(sender, str) or not isinstance(text, str):
                return response.json({"error": "sender and message are required"}, status=400)
            agent = request.app.ctx.agent
            if agent is None or not agent.is_ready():
                return response.json({"error": "no model loaded"}, status=503)
            collector = CollectingOutputChannel()
            message = UserMessage(text, collector, sender, input_channel=self.name(),
                                  metadata=body.get("metadata"))
            async with agent.lock_store.lock(sender):
                tracker = await _handle(agent.processor, message)
            intent = (tracker.latest_message.intent or {}) if tracker.latest_message else {}
            return response.json({
                "messages": collector.messages,
                "intent": {"name": intent.get("name"), "confidence": intent.get("confidence")},
            })

        return bp
