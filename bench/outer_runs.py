"""Outer-sync runs in the sites' namespaces: one bench/outer_site.py process per site.

Alone, both sites train at once without a link (H = infinity, as the per-step
bench's sites alone run at once); linked, they join an outer lighthouse in the
lighthouse namespace and exchange every H inner steps across site B's link,
whose counters a LinkMeter samples. Figures come from whole rounds only
(bench/outer_rounds.py). Everything is waited for with a deadline; the
caller's `Network.cleanup()` kills whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.link_meter import LinkMeter, busy_shares
from bench.outer_rounds import blocked_s, exchange_timeout_s, round_records, whole_rounds_window
from bench.site_runs import POLL_S, RunFailed, Site, run_sites
from bench.timeline import read_jsonl
from bench.workload import Workload, build_dataset, build_model
from phalanx.chaos.netns import Host, Network
from phalanx.sites.compression import Codec
from phalanx.sites.outer_link import outer_quorum_size
from phalanx.sites.wire import HEADER_BYTES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "outer_site.py"
LIGHTHOUSE_START_S = 60.0
# Rounds of the sites alone: boundaries in their logs only (20 steps of site A each).
ALONE_OUTER_EVERY = 20
ALONE_ROUNDS = 3


@dataclass(frozen=True)
class OuterConfig:
    outer_every: int  # H: the fastest site's inner steps per round
    codec: str  # none, int8, 4bit
    rounds: int  # the first is warm-up: at least 2

    @property
    def key(self) -> str:
        return f"outer_h{self.outer_every}_{self.codec}"

    @property
    def label(self) -> str:
        return f"H={self.outer_every}, {self.codec}"


@dataclass(frozen=True)
class OuterLighthouse:
    address: str  # http://IP:PORT, as torchft's Manager dials it
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def site_speeds(sites: tuple[Site, ...]) -> list[float]:
    """One process per site stands for all its chips: a site's speed is their sum."""
    return [sum(site.speeds) for site in sites]


def upload_bytes(work: Workload, codec: str) -> int:
    """One site's packed upload (sites/wire.py) for the bench model: what crosses each way."""
    numels = [p.numel() for p in build_model(work, build_dataset(work)).parameters()]
    return HEADER_BYTES + sum(Codec(codec).encoded_bytes(n) for n in numels)


