"""The embedded demo: a small character-level GPT on text that ships with Python."""
