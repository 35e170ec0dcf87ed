"""One site of the outer-sync bench: the bench TinyGPT at an emulated site speed, synced every H.

    python bench/outer_site.py --site 1 --speeds 2,1 --time-scale 0.1667 --outer-every 100 \\
        --rounds 2 --codec 4bit --lighthouse http://IP:PORT --host IP --log FILE [workload flags]

A site is one process standing for all of its chips: `--speeds` are the sites'
summed chip speeds (two chips of speed 1: 2), and each inner step of the site's
whole batch is paced to last its CPU time / (speed x time scale), the same
convention `phalanx run --emulate` uses per chip, so a site is as fast here as
its chips are in the per-step synchronous fleet (bench/sites_link.py).

Every round: the inner steps planned from the configured speeds (the fastest
site H, the others `steps_in_round`), on the site's sub-stream of the global
positions (sites/streams.py, so no sample is trained twice fleet-wide), then
`prepare_upload` -> `OuterLink.join/exchange/commit` -> `apply_outer_step`, as
tests/dist/outer_site_script.py drives them. This first version blocks the
site during the exchange (no overlap of the all-gather with inner steps).

Without `--lighthouse` the site trains alone (no outer sync: H = infinity); its
rounds are boundaries in its log only, so it is measured as the fleet is
(bench/outer_rounds.py). One JSON line per event in `--log`, times from
time.time() (the link meter's clock).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` when run as a script

from bench.workload import (
    SEED,
    Workload,
    build_dataset,
    build_model,
    build_optimizer,
    loss_fn,
)
from phalanx.data.slicing import sample_indices
from phalanx.emulate.pacer import ComputePacer
from phalanx.sites.compression import Codec, ErrorFeedback
from phalanx.sites.local_fleet import steps_in_round
from phalanx.sites.outer_optimizer import OuterOptimizer, OuterSettings
from phalanx.sites.outer_step import apply_outer_step, prepare_upload
from phalanx.sites.streams import RoundLayout, StreamPlan, first_layout
from phalanx.sites.wire import WireUpload, pack

# The outer settings bench/sites_convergence.py chose on its tuning text at both H
# (throughput and bytes do not depend on them).
OUTER = OuterSettings(lr=0.7, momentum=0.5)


class Site:
    """The site's model, inner optimizer and paced inner steps on its sub-stream."""

    def __init__(self, index: int, work: Workload, speed: float) -> None:
        self.index = index
        self.batch = work.batch
        self.dataset = build_dataset(work)
        self.model = build_model(work, self.dataset)  # seeded: every site starts equal
        self.params = list(self.model.parameters())
        self.optimizer = build_optimizer(self.params)
        self.pacer = ComputePacer(speed)

    def train(self, layout: RoundLayout, steps: int) -> list[float]:
        """The round's inner steps; returns each one's wall seconds."""
        took = []
        for k in range(steps):
            started = time.perf_counter()
            start, end = layout.step_range(self.index, k)
            indices = sample_indices(start, end, SEED, len(self.dataset))
            batch = default_collate([self.dataset[i] for i in indices])  # the host's reading
            self.pacer.begin(units=len(indices))
            self.optimizer.zero_grad()
            loss_fn(self.model, batch).backward()
            self.optimizer.step()
            # Sleeps out the rest of compute / (speed x scale): emulating a slower chip.
            self.pacer.end()
            took.append(time.perf_counter() - started)
        return took

    def load(self, values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self.params, values):
                param.copy_(value)


class Log:
    def __init__(self, path: Path) -> None:
        self._sink = path.open("a")

    def write(self, kind: str, **fields: Any) -> None:
        self._sink.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")
        self._sink.flush()


def run_alone(site: Site, plan: StreamPlan, counts: list[int], rounds: int, log: Log) -> None:
    """No outer sync: the same inner steps, rounds only as boundaries in the log."""
    layout = first_layout(plan)
    for round_index in range(rounds):
        t_start = time.time()
        took = site.train(layout, counts[site.index])
        t_end = time.time()
        log.write(
            "round", site=site.index, round=round_index, inner_steps=counts[site.index],
            samples=counts[site.index] * site.batch, t_start=t_start, t_inner_end=t_end,
            t_commit=t_end, step_s=statistics.median(took),
        )  # fmt: skip
        layout = layout.next_layout(counts)


