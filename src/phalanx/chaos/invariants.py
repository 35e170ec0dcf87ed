"""The invariants of one schedule, recomputed from the run's artifacts.

Deliberately independent of phalanx's own accounting (observe/accounting.py):
the data check rebuilds the committed history from raw `step` events and the
sample order from the documented seed formula, so a bug shared by the runtime
and its summary cannot hide itself.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from phalanx.chaos.schedule import CORRUPTIONS, QUARANTINE_AFTER, category_of
from phalanx.observe import accounting

EXACT_TOLERANCE = 1e-9  # float64: summation order moves results by ~1e-15


@dataclass
class DataCount:
    duplicates: int = 0
    missing: int = 0
    # Step events of one committed step that report other slices or other participants:
    # two quorums committed the same step (a second history), or members disagree.
    disagreements: int = 0
    rollbacks: int = 0  # tie restores: committed steps undone and redone from a checkpoint


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    completed: bool = False
    fired: Counter[str] = field(default_factory=Counter)
    data: DataCount = field(default_factory=DataCount)
    max_param_diff: float | None = None
    max_loss_diff: float | None = None
    quarantined: list[str] = field(default_factory=list)
    # Detections that blame a chip with no injected cause (each is also a violation).
    false_blames: list[str] = field(default_factory=list)
    # Detections the guard attributed to the data (reproduced, a peer agreed): no offence.
    data_outliers: list[str] = field(default_factory=list)
    retries: int = 0
    heals: int = 0
    rejoined: int = 0  # restarted workers that took part in a committed step again

    @property
    def ok(self) -> bool:
        return not self.violations


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a SIGKILL mid-write is not a committed record
    return events


def committed_history(events: list[dict[str, Any]], data: DataCount) -> dict[int, dict[str, Any]]:
    """Step -> its committed `step` event, as the final model saw it (rollbacks undone)."""
    history, disagreements, undos = accounting.committed_history(events)
    data.disagreements += disagreements
    data.rollbacks += undos["tie_restore"]
    return history


def sample_order(epoch: int, num_samples: int, seed: int) -> list[int]:
    """The documented per-epoch permutation (README: seeded per-epoch permutation)."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63 - 1))
    return torch.randperm(num_samples, generator=generator).tolist()


def recount_data(
    history: dict[int, dict[str, Any]],
    steps: int,
    batch: int,
    num_samples: int,
    seed: int,
    data: DataCount,
) -> None:
    """Duplicates and misses of samples over the committed history of `steps` steps."""
    positions = Counter(
        p for event in history.values() for start, end in event["ranges"] for p in range(start, end)
    )
    total = steps * batch
    full_epochs = total // num_samples
    data.duplicates += sum(c - 1 for c in positions.values())  # a position used twice
    data.duplicates += sum(1 for p in positions if not 0 <= p < total)  # beyond the run
    # Positions map to samples through the permutation: in a full epoch every sample once.
    seen: Counter[tuple[int, int]] = Counter()
    for epoch in range(full_epochs + 1):
        order = sample_order(epoch, num_samples, seed)
        for offset in range(num_samples):
            if positions[epoch * num_samples + offset]:
                seen[(epoch, order[offset])] += 1
    data.duplicates += sum(c - 1 for c in seen.values())  # the permutation repeats a sample
    data.missing += sum(
        1 for e in range(full_epochs) for i in range(num_samples) if (e, i) not in seen
    )
    data.missing += sum(1 for p in range(full_epochs * num_samples, total) if not positions[p])


def max_param_diff(run_dir: Path, reference_dir: Path) -> float:
    fleet = load_file(str(run_dir / "model.safetensors"))
    local = load_file(str(reference_dir / "model.safetensors"))
    if fleet.keys() != local.keys():
        return float("inf")
    return max(float((fleet[k].double() - local[k].double()).abs().max()) for k in fleet)


def step_losses(events: list[dict[str, Any]]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e.get("kind") == "step"}


