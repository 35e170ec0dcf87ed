import json

import pytest
import torch

from phalanx.runtime import checkpoint as ckpt
from phalanx.runtime.state import FleetState, TrainState


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
