"""A Hugging Face `transformers` GPT-2, built from a config (nothing downloaded), trained
with the user's own loop on local text.

The text is the docstrings of Python's standard library (phalanx.demo.corpus),
cut into windows of characters; the model is `GPT2LMHeadModel(GPT2Config(...))`
at a size a CPU trains in seconds. The loop is the one a user writes for any
model; phalanx slices the global batch over the fleet, reduces, guards and
commits, and the fleet's model equals the one-process run's.

python examples/hf_own_loop.py                                  # one process
phalanx run examples/hf_own_loop.py --emulate 1,0.5 --out runs/hf
"""

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import phalanx
from phalanx.demo.corpus import CharDataset, stdlib_text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default="runs/hf-local")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    data = CharDataset(stdlib_text(20_000), context=args.context, stride=args.context // 2)
    config = GPT2Config(
        vocab_size=data.vocab_size,
        n_positions=args.context,
        n_embd=64,
        n_layer=2,
        n_head=4,
        # GPT-2's own dropouts: residual and embedding dropout are nn.Dropout modules,
        # attention dropout is the attention function's dropout_p; phalanx keys all of
        # their masks by sample, so they stay exact on a fleet.
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        bos_token_id=0,  # GPT-2's own ids lie outside this character vocabulary
        eos_token_id=0,
    )
    torch.manual_seed(0)  # every replica builds the same initial model
    model = GPT2LMHeadModel(config).to(getattr(torch, args.dtype))

    loop = phalanx.prepare(
        model,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        dataset=data,
        global_batch_size=args.batch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every or None,
    )
    for inputs, targets in loop:
        logits = model(input_ids=inputs).logits
        # Mean over the batch's tokens: all windows have the same length, so this is
        # also the mean over its samples, which the fleet's weighting needs.
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loop.backward(loss)
    loss = loop.summary["final_loss"]  # None: this host trained no step (the fleet finished first)
    print(
        f"final loss {loss:.4f} after {loop.summary['steps']} steps"
        if loss is not None
        else "no step trained here"
    )


if __name__ == "__main__":
    main()
