"""Burn-in qualification: compute correctness, memory, sustained load, profile."""

from phalanx.qualify.levels import LEVELS, Level, get_level

__all__ = ["LEVELS", "Level", "Progress", "Qualifier", "get_level"]


def __getattr__(name: str):  # lazy: every `phalanx` command imports qualify/cli.py, and the
    # runner imports torch (2.5 s on a quiet core): `phalanx run` and `--help` need none of it
    if name in ("Progress", "Qualifier"):
        from phalanx.qualify import runner

        return getattr(runner, name)
    raise AttributeError(name)
