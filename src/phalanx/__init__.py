"""phalanx: train one PyTorch model on a mixed, unreliable fleet of accelerators."""

from phalanx.errors import UsageError

__all__ = ["OwnLoop", "Trainer", "UsageError", "prepare"]
__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import phalanx` must not import torch for the CLI's --help
    if name == "Trainer":
        from phalanx.runtime.trainer import Trainer

        return Trainer
    if name in ("prepare", "OwnLoop"):
        from phalanx.runtime import own_loop

        return getattr(own_loop, name)
    raise AttributeError(name)
