"""The three trackers behind one small interface; each imports its package only when used."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

from phalanx.observe.trackers.spec import LogSpec


class Tracker(Protocol):
    """What the feed calls, always from its one thread, in this order."""

    where: str  # one line for the user: where to look at this run

    def config(self, values: dict[str, Any]) -> None: ...
    def metrics(self, step: int, values: dict[str, float]) -> None: ...
    def note(self, step: int, text: str) -> None: ...
    def finish(self, summary: dict[str, float], completed: bool) -> None: ...


class TensorBoardTracker:
    def __init__(self, spec: LogSpec, run_name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        # Flushed often: `tensorboard --logdir` is watched while the run goes on.
        self.writer = SummaryWriter(log_dir=spec.target, flush_secs=5)
        self.last_step = 0
        self.where = f"TensorBoard: tensorboard --logdir {spec.target}"

    def config(self, values: dict[str, Any]) -> None:
        self.writer.add_text("config", _markdown_table(values), self.last_step)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.last_step = step
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def note(self, step: int, text: str) -> None:
        self.writer.add_text("events", text, step)

    def finish(self, summary: dict[str, float], completed: bool) -> None:
        for name, value in summary.items():
            self.writer.add_scalar(name, value, self.last_step)
        self.writer.add_text("summary", _markdown_table({"completed": completed, **summary}))
        self.writer.close()


class WandbTracker:
    def __init__(self, spec: LogSpec, run_name: str, out_dir: Path) -> None:
        import wandb

        # Online only where the user set it up; else an offline run that `wandb sync` uploads,
        # so a machine without network or without a W&B login still keeps its logs.
        mode = os.environ.get("WANDB_MODE") or (
            "online" if os.environ.get("WANDB_API_KEY") else "offline"
        )
        settings = wandb.Settings(
            console="off",  # the launcher's own output is the live view, not a W&B log
            silent=True,  # W&B's lines would break the live view; the launcher says where
            x_disable_stats=True,  # host stats would be the launcher's, not the chips'
            save_code=False,
            disable_git=True,
        )
        self.run = wandb.init(
            project=spec.target, name=run_name, dir=str(out_dir), mode=mode, settings=settings
        )
        self.where = (
            f"W&B: offline run in {Path(self.run.dir).parent}; `wandb sync` uploads it"
            if mode == "offline"
            else f"W&B: {self.run.url or spec.target}"
        )

    def config(self, values: dict[str, Any]) -> None:
        self.run.config.update(values, allow_val_change=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def note(self, step: int, text: str) -> None:
        # W&B has no per-step text series outside tables; the summary keeps the latest line
        # and the counters under events/ carry the timeline.
        self.run.summary["last_event"] = f"step {step}: {text}"

    def finish(self, summary: dict[str, float], completed: bool) -> None:
        self.run.summary.update({**summary, "completed": completed})
        self.run.finish(exit_code=0 if completed else 1)


class MlflowTracker:
    def __init__(self, spec: LogSpec, run_name: str) -> None:
        uri = spec.target
        if "://" not in uri and not uri.startswith(("file:", "databricks")):
            # A directory: MLflow's file store, which MLflow 3 keeps in maintenance mode and
            # refuses unless asked for. It needs no server and no database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            Path(uri).mkdir(parents=True, exist_ok=True)
            uri = Path(uri).resolve().as_uri()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "phalanx")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(name)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.notes: list[str] = []
        self.last_step = 0
        self.where = f"MLflow: run {self.run_id} in {uri} (mlflow ui --backend-store-uri {uri})"

    def config(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [
            Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in values.items()
        ]
        self.client.log_batch(self.run_id, params=params)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self.last_step = step
        now_ms = int(time.time() * 1000)
        batch = [Metric(k, v, now_ms, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def note(self, step: int, text: str) -> None:
        self.notes.append(f"step {step}: {text}")

    def finish(self, summary: dict[str, float], completed: bool) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        batch = [Metric(k, v, now_ms, self.last_step) for k, v in summary.items()]
        for start in range(0, len(batch), 500):  # MLflow takes at most 1000 per batch
            self.client.log_batch(self.run_id, metrics=batch[start : start + 500])
        self.client.log_text(self.run_id, "\n".join(self.notes) + "\n", "events.txt")
        self.client.set_terminated(self.run_id, status="FINISHED" if completed else "FAILED")


def make_tracker(spec: LogSpec, run_name: str, out_dir: Path) -> Tracker:
    if spec.kind == "tensorboard":
        return TensorBoardTracker(spec, run_name)
    if spec.kind == "wandb":
        return WandbTracker(spec, run_name, out_dir)
    return MlflowTracker(spec, run_name)


def _markdown_table(values: dict[str, Any]) -> str:
    rows = [
        f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in values.items()
    ]
    return "\n".join(["| key | value |", "|---|---|", *rows])
