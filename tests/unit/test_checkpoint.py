import errno
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.state import FleetState, TrainState
from tests.disk_helpers import mounted_tmpfs


def _state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3).double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    optimizer.step()
    scheduler.step()
    return TrainState(model, optimizer, scheduler, FleetState(7, {"r0": 3.5}, {"r0": 8}))


def _same(a: TrainState, b: TrainState) -> bool:
    params = all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    opt_a, opt_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    optim = all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)
    return (
        params
        and optim
        and a.fleet == b.fleet
        and a.scheduler.state_dict() == b.scheduler.state_dict()
    )


def test_roundtrip_is_exact(tmp_path):
    saved = _state(0)
    ckpt.save_checkpoint(saved, tmp_path)
    loaded = _state(1)
    assert not _same(saved, loaded)
    result = ckpt.load_newest(loaded, tmp_path)
    assert result is not None and result.step == 7
    assert _same(saved, loaded)


class _Tied(torch.nn.Module):
    """Tied weights (one tensor under two names) and a buffer that views a larger one."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("table", torch.arange(12.0))
        self.register_buffer("window", self.table[4:8])


def test_tied_weights_and_views_round_trip_without_copying_the_rest(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = _Tied()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.head(model.embed(torch.tensor([1, 2]))).sum().backward()
    optimizer.step()
    copied: list[torch.Size] = []
    clone = torch.Tensor.clone
    monkeypatch.setattr(
        torch.Tensor, "clone", lambda t, *a, **k: copied.append(t.shape) or clone(t, *a, **k)
    )
    ckpt.save_checkpoint(TrainState(model, optimizer, None), tmp_path)
    monkeypatch.undo()
    # Only the second name of the tied weight and the view are copied: the weights and
    # the optimizer's moments are written from where they live.
    assert sorted(copied) == sorted([torch.Size([5, 3]), torch.Size([4])])
    torch.manual_seed(1)
    other = _Tied()
    other_optimizer = torch.optim.AdamW(other.parameters(), lr=0.1)
    assert ckpt.load_newest(TrainState(other, other_optimizer, None), tmp_path) is not None
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert torch.equal(other.window, model.window)
    moments = other_optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, optimizer.state_dict()["state"][0]["exp_avg"])


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    state = _state(0)
    ckpt.save_checkpoint(state, tmp_path)
    state.fleet.step = 9
    newest = ckpt.save_checkpoint(state, tmp_path)
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    target = _state(1)
    result = ckpt.load_newest(target, tmp_path)
    assert result.step == 7
    assert result.skipped and "checksum" in result.skipped[0][1]


def test_tampered_meta_is_refused(tmp_path):
    state = _state(0)
    path = ckpt.save_checkpoint(state, tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta["fleet"]["step"] = 1000
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="no valid checkpoint"):
        ckpt.load_newest(_state(1), tmp_path)


def test_keeps_only_last_k_and_no_temp_dirs(tmp_path):
    state = _state(0)
    for step in range(5):
        state.fleet.step = step
        ckpt.save_checkpoint(state, tmp_path, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_00000004", "step_00000003"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_failed_write_leaves_previous_intact(tmp_path, monkeypatch):
    state = _state(0)
    ckpt.save_checkpoint(state, tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    state.fleet.step = 8
    with pytest.raises(OSError):
        ckpt.save_checkpoint(state, tmp_path)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000007"]
    assert ckpt.load_newest(_state(1), tmp_path).step == 7


# ------------------------------------------------------------ safe loading
def _two_checkpoints(tmp_path):
    state = _state(0)
    older = ckpt.save_checkpoint(state, tmp_path)
    state.fleet.step = 9
    newest = ckpt.save_checkpoint(state, tmp_path)
    return older, newest


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: _flip_byte(p / "model.safetensors", -5), "model.safetensors fails its checksum"),
        (lambda p: _flip_byte(p / "optimizer.safetensors", 100), "optimizer.safetensors fails"),
        (lambda p: _flip_byte(p / "meta.json", 3), "meta.json fails its checksum"),
        (lambda p: (p / "optimizer.safetensors").write_bytes(b""), "fails its checksum"),
        (lambda p: (p / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is unreadable"),
        (lambda p: (p / "manifest.json").write_bytes(b"\xff\xfe"), "manifest.json is unreadable"),
        (lambda p: (p / "manifest.json").write_text("[]"), "does not list the checkpoint's files"),
        (lambda p: (p / "manifest.json").write_text('{"files": {}}'), "does not list"),
    ],
)  # fmt: skip
def test_tampered_or_truncated_newest_is_refused_and_the_previous_used(tmp_path, damage, reason):
    older, newest = _two_checkpoints(tmp_path)
    damage(newest)
    before = sorted(p.name for p in newest.iterdir())
    target = _state(1)
    result = ckpt.load_newest(target, tmp_path)
    assert result.step == 7 and result.path == older
    assert [p for p, _ in result.skipped] == [newest]
    assert reason in result.skipped[0][1] and "\n" not in result.skipped[0][1]
    assert _same(_state(0), target)  # the state is exactly the older checkpoint's
    assert sorted(p.name for p in newest.iterdir()) == before  # loading deletes nothing


def _rewrite_manifest(path):
    """A checkpoint edited by someone who also recomputed the checksums."""
    files = {
        n: ckpt._sha256(path / n)
        for n in ("model.safetensors", "optimizer.safetensors", "meta.json")
    }
    (path / "manifest.json").write_text(json.dumps({"files": files}))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda p: (p / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}garbage"), "cannot be parsed"),
        (lambda p: (p / "meta.json").write_text('{"format": "phalanx.checkpoint/1"}'), "cannot be parsed"),
        (lambda p: (p / "meta.json").write_text('{"format": "pickle"}'), "not a phalanx.checkpoint/1"),
        (lambda p: (p / "meta.json").write_text("[1, 2]"), "not a phalanx.checkpoint/1"),
    ],
)  # fmt: skip
def test_a_consistent_but_malformed_checkpoint_is_refused_without_touching_state(
    tmp_path, edit, reason
):
    _, newest = _two_checkpoints(tmp_path)
    edit(newest)
    _rewrite_manifest(newest)
    target = _state(1)
    result = ckpt.load_newest(target, tmp_path)
    assert result.step == 7 and reason in result.skipped[0][1]
    assert _same(_state(0), target)


def test_a_checkpoint_of_another_model_is_refused_before_anything_is_loaded(tmp_path):
    ckpt.save_checkpoint(_state(0), tmp_path)
    torch.manual_seed(3)
    model = torch.nn.Linear(5, 3).double()  # another shape
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    other = TrainState(model, optimizer, None, FleetState(0, {}, {}))
    weights = model.weight.detach().clone()
    with pytest.raises(ckpt.CheckpointError, match="does not fit this model"):
        ckpt.load_newest(other, tmp_path)
    assert torch.equal(model.weight, weights) and other.fleet.step == 0


def test_when_every_checkpoint_is_bad_nothing_is_loaded_or_deleted(tmp_path):
    older, newest = _two_checkpoints(tmp_path)
    _flip_byte(newest / "model.safetensors", 50)
    (older / "optimizer.safetensors").write_bytes(b"\x00" * 10)  # truncated
    files = {p: p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_newest(_state(1), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "step_00000009: model.safetensors fails its checksum" in message
    assert "step_00000007: optimizer.safetensors fails its checksum" in message
    assert {p: p.read_bytes() for p in files} == files


def test_checkpoints_hold_no_pickle(tmp_path):
    path = ckpt.save_checkpoint(_state(0), tmp_path)
    for name in ("model.safetensors", "optimizer.safetensors", "meta.json", "manifest.json"):
        data = (path / name).read_bytes()
        assert b"\x80\x02" not in data[:2] and not data.startswith(b"PK")  # no pickle, no zip
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["model.safetensors", "optimizer.safetensors", "meta.json", "manifest.json"]
    )


# ---------------------------------------------------------------- full disk
ENOSPC_SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"


def _disk_fills_at(monkeypatch, where):
    """Make the save fail with ENOSPC part-way, after writing half of the file `where`."""
    real_save_file, real_write_text = ckpt.save_file, ckpt._write_text

    def save_file(tensors, path, *args, **kwargs):
        real_save_file(tensors, path, *args, **kwargs)
        if path.name == where:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            raise ckpt.SafetensorError(ENOSPC_SAFETENSORS)  # what safetensors really raises

    def write_text(path, text):
        if path.name == where:
            path.write_text(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_text(path, text)

    def mkdtemp(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_file", save_file)
    monkeypatch.setattr(ckpt, "_write_text", write_text)
    if where == "mkdtemp":
        monkeypatch.setattr(ckpt.tempfile, "mkdtemp", mkdtemp)


@pytest.mark.parametrize(
    "where", ["mkdtemp", "model.safetensors", "optimizer.safetensors", "meta.json", "manifest.json"]
)
def test_a_full_disk_part_way_through_a_save_loses_nothing_already_saved(
    tmp_path, monkeypatch, where
):
    older, newest = _two_checkpoints(tmp_path)
    saved = {p: p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
    _disk_fills_at(monkeypatch, where)
    state = _state(0)
    state.fleet.step = 11
    with pytest.raises(ckpt.CheckpointSaveError) as err:
        ckpt.save_checkpoint(state, tmp_path, keep=2)
    assert err.value.errno == errno.ENOSPC
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("checkpoint of step 11 not written to ")
    assert (
        "the disk is full" in message
        and "checkpoints already on disk are untouched (newest: step_00000009)" in message
    )
    # Nothing new under any name a later load could pick, nothing old changed or pruned.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        older.name,
        newest.name,
    ]
    assert {p: p.read_bytes() for p in saved} == saved
    monkeypatch.undo()
    assert ckpt.load_newest(_state(1), tmp_path).step == 9
    assert ckpt.load_checkpoint_into(_state(1), older) is None


def test_a_retried_save_of_the_same_step_that_fails_keeps_the_old_copy(tmp_path, monkeypatch):
    state = _state(0)
    path = ckpt.save_checkpoint(state, tmp_path)
    saved = {p.name: p.read_bytes() for p in path.iterdir()}
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".tmp-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename)
    with pytest.raises(ckpt.CheckpointSaveError):
        ckpt.save_checkpoint(state, tmp_path)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [path.name]
    assert {p.name: p.read_bytes() for p in path.iterdir()} == saved


def test_a_writer_killed_mid_save_leaves_nothing_a_load_picks_and_the_next_save_clears_it(
    tmp_path,
):
    state = _state(0)
    ckpt.save_checkpoint(state, tmp_path)
    root = tmp_path / "checkpoints"
    # A writer that died (pid 2**22 + 1 is above Linux's pid_max) on this host, and one
    # on another host sharing the disk, which is not ours to remove.
    dead = root / f".tmp-{2**22 + 1}@{socket.gethostname()}@abc123"
    foreign = root / ".tmp-1@some-other-host@abc123"
    for half in (dead, foreign):
        half.mkdir()
        (half / "model.safetensors").write_bytes(b"\x00" * 100)
    assert ckpt.load_newest(_state(1), tmp_path).step == 7
    state.fleet.step = 8
    ckpt.save_checkpoint(state, tmp_path)
    assert not dead.exists() and foreign.exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root")
def test_a_really_full_disk(tmp_path):
    """The same, on a 2 MiB tmpfs that a real save fills (no monkeypatch)."""
    # Loaded tensors are copies: no checkpoint file may stay mapped (and its space in use).
    with mounted_tmpfs(tmp_path / "disk", "2m", must_unmount=True) as disk:
        torch.manual_seed(0)
        model = torch.nn.Linear(128, 256).double()  # 264 KB of weights, ~0.8 MB a checkpoint
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        model(torch.randn(2, 128, dtype=torch.float64)).sum().backward()
        optimizer.step()
        state = TrainState(model, optimizer, None, FleetState(0, {}, {}))
        saved = []
        with pytest.raises(ckpt.CheckpointSaveError) as err:
            for step in range(1, 10):
                state.fleet.step = step
                saved.append(ckpt.save_checkpoint(state, disk, keep=10).name)
        assert saved and err.value.errno == errno.ENOSPC
        assert "the disk is full" in str(err.value)
        assert sorted(p.name for p in (disk / "checkpoints").iterdir()) == sorted(saved)
        assert ckpt.load_newest(state, disk).step == len(saved)


def test_a_trainer_on_a_full_disk_warns_in_one_line_and_trains_on(tmp_path, monkeypatch, capsys):
    from torch.utils.data import TensorDataset

    import phalanx

    def disk_full(*args, **kwargs):
        raise ckpt.SafetensorError(ENOSPC_SAFETENSORS)

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    trainer = phalanx.Trainer(
        model=torch.nn.Linear(4, 1),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        dataset=data,
        loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        global_batch_size=8,
        steps=4,
        out_dir=tmp_path,
        checkpoint_every=2,
    )
    summary = trainer.fit()
    assert summary["completed"] and summary["steps"] == 4
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 2, warnings  # one line per failed checkpoint (steps 2 and 4)
    assert warnings[0].startswith("warning: checkpoint of step 2 not written to ")
    assert "there is no older checkpoint" in warnings[0]
    assert "the disk is full" in warnings[0] and warnings[0].endswith(
        "training goes on from memory"
    )
    assert ckpt.list_checkpoints(tmp_path) == []
    assert not list((tmp_path / "checkpoints").iterdir())  # no half-written directory
    failed = [
        e for e in phalanx.observe.events.read_events(tmp_path) if e["kind"] == "checkpoint_failed"
    ]
    assert [e["step"] for e in failed] == [2, 4]


def test_a_full_disk_at_the_final_model_write_is_one_line_and_exit_5(tmp_path, monkeypatch, capsys):
    """The run's last write fails: one clear line, exit code 5 (the disk, not training, failed), no partial file left."""
    import phalanx.runtime.finish as finish_module
    from phalanx.errors import EXIT_DISK_FULL

    def full_disk(model, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(finish_module, "save_model", full_disk)
    with pytest.raises(SystemExit) as stopped:
        finish_module.write_final_model(torch.nn.Linear(2, 2), tmp_path)
    assert stopped.value.code == EXIT_DISK_FULL
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: the final model could not be written")
    assert "No space left" in out[0] and "--resume" in out[0]
    assert list(tmp_path.iterdir()) == []
