"""A site replica's outer round, between two inner steps: exchange, outer step, next plan.

    delta = anchor - params (+ pending)  ->  join the outer quorum (a site behind heals)
      ->  exchange (one payload per site)  ->  commit vote  ->  outer step on the uploads
      ->  params = new anchor, plan the next round's counts, record the round

Every replica of every site runs this with the same inputs, so all of them
end with the same anchor and the same plan (sites/schedule.py). What can go
wrong, and what happens:

- the exchange fails (a peer died, too few sites): nothing changed; the
  residuals are restored and the round is asked for again;
- the others moved on without this site (it was cut off): the join heals the
  outer state; the site's work since its last counted round becomes pending
  and goes into this very round's upload, so it is counted once, late;
- a replay (`--outer-replay`): the counts and which sites count come from the
  recorded run instead of the clock; a site present but not counted in the
  record keeps its work pending, as it did then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import torch

from phalanx.observe.events import EventLog
from phalanx.runtime.preemption import Preemption
from phalanx.sites.outer_link import OuterLink, OuterQuorumUnavailable, OuterRoundFailed
from phalanx.sites.outer_step import SiteUpload, apply_outer_step
from phalanx.sites.replay import RecordedRounds
from phalanx.sites.schedule import plan_counts, round_budget
from phalanx.sites.site_state import SiteState
from phalanx.sites.wire import WireUpload

# How long a replica's site must come whole to an outer round (every replica of its last
# inner step present): past it, one missing is taken for gone (died since that step),
# and the round goes on without it. A late but live one is in the next quorum at once.
SITE_WHOLE_GRACE_S = 5.0
RETRY_PAUSE_S = 0.2  # between failed exchanges: the next quorum leaves the dead out
GIVE_UP_S = 600.0  # a site alone at an outer step this long stops (the others are gone)


class OuterGaveUp(Exception):
    """No outer quorum for GIVE_UP_S: this site stops with what it holds."""


class OuterRounds:
    """Drives a site replica's outer rounds over its OuterLink."""

    def __init__(
        self,
        site: SiteState,
        make_link: Callable[[], OuterLink],
        events: EventLog,
        replica: str,
        global_batch_size: int,
        replay: RecordedRounds | None = None,
    ) -> None:
        self.site, self.events = site, events
        self._make_link = make_link
        self._link: OuterLink | None = None
        self.replica = replica
        self.batch = global_batch_size
        self.replay = replay
        self.give_up_s = GIVE_UP_S
        self._round_began_s = time.monotonic()
        self._last_step_time_s: float | None = None
        # How many replicas trained this site's last inner step (runtime/site_run.py
        # `after_step`); 0: unknown, no replica of the site is waited for.
        self.site_replicas = 0
        self.site_whole_grace_s = SITE_WHOLE_GRACE_S

    @property
    def link(self) -> OuterLink:
        """Made by `open_link` when the replica starts with its fleet, and for a restarted
        one after its first step with its site (runtime/site_run.py `after_step`), else
        at its first outer round: a restarted replica heartbeats to the outer lighthouse
        only once it has healed inside its site. One still healing would otherwise be a
        live straggler the outer quorum waits for (the join timeout) while its site's
        peers wait in that quorum, not for its heal.
        """
        if self._link is None:
            self._link = self._make_link()
            self._link.set_round(self.site.round)  # what a heal or checkpoint gave us
            self.site.on_round_loaded = self._link.set_round
        return self._link

    def open_link(self) -> None:
        """Join the outer lighthouse now, long before the first outer round.

        For a replica that starts with its fleet. Made only at the first round, a
        replica's link could start heartbeating a moment after the other sites' replicas
        (its own site's peers among them) had all asked for round 0's quorum: the
        lighthouse, which waits only for replicas it has heard of, then formed the
        quorum without it. Its site's peers applied the round and it did not, and a
        site of two could no longer tell which of them was right (a CI run of
        tests/e2e/test_sites_run.py ended that way).
        """
        _ = self.link

    def close(self) -> None:
        if self._link is not None:
            self._link.close()

    def run(self, fleet_step: int, preemption: Preemption | None = None) -> None:
        """The open round's outer step; returns once it is committed (retries inside).

        With `preemption`, a SIGTERM while waiting for the round's quorum (a site
        that already left is waited for up to the quorum timeout, past a scheduler's
        grace) raises PreemptedInWait, as does one seen by an earlier attempt: each
        attempt starts from a state a checkpoint may hold (that of the last inner
        step, or of a heal taken whole).
        """
        site, params = self.site, self.site.params
        inner = fleet_step - site.round_start_step
        if inner > 0:
            self._last_step_time_s = (time.monotonic() - self._round_began_s) / inner
        waited_t0 = time.monotonic()
        with torch.no_grad():
            delta = [a - p.detach() for a, p in zip(site.outer.anchor, params)]
        samples = inner * self.batch
        attempts = 0
        follower = False  # this site's peers applied a round without us and went on
        while True:
            attempts += 1
            round_before = site.round
            try:
                with self._cut_short(preemption):
                    self.link.join()  # heals the outer state when the others moved on
            except OuterQuorumUnavailable as away:
                waited_s = time.monotonic() - waited_t0
                if waited_s > self.give_up_s:
                    raise OuterGaveUp(
                        f"no outer quorum for {waited_s:.0f} s at round {site.round} ({away}); "
                        "the other sites may have finished or be unreachable"
                    ) from None
                continue
            if site.round != round_before:
                delta, samples, peers_went_on = self._left_behind(
                    delta, samples, fleet_step, round_before
                )
                follower = follower or peers_went_on
            residuals = site.feedback.state_dict()
            whole = time.monotonic() - waited_t0 < self.site_whole_grace_s
            wire = replace(self._upload(delta, samples, fleet_step), follower=follower,
                           site_replicas=self.site_replicas if whole else 0)  # fmt: skip
            try:
                exchanged = self.link.exchange(
                    wire, site.settings.codec, [p.numel() for p in params],
                    [p.dtype for p in params], site.settings.sites,
                )  # fmt: skip
                counted = self._counted(exchanged.uploads)
            except OuterRoundFailed as failure:
                self.link.commit()  # votes no
                site.feedback.load_state_dict(residuals)
                self.events.emit("outer_retry", replica=self.replica, round=site.round,
                                 reason=str(failure))  # fmt: skip
                time.sleep(RETRY_PAUSE_S)  # a pause before asking the lighthouse again
                continue
            if exchanged.follower:
                self._follow(residuals, fleet_step, round_before)
                return
            if not self.link.commit():
                site.feedback.load_state_dict(residuals)
                continue
            break
        mine = site.index in {w.upload.site for w in counted}
        if not mine:  # a replay whose record left this site out: its work stays pending
            site.feedback.load_state_dict(residuals)
            delta, samples = self._keep_pending(delta, samples)
        self._outer_step(counted, exchanged.replicas_by_site, fleet_step, mine)
        self.events.emit(
            "outer_wait", replica=self.replica, round=site.round - 1, attempts=attempts,
            wait_s=round(time.monotonic() - waited_t0, 4),
        )  # fmt: skip
        self._round_began_s = time.monotonic()

    # ------------------------------------------------------------------ parts
    def _cut_short(self, preemption: Preemption | None) -> AbstractContextManager[None]:
        """Around the quorum wait: a SIGTERM may end it while it is still a wait."""
        if preemption is None:
            return nullcontext()
        return preemption.cut_short_while(self.link.quorum_pending)

    def _upload(self, delta: list[torch.Tensor], samples: int, fleet_step: int) -> WireUpload:
        site = self.site
        total = samples + site.pending_samples
        if site.pending is not None:  # work that missed earlier outer steps arrives now
            delta = [d + held for d, held in zip(delta, site.pending)]
        if total == 0:
            upload = SiteUpload(site.index, 0, ())
        else:
            encoded = site.feedback.encode([d.reshape(-1) for d in delta])
            upload = SiteUpload(site.index, total, tuple(encoded))
        return WireUpload(
            upload, True, self._last_step_time_s or 0.0, round=site.round,
            inner_steps=fleet_step, anchor_checksum=_checksum(site.outer.anchor),
        )  # fmt: skip

    def _left_behind(
        self, delta: list[torch.Tensor], samples: int, fleet_step: int, round_before: int
    ) -> tuple[list[torch.Tensor], int, bool]:
        """The anchor moved on without this site: keep its work pending, take the anchor.

        The flag says whether a peer of this site sent the site's work instead (this
        replica was late alone): then nothing is pending, and those peers have trained
        on from the new anchor since, so this replica is a follower this round.
        """
        site = self.site
        self.events.emit("outer_heal", replica=self.replica, from_round=round_before,
                         round=site.round)  # fmt: skip
        if site.counted_through[site.index] >= fleet_step:
            self._take_anchor(fleet_step)
            return [torch.zeros_like(d) for d in delta], 0, True
        return (*self._keep_pending(delta, samples, fleet_step), False)

    def _follow(self, residuals: dict[str, Any], fleet_step: int, round_before: int) -> None:
        """A follower's round: its heal showed that its site's work was counted without
        it, so it holds none of what its site's peers trained since (or, with no peer
        present, the site has not trained the healed round's steps yet). It votes no,
        applies nothing and goes back to its site with the healed outer state:

        - a peer of its site that sent this round is steps ahead, and the next inner
          step heals this replica from it (its open outer round is older: runtime/
          step.py);
        - otherwise its site trains the open round's planned steps, and they go into
          a later round's upload as pending work, as a cut site's do.

        Before this rule such a replica could rank first in its site and send an empty
        upload: the other sites applied it while its peer applied the real one, and
        the anchors differed for good (tests/dist/test_outer_follower.py).
        """
        self.site.feedback.load_state_dict(residuals)
        self.link.abstain("a follower: its site's peers trained on without it")
        self.events.emit("outer_follow", replica=self.replica, round=self.site.round,
                         from_round=round_before, step=fleet_step)  # fmt: skip
        self._round_began_s = time.monotonic()

    def _keep_pending(
        self, delta: list[torch.Tensor], samples: int, fleet_step: int | None = None
    ) -> tuple[list[torch.Tensor], int]:
        """Work on an old anchor: added to the pending contribution, sent in full later."""
        site = self.site
        if samples:
            if site.pending is None:
                site.pending = [d.clone() for d in delta]
            else:
                for held, d in zip(site.pending, delta):
                    held.add_(d)
            site.pending_samples += samples
        if fleet_step is not None:
            self._take_anchor(fleet_step)
        return [torch.zeros_like(d) for d in delta], 0

    def _take_anchor(self, fleet_step: int) -> None:
        with torch.no_grad():
            for param, value in zip(self.site.params, self.site.outer.anchor):
                param.copy_(value)
        self.site.round_start_step = fleet_step

    def _counted(self, uploads: Sequence[WireUpload]) -> list[WireUpload]:
        """Which sites' uploads the outer step takes: all present, or the record's."""
        if self.replay is None:
            return list(uploads)
        wanted = self.replay.counted(self.site.round)
        present = {w.upload.site for w in uploads}
        if not wanted <= present:
            raise OuterRoundFailed(
                f"replay: round {self.site.round} counted sites {sorted(wanted)}, "
                f"present are {sorted(present)}"
            )
        return [w for w in uploads if w.upload.site in wanted]

    def _outer_step(
        self,
        counted: list[WireUpload],
        replicas_by_site: dict[int, int],
        fleet_step: int,
        mine: bool,
    ) -> None:
        site = self.site
        uploads = []
        for wire in counted:  # a pending contribution is part of its upload
            uploads.append(wire.upload)
            site.counted_through[wire.upload.site] = wire.inner_steps
            if wire.step_time_s > 0:
                site.step_times_s[wire.upload.site] = wire.step_time_s
        before = site.open
        new_anchor = apply_outer_step(uploads, site.settings.codec, site.outer)
        counted_sites = {w.upload.site for w in counted}
        budget = round_budget(before.round + 1, site.steps, site.settings.outer_every)
        if self.replay is not None:
            counts = self.replay.next_counts(before.round)
        else:
            flags = [i in counted_sites for i in range(site.settings.sites)]
            counts = plan_counts(budget, site.step_times_s, flags)
        site.open = before.next(counts)
        if mine:
            site.pending, site.pending_samples = None, 0
        self._take_anchor(fleet_step)  # the new anchor (apply_outer_step returned a copy)
        by_site = {w.upload.site: w for w in counted}
        self.events.emit(
            "outer_round",
            replica=self.replica,
            round=before.round,
            base_step=before.base_step,
            sites=[
                _site_record(i, name, before.counts[i], by_site.get(i), replicas_by_site)
                for i, name in enumerate(site.settings.site_names)
            ],
            counted=sorted(counted_sites),
            next_counts=list(counts),
            compression=site.settings.compression,
            anchor_checksum=_checksum(new_anchor),  # every replica of every site: the same
        )


def _site_record(
    index: int, name: str, planned: int, wire: WireUpload | None, replicas: dict[int, int]
) -> dict[str, Any]:
    return {
        "site": index,
        "name": name,
        "planned": planned,
        "inner_steps": planned if wire is not None and wire.upload.samples else 0,
        "samples": wire.upload.samples if wire is not None else 0,
        "payload_bytes": wire.upload.payload_bytes if wire is not None else 0,
        "counted": wire is not None,
        "replicas": replicas.get(index, 0),
    }


def _checksum(tensors: Sequence[torch.Tensor]) -> float:
    """One float that differs when the anchors differ (a sum in float64, fixed order)."""
    return float(sum(float(t.double().sum()) for t in tensors))
