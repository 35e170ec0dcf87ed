"""`phalanx run --log ...`: TensorBoard, W&B (offline) and MLflow logs, read back by their tools."""

import os
from pathlib import Path

import pytest

from tests.fleet_helpers import MLP, events, phalanx, summary
from tests.tracker_readers import (
    mlflow_history,
    tensorboard_scalars,
    tensorboard_texts,
    wandb_history,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

for package in ("tensorboard", "wandb", "mlflow"):
    pytest.importorskip(package, reason=f"{package} is in the trackers extra")

STEPS = 16


def test_one_run_logs_to_all_three_trackers_across_a_kill(tmp_path):
    run, board, store = tmp_path / "run", tmp_path / "tb", tmp_path / "mlruns"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))
    }  # offline W&B because no key is set: nothing may reach the network
    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "1,0.5", "--timeout-s", "2",
        "--fault", "kill:replica=1,step=5,restart_s=1",
        "--log", f"tensorboard:{board}", "--log", "wandb:phalanx-test", "--log", f"mlflow:{store}",
        "--", "--dtype", "float64", "--steps", str(STEPS), "--samples", "300",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    losses = {}
    for event in events(run):
        if event["kind"] == "step":
            losses.setdefault(event["step"], event["loss"])
    assert sorted(losses) == list(range(STEPS))
    final = summary(run)

    # TensorBoard: one loss point per committed step, equal to the fleet's (float32 there).
    scalars = tensorboard_scalars(board)
    assert [s for s, _ in scalars["loss"]] == list(range(STEPS))
    assert all(abs(v - losses[s]) < 1e-6 for s, v in scalars["loss"])
    assert {"share/r0", "share/r1", "fleet/samples_per_s", "time/allreduce_s"} <= set(scalars)
    # Energy: the fleet's joules grow, and each chip's power is logged (emulated chips).
    fleet_j = [v for _, v in scalars["energy/fleet_j"]]
    assert fleet_j[-1] > fleet_j[0] > 0
    assert {"power_w/r0", "power_w/r1"} <= set(scalars)
    assert scalars["events/faults"][-1][1] == 1
    assert scalars["summary/data/duplicates"][-1][1] == 0
    notes = tensorboard_texts(board, "events")
    assert any(n.startswith("fault: r1 at step 5") for n in notes), notes
    config = "\n".join(tensorboard_texts(board, "config"))
    assert "emulated" in config and "global_batch_size" in config, config

    # W&B offline: the transaction log that `wandb sync` uploads holds every step's loss.
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    rows = [r for r in wandb_history(run_file) if "loss" in r]
    assert [r["_step"] for r in rows] == list(range(STEPS))
    assert all(r["loss"] == losses[r["_step"]] for r in rows)  # JSON keeps the float64

    # MLflow's local store: the same losses, the run's configuration, the event lines.
    info, history = mlflow_history(store.as_uri(), "loss")
    assert history == sorted(losses.items())
    mlflow_run = info["run"]
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "run"
    assert mlflow_run.data.params["steps"] == str(STEPS)
    assert mlflow_run.data.metrics["summary/final_loss"] == pytest.approx(final["final_loss"])
    text = info["client"].download_artifacts(mlflow_run.info.run_id, "events.txt", str(tmp_path))
    assert "fault: r1 at step 5" in Path(text).read_text()


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("tensorbord:x", "did you mean tensorboard?"),
        ("wandb:", "wandb: PROJECT is empty"),
        ("mlflow", None),  # a default store: accepted (checked up to the script's own error)
    ],
)
def test_a_bad_log_flag_is_one_line_and_exit_2(tmp_path, flag, expected):
    result = phalanx(
        "run", str(tmp_path / "missing.py"), "--out", str(tmp_path / "run"), "--log", flag,
        cwd=tmp_path,
    )  # fmt: skip
    if expected is None:
        assert "--log" not in result.stderr, result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
