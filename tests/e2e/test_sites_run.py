"""Sites runs end to end: real `phalanx run` fleets per site, a real outer lighthouse.

`phalanx sites` starts the outer lighthouse and one `phalanx run --site ...` per
site on loopback; the checks read what a user would: the sites' run
directories (events, final models) and the fleet-wide accounting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phalanx.observe.events import read_events
from phalanx.sites.fleet_accounting import fleet_accounting
from tests.fleet_helpers import MLP, max_param_diff, phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BATCH, SAMPLES = 64, 2048


def _rounds(run_dir: Path) -> dict[int, dict]:
    """One outer_round record per round (every replica writes the same one)."""
    rounds: dict[int, dict] = {}
    for event in read_events(run_dir):
        if event.get("kind") == "outer_round":
            record = {
                k: event[k] for k in ("round", "sites", "counted", "next_counts", "anchor_checksum")
            }
            assert rounds.setdefault(event["round"], record) == record  # replicas agree
    return rounds


def _sites(out: Path, *names: str) -> list[Path]:
    return [out / name for name in names]


def _check_accounting(run_dirs: list[Path]) -> dict:
    data = fleet_accounting(run_dirs, BATCH, SAMPLES, 0)
    assert data["duplicates"] == 0, data
    assert data["missing"] == 0, data
    assert data["steps_missing"] == [], data
    assert data["samples_seen"] > 0
    return data


def test_two_sites_of_different_speeds_end_with_one_model(tmp_path):
    out = tmp_path / "run"
    result = phalanx(
        "sites", "--site", "a=1,1", "--site", "b=0.5", "--outer-every", "5",
        "--outer-momentum", "0.5", "--out", str(out), str(MLP), "--",
        "--steps", "30", "--dtype", "float64", "--samples", str(SAMPLES),
        timeout_s=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a, b = _sites(out, "a", "b")
    assert max_param_diff(a, b) == 0.0
    rounds = _rounds(a)
    assert sorted(rounds) == list(range(6)) and _rounds(b) == rounds
    assert all(r["counted"] == [0, 1] for r in rounds.values())
    _check_accounting([a, b])


# Issue 17 asks for a 30 s cut; CI cuts for 12 s (PHALANX_SITES_CUT_S=30 for the full one).
CUT_S = float(os.environ.get("PHALANX_SITES_CUT_S", "12"))


def test_a_cut_site_and_a_killed_replica_lose_nothing_and_replay_exactly(tmp_path):
    """Site b is cut off (every process of it stopped) after round 3; a replica of site
    a is killed mid-round and restarted. Nothing is lost or repeated, b heals the outer
    state and its work of the cut counts late, and a rerun fixing the recorded rounds
    ends with the same parameters."""
    out = tmp_path / "run"
    # Paced chips: a step of a one-chip site lasts about 0.1 s, a round of 10 about 1 s,
    # so the run (3 rounds per second of cut) goes on long after b is back.
    rounds = int(3 * CUT_S)
    common = [
        "--site", "a=0.01,0.01", "--site", "b=0.01", "--site", "c=0.01",
        "--outer-every", "10", "--outer-momentum", "0.5",
    ]  # fmt: skip
    script = [str(MLP), "--", "--steps", str(10 * rounds), "--dtype", "float64",
              "--width", "128", "--samples", str(SAMPLES), "--checkpoint-every", "50"]  # fmt: skip
    result = phalanx(
        "sites", *common, "--out", str(out), "--cut", f"b:round=3,for_s={CUT_S}",
        "--site-fault", "a:kill:replica=1,step=45,restart_s=1", *script, timeout_s=560,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    a, b, c = _sites(out, "a", "b", "c")
    assert max_param_diff(a, b) == 0.0
    assert max_param_diff(a, c) == 0.0
    recorded = _rounds(a)
    assert sorted(recorded) == list(range(rounds))
    left_out = [r for r, rec in recorded.items() if 1 not in rec["counted"]]
    assert left_out, "site b was never left out: the cut did not happen mid-run"
    back = max(left_out) + 1
    assert back in recorded, "site b never came back before the end"
    late = recorded[back]["sites"][1]
    assert late["counted"] and late["planned"] == 0 and late["samples"] > 0  # its cut work
    assert any(e.get("kind") == "outer_heal" for e in read_events(b))
    restarted = [e for e in read_events(a) if e.get("kind") == "worker_start" and e["restarted"]]
    assert restarted, "the killed replica of site a did not come back"
    _check_accounting([a, b, c])

    replay = tmp_path / "replay"
    result = phalanx(
        "sites", *common, "--out", str(replay), "--outer-replay", str(a), *script,
        timeout_s=560,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert max_param_diff(a, replay / "a") <= 1e-9
    replayed = _rounds(replay / "a")
    assert {r: (x["counted"], x["next_counts"]) for r, x in replayed.items()} == {
        r: (x["counted"], x["next_counts"]) for r, x in recorded.items()
    }
