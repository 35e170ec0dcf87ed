"""Replica groups: several chips that hold one replica together (docs/groups.md)."""