def start_outer_lighthouse(
    network: Network, host: Host, min_replicas: int, log: Path
) -> OuterLighthouse:
    """torchft's lighthouse, plain (OuterLink's Manager does not speak the fleet secret).

    phalanx's in-process lighthouse module serves until its stdin closes: a pipe that
    this bench holds open, in the host's namespace and a session of its own.
    """
    settings = {"bind_host": host.address, "port": 0, "min_replicas": min_replicas}
    argv = [sys.executable, "-m", "phalanx.launch.lighthouse", json.dumps(settings)]
    # Its address on stdout, torchft's log on stderr: in one file, the two interleave.
    served = log.with_suffix(".address")
    with served.open("w") as address_sink, log.open("w") as log_sink:
        process = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, *argv],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=address_sink,
            stderr=log_sink,
            start_new_session=True,
        )
    network.processes.append(process)  # the caller's cleanup kills it too
    deadline = time.monotonic() + LIGHTHOUSE_START_S
    while not served.read_text().endswith("\n"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RunFailed(f"the outer lighthouse did not start: {log.read_text()[-300:]}")
        time.sleep(POLL_S)  # polling its address file, with a deadline
    return OuterLighthouse(json.loads(served.read_text())["address"], process)


def site_argv(
    index: int,
    sites: tuple[Site, ...],
    work: Workload,
    time_scale: float,
    outer_every: int,
    rounds: int,
    log: Path,
    link: tuple[OuterLighthouse, Host, str, float] | None = None,
) -> list[str]:
    """bench/outer_site.py for site `index`; `link`: (lighthouse, own host, codec, timeout_s).

    Linked, the site runs with its own address as hostname (a UTS namespace of its
    own): OuterLink leaves torchft's HTTP heal transport at its default, which
    advertises `socket.gethostname()`, and every namespace shares this machine's
    hostname, which resolves to loopback. Without it the round-0 init sync (a heal)
    dials the healing site itself and fails.
    """
    speeds = ",".join(f"{s:g}" for s in site_speeds(sites))
    joins = (
        []
        if link is None
        else [
            "--lighthouse", link[0].address, "--host", link[1].address, "--codec", link[2],
            "--timeout-s", f"{link[3]:.1f}",
        ]
    )  # fmt: skip
    own_hostname = (
        []
        if link is None
        else ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', link[1].address]
    )
    return [
        *own_hostname,
        sys.executable, str(SCRIPT), "--site", str(index), "--speeds", speeds,
        # One scale for every run of the bench: a site is as fast here as its chips there.
        "--time-scale", f"{time_scale:.6f}",
        "--outer-every", str(outer_every), "--rounds", str(rounds), "--log", str(log),
        *joins, *work.to_args(),
    ]  # fmt: skip


def _site_figures(records: list[dict[str, Any]], site: int) -> dict[str, Any]:
    rounds = [r for r in records if r.get("kind") == "round" and r["site"] == site]
    inside = rounds[1:]  # the window's rounds (the first is warm-up)
    figures: dict[str, Any] = {
        "inner_steps": inside[-1]["inner_steps"],
        "step_s": sum(r["step_s"] for r in inside) / len(inside),  # median within a round
        "blocked_s": blocked_s(records, site),
        "failed_rounds": sum(1 for r in records if r.get("kind") == "failed" and r["site"] == site),
    }
    if "t_exchanged" in inside[-1]:
        figures["exchange_s"] = sum(r["t_exchanged"] - r["t_inner_end"] for r in inside) / len(
            inside
        )
        figures["wire_bytes"] = inside[-1]["wire_bytes"]
    return figures


def run_alone(
    network: Network,
    hosts: dict[str, Host],
    sites: tuple[Site, ...],
    work: Workload,
    out: Path,
    time_scale: float,
    deadline_s: float,
) -> dict[str, Any]:
    """Each site process alone (no outer sync), both at once; rates over whole rounds."""
    runs = {}
    for i, site in enumerate(sites):
        log = out / f"{site.label}.jsonl"
        argv = site_argv(i, sites, work, time_scale, ALONE_OUTER_EVERY, ALONE_ROUNDS, log)
        runs[site.label] = (hosts[site.label], argv)
    run_sites(network, runs, out, deadline_s)
    figures = {}
    for i, site in enumerate(sites):
        records = read_jsonl(out / f"{site.label}.jsonl")
        window = whole_rounds_window(records)
        figures[site.label] = {
            "samples_per_s": window.samples_per_s,
            "window_s": window.seconds,
            "rounds": window.rounds,
            **_site_figures(records, i),
        }
    return figures


def run_linked(
    network: Network,
    hosts: dict[str, Host],
    sites: tuple[Site, ...],
    work: Workload,
    out: Path,
    time_scale: float,
    config: OuterConfig,
    rate_mbit: float,
    round_s: float,
    deadline_s: float,
) -> dict[str, Any]:
    """Both sites linked through the outer lighthouse; the last site's link is metered."""
    out.mkdir(parents=True)
    remote = hosts[sites[-1].label]
    sent_bytes = upload_bytes(work, config.codec)
    timeout_s = exchange_timeout_s(sent_bytes, rate_mbit, round_s)
    lighthouse = start_outer_lighthouse(
        network, hosts["lh"], outer_quorum_size(len(sites)), out / "lighthouse.out"
    )
    runs = {}
    for i, site in enumerate(sites):
        log = out / f"{site.label}.jsonl"
        link = (lighthouse, hosts[site.label], config.codec, timeout_s)
        argv = site_argv(i, sites, work, time_scale, config.outer_every, config.rounds, log, link)
        runs[site.label] = (hosts[site.label], argv)
    meter = LinkMeter(lambda: network.link_bytes(remote)).start()
    try:
        wall_s = run_sites(network, runs, out, deadline_s)
    finally:
        meter.stop()
        lighthouse.stop()
    records = [r for site in sites for r in read_jsonl(out / f"{site.label}.jsonl")]
    window = whole_rounds_window(records)
    crossed = meter.crossed_between(window.start_t, window.end_t)
    committed = round_records(records)
    return {
        "outer_every": config.outer_every,
        "codec": config.codec,
        "rounds_run": len(committed),
        "samples_per_s": window.samples_per_s,
        "wall_s": wall_s,
        "window_s": window.seconds,
        "window_rounds": window.rounds,
        "steady_samples": window.samples,
        "samples_per_round": window.samples / window.rounds,
        "upload_bytes": sent_bytes,  # each site's packed upload, once each way
        "timeout_s": timeout_s,
        "link_sent_bytes": crossed.sent_bytes,
        "link_received_bytes": crossed.received_bytes,
        "link_bytes_per_sample": crossed.total_bytes / window.samples,
        # Both uploads cross once (one each way): what the exchange itself must move.
        "upload_bytes_per_sample": 2 * sent_bytes * window.rounds / window.samples,
        "link_use_mbit": {
            "up": 8 * crossed.sent_bytes / window.seconds / 1e6,
            "down": 8 * crossed.received_bytes / window.seconds / 1e6,
        },
        "link_busy_share": busy_shares(
            meter.samples, window.start_t, window.end_t, rate_mbit * 1e6 / 8
        ),
        "sites": {site.label: _site_figures(records, i) for i, site in enumerate(sites)},
    }
