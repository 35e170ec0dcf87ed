"""examples/mlp.py with the user's own loop instead of `phalanx.Trainer`.

The loop body is the user's: forward, loss, `loop.backward(loss)`. phalanx
chooses each replica's slice, weights its loss, reduces across the fleet,
guards and commits; the result equals examples/mlp.py's to the last bits.

python examples/own_loop.py                                    # one process
phalanx run examples/own_loop.py --emulate 1,0.5,0.25 --out runs/own
"""

import argparse

import torch
from mlp import RepeatedMLP  # the same model as examples/mlp.py (this directory)
from torch.utils.data import TensorDataset

import phalanx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default="runs/own-loop-local")
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)  # every replica builds the same initial model (as examples/mlp.py)
    inputs = torch.randn(args.samples, 32, dtype=dtype)
    targets = (inputs[:, :8].sum(dim=1, keepdim=True) > 0).to(dtype)
    model = RepeatedMLP(32, 128, args.repeat).to(dtype)

    loop = phalanx.prepare(
        model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        dataset=TensorDataset(inputs, targets),
        global_batch_size=args.batch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every or None,
    )
    last_step = -1
    for x, y in loop:  # every forward the fleet needs from this replica, on its chip
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loop.backward(loss)  # phalanx weights it by the batch's share and backpropagates
        if loop.step != last_step and loop.step % 20 == 0:
            last_step = loop.step
            print(f"step {loop.step}: loss {loss.item():.4f}", flush=True)
    loss = loop.summary["final_loss"]  # None: this host trained no step (the fleet finished first)
    print(
        f"final loss {loss:.4f} after {loop.summary['steps']} steps"
        if loss is not None
        else "no step trained here"
    )


if __name__ == "__main__":
    main()
