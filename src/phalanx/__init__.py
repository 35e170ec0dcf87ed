"""phalanx: train one PyTorch model on a mixed, unreliable fleet of accelerators."""

from phalanx.errors import UsageError

__all__ = ["Trainer", "UsageError"]
__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import phalanx` must not import torch for the CLI's --help
    if name == "Trainer":
        from phalanx.runtime.trainer import Trainer

        return Trainer
    raise AttributeError(name)
