"""Burn-in qualification: compute correctness, memory, sustained load, profile."""

from phalanx.qualify.levels import LEVELS, Level, get_level
from phalanx.qualify.runner import Progress, Qualifier

__all__ = ["LEVELS", "Level", "Progress", "Qualifier", "get_level"]
