"""Outer-round records in events.jsonl, and a replay that fixes the counts: same parameters."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from phalanx.data.slicing import sample_indices
from phalanx.observe.events import EventLog
from phalanx.sites.compression import Codec
from phalanx.sites.local_fleet import LocalSites, steps_in_round
from phalanx.sites.outer_optimizer import OuterSettings
from phalanx.sites.rounds import (
    OuterRound,
    ReplaySchedule,
    SiteRound,
    record_round,
    rounds_from_events,
)
from phalanx.sites.streams import StreamPlan, account


def _round(index: int, steps: list[int]) -> OuterRound:
    return OuterRound(index, tuple(SiteRound(i, n, 4 * n, 10 * n) for i, n in enumerate(steps)))


def test_a_round_survives_events_jsonl(tmp_path: Path) -> None:
    log = EventLog(tmp_path, "site0")
    log.emit("step", step=1)  # other events are ignored
    for index, steps in enumerate([[3, 1], [3, 0], [2, 2]]):
        record_round(log, _round(index, steps))
    replay = ReplaySchedule.from_run(tmp_path)
    assert replay.rounds == 3
    assert replay.history() == [[3, 1], [3, 0], [2, 2]]
    assert replay.inner_steps(1, 1) == 0
    with pytest.raises(IndexError, match="beyond the 3 rounds"):
        replay.inner_steps(3, 0)


def test_the_same_round_recorded_by_two_sites_counts_once_but_conflicts_are_refused() -> None:
    same = [{"kind": "outer_round", **_round(0, [2, 1]).event_fields()}] * 2
    assert len(rounds_from_events(same)) == 1
    conflicting = [*same, {"kind": "outer_round", **_round(0, [2, 2]).event_fields()}]
    with pytest.raises(ValueError, match="recorded twice"):
        rounds_from_events(conflicting)
    gap = [{"kind": "outer_round", **_round(1, [2, 1]).event_fields()}]
    with pytest.raises(ValueError, match="misses outer rounds"):
        rounds_from_events(gap)


def test_inconsistent_records_are_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.N-1"):
        OuterRound(0, (SiteRound(1, 1, 1),))
    with pytest.raises(ValueError, match="inner steps"):
        OuterRound(0, (SiteRound(0, 2, 0),))
    with pytest.raises(ValueError, match="not an outer_round record"):
        OuterRound.from_event({"round": 0})


# A float64 fleet of three sites on a small regression task: what the replay must reproduce.
FEATURES, SAMPLES, OUTER_EVERY, ROUNDS = 6, 500, 5, 6
BATCHES = (4, 3, 5)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(SAMPLES, FEATURES, generator=generator, dtype=torch.float64)
    weights = torch.randn(FEATURES, 1, generator=generator, dtype=torch.float64)
    return inputs, inputs @ weights + 0.1 * torch.randn(
        SAMPLES, 1, generator=generator, dtype=torch.float64
    )


def _run(schedule: list[list[int]] | ReplaySchedule, events_dir: Path | None) -> list[torch.Tensor]:
    inputs, targets = _data()
    models = []
    for _ in BATCHES:
        torch.manual_seed(0)
        models.append(nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, 1)).double())
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in models]

    def train_step(site: int, start: int, end: int) -> None:
        rows = sample_indices(start, end, seed=3, num_samples=SAMPLES)
        optimizers[site].zero_grad()
        loss = nn.functional.mse_loss(models[site](inputs[rows]), targets[rows])
        loss.backward()
        optimizers[site].step()

    plan = StreamPlan(OUTER_EVERY, BATCHES)
    fleet = LocalSites(models, plan, Codec("4bit", 8), OuterSettings(), train_step)
    log = EventLog(events_dir, "sites") if events_dir is not None else None
    history = []
    for index in range(ROUNDS):
        if isinstance(schedule, ReplaySchedule):
            counts = [schedule.inner_steps(index, site) for site in range(len(BATCHES))]
        else:
            counts = schedule[index]
        record = fleet.run_round(counts)
        history.append(record.inner_steps)
        if log is not None:
            record_round(log, record)
    assert account(plan, history).used_samples == sum(
        n * b for counts in history for n, b in zip(counts, BATCHES)
    )
    return [p.detach().clone() for p in fleet.models[0].parameters()]


def _clock(seed: int) -> list[list[int]]:
    """Counts as a clock would give them: speeds 1, 0.6, 0.3 with jitter, a site cut off once."""
    jitter = random.Random(seed)
    counts = []
    for _ in range(ROUNDS):
        speeds = [s * jitter.uniform(0.8, 1.2) for s in (1.0, 0.6, 0.3)]
        counts.append(steps_in_round(speeds, OUTER_EVERY))
    counts[2][1] = 0
    return counts


def test_replaying_recorded_counts_gives_the_same_parameters(tmp_path: Path) -> None:
    original = _run(_clock(seed=1), tmp_path)
    replayed = _run(ReplaySchedule.from_run(tmp_path), None)
    assert all(torch.equal(a, b) for a, b in zip(original, replayed))
    # The counts matter: another day's clock ends elsewhere (so the equality above is no accident).
    assert _clock(seed=2) != _clock(seed=1)
    other = _run(_clock(seed=2), None)
    assert max((a - b).abs().max().item() for a, b in zip(original, other)) > 1e-6


def test_steps_in_round_follow_speed() -> None:
    assert steps_in_round([1.0, 0.5, 0.26], 100) == [100, 50, 26]
    with pytest.raises(ValueError, match="positive speed"):
        steps_in_round([0.0], 10)
