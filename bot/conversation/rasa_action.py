"""`action_flow`: the one Rasa custom action, served in the app process by rasa-sdk's
executor. Rasa recognises the intent; the flow engine decides.

Rasa's rules send every intent here (they are generated at training time), and this action
hands the turn to the engine with what Rasa parsed and what the app put in the metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from bot.brand_calendar import BrandCalendar
from bot.flow_engine.actions import TurnInput
from bot.flow_engine.engine import FlowEngine


class ActionFlow(Action):  # type: ignore[misc]  # rasa-sdk ships no type stubs
    def __init__(self, engine: FlowEngine, calendar: BrandCalendar) -> None:
        self._engine = engine
        self._calendar = calendar

    def name(self) -> str:
        return "action_flow"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        latest = tracker.latest_message or {}
        metadata = latest.get("metadata") or {}
        profile_id = metadata.get("profile_id")
        if not profile_id:
            dispatcher.utter_message(json_message={"template": "fallback"})
            return []
        intent = latest.get("intent") or {}
        text = str(latest.get("text") or "")
        now = datetime.now(UTC)
        says = await self._engine.turn(TurnInput(
            profile_id=str(profile_id),
            text="" if text.startswith("/") else text,  # "/subscribe" is ours, not the member's
            intent=intent.get("name"), confidence=intent.get("confidence"),
            now=now, today=self._calendar.today(now),
            event=metadata.get("event"), event_key=metadata.get("event_key"),
            source=metadata.get("source"), tester=bool(metadata.get("tester")),
        ))
        for say in says:
            dispatcher.utter_message(json_message={"template": say.template, "vars": say.vars})
        return []


def action_executor(engine: FlowEngine, calendar: BrandCalendar) -> ActionExecutor:
    """rasa-sdk's executor with the app's one action registered (as an instance)."""
    executor = ActionExecutor()
    executor.register_action(ActionFlow(engine, calendar))
    return executor
