"""Rasa custom actions, run inside the app process next to the store.

Actions are ordinary rasa-sdk `Action` classes; they get their dependencies through the
constructor and are registered as instances on the app's `ActionExecutor`. They speak in
template names (`json_message={"template": ...}`), rendered later in the member's language.
"""

from __future__ import annotations

from rasa_sdk.executor import ActionExecutor

from bot.actions.profile import ActionWhoAmI
from bot.templates import TemplateLibrary
from store.protocols import Store

__all__ = ["ActionWhoAmI", "register_actions"]


def register_actions(executor: ActionExecutor, store: Store, templates: TemplateLibrary) -> None:
    executor.register_action(ActionWhoAmI(store))
