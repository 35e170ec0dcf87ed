"""Inputs of a chip-by-chip layout: the chips of `--emulate`, the model's needs.

The model's needs come measured from the user's script (profile mode: its
own Trainer builds the model and optimizer, one and two samples are run),
or from a model profile file (plan/model_profile.py), where the weights are
taken as `grad_bytes_per_param` per parameter and activations as all
per-sample.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.emulate.spec import parse_emulate_chips
from phalanx.errors import UsageError
from phalanx.plan.layout import Chip, ModelNeeds


def chips_of(spec: str) -> list[Chip]:
    """`1:mem=800KB,0.5x4:mem=400KB` -> chips c0.. (every chip must declare its memory)."""
    if "+" in spec:
        raise UsageError(
            "--emulate",
            "lists chips for the planner to group: it takes no '+'",
            "list the chips alone, e.g. 1:mem=800KB,1x4:mem=400KB",
            spec,
        )
    chips = parse_emulate_chips(spec)
    for i, chip in enumerate(chips):
        if chip.memory_bytes is None:
            raise UsageError(
                "--emulate",
                f"chip {i} declares no memory, so the planner cannot size its part",
                "give every chip mem=SIZE, e.g. 1:mem=2GiB",
                spec,
            )
    return [Chip(f"c{i}", c.speed, int(c.memory_bytes or 0)) for i, c in enumerate(chips)]


def needs_of_script(script: Path, arguments: list[str]) -> ModelNeeds:
    from phalanx.runtime.profile_mode import profile_script_process

    if not script.is_file():
        raise UsageError("--script", "does not exist", "give your training script's path", script)
    data = profile_script_process(script, "cpu", memory=True, arguments=arguments)
    held = data["memory"]
    rates = data.get("samples_per_s") or []
    return ModelNeeds(
        name=script.name,
        state_bytes=held["weight_bytes"] + held["gradient_bytes"] + held["optimizer_bytes"],
        weight_bytes=held["weight_bytes"],
        activation_fixed_bytes=held["activation_fixed_bytes"],
        activation_bytes_per_sample=held["activation_bytes_per_sample"],
        global_batch=held["global_batch"],
        samples_per_s=max(rates) if rates else None,
    )


def needs_of_profile(path: Path | None) -> ModelNeeds:
    from phalanx.plan.model_profile import load_model

    assert path is not None
    profile = load_model(path)
    return ModelNeeds(
        name=profile.name,
        state_bytes=int(profile.state_bytes),
        weight_bytes=int(profile.params * profile.grad_bytes_per_param),
        activation_fixed_bytes=0,
        activation_bytes_per_sample=int(profile.activation_bytes_per_sample),
        global_batch=profile.global_batch,
        samples_per_s=None,
    )
