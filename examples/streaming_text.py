"""A character model trained from a sharded text stream, with a padding collate_fn.

The data comes as users often have it: a stream of variable-length lines
spread over shards (here the docstrings of Python's own modules, one shard per
module, so nothing is downloaded), read in order, never indexed. Batches are
built by a `collate_fn` that pads lines to the longest and masks the padding,
and reader processes (`--loader-workers`) prepare the next slice while the
chip computes. The fleet's result equals the one-process run's, with or
without readers.

python examples/streaming_text.py                                   # one process
phalanx run examples/streaming_text.py --emulate 1,0.5,0.25 --out runs/text -- --loader-workers 2

`--plain-iterable` reads the same lines through a plain `IterableDataset` that
only iterates (no length, no seek, no set_epoch), as most users' streams are:
phalanx learns its length by reading it and re-reads it to reach a position.
"""

import argparse
import importlib
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset

import phalanx
from phalanx.data import ShardedStream

SHARDS = ("json", "textwrap", "functools", "itertools", "pathlib", "argparse", "logging", "string")
MIN_CHARS, MAX_CHARS = 8, 48
VOCAB = 128  # ASCII; anything else becomes '?'


def lines_of(module_name: str) -> Iterator[torch.Tensor]:
    """One shard: the module's docstrings, cut into lines of MIN_CHARS..MAX_CHARS characters."""
    module = importlib.import_module(module_name)
    texts = [module.__doc__ or ""]
    texts += [getattr(getattr(module, a), "__doc__", None) or "" for a in sorted(dir(module))]
    for text in texts:
        for line in text.splitlines():
            line = line.strip()[:MAX_CHARS]
            if len(line) >= MIN_CHARS:
                yield torch.tensor(
                    [min(ord(c), ord("?")) if ord(c) >= VOCAB else ord(c) for c in line]
                )


class DocstringLines(IterableDataset):
    """The same lines as one plain stream: it can only be iterated from the start."""

    def __iter__(self) -> Iterator[torch.Tensor]:
        for name in SHARDS:
            yield from lines_of(name)


def pad_lines(lines: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The collate_fn: pad to the longest line; the mask marks the real next characters."""
    longest = max(len(line) for line in lines)
    tokens = torch.zeros(len(lines), longest, dtype=torch.long)
    mask = torch.zeros(len(lines), longest - 1, dtype=torch.bool)
    for row, line in enumerate(lines):
        tokens[row, : len(line)] = line
        mask[row, : len(line) - 1] = True
    return {"tokens": tokens, "mask": mask}


class CausalCharModel(torch.nn.Module):
    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, width)
        self.mix = torch.nn.Conv1d(width, width, kernel_size=3)
        self.head = torch.nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)
        h = torch.relu(self.mix(torch.nn.functional.pad(h, (2, 0))))  # sees only the past
        return self.head(h.transpose(1, 2))


def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    # Each line's mean loss, then the mean over lines: a per-sample mean, so the
    # fleet's weighting by samples gives the same number however a batch is split.
    logits = model(batch["tokens"][:, :-1])
    per_char = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), batch["tokens"][:, 1:], reduction="none"
    )
    mask = batch["mask"].to(per_char.dtype)
    return ((per_char * mask).sum(dim=1) / mask.sum(dim=1)).mean()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default="runs/text-local")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--max-microbatch", type=int, default=None)
    parser.add_argument("--plain-iterable", action="store_true")
    args = parser.parse_args()

    if args.plain_iterable:
        stream = DocstringLines()
    else:
        # The lengths of the shards let a replica (or a resumed run) open the shard that
        # holds its slice instead of reading every shard before it.
        lengths = [sum(1 for _ in lines_of(name)) for name in SHARDS]
        stream = ShardedStream(SHARDS, lengths, lines_of)
    torch.manual_seed(0)  # every replica builds the same initial model
    model = CausalCharModel().to(getattr(torch, args.dtype))
    trainer = phalanx.Trainer(
        model=model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
        dataset=stream,
        loss_fn=loss_fn,
        collate_fn=pad_lines,
        loader_workers=args.loader_workers,
        global_batch_size=args.batch,
        max_microbatch=args.max_microbatch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every or None,
    )
    summary = trainer.fit()
    loss = summary["final_loss"]  # None: this host trained no step (the fleet finished first)
    print(
        f"final loss {loss:.4f} after {summary['steps']} steps"
        if loss is not None
        else "no step trained here"
    )


if __name__ == "__main__":
    main()
