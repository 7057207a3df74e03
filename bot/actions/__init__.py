"""Rasa custom actions, run inside the app process next to the store.

There is one: `action_flow`, which hands every turn to the flow engine. Actions are
ordinary rasa-sdk `Action` classes that get their dependencies through the constructor and
are registered as instances on the app's `ActionExecutor`.
"""

from __future__ import annotations

from rasa_sdk.executor import ActionExecutor

from bot.actions.flow import ActionFlow
from bot.flows.engine import FlowEngine
from bot.points import Points

__all__ = ["ActionFlow", "register_actions"]


def register_actions(executor: ActionExecutor, engine: FlowEngine, points: Points) -> None:
    executor.register_action(ActionFlow(engine, points))
