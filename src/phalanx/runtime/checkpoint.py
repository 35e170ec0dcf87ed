"""Durable checkpoints: atomic, checksummed, no pickle, last K kept.

Layout: `checkpoints/step_00000020/{model,optimizer}.safetensors`,
`meta.json` (step, fleet state, optimizer/scheduler non-tensor state, RNG)
and `manifest.json` (sha256 of each file). A checkpoint is written into a
temporary directory and renamed into place, so a crash or a full disk never
leaves a half-written checkpoint under a valid name; loading verifies every
checksum and falls back to the previous checkpoint when the newest is bad.

Nothing here unpickles: tensors are safetensors, the rest is JSON. A
checkpoint is parsed in full and checked against the model before any of it
is applied, so a refused one leaves the training state as it was. Loading
never deletes anything: a damaged checkpoint stays on disk for a person to
look at. Saving raises `CheckpointSaveError` (an OSError) with one line that
says what was not written and that the older checkpoints are untouched; what a
worker does then (train on, from memory) is the trainer's decision.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from phalanx.runtime.state import FleetState, TrainState

CHECKPOINT_DIR = "checkpoints"
FORMAT = "phalanx.checkpoint/1"
_PREFIX = "step_"
_TMP = ".tmp-"  # a checkpoint being written: `.tmp-<pid>@<host>@<random>`
_OLD = ".old-"  # a checkpoint being replaced by a retried save of the same step
_FILES = ("model.safetensors", "optimizer.safetensors", "meta.json")


class CheckpointError(Exception):
    """A checkpoint on disk is missing a file, fails its checksum or cannot be parsed."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (a full disk, a lost mount); older ones are untouched.

    `str()` is one line for a user; `errno` is the cause's (ENOSPC for a full disk).
    """

    def __str__(self) -> str:
        return str(self.strerror)


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
        tensors[key] = tree.detach()
        return {"__tensor__": key}
    if isinstance(tree, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    return tree


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as safetensors writes them: on the CPU, contiguous, none sharing memory.

    Only a tensor that shares its storage (tied weights, a view into a larger
    buffer) is copied: the save is synchronous, so the others are written from
    where they live. A copy of everything cost 10-130 ms per save of a 0.43M-parameter
    model on a busy host, and would hold a second copy of a 300M model's state.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        whole = storage.nbytes() == tensor.nbytes and tensor.storage_offset() == 0
        if not whole or storage.data_ptr() in seen or tensor.nbytes == 0:
            tensor = tensor.clone()
        else:
            seen.add(storage.data_ptr())
        out[name] = tensor
    return out


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


def _write_text(path: Path, text: str) -> None:
    """Write and fsync one small file (a full disk shows here or at the fsync)."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(state: TrainState, run_dir: str | Path, keep: int = 3) -> Path | None:
    """Write a checkpoint of `state` atomically; prune to the newest `keep`.

    On any failure (ENOSPC above all) the temporary directory is removed, nothing
    under a `step_` name is touched, and `CheckpointSaveError` says so in one line.
    A replica group's ranks all gather the whole state; one writes it (the others
    return None): the checkpoint of a group is that of an unsharded replica.
    """
    model_state, optimizer_state = state.whole_tensors()
    if not state.writes_for_group:
        return None
    root = Path(run_dir) / CHECKPOINT_DIR
    step = state.fleet.step
    final = root / f"{_PREFIX}{step:08d}"
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(root)  # a crash mid-save left them; on a full disk they count
        tmp = Path(
            tempfile.mkdtemp(prefix=f"{_TMP}{os.getpid()}@{socket.gethostname()}@", dir=root)
        )
        save_file(_unshared(model_state), tmp / "model.safetensors")
        optim_tensors: dict[str, torch.Tensor] = {}
        optim_tree = _split_tensors(optimizer_state, "optimizer", optim_tensors)
        rng_tensors = {"rng.cpu": torch.get_rng_state()}
        extra_tensors: dict[str, torch.Tensor] = {}
        extra_tree = _split_tensors(state.extra_state(), "extra", extra_tensors)
        save_file(
            _unshared({**optim_tensors, **rng_tensors, **extra_tensors}),
            tmp / "optimizer.safetensors",
        )
        meta = {
            "format": FORMAT,
            "fleet": state.fleet.to_json(),
            "optimizer": optim_tree,
            "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
            **extra_tree,  # {} or {"extra": ...}: a sites run's site state
        }
        _write_text(tmp / "meta.json", json.dumps(meta))
        for name in _FILES[:2]:  # safetensors wrote these; make them durable too
            with (tmp / name).open("rb") as handle:
                os.fsync(handle.fileno())
        manifest = {"files": {name: _sha256(tmp / name) for name in _FILES}}
        _write_text(tmp / "manifest.json", json.dumps(manifest))
        _move_into_place(tmp, final)
        tmp = None
        _fsync_dir(root)
    except (OSError, SafetensorError) as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        cause = err if isinstance(err, OSError) else _os_error_of(err)
        raise CheckpointSaveError(cause.errno, _save_failure(step, root, cause)) from err
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(root, keep)
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; a retried save of the same step replaces it whole."""
    if not final.exists():
        os.rename(tmp, final)
        return
    # Move the old one aside first: if the rename fails, it goes back and nothing is lost.
    old = final.with_name(f"{_OLD}{os.getpid()}@{socket.gethostname()}@{final.name}")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _os_error_of(err: SafetensorError) -> OSError:
    """safetensors reports a full disk as SafetensorError('... (os error 28)'), not OSError."""
    found = re.search(r"os error (\d+)", str(err))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code))


def _save_failure(step: int, root: Path, err: OSError) -> str:
    why = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"the disk is full ({why})"
    kept = [p.name for p in list_checkpoints(root.parent)]
    older = (
        f"the checkpoints already on disk are untouched (newest: {kept[0]})"
        if kept
        else "there is no older checkpoint"
    )
    return f"checkpoint of step {step} not written to {root}: {why}; {older}"


def _remove_stale_temporaries(root: Path) -> None:
    """Clear what a writer killed mid-save left behind (only a dead process on this host's).

    A `.tmp-` directory is a half-written checkpoint: removed. An `.old-` one is a
    valid checkpoint moved aside for a retried save of its step: renamed back when
    the save never replaced it, else removed.
    """
    host = socket.gethostname()
    for entry in root.iterdir():
        prefix = entry.name[: len(_TMP)]
        if prefix not in (_TMP, _OLD):
            continue
        pid_text, _, rest = entry.name[len(prefix) :].partition("@")
        owner_host, _, tail = rest.partition("@")
        # Another host's (on a shared disk) or a name we did not write: not ours to judge.
        if owner_host != host or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        target = root / tail
        if prefix == _OLD and tail.startswith(_PREFIX) and not target.exists():
            os.rename(entry, target)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories, newest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def checkpoint_step(path: Path) -> int:
    """The committed step a checkpoint directory holds (from its `step_NNNNNNNN` name)."""
    return int(path.name[len(_PREFIX) :])


def prune_checkpoints(root: Path, keep: int) -> None:
    for stale in list_checkpoints(root.parent)[max(keep, 1) :]:
        shutil.rmtree(stale, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the parsed meta.json."""
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise CheckpointError("manifest.json is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as err:  # also UnicodeDecodeError
        raise CheckpointError(f"manifest.json is unreadable ({err})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    # Exactly our files, by plain name: a manifest that lists fewer verifies nothing.
    if (
        not isinstance(files, dict)
        or sorted(files) != sorted(_FILES)
        or not all(isinstance(d, str) for d in files.values())
    ):
        raise CheckpointError("manifest.json does not list the checkpoint's files")
    for name, digest in files.items():
        file_path = path / name
        if not file_path.is_file():
            raise CheckpointError(f"{name} is missing")
        if _sha256(file_path) != digest:
            raise CheckpointError(f"{name} fails its checksum (truncated or tampered)")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except ValueError as err:
        raise CheckpointError(f"meta.json is unreadable ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"meta.json is not a {FORMAT} checkpoint")
    return meta


@dataclass
class _Parsed:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    fleet: FleetState
    rng: torch.Tensor | None
    extra: dict[str, Any]


def _parse(path: Path, state: TrainState) -> _Parsed:
    """Read a verified checkpoint completely, without touching `state`."""
    meta = verify_checkpoint(path)
    try:
        model = _read_tensors(path / "model.safetensors")
        other = _read_tensors(path / "optimizer.safetensors")
        rng = other.pop("rng.cpu", None)
        extra_names = [k for k in other if k.startswith("extra.")]
        extra_tensors = {k: other.pop(k) for k in extra_names}
        parsed = _Parsed(
            model=model,
            optimizer=_optimizer_from_json(_join_tensors(meta["optimizer"], other)),
            scheduler=meta.get("scheduler"),
            fleet=FleetState.from_json(meta["fleet"]),
            rng=rng,
            extra=_join_tensors({"extra": meta.get("extra", {})}, extra_tensors),
        )
    except (SafetensorError, LookupError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"cannot be parsed ({type(err).__name__}: {err})") from None
    missing = sorted(set(state.extra) - set(parsed.extra.get("extra", {})))
    if missing:  # checked before anything is loaded: a refused checkpoint changes nothing
        raise CheckpointError(
            f"holds no {missing[0]!r} state, which this run needs (saved by another kind of run)"
        )
    expected = state.model.state_dict()
    wrong = sorted(set(expected) ^ set(model)) or [
        k for k in expected if expected[k].shape != model[k].shape
    ]
    if wrong:
        raise CheckpointError(f"model.safetensors does not fit this model (at {wrong[0]!r})")
    return parsed


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors copied out of the file. load_file's are backed by a mapping of it, and the
    optimizer keeps them as its state: the file's disk space would stay in use after
    pruning (on a full disk, that matters), and a file cut short under the mapping would
    kill the process with SIGBUS."""
    return {name: tensor.clone() for name, tensor in load_file(path).items()}


def load_checkpoint_into(state: TrainState, path: Path) -> None:
    parsed = _parse(path, state)
    try:
        state.load_whole(parsed.model, parsed.optimizer)
        if state.scheduler is not None and parsed.scheduler is not None:
            state.scheduler.load_state_dict(parsed.scheduler)
        if parsed.rng is not None:
            torch.set_rng_state(parsed.rng)
        state.load_extra(parsed.extra)
    except (LookupError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"does not fit this run ({type(err).__name__}: {err})") from None
    state.fleet = parsed.fleet


def load_newest(state: TrainState, run_dir: str | Path) -> LoadedCheckpoint | None:
    """Load the newest valid checkpoint into `state`; None when there is none."""
    skipped: list[tuple[Path, str]] = []
    for path in list_checkpoints(run_dir):
        try:
            load_checkpoint_into(state, path)
        except CheckpointError as err:
            skipped.append((path, str(err)))
            continue
        except OSError as err:  # unreadable (permissions, I/O error): as bad as damaged
            skipped.append((path, f"cannot be read ({err.strerror or err})"))
            continue
        return LoadedCheckpoint(step=state.fleet.step, path=path, skipped=skipped)
    if skipped:
        raise CheckpointError(
            "no valid checkpoint: " + "; ".join(f"{p.name}: {why}" for p, why in skipped)
        )
    return None
