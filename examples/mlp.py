"""A plain MLP regression: the smallest complete phalanx script.

python examples/mlp.py                                    # one process, the reference
phalanx run examples/mlp.py --emulate 1,0.5,0.25x2 --out runs/mlp   # a fleet
"""

import argparse

import torch
from torch.utils.checkpoint import checkpoint
from torch.utils.data import TensorDataset

import phalanx


class RepeatedMLP(torch.nn.Module):
    def __init__(
        self, inputs: int, width: int, repeat: int, dropout: float = 0.0, recompute: bool = False
    ) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(inputs, width)
        self.hidden = torch.nn.Linear(width, width)
        self.out = torch.nn.Linear(width, 1)
        self.repeat = repeat
        # One dropout module for every application of the hidden layer (a reused module).
        self.drop = torch.nn.Dropout(dropout) if dropout else None
        self.recompute = recompute  # activation checkpointing of each application

    def _block(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.hidden(h))
        return (self.drop(a) if self.drop is not None else a) + h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for i in range(self.repeat):
            if self.recompute:  # both of torch's checkpoints, in turn
                h = checkpoint(self._block, h, use_reentrant=i % 2 == 1)
            else:
                h = self._block(h)
        return self.out(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default="runs/mlp-local")
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--width", type=int, default=128, help="hidden width (compute per sample)")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="apply the hidden layer N times: compute per sample, same parameters",
    )
    parser.add_argument(
        "--inputs",
        choices=["normal", "cauchy"],
        default="normal",
        help="cauchy: heavy-tailed inputs, so a few samples' gradients are huge",
    )
    parser.add_argument(
        "--replica-copy",
        action="store_true",
        help="also save this process's final model as replica-<pid>.safetensors (to compare)",
    )
    parser.add_argument(
        "--precision",
        choices=["32", "bf16-mixed", "fp16-mixed"],
        default="32",
        help="autocast precision (`phalanx run --precision` overrides it)",
    )
    parser.add_argument(
        "--aligned-microbatch",
        type=int,
        default=None,
        help="fixed blocks of the batch, whole blocks per replica (fp16-mixed: the same "
        "overflowed steps as one process)",
    )
    parser.add_argument("--device", default="cpu", help="one-process run only: where to train")
    parser.add_argument("--dropout", type=float, default=0.0, help="after each hidden layer")
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="activation checkpointing: each hidden layer's activations recomputed in backward",
    )
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)  # every replica builds the same initial model
    if args.inputs == "cauchy":
        inputs = torch.distributions.Cauchy(0.0, 1.0).sample((args.samples, 32)).to(dtype)
    else:
        inputs = torch.randn(args.samples, 32, dtype=dtype)
    targets = (inputs[:, :8].sum(dim=1, keepdim=True) > 0).to(dtype)
    dataset = TensorDataset(inputs, targets)
    model = RepeatedMLP(32, args.width, args.repeat, args.dropout, args.recompute)
    model = model.to(dtype).to(args.device)

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
        checkpoint_every=args.checkpoint_every or None,  # 0: off
        precision=args.precision,
        aligned_microbatch=args.aligned_microbatch,
    )
    summary = trainer.fit()
    if args.replica_copy and trainer.holds_final_model:  # not a replica back after the end
        import os

        from safetensors.torch import save_model

        save_model(model, str(trainer.out_dir / f"replica-{os.getpid()}.safetensors"))
    loss = summary["final_loss"]  # None: this host trained no step (the fleet finished first)
    print(
        f"final loss {loss:.4f} after {summary['steps']} steps"
        if loss is not None
        else "no step trained here"
    )


if __name__ == "__main__":
    main()
