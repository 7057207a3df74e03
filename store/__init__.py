"""Persistence: MongoDB repositories (motor, or the embedded engine) and Redis state.

Nothing here knows about channels or Rasa; callers pass plain records and keys.
"""
