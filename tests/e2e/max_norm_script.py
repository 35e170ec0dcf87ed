"""A bag-of-tokens regression whose embedding renormalises its rows inside forward
(nn.Embedding(max_norm=1.0)): fine in one process, refused on a fleet at start."""

import argparse

import torch

import phalanx


class Bag(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16, max_norm=1.0)
        self.head = torch.nn.Linear(16, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(tokens).mean(dim=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/max-norm")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (600, 6), generator=torch.Generator().manual_seed(1))
    targets = torch.randn(600, 1)
    trainer = phalanx.Trainer(
        model=Bag(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        dataset=torch.utils.data.TensorDataset(tokens, targets),
        loss_fn=lambda model, batch: torch.nn.functional.mse_loss(model(batch[0]), batch[1]),
        global_batch_size=24,
        steps=10,
        seed=0,
        out_dir=args.out,
        checkpoint_every=None,
    )
    print(f"final loss {trainer.fit()['final_loss']:.4f}")


if __name__ == "__main__":
    main()
