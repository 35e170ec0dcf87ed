"""Outer-sync runs in the sites' namespaces: each site a real `phalanx run --site ...` fleet.

Each site runs as in the sites-alone runs (its emulated chips, its own
lighthouse inside its namespace) and joins an outer lighthouse
(`python -m phalanx.sites.outer_lighthouse`) in the lighthouse namespace: an
outer round every H inner steps of the fastest site, across site B's link,
whose counters a LinkMeter samples. Figures come from whole rounds only
(bench/outer_rounds.py). Everything is waited for with a deadline; the
caller's `Network.cleanup()` kills whatever is left.

A site's lighthouse is a `phalanx lighthouse` service in the site's namespace
rather than `phalanx run`'s in-process one: only with `--lighthouse` does a
run advertise an address other than loopback, and the outer link's store,
heal transport and gloo group bind the advertised address (a site on
127.0.0.1 could not be reached from the other namespace).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.link_meter import LinkMeter, busy_shares
from bench.outer_rounds import (
    blocked_s,
    round_records,
    samples_in,
    whole_rounds_window,
)
from bench.site_runs import POLL_S, RunFailed, Site, run_sites, site_argv, start_lighthouse
from bench.timeline import read_jsonl
from bench.workload import Workload
from phalanx.chaos.netns import Host, Network

ROOT = Path(__file__).resolve().parents[1]
LIGHTHOUSE_START_S = 60.0
SERVING = re.compile(r"outer lighthouse serving at (\S+) ")


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

    @property
    def steps(self) -> int:
        """`--steps` of every site: the fastest site's inner steps over the whole run."""
        return self.outer_every * self.rounds


def start_outer_lighthouse(network: Network, host: Host, sites: int, log: Path) -> str:
    """The outer lighthouse in `host`'s namespace, on a port the OS picks; its HOST:PORT."""
    argv = [
        sys.executable, "-m", "phalanx.sites.outer_lighthouse", "--sites", str(sites),
        "--host", host.address, "--port", "0",
    ]  # fmt: skip
    process = network.spawn(host, argv, log, cwd=ROOT)  # the caller's cleanup kills it
    deadline = time.monotonic() + LIGHTHOUSE_START_S
    while (served := SERVING.search(log.read_text(errors="replace"))) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RunFailed(f"the outer lighthouse did not start: {log.read_text()[-300:]}")
        time.sleep(POLL_S)  # polling its log, with a deadline
    return served.group(1)


def outer_flags(config: OuterConfig, site: Site, sites: tuple[Site, ...], outer: str) -> list[str]:
    return [
        "--site", site.label, "--sites", ",".join(s.label for s in sites), "--outer", outer,
        "--outer-every", str(config.outer_every), "--outer-compression", config.codec,
    ]  # fmt: skip


def _site_figures(records: list[dict[str, Any]], index: int, window: Any) -> dict[str, Any]:
    """One site's share of the window: its samples, planned steps per round, blocked time."""
    rounds = round_records(records)
    inside = [rounds[n] for n in range(window.first_round, window.last_round + 1)]
    mine = [r["sites"][index] for r in inside]
    blocked = blocked_s(records, window)
    return {
        "samples": samples_in(records, window.start_t, window.end_t),
        "round_samples": sum(int(s["samples"]) for s in mine),
        "inner_steps": [int(s["planned"]) for s in mine],
        "payload_bytes": [int(s["payload_bytes"]) for s in mine],
        "counted_every_round": all(s["counted"] for s in mine),
        "blocked_s": blocked,
        "blocked_share": blocked / window.seconds,
        "outer_retries": sum(1 for r in records if r.get("kind") == "outer_retry"),
        "outer_heals": sum(1 for r in records if r.get("kind") == "outer_heal"),
    }


def run_linked(
    network: Network,
    hosts: dict[str, Host],
    sites: tuple[Site, ...],
    work: Workload,
    out: Path,
    time_scale: float,
    config: OuterConfig,
    rate_mbit: float,
    deadline_s: float,
) -> dict[str, Any]:
    """Both sites linked through the outer lighthouse; the last site's link is metered."""
    out.mkdir(parents=True)
    remote = hosts[sites[-1].label]
    outer = start_outer_lighthouse(network, hosts["lh"], len(sites), out / "outer_lighthouse.out")
    lighthouses = []
    for site in sites:
        secret, log = out / f"{site.label}.secret", out / f"{site.label}_lighthouse.out"
        lighthouses.append(
            start_lighthouse(network, hosts[site.label], len(site.speeds), secret, log)
        )
    runs = {}
    for site, lighthouse in zip(sites, lighthouses):
        flags = outer_flags(config, site, sites, outer)
        argv = site_argv(
            site, work.with_(steps=config.steps), out / site.label, time_scale, lighthouse, flags
        )
        runs[site.label] = (hosts[site.label], argv)
    meter = LinkMeter(lambda: network.link_bytes(remote)).start()
    try:
        wall_s = run_sites(network, runs, out, deadline_s)
    finally:
        meter.stop()
        for lighthouse in lighthouses:
            lighthouse.stop()
    records = {site.label: read_jsonl(out / site.label / "events.jsonl") for site in sites}
    window = whole_rounds_window(r for site_records in records.values() for r in site_records)
    figures = {
        site.label: _site_figures(records[site.label], i, window) for i, site in enumerate(sites)
    }
    samples = sum(site["samples"] for site in figures.values())
    crossed = meter.crossed_between(window.start_t, window.end_t)
    payload = sum(sum(site["payload_bytes"]) for site in figures.values())
    return {
        "outer_every": config.outer_every,
        "codec": config.codec,
        "steps": config.steps,
        "rounds_run": len(round_records(records[sites[0].label])),
        "samples_per_s": samples / window.seconds,
        "wall_s": wall_s,
        "window_s": window.seconds,
        "window_rounds": window.rounds,
        "steady_samples": samples,
        "samples_per_round": samples / window.rounds,
        "link_sent_bytes": crossed.sent_bytes,
        "link_received_bytes": crossed.received_bytes,
        "link_bytes_per_sample": crossed.total_bytes / samples,
        "link_bytes_per_round": crossed.total_bytes / window.rounds,
        # Every site's payload (outer_round's payload_bytes) over the window's rounds: each
        # must cross the link once, the least an exchange of two sites can move.
        "payload_bytes_per_round": payload / window.rounds,
        "payload_bytes_per_sample": payload / samples,
        "link_use_mbit": {
            "up": 8 * crossed.sent_bytes / window.seconds / 1e6,
            "down": 8 * crossed.received_bytes / window.seconds / 1e6,
        },
        "link_busy_share": busy_shares(
            meter.samples, window.start_t, window.end_t, rate_mbit * 1e6 / 8
        ),
        "sites": figures,
    }
