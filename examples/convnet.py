"""A small conv net with BatchNorm and dropout: layers whose result depends on the split.

python examples/convnet.py                                  # one process, the reference
phalanx run examples/convnet.py --emulate 1,0.5,0.25 --out runs/conv   # a fleet, same result

phalanx makes both layers exact by default (`Trainer(exact=True)`): BatchNorm
normalises with the global batch's statistics, dropout masks are keyed by
sample. `--inexact` shows what happens without: one warning per layer.
"""

import argparse
import os

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

import phalanx


class ConvNet(torch.nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16 * 6 * 6, 32),
            torch.nn.BatchNorm1d(32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--inexact", action="store_true", help="leave BatchNorm/dropout as is")
    parser.add_argument("--out", default="runs/convnet-local")
    parser.add_argument(
        "--replica-copy",
        action="store_true",
        help="also save this process's final model and buffers as replica-<pid>.safetensors",
    )
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)  # every replica builds the same initial model and data
    images = torch.randn(args.samples, 1, 12, 12, dtype=dtype)
    labels = (images[:, 0, :6].mean(dim=(1, 2)) > 0).long() + 2 * (
        images[:, 0, 6:].mean(dim=(1, 2)) > 0
    ).long()
    model = ConvNet(args.dropout).to(dtype)

    trainer = phalanx.Trainer(
        model=model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=2e-3),
        dataset=TensorDataset(images, labels),
        loss_fn=lambda m, batch: torch.nn.functional.cross_entropy(m(batch[0]), batch[1]),
        global_batch_size=args.batch,
        steps=args.steps,
        out_dir=args.out,
        checkpoint_every=10,
        exact=not args.inexact,
    )
    summary = trainer.fit()
    # Each replica's own final state, to compare them bit for bit (a replica that came
    # back after the fleet finished holds an older state: it writes none).
    if args.replica_copy and trainer.holds_final_model:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(trainer.out_dir / f"replica-{os.getpid()}.safetensors"))
    loss = summary["final_loss"]  # None: this host trained no step (the fleet finished first)
    print(
        f"final loss {loss:.4f} after {summary['steps']} steps"
        if loss is not None
        else "no step trained here"
    )


if __name__ == "__main__":
    main()
