"""Journeys that community managers write in YAML (`flows/*.yml`), checked and interpreted.

Flows are interpreted by the app (one generic Rasa action hands each turn to the engine),
not compiled into Rasa domain/rules/forms: a changed flow then needs no retraining, only
NLU data does, and a reload swaps one Python object.
"""
