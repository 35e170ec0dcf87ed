"""The step's control block: what rides in the gradient allreduce besides gradients.

Each participant writes only its own slot of each per-participant field and
zeros elsewhere, so after the SUM every participant reads every value, and
all of them read the same numbers. That is how the commit veto, the
throughputs for the next shares, the thermal cuts, the parameter
fingerprints and the guard's evidence reach everybody without another
collective.

Fields (per participant unless marked):

- loss (global): the weighted loss, summed into the global batch's mean loss;
- veto: 1 when the participant's own slice failed its guard check;
- throughput_sps: measured samples/s (negative while warming up: not learnt);
- heat: the thermal guard's cut, 1 - derate (0: none);
- slice_norm: the vetoed slice's normalised gradient norm (evidence);
- rerun: 1 = its rerun of the slice it vetoed reproduced it, 2 = differed;
- peer_verdict: 1 = a peer recomputed that slice and agreed, 2 = disagreed;
- overflow: 1 = the loss-scaled gradient overflowed (fp16-mixed: halve the scale);
- plan: a digest of the attempt's participants and shares, which every
  participant derives on its own: they must all agree (runtime/step.py);
- coarse_sum, coarse_abs: the parameters' L1 and L2 norms, compared
  across replicas of different kinds (guard/kinds.py);
- outer_round: a sites run's open outer round (0 otherwise): a replica
  behind its site's peers missed an outer round, not a bit (runtime/step.py);
- fingerprint: the parameters' integer fingerprint, in 16-bit chunks;
- buffers (global): model buffers (running statistics), weighted by share.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

PER_PARTICIPANT = (
    "veto", "throughput_sps", "heat", "slice_norm", "rerun", "peer_verdict", "overflow",
    "coarse_sum", "coarse_abs", "healed", "kind", "plan", "outer_round",
)  # fmt: skip


def kind_code(kind: str) -> float:
    """A replica's kind as a number that rides exactly in the control block (1..32768).

    Each participant declares its own kind: on many hosts a host knows only its own
    replicas' kinds, and observers that group replicas differently reach different
    verdicts from the same fingerprints (docs/reliability.md, bug 12)."""
    return float((zlib.crc32(kind.encode()) & 0x7FFF) + 1)


def plan_code(step: int, active: list[str], shares: list[int]) -> float:
    """The attempt's plan (who computes how many samples) as a number that rides exactly
    in the control block (1..32768), like `kind_code`."""
    text = f"{step}|{','.join(active)}|{','.join(map(str, shares))}"
    return float((zlib.crc32(text.encode()) & 0x7FFF) + 1)


# rerun / peer_verdict codes
NOT_CHECKED, AGREES, DIFFERS = 0, 1, 2


@dataclass(frozen=True)
class ControlLayout:
    participants: int
    fingerprint_width: int
    buffer_numel: int

    @property
    def numel(self) -> int:
        per = len(PER_PARTICIPANT) + self.fingerprint_width
        return 1 + self.participants * per + self.buffer_numel

    def index(self, name: str, slot: int) -> int:
        return 1 + PER_PARTICIPANT.index(name) * self.participants + slot

    def _fingerprint_start(self, slot: int) -> int:
        return 1 + len(PER_PARTICIPANT) * self.participants + slot * self.fingerprint_width

    @property
    def _buffers_start(self) -> int:
        return self._fingerprint_start(self.participants)


class Control:
    """Named access to a control block tensor laid out by `ControlLayout`."""

    def __init__(self, tensor: torch.Tensor, layout: ControlLayout) -> None:
        self.tensor = tensor[: layout.numel]
        self.layout = layout

    # ------------------------------------------------------------ writing
    def clear(self) -> None:
        self.tensor.zero_()

    def put(self, name: str, slot: int, value: float) -> None:
        self.tensor[self.layout.index(name, slot)] = value

    def put_loss(self, weighted_loss: float) -> None:
        self.tensor[0] = weighted_loss

    def put_fingerprint(self, slot: int, chunks: list[float]) -> None:
        start = self.layout._fingerprint_start(slot)
        self.tensor[start : start + len(chunks)] = torch.tensor(chunks, dtype=self.tensor.dtype)

    def buffers_view(self) -> torch.Tensor:
        start = self.layout._buffers_start
        return self.tensor[start : start + self.layout.buffer_numel]

    # ------------------------------------------------------------ reading
    def loss(self) -> float:
        return float(self.tensor[0])

    def read(self, name: str) -> list[float]:
        start = self.layout.index(name, 0)
        values: list[float] = self.tensor[start : start + self.layout.participants].tolist()
        return values

    def fingerprints(self) -> list[tuple[float, ...]]:
        width = self.layout.fingerprint_width
        start = self.layout._fingerprint_start(0)
        values = self.tensor[start : start + self.layout.participants * width].tolist()
        return [tuple(values[i * width : (i + 1) * width]) for i in range(self.layout.participants)]
