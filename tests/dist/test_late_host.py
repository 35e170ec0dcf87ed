"""A host whose replica comes back after the fleet finished does not train the run again.

Each host keeps its own checkpoints and `.complete` marker, so a replica
restarted on a host of its own learns that the run is over only from the
admission gate (fleetnet/fleet_progress.py). Before that, the lighthouse gave it
a quorum of one and it trained every step again, alone (docs/reliability.md,
bug 6). Real processes, real signals: host h1 is frozen (SIGSTOP) mid-run, h0
finishes alone, then h1's worker is killed and its launcher woken, so the
launcher restarts the worker after the fleet has finished, every time.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.fleet_helpers import (
    EXACT_ARGS,
    MLP,
    events,
    kill_tree,
    lighthouse_service,
    max_param_diff,
    spawn_phalanx,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.dist, pytest.mark.timeout(300)]


def _steps(run) -> list[int]:
    if not (run / "events.jsonl").exists():
        return []
    return [e["step"] for e in events(run) if e["kind"] == "step"]


def _steps_together(run) -> int:
    """The newest step both hosts committed together (-1: none yet), as `run` saw it."""
    if not (run / "events.jsonl").exists():
        return -1
    together = [
        e["step"]
        for e in events(run)
        if e["kind"] == "step" and {"h0-r0", "h1-r0"} <= set(e["participants"])
    ]
    return max(together, default=-1)


def test_a_host_back_after_the_fleet_finished_does_not_train_again(tmp_path, reference_run):
    secret = tmp_path / "fleet.secret"
    service, address = lighthouse_service(secret, tmp_path / "lighthouse.out")
    hosts: list[subprocess.Popen] = []
    try:
        runs = [tmp_path / f"h{i}" for i in range(2)]
        for i, run in enumerate(runs):
            # Paced chips (a step ~50 ms): the two hosts' processes start up to seconds
            # apart on a loaded machine, and at full speed the first one in trained all
            # 100 steps alone before the other joined (a flake hunt under load).
            argv = ["run", str(MLP), "--out", str(run), "--lighthouse", address,
                    "--host-id", f"h{i}", "--secret-file", str(secret), "--emulate", "0.2",
                    "--", *EXACT_ARGS]  # fmt: skip
            hosts.append(spawn_phalanx(argv, tmp_path / f"h{i}.out"))
        h0, h1 = hosts
        wait_for(lambda: _steps_together(runs[1]) >= 3, 180, "h1 to commit step 3 with h0")
        (worker_pid,) = {
            e["pid"] for e in events(runs[1]) if e["kind"] == "worker_start"
        }  # its first and only worker so far
        os.killpg(h1.pid, signal.SIGSTOP)  # the launcher (the worker has a session of its own)
        os.kill(worker_pid, signal.SIGSTOP)
        frozen_at = max(_steps(runs[1]))
        assert h0.wait(timeout=240) == 0, (tmp_path / "h0.out").read_text()[-2000:]

        os.kill(worker_pid, signal.SIGKILL)  # the launcher will restart it: the fleet is done
        os.killpg(h1.pid, signal.SIGCONT)
        code = h1.wait(timeout=240)
        output = (tmp_path / "h1.out").read_text()
        assert code == 0, output[-2000:]
    finally:
        for process in [*hosts, service]:
            if process.poll() is None:
                kill_tree(process)

    restarted = [e for e in events(runs[1]) if e["kind"] == "worker_start" and e["restarted"]]
    assert restarted, "h1's launcher did not restart its worker"
    after = [e for e in events(runs[1]) if e["t"] > restarted[0]["t"]]
    (exit_event,) = [e for e in after if e["kind"] == "straggler_exit"]
    assert exit_event["fleet_finished"] and exit_event["fleet_step"] == 100
    assert not [e for e in after if e["kind"] == "step"]  # no second history
    assert max(_steps(runs[1])) == frozen_at
    assert summary(runs[1])["completed"] and summary(runs[1])["finished_elsewhere"]
    assert not (runs[1] / "model.safetensors").exists()
    assert "while this replica was away" in output
    assert max_param_diff(runs[0], reference_run) < 1e-9
    # h0 gave up on h1's frozen collective; gloo ends it only at its timeout. h0's
    # worker waits for that before exiting (an interpreter shutting down under it
    # aborted the finished worker, exit -6, and its launcher restarted it).
    assert [e["code"] for e in events(runs[0]) if e["kind"] == "worker_exit"] == [0]


def test_a_quorum_behind_the_fleet_waits_for_the_replica_that_holds_the_newer_state(
    tmp_path, reference_run
):
    """h1 trains alone first, then freezes; h0 starts, is behind the fleet, and waits.

    Before the gate kept the fleet's newest step, h0 got a quorum of one and trained
    the same steps again from step 0 (chaos schedule 133 in docs/reliability.md, where a
    host cut off right after a lone start was then quarantined as diverged).
    """
    secret = tmp_path / "fleet.secret"
    service, address = lighthouse_service(secret, tmp_path / "lighthouse.out")
    hosts: dict[str, subprocess.Popen] = {}
    runs = {label: tmp_path / label for label in ("h0", "h1")}

    def start_host(label: str) -> None:
        argv = ["run", str(MLP), "--out", str(runs[label]), "--lighthouse", address,
                "--host-id", label, "--secret-file", str(secret), "--emulate", "1",
                "--quiet", "--", *EXACT_ARGS]  # fmt: skip
        hosts[label] = spawn_phalanx(argv, tmp_path / f"{label}.out")

    try:
        start_host("h1")
        wait_for(lambda: any(s >= 3 for s in _steps(runs["h1"])), 180, "h1 to commit step 3")
        (worker_pid,) = {e["pid"] for e in events(runs["h1"]) if e["kind"] == "worker_start"}
        os.kill(worker_pid, signal.SIGSTOP)
        start_host("h0")
        wait_for(
            lambda: (runs["h0"] / "events.jsonl").exists()
            and any(e["kind"] == "behind_fleet" for e in events(runs["h0"])),
            180,
            "h0 to find itself behind the fleet",
        )
        os.kill(worker_pid, signal.SIGCONT)
        for label, process in hosts.items():
            assert process.wait(timeout=240) == 0, (tmp_path / f"{label}.out").read_text()[-2000:]
    finally:
        for process in [*hosts.values(), service]:
            if process.poll() is None:
                kill_tree(process)

    h0_events = events(runs["h0"])
    assert not [e for e in h0_events if e["kind"] == "rewind"]
    # One history: every step committed once, and every host agrees on who took part.
    seen: dict[int, list[str]] = {}
    for run in runs.values():
        for event in events(run):
            if event["kind"] == "step":
                first = seen.setdefault(event["step"], event["participants"])
                assert first == event["participants"], (event["step"], first, event)
    assert sorted(seen) == list(range(100))
    for run in runs.values():
        assert max_param_diff(run, reference_run) < 1e-9
