"""The outer-sync part of docs/_generated/sites_link.md: its table rows, issue 17's goals, the blocking.

Rendered from bench/sites_link.py's results only (never typed by hand), beside
the per-step synchronous rows that bench/sites_link_doc.py renders.
"""

from __future__ import annotations

from typing import Any

GOAL_OF_ALONE = 0.90  # fleet throughput / sum of the sites alone
GOAL_AT_H = 100  # the bytes goals are stated at this H
GOAL_FEWER_BYTES = {"none": 100.0, "int8": 400.0, "4bit": 400.0}  # per sample, vs per-step sync


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _name(run: dict[str, Any]) -> str:
    return f"H={run['outer_every']}, {run['codec']}"


def fleet_rows(results: dict[str, Any]) -> list[list[str]]:
    batch = results["setup"]["workload"]["batch"]
    link = f"{results['setup']['link_rate_mbit']:g} Mbit/s each way (htb)"
    rows = []
    for run in results["outer"].values():
        rows.append(
            [
                f"both sites, outer sync {_name(run)}",
                link,
                f"{run['samples_per_s']:.1f}",
                f"{run['over_standalone_sum']:.2f}",
                f"{run['link_bytes_per_sample'] / 1e3:.2f} kB",
                f"{run['link_bytes_per_sample'] * batch / 1e3:.0f} kB",
                f"{run['link_use_mbit']['up']:.2f} / {run['link_use_mbit']['down']:.2f}",
                f"{run['fewer_bytes_than_per_step_sync']:.0f}x",
            ]
        )
    return rows


def goal_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for run in results["outer"].values():
        ratio = run["over_standalone_sum"]
        line = (
            f"- {_name(run)}: {ratio:.2f} of the sum of the sites alone, goal "
            f"{GOAL_OF_ALONE:.2f} ({_met(ratio >= GOAL_OF_ALONE)})"
        )
        fewer = run["fewer_bytes_than_per_step_sync"]
        if run["outer_every"] == GOAL_AT_H:
            goal = GOAL_FEWER_BYTES[run["codec"]]
            line += (
                f"; {fewer:.0f}x fewer bytes per sample, goal {goal:.0f}x ({_met(fewer >= goal)})"
            )
        else:
            line += f"; {fewer:.0f}x fewer bytes per sample (no goal at this H)"
        lines.append(line)
    return lines


def blocking_lines(results: dict[str, Any]) -> list[str]:
    """Where each round's seconds went: inner steps, and each site's wait at the outer step."""
    lines = []
    for run in results["outer"].values():
        round_s = run["window_s"] / run["window_rounds"]
        sites = "; ".join(
            f"{label} did {'/'.join(str(n) for n in site['inner_steps'])} inner steps and was "
            f"blocked {site['blocked_s'] / run['window_rounds']:.1f} s a round "
            f"({site['blocked_share']:.1%} of the window)"
            for label, site in run["sites"].items()
        )
        lines.append(
            f"- {_name(run)}: {run['window_rounds']} round(s) in the window, "
            f"{round_s:.1f} s each from commit to commit; {sites}."
        )
    return lines


def bytes_lines(results: dict[str, Any]) -> list[str]:
    """What crossed the link per round against the payloads the round had to move."""
    lines = []
    for run in results["outer"].values():
        payload, counted = run["payload_bytes_per_round"], run["link_bytes_per_round"]
        lines.append(
            f"- {_name(run)}: both sites' payloads {payload / 1e6:.2f} MB a round, "
            f"{counted / 1e6:.2f} MB counted across site B's link ({counted / payload:.1f}x); "
            f"{run['samples_per_round']:.0f} samples a round."
        )
    return lines


def text_lines(results: dict[str, Any]) -> list[str]:
    """The paragraphs under the table (the rows go into the table itself)."""
    return [
        "Outer sync (the last rows): each site is a real `phalanx run --site ...` fleet of the "
        "same chips as alone, with its own `phalanx lighthouse` in its namespace, joined "
        "through an outer lighthouse (`python -m phalanx.sites.outer_lighthouse`) in the "
        "lighthouse namespace; an outer round every H inner steps of site A (the next "
        "round's counts planned from the step times the sites exchanged), compressed with "
        "error feedback. Rates and bytes count whole rounds, from the commit of round 0 "
        "(warm-up: with no step times yet every site does H steps, so site A waits for site "
        "B) to the last commit; samples are those of both sites' step events in that "
        "window. Every ratio is against the sum of the sites alone above.",
        "",
        f"Issue 17's goals (at least {GOAL_OF_ALONE:.2f} of the sites alone; at H = {GOAL_AT_H} "
        f"at least {GOAL_FEWER_BYTES['none']:.0f}x fewer bytes per sample than per-step sync, "
        f"{GOAL_FEWER_BYTES['4bit']:.0f}x compressed), measured against the per-step row over "
        "the same link:",
        "",
        *goal_lines(results),
        "",
        "The runtime blocks every replica from its last inner step of a round to the end of "
        "the outer step (the outer quorum, the exchange of payloads across the link, the outer step); "
        "blocked time is the sum of the replicas' `outer_wait` seconds over the window's "
        "rounds (mean over a site's replicas):",
        "",
        *blocking_lines(results),
        "",
        "Bytes across site B's link per round (whole frames, heartbeats and quorums "
        "included), against the two payloads a round must move (each site's, once across):",
        "",
        *bytes_lines(results),
    ]
