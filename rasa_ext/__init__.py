"""Code that runs inside the Rasa server process (Rasa's own venv), not in the app."""
