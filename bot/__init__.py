"""The channel-free core: orchestrator, Rasa client, actions, templates and settings."""
