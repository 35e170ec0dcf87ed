"""The demo script: an ordinary phalanx training script, runnable alone or on a fleet.

python -m phalanx.demo.train_gpt            # one process
phalanx demo                                # 4 emulated chips with faults
"""

from __future__ import annotations

import argparse

import torch

import phalanx
from phalanx.demo.corpus import CharDataset, stdlib_text
from phalanx.demo.model import TinyGPT, next_char_loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", default="runs/demo-local")
    args = parser.parse_args()

    context = 32
    dataset = CharDataset(stdlib_text(), context=context, stride=8)
    torch.manual_seed(0)  # the same initial model on every replica
    model = TinyGPT(dataset.vocab_size, context)
    trainer = phalanx.Trainer(
        model=model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01),
        scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 10)
        ),
        dataset=dataset,
        loss_fn=next_char_loss,
        global_batch_size=args.batch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        clip_grad_norm=1.0,
        max_microbatch=16,
        checkpoint_every=20,
    )
    summary = trainer.fit()
    if summary["final_loss"] is not None:  # None: this replica trained no step
        print(f"final loss {summary['final_loss']:.3f}")


if __name__ == "__main__":
    main()
