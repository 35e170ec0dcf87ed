"""A sequence-first character LSTM, as PyTorch's word-language-model example builds it:
nn.LSTM with batch_first=False and nn.Dropout on (length, batch, features) tensors.

python tests/dist/seq_first_script.py --out runs/ref        # one process
phalanx run tests/dist/seq_first_script.py --emulate 1,0.5  # a fleet
"""

import argparse

import torch

import phalanx
from phalanx.demo.corpus import CharDataset, stdlib_text

CONTEXT = 16  # a multiple of every slice of the batch below: the layout a shape cannot tell


class SequenceFirstLSTM(torch.nn.Module):
    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.drop = torch.nn.Dropout(0.3)  # used on the embeddings and on the outputs
        self.lstm = torch.nn.LSTM(width, width)  # (length, batch, features)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: (batch, length)
        x = self.drop(self.embed(tokens.t()))
        out, _ = self.lstm(x)
        return self.head(self.drop(out))  # (length, batch, vocab)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default="runs/seq-first")
    args = parser.parse_args()
    data = CharDataset(stdlib_text(8_000), context=CONTEXT, stride=CONTEXT)
    torch.manual_seed(0)
    model = SequenceFirstLSTM(data.vocab_size, 32).double()

    def loss_fn(model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        tokens, targets = batch
        logits = model(tokens)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.t().reshape(-1)
        )

    trainer = phalanx.Trainer(
        model=model,
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
        dataset=data,
        loss_fn=loss_fn,
        global_batch_size=args.batch,
        steps=args.steps,
        seed=0,
        out_dir=args.out,
        checkpoint_every=None,
    )
    summary = trainer.fit()
    print(f"final loss {summary['final_loss']}")


if __name__ == "__main__":
    main()
