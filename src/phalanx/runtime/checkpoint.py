"""Durable checkpoints: atomic, checksummed, no pickle, last K kept.

Layout: `checkpoints/step_00000020/{model,optimizer}.safetensors`,
`meta.json` (step, fleet state, optimizer/scheduler non-tensor state, RNG)
and `manifest.json` (sha256 of each file). A checkpoint is written into a
temporary directory and renamed into place, so a crash or a full disk never
leaves a half-written checkpoint under a valid name; loading verifies every
checksum and falls back to the previous checkpoint when the newest is bad.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from phalanx.runtime.state import FleetState, TrainState

CHECKPOINT_DIR = "checkpoints"
_PREFIX = "step_"


class CheckpointError(Exception):
    """A checkpoint on disk is missing a file, fails its checksum or cannot be parsed."""


@dataclass
class LoadedCheckpoint:
    step: int
    path: Path
    skipped: list[tuple[Path, str]]  # newer checkpoints that were refused, with why


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_tensors(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested dict/list into `tensors`; leave references behind."""
    if isinstance(tree, torch.Tensor):
        key = prefix
        tensors[key] = tree.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(tree, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    return tree


def _join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_tensors(v, tensors) for v in tree]
    return tree


def _optimizer_from_json(tree: dict[str, Any]) -> dict[str, Any]:
    # JSON turned the integer parameter ids of `state` into strings.
    return {
        "state": {int(k): v for k, v in tree["state"].items()},
        "param_groups": tree["param_groups"],
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: TrainState, run_dir: str | Path, keep: int = 3) -> Path:
    """Write a checkpoint of `state` atomically; prune to the newest `keep`."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{state.fleet.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        model_tensors = {
            k: v.detach().cpu().contiguous().clone() for k, v in state.model.state_dict().items()
        }
        save_file(model_tensors, tmp / "model.safetensors")
        optim_tensors: dict[str, torch.Tensor] = {}
        optim_tree = _split_tensors(state.optimizer.state_dict(), "optimizer", optim_tensors)
        rng_tensors = {"rng.cpu": torch.get_rng_state()}
        save_file({**optim_tensors, **rng_tensors}, tmp / "optimizer.safetensors")
        meta = {
            "format": "phalanx.checkpoint/1",
            "fleet": state.fleet.to_json(),
            "optimizer": optim_tree,
            "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        files = ["model.safetensors", "optimizer.safetensors", "meta.json"]
        manifest = {"files": {name: _sha256(tmp / name) for name in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        for name in [*files, "manifest.json"]:
            with (tmp / name).open("rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():  # a retried save of the same step: replace it whole
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(root, keep)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories, newest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def prune_checkpoints(root: Path, keep: int) -> None:
    for stale in list_checkpoints(root.parent)[max(keep, 1) :]:
        shutil.rmtree(stale, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the parsed meta.json."""
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise CheckpointError("manifest.json is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"manifest.json is unreadable ({err})") from None
    for name, digest in files.items():
        file_path = path / name
        if not file_path.exists():
            raise CheckpointError(f"{name} is missing")
        if _sha256(file_path) != digest:
            raise CheckpointError(f"{name} fails its checksum (truncated or tampered)")
    try:
        return json.loads((path / "meta.json").read_text())
    except ValueError as err:
        raise CheckpointError(f"meta.json is unreadable ({err})") from None


def load_checkpoint_into(state: TrainState, path: Path) -> None:
    meta = verify_checkpoint(path)
    model_tensors = load_file(path / "model.safetensors")
    other = load_file(path / "optimizer.safetensors")
    rng = other.pop("rng.cpu", None)
    with torch.no_grad():
        state.model.load_state_dict(model_tensors)
    state.optimizer.load_state_dict(_optimizer_from_json(_join_tensors(meta["optimizer"], other)))
    if state.scheduler is not None and meta.get("scheduler") is not None:
        state.scheduler.load_state_dict(meta["scheduler"])
    state.fleet = FleetState.from_json(meta["fleet"])
    if rng is not None:
        torch.set_rng_state(rng)


def load_newest(state: TrainState, run_dir: str | Path) -> LoadedCheckpoint | None:
    """Load the newest valid checkpoint into `state`; None when there is none."""
    skipped: list[tuple[Path, str]] = []
    for path in list_checkpoints(run_dir):
        try:
            load_checkpoint_into(state, path)
        except (CheckpointError, OSError, KeyError, ValueError, RuntimeError) as err:
            skipped.append((path, str(err)))
            continue
        return LoadedCheckpoint(step=state.fleet.step, path=path, skipped=skipped)
    if skipped:
        raise CheckpointError(
            "no valid checkpoint: " + "; ".join(f"{p.name}: {why}" for p, why in skipped)
        )
    return None
