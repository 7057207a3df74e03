"""What the bot knows about the member asking: `action_whoami`."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from store.protocols import Store


class ActionWhoAmI(Action):  # type: ignore[misc]  # rasa-sdk ships no type stubs
    def __init__(self, store: Store) -> None:
        self._store = store

    def name(self) -> str:
        return "action_whoami"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        metadata = tracker.latest_message.get("metadata") or {}
        profile_id = metadata.get("profile_id")
        profile = await self._store.profiles.get(str(profile_id)) if profile_id else None
        if profile is None:
            dispatcher.utter_message(json_message={"template": "whoami_unknown"})
            return []
        messages = await self._store.interactions.count(profile["_id"])
        dispatcher.utter_message(json_message={
            "template": "whoami",
            "vars": {
                "first_seen": profile["first_seen"].date().isoformat(),
                "messages": messages,
                "tags": list(profile.get("tags", [])),
            },
        })
        return []