def check_run(
    run_dir: Path,
    returncode: int | None,
    reference_dir: Path,
    steps: int,
    batch: int,
    timeout_s: float,
    outputs: tuple[Path, ...] = (),
    host_codes: tuple[int | None, ...] = (),
    defective: frozenset[str] = frozenset(),
) -> Verdict:
    """Check one run; `outputs` are the hosts' run dirs (default: `run_dir`, one host).

    `defective` names replicas on chips known to be defective (a fleet file's
    `defects`): every detection on them has a cause, and they may be quarantined.

    With hosts (`host_codes`, one replica each), a host whose replica was killed for
    good or quarantined has nothing to finish: its `phalanx run` exits 1, as designed.
    Every other host must exit 0 with the final model, except one whose replica
    came back after the fleet had finished (the gate told it so; its summary says
    `finished_elsewhere`): it has no final model to write.
    """
    verdict = Verdict()
    events = read_events(run_dir)
    outputs = outputs or (run_dir,)
    fired_by: dict[str, list[tuple[int, str]]] = {}
    for event in events:
        if event.get("kind") == "fault":
            category = category_of(event, timeout_s)
            verdict.fired[category] += 1
            fired_by.setdefault(_fault_target(event), []).append((event["step"], category))
    verdict.retries = sum(1 for e in events if e.get("kind") == "retry")
    verdict.heals = sum(1 for e in events if e.get("kind") == "heal")
    verdict.rejoined = _rejoined(events)

    # 1. The run completes.
    summaries = [_summary(out) for out in outputs]
    if returncode is None:
        verdict.violations.append("did not finish before the deadline")
    elif returncode != 0:
        verdict.violations.append(f"phalanx run exited with code {returncode}")
    gone = {
        name
        for name, fired in fired_by.items()
        if any(category == "kill_down" for _, category in fired)
    } | {e["replica"] for e in events if e.get("kind") == "quarantine"}
    for out, code in zip(outputs, host_codes, strict=False):
        if f"{out.name}-r0" not in gone and code != 0:
            verdict.violations.append(f"host {out.name} exited with code {code}")
    for out, summary in zip(outputs, summaries, strict=True):
        if host_codes and f"{out.name}-r0" in gone:
            continue  # down for good (as planned) or quarantined (checked below)
        has_model = (out / "model.safetensors").exists() or summary.get("finished_elsewhere")
        if not summary.get("completed") or not has_model:
            where = "" if out == run_dir else f" ({out.name})"
            verdict.violations.append(f"the run did not complete all steps{where}")
    if host_codes and not any((out / "model.safetensors").exists() for out in outputs):
        verdict.violations.append("no host wrote the final model")
    verdict.completed = returncode == 0 and not verdict.violations

    # 2. Exactly-once data, from the raw step events.
    history = committed_history(events, verdict.data)
    start = next((e for e in events if e.get("kind") == "worker_start"), None)
    if start is not None:
        recount_data(
            history, steps, batch, int(start["num_samples"]), int(start["seed"]), verdict.data
        )
    if verdict.data.duplicates or verdict.data.missing:
        verdict.violations.append(
            f"data: {verdict.data.duplicates} duplicate and {verdict.data.missing} missing samples"
        )
    if verdict.data.disagreements:
        verdict.violations.append(
            f"{verdict.data.disagreements} step events disagree on a committed step's slices "
            "or participants"
        )
    # A host's summary counts only the steps its own replicas took part in: with hosts,
    # the fleet's data is the merged events' (above), and no summary speaks for the fleet.
    for summary in summaries if outputs == (run_dir,) else []:
        claimed = summary.get("data") or {}
        if claimed.get("duplicates") or claimed.get("missing"):
            verdict.violations.append(f"summary.json reports data loss: {claimed}")

    # 3. Exact math against the one-process reference.
    models = [out for out in outputs if (out / "model.safetensors").exists()]
    if models:  # every host's final parameters must be the reference's
        verdict.max_param_diff = max(max_param_diff(out, reference_dir) for out in models)
        if not verdict.max_param_diff < EXACT_TOLERANCE:
            verdict.violations.append(f"max |param - reference| = {verdict.max_param_diff:.3g}")
    reference = step_losses(read_events(reference_dir))
    fleet = {s: e["loss"] for s, e in history.items()}
    common = reference.keys() & fleet.keys()
    if common:
        verdict.max_loss_diff = max(abs(fleet[s] - reference[s]) for s in common)
        if not verdict.max_loss_diff < EXACT_TOLERANCE:
            verdict.violations.append(f"max |loss - reference| = {verdict.max_loss_diff:.3g}")

    # 4. No healthy replica quarantined: only after >= QUARANTINE_AFTER corruptions fired on it.
    # Emulated defective chips say so when their worker starts (`defects` in worker_start).
    defective = defective | {
        e["replica"] for e in events if e.get("kind") == "worker_start" and e.get("defects")
    }
    verdict.quarantined = sorted({e["replica"] for e in events if e.get("kind") == "quarantine"})
    for name in verdict.quarantined:
        corrupt = sum(1 for _, c in fired_by.get(name, []) if c in CORRUPTIONS)
        if corrupt < QUARANTINE_AFTER and name not in defective:
            verdict.violations.append(
                f"{name} quarantined after only {corrupt} injected corruption(s)"
            )

    # 5. No detection without a cause: every detection that blames a chip names one
    # with an injected corruption (or a defect) that explains it.
    verdict.false_blames, verdict.data_outliers = unexplained_detections(events, defective)
    if verdict.false_blames:
        shown = ", ".join(verdict.false_blames[:3])
        more = f" and {len(verdict.false_blames) - 3} more" if len(verdict.false_blames) > 3 else ""
        verdict.violations.append(
            f"{len(verdict.false_blames)} detection(s) blame a replica without an injected "
            f"cause: {shown}{more}"
        )
    return verdict


@dataclass(frozen=True)
class Detection:
    """One detection of the guard; every observer's `sdc` event of it folded into one."""

    step: int
    check: str
    named: tuple[str, ...]  # the replica it blames (a fingerprint tie: every holder)
    by_data: bool  # attributed to the data by every event of it (none names a chip)
    first: int  # position of its first event in the run's events

    def __str__(self) -> str:
        return f"{self.check} on {'/'.join(self.named)} at step {self.step}"


