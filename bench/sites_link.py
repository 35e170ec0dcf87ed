"""Two sites over a slow link: today's per-step synchronous fleet against the sites alone.

    python -m bench.sites_link [--out DIR]          # about 14 minutes on 2 cores, needs root
    python -m bench.sites_link --render RESULTS     # the doc again from a results file

Issue 17's baseline. Three network namespaces on one bridge: site A (two
emulated chips of speed 1), site B (two of speed 0.5) and the fleet's
`phalanx lighthouse` in a namespace of its own whose link is never limited
(so, seen from site B, it lies on site A's side of the slow link). Measured
in one run, side by side:

(a) each site alone (its own `phalanx run` and local lighthouse; both sites at
    once, as they compute in the fleet, so the host is as loaded as then);
(c) the fleet of both sites, per-step sync, over an unlimited link (veth;
    its bytes are a lower bound: see `measure`);
(b) the same fleet with site B's link limited to 20 Mbit/s each way (tc htb),
    and the bytes that crossed that link per training sample (its interface
    counters, over the steady-state window), next to the gradient's own bytes.

(d) outer sync over the same 20 Mbit/s link, the real runtime: each site a
    `phalanx run --site ...` fleet of the same chips as in (a), with its own
    lighthouse in its namespace, joined through an outer lighthouse
    (`python -m phalanx.sites.outer_lighthouse`) in the lighthouse namespace;
    an outer round every H inner steps of site A (OUTER_CONFIGS). Rates and
    bytes over whole rounds, from one round's commit to a later one's, against
    the same sum of (a) as (b).

The ratio (b) / ((a)_A + (a)_B) is the figure the outer-sync change must
raise to 0.90; (d) is that change, measured (the runtime blocks every site
from its last inner step of a round to the end of the outer step). Writes DIR/sites_link.json, bench/results/sites_link.json and
docs/_generated/sites_link.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import machine, sites_link_doc  # noqa: E402
from bench.doc_block import include_block  # noqa: E402
from bench.link_meter import LinkMeter, busy_shares  # noqa: E402
from bench.outer_runs import OuterConfig, run_linked  # noqa: E402
from bench.site_runs import (  # noqa: E402
    COLLECTIVE_TIMEOUT_S,
    Site,
    run_sites,
    site_argv,
    start_lighthouse,
    steady_state,
    tc_classes,
)
from bench.timeline import WARMUP_STEPS  # noqa: E402
from bench.workload import Workload, parameter_count  # noqa: E402
from phalanx.chaos import netns  # noqa: E402
from phalanx.launch.launcher import emulation_time_scale  # noqa: E402

SITE_A = Site("siteA", (1.0, 1.0))
SITE_B = Site("siteB", (0.5, 0.5))  # the remote site, behind the slow link
LINK_RATE_MBIT = 20.0
# TinyGPT of 1.6M parameters: a 6.6 MB float32 gradient, which takes seconds at
# 20 Mbit/s and milliseconds on the veth, while a step's compute takes about 0.7 s.
WORK = Workload(width=256, layers=2, context=64, batch=64, steps=14)
SUBNET = "10.78.0"  # inside the namespaces only (the e2e tests use 10.77.0.0/24)
ADDRESSES = {"lh": f"{SUBNET}.1", SITE_A.label: f"{SUBNET}.11", SITE_B.label: f"{SUBNET}.12"}
# Hang guards only (a healthy run takes a fraction): a run past them stops the bench.
ALONE_DEADLINE_S = 240.0
FLEET_DEADLINE_S = 420.0
# Outer sync over the same link, by priority (each run's first round is warm-up, so
# H = 100 runs two rounds: about 100 s each at site A's ~1 s per inner step).
OUTER_CONFIGS = (
    OuterConfig(100, "4bit", 2),
    OuterConfig(20, "int8", 4),
)
RESULTS = ROOT / "bench" / "results" / "sites_link.json"
DOC = ROOT / "docs" / "_generated" / "sites_link.md"
SITES_DOC = ROOT / "docs" / "sites.md"  # also between its sites_link markers


def _alone(net: netns.Network, hosts: dict[str, netns.Host], out: Path, scale: float) -> dict:
    """(a): each site its own fleet, both at once (each with its own local lighthouse)."""
    runs = {
        site.label: (hosts[site.label], site_argv(site, WORK, out / site.label, scale))
        for site in (SITE_A, SITE_B)
    }
    wall_s = run_sites(net, runs, out, ALONE_DEADLINE_S)
    figures = {}
    for site in (SITE_A, SITE_B):
        steady = steady_state([out / site.label], WORK.batch)
        figures[site.label] = {
            "samples_per_s": steady.samples_per_s,
            "fewest_replicas": steady.fewest_replicas,
            "wall_s": wall_s,
        }
    return figures


def _fleet(
    net: netns.Network,
    hosts: dict[str, netns.Host],
    out: Path,
    scale: float,
    rate_mbit: float | None = None,
) -> dict[str, Any]:
    """(b) or (c): both sites in one per-step synchronous fleet, site B's link metered.

    `rate_mbit`: the limit site B's link has (None: unlimited), for how busy it was.
    """
    out.mkdir(parents=True)
    lighthouse = start_lighthouse(
        net,
        hosts["lh"],
        min_replicas=len(SITE_A.speeds) + len(SITE_B.speeds),
        secret_file=out / "fleet.secret",
        log=out / "lighthouse.out",
    )
    runs = {
        site.label: (hosts[site.label], site_argv(site, WORK, out / site.label, scale, lighthouse))
        for site in (SITE_A, SITE_B)
    }
    meter = LinkMeter(lambda: net.link_bytes(hosts[SITE_B.label])).start()
    try:
        wall_s = run_sites(net, runs, out, FLEET_DEADLINE_S)
    finally:
        meter.stop()
        lighthouse.stop()
    # The raw counters beside the runs: when the link was busy within a step.
    with (out / "link_samples.jsonl").open("w") as sink:
        for sample in meter.samples:
            sink.write(json.dumps({"t": sample.t, **dataclasses.asdict(sample.crossed)}) + "\n")
    steady = steady_state([out / SITE_A.label, out / SITE_B.label], WORK.batch)
    crossed = meter.crossed_between(steady.start_t, steady.end_t)
    window_s = steady.end_t - steady.start_t
    busy = (
        None
        if rate_mbit is None
        else busy_shares(meter.samples, steady.start_t, steady.end_t, rate_mbit * 1e6 / 8)
    )
    return {
        "samples_per_s": steady.samples_per_s,
        "fewest_replicas": steady.fewest_replicas,
        "wall_s": wall_s,
        "window_s": window_s,
        "link_busy_share": busy,  # of the window: up, down, both at once (above half the rate)
        "steady_samples": steady.samples,
        "link_sent_bytes": crossed.sent_bytes,  # site B's upload
        "link_received_bytes": crossed.received_bytes,  # site B's download
        "link_bytes_per_sample": crossed.total_bytes / steady.samples,
        "link_bytes_per_step": crossed.total_bytes * WORK.batch / steady.samples,
        "link_use_mbit": {  # mean over the window, each way
            "up": 8 * crossed.sent_bytes / window_s / 1e6,
            "down": 8 * crossed.received_bytes / window_s / 1e6,
        },
    }


def _outer(
    net: netns.Network, hosts: dict[str, netns.Host], out: Path, scale: float, alone: dict
) -> dict[str, Any]:
    """Each outer configuration over the limited link, as real sites runs."""
    # Hang guards only, from the sites' rates alone: round 0 gives every site H steps (no
    # step times yet), so the slower site sets its length; later rounds follow site A.
    step_s = {label: WORK.batch / figures["samples_per_s"] for label, figures in alone.items()}
    figures = {}
    for config in OUTER_CONFIGS:
        rounds_s = config.outer_every * (
            max(step_s.values()) + (config.rounds - 1) * step_s[SITE_A.label]
        )
        deadline_s = 180.0 + 2 * rounds_s
        figures[config.key] = run_linked(
            net, hosts, (SITE_A, SITE_B), WORK, out / config.key, scale, config,
            LINK_RATE_MBIT, deadline_s,
        )  # fmt: skip
    return figures


def measure(out: Path) -> dict[str, Any]:
    reason = netns.unavailable() or (None if shutil.which("tc") else "needs tc (iproute2)")
    if reason is not None:
        raise SystemExit(f"sites_link needs network namespaces: {reason}")
    speeds = [*SITE_A.speeds, *SITE_B.speeds]
    scale = emulation_time_scale(list(speeds))  # fits the whole fleet on this host
    params = parameter_count(WORK)
    about = machine.describe()
    started = time.monotonic()
    net = netns.Network()
    try:
        net.create_bridge()
        hosts = {label: net.add_host(label, address) for label, address in ADDRESSES.items()}
        alone = _alone(net, hosts, out / "alone", scale)
        # (c) leaves the veth's offload batches whole: cut into frames (count_frames), a
        # 6.6 MB allreduce took ~0.2 s instead of ~0.05 s on 2 cores, all of it CPU.
        # So its byte count misses most frames' headers (a lower bound, ~7% low).
        unlimited = _fleet(net, hosts, out / "fleet_unlimited", scale)
        applied = net.limit(hosts[SITE_B.label], LINK_RATE_MBIT)  # frames counted from here
        shaping = tc_classes(hosts[SITE_B.label])
        limited = _fleet(net, hosts, out / "fleet_limited", scale, LINK_RATE_MBIT)
        outer = _outer(net, hosts, out, scale, alone)
    finally:
        net.cleanup()
    standalone_sum = sum(figures["samples_per_s"] for figures in alone.values())
    for figures in outer.values():
        figures["over_standalone_sum"] = figures["samples_per_s"] / standalone_sum
        figures["fewer_bytes_than_per_step_sync"] = (
            limited["link_bytes_per_sample"] / figures["link_bytes_per_sample"]
        )
    replicas = len(speeds)
    return {
        "machine": {**about, "bench_wall_s": time.monotonic() - started},
        "setup": {
            "sites": {site.label: site.spec for site in (SITE_A, SITE_B)},
            "limited_site": SITE_B.label,
            "lighthouse": "own namespace, unlimited link (site A's side of the slow link)",
            "link_rate_mbit": LINK_RATE_MBIT,
            "link_shaping": applied,
            "tc_classes": shaping,
            "emulation_time_scale": scale,
            "workload": {**dataclasses.asdict(WORK), "parameters": params},
            "warmup_steps": WARMUP_STEPS,
            "collective_timeout_s": COLLECTIVE_TIMEOUT_S,
        },
        "gradient_bytes_per_step": 4 * params,  # float32
        # A ring allreduce over the fleet crosses the link once each way per step, each
        # crossing carrying 2 (n - 1) / n of the buffer (sites are contiguous in the ring).
        "ring_bytes_per_step_each_way": 2 * (replicas - 1) / replicas * 4 * params,
        "alone": alone,
        "standalone_sum_sps": standalone_sum,
        "fleet_unlimited": unlimited,
        "fleet_limited": limited,
        "ratios": {
            "limited_over_standalone_sum": limited["samples_per_s"] / standalone_sum,
            "unlimited_over_standalone_sum": unlimited["samples_per_s"] / standalone_sum,
        },
        # Outer sync: each site a real `phalanx run --site` fleet, against the sum of (a).
        "outer": outer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sites_link")
    parser.add_argument("--render", type=Path, help="Only write the doc from this results file.")
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
    else:
        if args.out.exists():
            shutil.rmtree(args.out)  # run dirs of an earlier bench: every figure is fresh
        args.out.mkdir(parents=True)
        results = measure(args.out)
        for path in (args.out / "sites_link.json", RESULTS):
            path.write_text(json.dumps(results, indent=1) + "\n")
    text = sites_link_doc.write(results, DOC)
    include_block(SITES_DOC, "sites_link", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
