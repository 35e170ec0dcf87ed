"""The training script of bench/data_workers.py: samples that cost `--decode-ms` to read.

`--decode-kind cpu` (default): a busy wait of a fixed wall time per sample, as
JPEG decoding or tokenising would take, on a CPU core. `--decode-kind wait`: a
sleep of that time, as reading from network storage waits without using a core.
"""

import argparse
import time

import torch
from torch.utils.data import Dataset

import phalanx


class Encoded(Dataset):
    def __init__(self, samples: int, decode_s: float, busy: bool = True) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(samples, 64, generator=generator)
        self.y = self.x[:, :4].sum(1, keepdim=True)
        self.decode_s = decode_s
        self.busy = busy

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.busy:
            time.sleep(self.decode_s)  # waiting for storage: emulated work, not synchronisation
            return self.x[i], self.y[i]
        until = time.perf_counter() + self.decode_s
        while time.perf_counter() < until:  # the decoding work, on a CPU core
            pass
        return self.x[i], self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--decode-ms", type=float, default=0.0)
    parser.add_argument("--decode-kind", choices=["cpu", "wait"], default="cpu")
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--out", default="runs/data-heavy")
    args = parser.parse_args()
    torch.manual_seed(0)
    width = args.width
    model = torch.nn.Sequential(
        torch.nn.Linear(64, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 1),
    )
    phalanx.Trainer(
        model=model,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
        dataset=Encoded(4096, args.decode_ms / 1000, busy=args.decode_kind == "cpu"),
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=args.batch,
        steps=args.steps,
        out_dir=args.out,
        checkpoint_every=None,
        loader_workers=args.loader_workers,
    ).fit()


if __name__ == "__main__":
    main()
