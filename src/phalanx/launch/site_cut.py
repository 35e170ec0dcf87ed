"""`phalanx sites --cut b:round=2,for_s=10`: a whole site cut off from the others, then back.

Once any site has recorded outer round R (an `outer_round` event with round >=
R in its events.jsonl), and `delay_s` later, every process of the site (its
`phalanx run`, workers, lighthouse, spares) is frozen with SIGSTOP for `for_s`
seconds, then woken with SIGCONT. To the other sites that is what a cut link
looks like: its heartbeats stop, its sockets go quiet, and when it returns it
finds the others moved on. Each cut and return is said in one line and written
to OUT/sites_events.jsonl (`site_cut`, `site_back`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.errors import UsageError
from phalanx.launch.process_tree import continue_pids, stop_tree
from phalanx.observe.events import EventLog
from phalanx.observe.tail import EventTail

DEFAULT_DELAY_S = 0.3
CUT_EXAMPLE = "--cut b:round=2,for_s=10 (delay_s=0.3 by default)"
OUTER_ROUND = "outer_round"  # the event a round's end writes (sites/rounds.py)


@dataclass(frozen=True)
class CutSpec:
    site: str
    round: int  # cut once some site recorded this outer round (or a later one)
    for_s: float  # how long the site stays cut off
    delay_s: float = DEFAULT_DELAY_S  # after the round's record, before the cut


def parse_cut(text: str, sites: Sequence[str]) -> CutSpec:
    """`NAME:round=R,for_s=S[,delay_s=D]` for one of `sites`; else one UsageError line."""
    name, sep, body = text.partition(":")
    name = name.strip()
    if not sep or not body.strip():
        raise UsageError("--cut", "is not NAME:round=R,for_s=S", f"write e.g. {CUT_EXAMPLE}", text)
    if name not in sites:
        raise UsageError(
            "--cut", f"names no site of this run {list(sites)}", "name one --site", name
        )
    values: dict[str, float] = {}
    for item in body.split(","):
        key, eq, raw = (part.strip() for part in item.partition("="))
        if key not in ("round", "for_s", "delay_s") or not eq:
            raise UsageError(
                f"--cut {text}", f"unknown item {item.strip()!r}",
                "use keys round, for_s and delay_s (key=value)",
            )  # fmt: skip
        if key in values:
            raise UsageError(f"--cut {text}", f"{key} given twice", "give it once")
        try:
            values[key] = int(raw) if key == "round" else float(raw)
        except ValueError:
            raise UsageError(
                f"--cut {text}: {key}", "is not a number", f"write e.g. {CUT_EXAMPLE}", raw
            ) from None
    for key in ("round", "for_s"):
        if key not in values:
            raise UsageError(f"--cut {text}", f"misses {key}", f"write e.g. {CUT_EXAMPLE}")
    if values["round"] < 0:
        raise UsageError(f"--cut {text}: round", "must be >= 0", "e.g. round=2", values["round"])
    if not values["for_s"] > 0:
        raise UsageError(f"--cut {text}: for_s", "must be > 0", "e.g. for_s=10", values["for_s"])
    delay_s = values.get("delay_s", DEFAULT_DELAY_S)
    if not delay_s >= 0:
        raise UsageError(f"--cut {text}: delay_s", "must be >= 0", "e.g. delay_s=0.3", delay_s)
    return CutSpec(name, int(values["round"]), values["for_s"], delay_s)


@dataclass
class _Cut:
    spec: CutSpec
    due_at: float | None = None  # monotonic time of the cut, once its round was recorded
    back_at: float | None = None  # monotonic time of the return, while it is cut off
    frozen: list[int] = field(default_factory=list)
    done: bool = False


class SiteCuts:
    """Carries out the cuts as the run goes; `tick()` from the supervisor's loop."""

    def __init__(
        self,
        specs: Sequence[CutSpec],
        run_dirs: dict[str, Path],
        pid_of: Callable[[str], int | None],
        log: EventLog,
        say: Callable[[str], object],
    ) -> None:
        self._cuts = [_Cut(spec) for spec in specs]
        self._tails = [EventTail(run_dir) for run_dir in run_dirs.values()]
        self._pid_of = pid_of  # a site's `phalanx run` process, None once it exited
        self._log = log
        self._say = say
        self.last_round = -1  # the newest outer round any site recorded

    @property
    def active(self) -> bool:
        return any(not cut.done for cut in self._cuts)

    def tick(self, now: float | None = None) -> None:
        if not self.active:
            return
        now = time.monotonic() if now is None else now
        for tail in self._tails:  # reading a log as it grows, not synchronising
            for event in tail.read_new():
                if event.get("kind") == OUTER_ROUND and isinstance(event.get("round"), int):
                    self.last_round = max(self.last_round, event["round"])
        for cut in self._cuts:
            if cut.done:
                continue
            if cut.due_at is None and self.last_round >= cut.spec.round:
                cut.due_at = now + cut.spec.delay_s
            if cut.back_at is None and cut.due_at is not None and now >= cut.due_at:
                self._cut(cut, now)
            elif cut.back_at is not None and now >= cut.back_at:
                self._return(cut)

    def _cut(self, cut: _Cut, now: float) -> None:
        pid = self._pid_of(cut.spec.site)
        if pid is None:  # the site has exited: nothing left to cut
            cut.done = True
            return
        cut.frozen = stop_tree(pid)
        cut.back_at = now + cut.spec.for_s
        self._log.emit("site_cut", site=cut.spec.site, round=self.last_round, for_s=cut.spec.for_s)
        self._say(
            f"cut: site {cut.spec.site} cut off from the others for {cut.spec.for_s:g} s "
            f"(after outer round {self.last_round}; {len(cut.frozen)} processes frozen)"
        )

    def _return(self, cut: _Cut) -> None:
        continue_pids(cut.frozen)
        cut.frozen, cut.back_at, cut.done = [], None, True
        self._log.emit("site_back", site=cut.spec.site, round=self.last_round)
        self._say(f"cut: site {cut.spec.site} is back (others at outer round {self.last_round})")

    def release_all(self) -> None:
        """Wake every site still cut off (the run is stopping)."""
        for cut in self._cuts:
            if cut.back_at is not None:
                self._return(cut)
