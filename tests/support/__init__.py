"""Test helpers: a fake WeChat API server and a proxy in front of Rasa (both real HTTP)."""
