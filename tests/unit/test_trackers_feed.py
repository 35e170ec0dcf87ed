"""The launcher's tracker feed: one point per committed step, a failing tracker dropped."""

from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.trackers import feed as feed_module
from phalanx.observe.trackers.spec import LogSpec, parse_log_specs


class Recorder:
    where = "recorder"

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def _record(self, *call):
        if call[0] == self.fail_on:
            raise ConnectionError("server went away\nsecond line")
        self.calls.append(call)

    def config(self, values):
        self._record("config", values)

    def metrics(self, step, values):
        self._record("metrics", step, values)

    def note(self, step, text):
        self._record("note", step, text)

    def finish(self, summary, completed):
        self._record("finish", summary, completed)


def _step(step: int, replica: str) -> dict:
    return {
        "t": 100.0 + step, "kind": "step", "replica": replica, "step": step, "loss": 1.0 / (step + 1),
        "participants": ["r0", "r1"], "shares": [32, 16], "sps": [100.0, 50.0],
        "compute_s": 0.1, "allreduce_s": 0.01,
    }  # fmt: skip


def _feed(monkeypatch, trackers: dict[str, Recorder]) -> tuple[feed_module.TrackerFeed, list[str]]:
    monkeypatch.setattr(feed_module, "make_tracker", lambda spec, _name, _out: trackers[spec.kind])
    said: list[str] = []
    specs = [LogSpec(kind, "x") for kind in trackers]
    return feed_module.TrackerFeed(
        specs, Path("runs/a"), {"script": "s.py"}, said.append, said.append
    ), said


def test_every_committed_step_is_logged_once_with_shares_and_notes(monkeypatch):
    good = Recorder()
    feed, said = _feed(monkeypatch, {"tensorboard": good})
    view = FleetView()
    stream = [
        {"t": 99.0, "kind": "worker_start", "replica": "r0", "steps": 3, "global_batch_size": 48},
        _step(0, "r0"), _step(0, "r1"),  # every participant writes the same step
        {"t": 101.5, "kind": "fault", "fault": "kill", "replica": "r1", "step": 1},
        _step(1, "r0"), _step(2, "r0"),
    ]  # fmt: skip
    for event in stream:
        view.apply(event)
        feed.event(event, view)
    feed.close({"completed": True, "final_loss": 0.33, "data": {"duplicates": 0}, "x": [1]})
    steps = [c[1] for c in good.calls if c[0] == "metrics"]
    assert steps == [0, 1, 2]
    first = next(c[2] for c in good.calls if c[0] == "metrics")
    assert first["share/r0"] == 32 and first["samples_per_s/r1"] == 50 and first["loss"] == 1.0
    assert [c[1:] for c in good.calls if c[0] == "note"] == [
        (1, "fault: r1 at step 1 (fault=kill)")
    ]
    configs = [c[1] for c in good.calls if c[0] == "config"]
    assert configs == [{"script": "s.py"}, {"steps": 3, "global_batch_size": 48}]
    assert good.calls[-1] == (
        "finish", {"summary/final_loss": 0.33, "summary/data/duplicates": 0.0}, True
    )  # fmt: skip
    assert said == ["recorder"]


def test_a_tracker_that_fails_is_said_once_and_dropped_the_others_go_on(monkeypatch):
    broken, good = Recorder(fail_on="metrics"), Recorder()
    feed, said = _feed(monkeypatch, {"mlflow": broken, "tensorboard": good})
    view = FleetView()
    for step in range(4):
        event = _step(step, "r0")
        view.apply(event)
        feed.event(event, view)
    feed.close({"completed": True})
    assert [c[1] for c in good.calls if c[0] == "metrics"] == [0, 1, 2, 3]
    assert not [c for c in broken.calls if c[0] in ("metrics", "finish")]
    warnings = [s for s in said if s.startswith("warning")]
    assert warnings == [
        "warning: --log mlflow:x: stopped (ConnectionError: server went away); training goes on"
    ]


def test_a_tracker_that_cannot_start_does_not_stop_the_run(monkeypatch):
    def refuse(spec, _name, _out):
        raise OSError("connection refused")

    monkeypatch.setattr(feed_module, "make_tracker", refuse)
    said: list[str] = []
    feed = feed_module.TrackerFeed(
        [LogSpec("mlflow", "http://x")], Path("r"), {}, said.append, said.append
    )
    feed.event(_step(0, "r0"), FleetView())
    feed.close({})
    assert said == [
        "warning: --log mlflow:http://x: could not start (OSError: connection refused); not logged"
    ]


@pytest.mark.parametrize(
    ("texts", "field_text"),
    [
        (["tensorboard:a", "tensorboard:b"], "tensorboard is given twice"),
        (["neptune:x"], "unknown tracker 'neptune'"),
        (["wandb:  "], "PROJECT is empty"),
    ],
)
def test_bad_log_specs_are_refused_with_the_fix(texts, field_text):
    with pytest.raises(UsageError) as caught:
        parse_log_specs(texts, Path("runs/a"))
    assert field_text in caught.value.message() and caught.value.field == "--log"


def test_a_tracker_whose_package_is_missing_names_the_install(monkeypatch):
    from phalanx.observe.trackers import spec as spec_module

    monkeypatch.setattr(spec_module.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(UsageError) as caught:
        parse_log_specs(["wandb:p"], Path("runs/a"))
    assert "pip install 'phalanx[trackers]'" in caught.value.message()


def test_defaults_when_the_target_is_left_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specs = parse_log_specs(["tensorboard", "wandb", "mlflow"], Path("runs/a"))
    assert [s.target for s in specs] == [
        str(Path("runs/a/tensorboard")), "phalanx", str(tmp_path / "mlruns")
    ]  # fmt: skip
