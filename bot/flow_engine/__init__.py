"""The engine that runs the journeys community managers write in `flows/*.yml`: the loader
and checker, the immutable model, the live registry, slot validators and templates.

(`flows/` is the YAML; this package is the code that reads and runs it.)

Flows are interpreted by the app (Rasa only does NLU), not compiled into Rasa domain, rules
and forms: a changed flow then needs no retraining, only NLU data does, and a reload swaps
one Python object.
"""
