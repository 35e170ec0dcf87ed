"""The fixed task of bench/sites_convergence.py: the demo GPT on the standard library's text.

The demo's settings (src/phalanx/demo/train_gpt.py): TinyGPT, context 32,
stride 8, AdamW lr 3e-3 with weight decay 0.01 and a 10-step warm-up, gradient
norm clipped at 1.0. The text is cut into chunks of 4096 characters; of
every ten, one is held out for *tuning* (the only text any choice of
hyper-parameter may look at) and one for *eval* (reported), the other eight
train. Chunks rather than one tail: the text is module after module of
docstrings, and a tail would hold out only the last modules' style. Windows
that straddle two chunks are dropped, so no held-out character is trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from phalanx.data.slicing import sample_indices
from phalanx.demo.corpus import CharDataset, stdlib_text
from phalanx.demo.model import TinyGPT, next_char_loss

CONTEXT, STRIDE = 32, 8
TEXT_CHARS = 200_000  # about 25,000 windows: the runs see each training window about 1.9 times
CHUNK_CHARS = 4096
TUNE_CHUNK, EVAL_CHUNK = 4, 9  # of every ten chunks; the rest train
HELD_OUT_WINDOWS = 512  # per held-out slice, evenly spaced over it
INNER_LR, WEIGHT_DECAY, WARMUP_STEPS, CLIP_NORM = 3e-3, 0.01, 10, 1.0
COSINE_FLOOR = 0.1  # a cosine schedule ends at this fraction of INNER_LR
STREAM_SEED = 0
MODEL_SEED = 0


@dataclass(frozen=True)
class Task:
    dataset: CharDataset
    train: list[int]  # dataset indices the stream runs over
    tune: tuple[torch.Tensor, torch.Tensor]
    eval: tuple[torch.Tensor, torch.Tensor]

    def batch(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stream positions [start, end) as a batch: the seeded epoch orders of data/slicing.py."""
        rows = [self.train[i] for i in sample_indices(start, end, STREAM_SEED, len(self.train))]
        return _stack(self.dataset, rows)

    def new_model(self) -> TinyGPT:
        torch.manual_seed(MODEL_SEED)  # every run and every site starts from the same model
        return TinyGPT(self.dataset.vocab_size, CONTEXT)


def build_task() -> Task:
    dataset = CharDataset(stdlib_text(TEXT_CHARS), context=CONTEXT, stride=STRIDE)
    roles: dict[str, list[int]] = {"train": [], "tune": [], "eval": []}
    for index in range(len(dataset)):
        first, last = index * STRIDE, index * STRIDE + CONTEXT  # the window's characters
        chunk = first // CHUNK_CHARS
        if last // CHUNK_CHARS != chunk:
            continue  # straddles two chunks
        role = {TUNE_CHUNK: "tune", EVAL_CHUNK: "eval"}.get(chunk % 10, "train")
        roles[role].append(index)
    tune, held = _stack(dataset, _spread(roles["tune"])), _stack(dataset, _spread(roles["eval"]))
    return Task(dataset, roles["train"], tune, held)


def lr_factor(step: int, total_steps: int | None) -> float:
    """The inner lr over the peak at `step`: the demo's warm-up, then constant (None) or
    a cosine from the peak down to COSINE_FLOOR at `total_steps`."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    if total_steps is None or step < WARMUP_STEPS:
        return warm
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS))
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))


class InnerTrainer:
    """One model copy with its own AdamW and schedule: a site, or the synchronous fleet.

    `total_steps` is this copy's own number of inner steps in the run (a site at
    half speed does half as many in the same time), so every copy's lr follows
    the same curve over wall-clock time."""

    def __init__(self, model: nn.Module, total_steps: int | None = None) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=INNER_LR, weight_decay=WEIGHT_DECAY
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total_steps)
        )

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        next_char_loss(self.model, batch).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        self.optimizer.step()
        self.scheduler.step()


@torch.no_grad()
def mean_loss(model: nn.Module, held_out: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    loss = next_char_loss(model, held_out).item()
    model.train()
    return loss


def _spread(indices: list[int]) -> list[int]:
    if len(indices) <= HELD_OUT_WINDOWS:
        return indices
    step = len(indices) / HELD_OUT_WINDOWS
    return [indices[int(k * step)] for k in range(HELD_OUT_WINDOWS)]


def _stack(dataset: CharDataset, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in rows]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
