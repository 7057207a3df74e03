"""One conversation turn: order, time budget, Rasa's NLU, the flow engine, what goes out."""
