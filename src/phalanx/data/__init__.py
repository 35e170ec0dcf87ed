"""The data path: which samples each participant computes in each step, and reading them.

`ShardedStream` is the public helper for streams made of shards of known
length; the rest is used by the step engine. Importing this package does not
import torch (the CLI imports `phalanx` for --help); the submodules do.
"""

from __future__ import annotations

__all__ = ["ShardedStream"]


def __getattr__(name: str):  # lazy, as phalanx/__init__.py
    if name == "ShardedStream":
        from phalanx.data.sources import ShardedStream

        return ShardedStream
    raise AttributeError(name)
