"""The one model and data set every contender trains: TinyGPT on the stdlib corpus.

The same `Workload` is passed, as command-line flags, to the phalanx script,
the DDP worker and the solo (ideal) runner, so every contender builds the
same model from the same seed and reads the same samples in the same order.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from phalanx.demo.corpus import CharDataset, stdlib_text
from phalanx.demo.model import TinyGPT, next_char_loss

SEED = 0
LR = 3e-3


@dataclass(frozen=True)
class Workload:
    width: int = 128
    layers: int = 2
    context: int = 64
    batch: int = 64  # global batch B (samples per optimizer step)
    steps: int = 24

    def to_args(self) -> list[str]:
        return [f"--{f.name}={getattr(self, f.name)}" for f in fields(self)]

    def with_(self, **changes: Any) -> Workload:
        return Workload(**{**asdict(self), **changes})

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        for f in fields(cls):
            parser.add_argument(f"--{f.name}", type=int, default=getattr(cls(), f.name))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Workload:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def build_dataset(work: Workload) -> CharDataset:
    # A stride of 8 characters gives a few thousand windows: every run stays in epoch 0-1.
    return CharDataset(stdlib_text(), context=work.context, stride=8)


def heads(work: Workload) -> int:
    """Attention heads of 64 dimensions each, as GPT-2 (width 768: 12 heads; 1024: 16)."""
    return max(1, work.width // 64)


def build_model(work: Workload, dataset: CharDataset) -> TinyGPT:
    torch.manual_seed(SEED)  # the same initial weights in every process of every contender
    return TinyGPT(
        dataset.vocab_size, work.context, width=work.width, layers=work.layers, heads=heads(work)
    )


def build_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=LR)


def parameter_count(work: Workload) -> int:
    dataset = build_dataset(work)
    return sum(p.numel() for p in build_model(work, dataset).parameters())


loss_fn = next_char_loss
