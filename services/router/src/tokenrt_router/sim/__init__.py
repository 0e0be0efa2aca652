"""The local OpenAI-compatible simulator (`tokenrt sim`)."""