def run_linked(
    site: Site, plan: StreamPlan, counts: list[int], args: argparse.Namespace, log: Log
) -> None:
    from phalanx.fleetnet.hosts import gloo_interface
    from phalanx.sites.outer_link import OuterLink, OuterRoundFailed

    # Gloo binds the interface of the hostname unless told (loopback inside a namespace):
    # the one that holds the address the other site dials, as phalanx's launcher does.
    interface = gloo_interface(args.host)
    if interface is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = interface
    codec = Codec(args.codec)
    outer = OuterOptimizer([p.detach() for p in site.params], OUTER)
    feedback = ErrorFeedback(codec)
    numels = [p.numel() for p in site.params]
    dtypes = [p.dtype for p in site.params]
    link = OuterLink(
        f"site{site.index}", args.lighthouse, outer.state_dict, outer.load_state_dict,
        timeout_s=args.timeout_s, host=args.host,
    )  # fmt: skip
    layout = first_layout(plan)
    log.write("linked", timeout_s=args.timeout_s)
    while link.round < args.rounds:
        t_join = time.time()
        link.join()  # the quorum; heals the outer state when this site is behind
        if link.round != layout.round:
            # A heal jumped rounds whose counts this process never saw: its layout is unknown.
            raise SystemExit(f"healed into round {link.round} from {layout.round}: not expected")
        site.load(outer.anchor)
        t_start = time.time()
        took = site.train(layout, counts[site.index])
        t_inner_end = time.time()
        samples = counts[site.index] * site.batch
        # The residuals change only with a round that counts: a failed exchange is sent again.
        residuals = feedback.state_dict()
        upload = WireUpload(
            prepare_upload(site.index, samples, outer.anchor, site.params, feedback),
            True,
            statistics.mean(took),
        )
        try:
            wires = link.exchange(upload, codec, numels, dtypes)
        except OuterRoundFailed as failure:
            link.commit()  # votes no; the next join leaves the dead out
            feedback.load_state_dict(residuals)
            log.write("failed", site=site.index, round=layout.round, why=str(failure))
            continue
        t_exchanged = time.time()
        if not link.commit():
            feedback.load_state_dict(residuals)
            log.write("failed", site=site.index, round=layout.round, why="commit vote")
            continue
        uploads = [w.upload for w in wires if w.sender]
        site.load(apply_outer_step(uploads, codec, outer))
        t_commit = time.time()
        done = [0] * plan.sites
        for u in uploads:
            done[u.site] = u.samples // site.batch
        log.write(
            "round", site=site.index, round=layout.round, inner_steps=counts[site.index],
            samples=samples, sites=sorted(u.site for u in uploads), counts=done,
            t_join=t_join, t_start=t_start, t_inner_end=t_inner_end,
            t_exchanged=t_exchanged, t_commit=t_commit, step_s=statistics.median(took),
            payload_bytes=upload.upload.payload_bytes, wire_bytes=int(pack(upload).numel()),
        )  # fmt: skip
        layout = layout.next_layout(done)
    link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=int, required=True)
    parser.add_argument("--speeds", required=True, help="every site's speed, e.g. 2,1")
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--outer-every", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--codec", choices=["none", "int8", "4bit"], default="none")
    parser.add_argument("--lighthouse", help="the outer lighthouse; absent: the site alone")
    parser.add_argument("--host", default="127.0.0.1", help="this site's address, as peers dial it")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="gloo's, for the exchange")
    parser.add_argument("--log", type=Path, required=True)
    Workload.add_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per emulated chip, as phalanx's workers
    work = Workload.from_args(args)
    speeds = [float(s) for s in args.speeds.split(",")]
    log = Log(args.log)
    log.write("start", pid=os.getpid(), site=args.site, speeds=speeds, codec=args.codec)
    site = Site(args.site, work, speeds[args.site] * args.time_scale)
    plan = StreamPlan(args.outer_every, (work.batch,) * len(speeds))
    # Planned before every round from the configured speeds: the fastest site H,
    # a site at half its speed H/2 (sites/local_fleet.py).
    counts = steps_in_round(speeds, args.outer_every)
    if args.lighthouse is None:
        run_alone(site, plan, counts, args.rounds, log)
    else:
        run_linked(site, plan, counts, args, log)
    log.write("done")
    os._exit(0)  # torchft's threads would hold a normal exit


if __name__ == "__main__":
    main()
