"""Make a model's split-dependent layers exact, and say once which ones cannot be.

With `Trainer(exact=True)` (the default):

- every BatchNorm normalises with the global batch's statistics
  (exact/global_batchnorm.py); this needs each replica's slice in one
  forward, so with `max_microbatch` set it stays per micro-batch and is
  named in a warning;
- every nn.Dropout / Dropout1d/2d/3d draws masks keyed by sample
  (exact/keyed_dropout.py), and so do F.dropout and attention dropout
  (exact/functional_dropout.py), the same again when activation checkpointing
  recomputes a segment (exact/recompute.py).

Anything else that makes the result depend on the split is found and named
once at start: other dropout kinds, and random numbers drawn outside these
(torch.rand in forward), which a probe detects by running the same samples
twice under different random seeds. With `exact=False` the
layers are left as PyTorch has them and each is named with what it costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from phalanx.exact.functional_dropout import install as install_functional
from phalanx.exact.global_batchnorm import BATCHNORMS, make_global
from phalanx.exact.keyed_dropout import CHANNELWISE, ELEMENTWISE, make_keyed
from phalanx.exact.keys import sample_keys
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.layouts import learn_batch_dims
from phalanx.exact.recompute import install as install_recompute

_UNKEYED_DROPOUT = (torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)


@dataclass
class ExactLayers:
    global_batchnorms: list[str] = field(default_factory=list)
    keyed_dropouts: list[str] = field(default_factory=list)
    keyed_modules: dict[str, torch.nn.Module] = field(default_factory=dict)  # label -> layer
    warnings: list[str] = field(default_factory=list)


def _label(name: str, module: torch.nn.Module) -> str:
    return f"{name or 'the model'} ({type(module).__name__})"


def _names(labels: list[str]) -> str:
    return ", ".join(labels)


def make_exact(
    model: torch.nn.Module, exact: bool, max_microbatch: int | None, stats: LayerStatsSync
) -> ExactLayers:
    """Patch the model's layers in place; what was made exact, and one warning per kind
    of layer that was not (naming every such layer)."""
    found = ExactLayers()
    if exact:
        install_functional()  # F.dropout and attention dropout, keyed too
        install_recompute()  # activation checkpointing redraws the same masks
    local_norms: list[str] = []
    unkeyed: list[str] = []
    other_dropout: list[str] = []
    for layer_id, (name, module) in enumerate(model.named_modules()):
        label = _label(name, module)
        if isinstance(module, BATCHNORMS):
            if exact and max_microbatch is None:
                make_global(module, stats, layer_id)
                found.global_batchnorms.append(label)
            else:
                local_norms.append(label)
        elif isinstance(module, ELEMENTWISE + CHANNELWISE):
            if exact:
                make_keyed(module, layer_id)
                found.keyed_dropouts.append(label)
                found.keyed_modules[label] = module
            else:
                unkeyed.append(label)
        elif isinstance(module, _UNKEYED_DROPOUT):
            other_dropout.append(label)
    if local_norms:
        how, fix = (
            (
                f"each micro-batch of {max_microbatch}",
                "max_microbatch=None and aligned_microbatch=None (exact BatchNorm needs each "
                "slice in one forward)",
            )
            if exact
            else ("each replica's slice", "Trainer(exact=True)")
        )
        found.warnings.append(
            f"{_names(local_norms)} normalise{'s' if len(local_norms) == 1 else ''} {how} on "
            "its own, not the global batch, so the result depends on how the batch is split "
            f"(running statistics are still made identical on every replica). Fix: {fix}"
        )
    if unkeyed:
        found.warnings.append(
            f"{_names(unkeyed)} draw{'s' if len(unkeyed) == 1 else ''} masks from each "
            "replica's random stream, so the result depends on which replica computes a "
            "sample. Fix: Trainer(exact=True)"
        )
    if other_dropout:
        found.warnings.append(
            f"{_names(other_dropout)} {'is' if len(other_dropout) == 1 else 'are'} not keyed by "
            "sample (only Dropout and Dropout1d/2d/3d are), so the result depends on how the "
            "batch is split. Fix: use nn.Dropout"
        )
    return found


@contextmanager
def _probing(model: torch.nn.Module) -> Iterator[torch.device]:
    """No gradient, torch's random state and the model's buffers as they were afterwards."""
    buffers = [b for b in model.buffers()]
    saved = [b.detach().clone() for b in buffers]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            yield next((p.device for p in model.parameters()), torch.device("cpu"))
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


def learn_dropout_layouts(
    model: torch.nn.Module,
    keyed: dict[str, torch.nn.Module],
    forward_of: Callable[[int], object],
    counts: tuple[int, int],
    seed: int,
) -> str | None:
    """Find where the batch lies in each keyed dropout's input (exact/layouts.py): a
    warning naming the layers where it is unclear, None when every one is found."""
    if not keyed:
        return None

    def forward(count: int) -> None:
        with sample_keys(seed, 0, count, device):
            forward_of(count)()  # type: ignore[operator]

    try:
        with _probing(model) as device:
            unclear = learn_batch_dims(keyed, forward, counts)
    except Exception:  # a probe that cannot run proves nothing either way: dimension 0
        return None
    if not unclear:
        return None
    return (
        f"{_names(unclear)}: no one dimension of the input grows with the number of samples "
        f"(probed with {counts[0]} and {counts[1]}), so the masks may follow the split, not "
        "the sample. Fix: give dropout inputs with the batch first (batch_first=True)"
    )


def randomness_outside_layers(
    model: torch.nn.Module, forward_loss: object, samples: int, seed: int
) -> str | None:
    """A warning if the same samples give different losses under two random seeds.

    Runs after `make_exact`: keyed layers draw the same masks both times, so a
    difference comes from random numbers drawn elsewhere. Buffers and the
    random state are restored; nothing is learnt.
    """
    losses = []
    try:
        with _probing(model) as device:
            for draw in (1, 2):
                torch.manual_seed(seed * 7919 + draw)
                with sample_keys(seed, 0, samples, device):
                    losses.append(float(forward_loss()))  # type: ignore[operator]
    except Exception:  # a probe that cannot run proves nothing either way
        return None
    if losses[0] == losses[1]:
        return None
    return (
        "the model draws random numbers outside dropout (torch.rand, torch.randn_like, a "
        "dropout function imported before phalanx, ... in forward): the same "
        f"{samples} samples gave losses {losses[0]:.6g} and {losses[1]:.6g} under two seeds, "
        "so the result depends on how the batch is split. Fix: draw them through nn.Dropout, "
        "F.dropout or F.scaled_dot_product_attention(dropout_p=...)"
    )


def parameters_written_in_forward(
    model: torch.nn.Module, forward_loss: Callable[[], object], samples: int, seed: int
) -> list[str]:
    """The parameters a training forward changes in place (`nn.Embedding(max_norm=...)`
    renormalises the rows it looks up): on a fleet each replica would change the entries
    of its own samples, and the replicas would hold different models from the first step.

    Compared by fingerprint (exact integer sums of the bits), not by copy: no second
    model in memory. A probe that cannot run proves nothing.
    """
    from phalanx.guard.fingerprint import fingerprint_words

    params = list(model.named_parameters())
    try:
        before = [fingerprint_words([p]) for _, p in params]
        with _probing(model) as device, sample_keys(seed, 0, samples, device):
            forward_loss()  # type: ignore[operator]
        return [name for (name, p), old in zip(params, before) if fingerprint_words([p]) != old]
    except Exception:
        return []
