"""Keep a chip below its throttle temperature by moving work away from it.

Each replica runs one guard on its own temperature and publishes the result,
a *derate* in [0, 1], in the step's allreduce buffer; every participant then
scales that replica's share by it when choosing the next shares, so all agree
without another message. A chip approaching its throttle point (its predicted
temperature a few steps ahead within `approach_margin_c` of it) is cut by
`cut_factor` at once; one well below (`release_margin_c`) gets `restore_step`
of its share back per step. Cutting fast and restoring slowly is what keeps a
first-order thermal system from oscillating across the threshold.

Pure code: it sees temperatures, returns actions.
"""

from __future__ import annotations

from dataclasses import dataclass

APPROACH_MARGIN_C = 12.0
RELEASE_MARGIN_C = 20.0
CUT_FACTOR = 0.5
RESTORE_STEP = 0.05
LOOKAHEAD_STEPS = 3.0  # extrapolate the last step's rise this many steps ahead
ZERO_BELOW = 0.05  # a derate this small becomes 0: a few samples only add a straggler


@dataclass(frozen=True)
class ThermalAction:
    action: str  # "derate" or "restore"
    derate: float
    temperature_c: float
    predicted_c: float
    throttle_c: float


class ThermalGuard:
    def __init__(
        self,
        throttle_c: float,
        approach_margin_c: float = APPROACH_MARGIN_C,
        release_margin_c: float = RELEASE_MARGIN_C,
        cut_factor: float = CUT_FACTOR,
        restore_step: float = RESTORE_STEP,
    ) -> None:
        if release_margin_c <= approach_margin_c:
            raise ValueError("release_margin_c must exceed approach_margin_c (hysteresis)")
        self.throttle_c = throttle_c
        self.approach_margin_c = approach_margin_c
        self.release_margin_c = release_margin_c
        self.cut_factor = cut_factor
        self.restore_step = restore_step
        self.derate = 1.0
        self._last_c: float | None = None

    def update(self, temperature_c: float | None) -> ThermalAction | None:
        """Feed the temperature after a step; returns what changed, if anything."""
        if temperature_c is None:
            return None
        rise_c = 0.0 if self._last_c is None else max(0.0, temperature_c - self._last_c)
        self._last_c = temperature_c
        predicted_c = temperature_c + LOOKAHEAD_STEPS * rise_c
        near = predicted_c >= self.throttle_c - self.approach_margin_c
        # Falling already (an earlier cut acting): cut again only if close to the limit.
        still_hot = rise_c > 0 or temperature_c >= self.throttle_c - self.approach_margin_c / 2
        if near and still_hot and self.derate > 0:
            new = self.derate * self.cut_factor
            self.derate = 0.0 if new < ZERO_BELOW else new
            return ThermalAction("derate", self.derate, temperature_c, predicted_c, self.throttle_c)
        if temperature_c <= self.throttle_c - self.release_margin_c and self.derate < 1.0:
            self.derate = min(1.0, self.derate + self.restore_step)
            return ThermalAction(
                "restore", self.derate, temperature_c, predicted_c, self.throttle_c
            )
        return None

    @property
    def heat(self) -> float:
        """What rides in the allreduce: 1 - derate, so a silent (zero) slot means 'no cut'."""
        return 1.0 - self.derate
