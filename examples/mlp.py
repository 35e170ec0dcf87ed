"""A plain MLP regression: the smallest complete phalanx script.

python examples/mlp.py                                    # one process, the reference
phalanx run examples/mlp.py --emulate 1,0.5,0.25x2 --out runs/mlp   # a fleet
"""

import argparse

import torch
from torch.utils.data import TensorDataset

import phalanx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default="runs/mlp-local")
    parser.add_argument("--checkpoint-every", type=int, default=20)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)  # every replica builds the same initial model
    inputs = torch.randn(2048, 32, dtype=dtype)
    targets = (inputs[:, :8].sum(dim=1, keepdim=True) > 0).to(dtype)
    dataset = TensorDataset(inputs, targets)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 1),
    ).to(dtype)

    def loss_fn(model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)

    trainer = phalanx.Trainer(
        model=model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        dataset=dataset,
        loss_fn=loss_fn,
        global_batch_size=args.batch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
    )
    summary = trainer.fit()
    print(f"final loss {summary['final_loss']:.4f} after {summary['steps']} steps")


if __name__ == "__main__":
    main()