def detections(events: list[dict[str, Any]]) -> list[Detection]:
    """The run's detections: `sdc` events of one step, check and culprit are one detection.

    Every observer writes its own event of a detection (a fingerprint mismatch is
    seen by every participant), so they are folded, keeping the first one's position.
    `attribution` is `chip` or `data`; an event without it (a run before the guard
    wrote it) blames the chip it names, as the guard of that time did. A
    `heal_source` veto (a replica that healed at that quorum computed from its
    source's wrong state) blames no chip and is left out.
    """
    found: dict[tuple[int, str, tuple[str, ...]], Detection] = {}
    for index, event in enumerate(events):
        if event.get("kind") != "sdc" or "step" not in event:
            continue
        if event.get("replica") is not None:
            named: tuple[str, ...] = (str(event["replica"]),)
        elif event.get("replicas"):
            named = tuple(sorted(str(r) for r in event["replicas"]))
        else:
            continue  # names nobody: nothing to check
        if event.get("attribution") == "heal_source":
            continue  # its state came from a heal this quorum: it blames no chip of its own
        by_data = event.get("attribution") == "data"
        key = (int(event["step"]), str(event.get("check")), named)
        seen = found.get(key)
        if seen is None:
            found[key] = Detection(key[0], key[1], named, by_data, index)
        elif seen.by_data and not by_data:
            found[key] = Detection(key[0], key[1], named, False, seen.first)
    return sorted(found.values(), key=lambda d: d.first)


def unexplained_detections(
    events: list[dict[str, Any]], defective: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """(detections blaming a chip with no injected cause, detections attributed to the data).

    A detection blaming replica R at step S is explained by any of:

    - a gradient corruption (`sdc` with target grad, or `nan`) that fired on R at S.
      The `fault` event's step is where it really fired (the injector may defer a
      planned gradient fault to the first step where R computes samples);
    - a weight flip that fired on R before the detection and that R has not healed
      from since: no `heal` of R to a step at or before S, no `tie_restore` by R and
      no restart of R's worker between the flip and the detection (event order);
    - R's chip being defective.

    A fingerprint tie names every holder; one of them with a cause explains it.
    A detection attributed to the data blames no chip and is only counted.
    """
    grad_faults: set[tuple[str, int]] = set()  # (replica, step) of gradient/nan faults
    flips: dict[str, list[int]] = {}  # replica -> positions of its weight flips
    repairs: dict[str, list[tuple[int, int | None]]] = {}  # replica -> (position, healed step)
    for index, event in enumerate(events):
        kind = event.get("kind")
        if kind == "fault" and event.get("fault") in ("sdc", "nan"):
            target = _fault_target(event)
            if event.get("fault") == "sdc" and event.get("target") == "weight":
                flips.setdefault(target, []).append(index)
            else:
                grad_faults.add((target, int(event["step"])))
        elif kind == "heal" and event.get("replica") is not None:
            repairs.setdefault(event["replica"], []).append((index, int(event["step"])))
        elif event.get("replica") is not None and (
            kind == "tie_restore" or (kind == "worker_start" and event.get("restarted"))
        ):  # back to a checkpoint, or a new process: the flipped weights are gone
            repairs.setdefault(event["replica"], []).append((index, None))

    def flipped(name: str, detection: Detection) -> bool:
        """A weight flip of `name` fired before the detection and not repaired since."""
        for flip in flips.get(name, []):
            if flip > detection.first:
                continue
            healed = any(
                flip < at < detection.first and (step is None or step <= detection.step)
                for at, step in repairs.get(name, [])
            )
            if not healed:
                return True
        return False

    def caused(name: str, detection: Detection) -> bool:
        return (
            name in defective or (name, detection.step) in grad_faults or flipped(name, detection)
        )

    unexplained: list[str] = []
    by_data: list[str] = []
    for detection in detections(events):
        if detection.by_data:
            by_data.append(str(detection))
        elif not any(caused(name, detection) for name in detection.named):
            unexplained.append(str(detection))
    return unexplained, by_data


def _fault_target(event: dict[str, Any]) -> str:
    """The replica a fired fault hit, by the name its other events use.

    A worker's injector writes `replica` as the fault's index on its own launcher
    (`r0` on every host of a hosts run), so its `source`, the worker's name, is
    used; the launcher's and the campaign's fault events name their target.
    """
    if event.get("source") not in (None, "launcher", "chaos"):
        return str(event["source"])
    return str(event.get("replica", event.get("target", "fleet")))


def _summary(out: Path) -> dict[str, Any]:
    path = out / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _rejoined(events: list[dict[str, Any]]) -> int:
    restarted_at: dict[str, float] = {}
    back: set[tuple[str, float]] = set()
    for event in events:
        if event.get("kind") == "worker_start" and event.get("restarted"):
            restarted_at[event["replica"]] = event["t"]
        elif event.get("kind") == "step":
            for name in event.get("participants", []):
                if name in restarted_at:
                    back.add((name, restarted_at[name]))
    return len(back)
