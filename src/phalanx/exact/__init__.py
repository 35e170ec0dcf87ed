"""Layers whose result must not depend on how the global batch is split (promise 1)."""
