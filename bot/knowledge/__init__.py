"""Answers to common questions (FAQ): the knowledge base community managers write in
`flows/knowledge/*.yml`, its checker (`base.py`, errors with file:line like the flows'),
the retrieval over it (`text.py`, `index.py`: character n-gram TF-IDF, pure Python) and the
step actions and fallback answer the core calls (`answers.py`).
"""
