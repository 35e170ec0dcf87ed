"""When a replica has shown it computes wrong results often enough to leave the fleet.

An offence is counted only when the chip is at fault, on evidence that
differs between chips: its rerun of a vetoed slice gave a different result
(a transient fault), a peer recomputed the slice and disagreed (a persistent
one), or its parameter fingerprint is in the minority. A veto that the chip
reproduces and a peer confirms is the data's (a heavy-tailed gradient): it
never counts. After `quarantine_after` offences in one process lifetime the
replica leaves the fleet (exit code 3) and is not restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OffenceLedger:
    name: str
    quarantine_after: int = 3
    count: int = 0
    reasons: list[str] = field(default_factory=list)

    def record(self, step: int, at_fault: dict[str, str]) -> bool:
        """Count this step's offence (one per step at most); True: quarantine now.

        `at_fault` maps each replica the step found at fault to why; every
        participant computes the same map, and each counts only its own.
        """
        why = at_fault.get(self.name)
        if why is None:
            return False
        self.count += 1
        self.reasons.append(f"step {step}: {why}")
        return self.count >= self.quarantine_after
