"""One replica of a two-site run driving `OuterRounds` (sites/outer_round.py) itself.

python outer_rounds_script.py SITE REPLICA LIGHTHOUSE OUT [--late | --after-refusal]
    [--site-replicas N]

Sites a (replicas r0, r1) and b (r0). Inner steps are plain float64 SGD on data
keyed by the global-stream step, so a site's replicas hold the same parameters
after the same steps. `--late`: this replica opens its outer link only once its
site's peer has applied round 0 without it, as a replica whose link was made too
late did (the race of stop 30): it enters the outer quorum one round behind its
peer, which has trained on since. It stops after its first outer round; in a
real run its next inner step would heal it from that peer. `--after-refusal`: this
replica opens its outer link only once a/r0 was refused round 0 for coming without
it, then trains every round. `--site-replicas N`: how many replicas this replica's
site must bring to each round (what a real run takes from its last inner step).
"""

from __future__ import annotations

import argparse
import os
import re
import time
import urllib.request
from pathlib import Path

import torch

from phalanx.observe.events import EventLog
from phalanx.sites.outer_link import OuterLink
from phalanx.sites.outer_round import OuterRounds
from phalanx.sites.run_settings import SiteRunSettings
from phalanx.sites.site_state import SiteState

BATCH = 4
INNER_STEPS = 8  # the fastest site's over the run: 4 rounds of OUTER_EVERY
OUTER_EVERY = 2
SITES = ("a", "b")
# The status page once someone asked for the next quorum (one, or two of three heard).
ASKED = r"only have [1-9]\d* participants|Valid quorum with \d+ participants, waiting"


def initial_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(6, 1).double()


def inner_step(model: torch.nn.Module, stream_step: int) -> None:
    generator = torch.Generator().manual_seed(stream_step)
    x = torch.randn(BATCH, 6, generator=generator, dtype=torch.float64)
    y = x.sum(dim=1, keepdim=True) * 0.5
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= 0.05 * param.grad


def lighthouse_says(lighthouse: str, pattern: str, deadline_s: float = 60.0) -> None:
    """Wait until the lighthouse's status page matches `pattern`.

    The page names the replicas it hears (`<li class="heartbeat">a/r0:<uuid>: seen`)
    and how many have asked for the next quorum (`only have 1 participants`, or `Valid
    quorum with 2 participants, waiting for 1 ...` while a heard one has not asked).
    """
    deadline = time.monotonic() + deadline_s
    while True:
        with urllib.request.urlopen(f"{lighthouse}/status", timeout=5) as reply:
            if re.search(pattern, reply.read().decode("utf-8", "replace")):
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"the lighthouse never said {pattern!r}")
        time.sleep(0.05)  # polling the lighthouse's status page, with a deadline


def wait_for_file(path: Path, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path.name} never appeared")
        time.sleep(0.05)  # polling a file another process writes, with a deadline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site")
    parser.add_argument("replica")
    parser.add_argument("lighthouse")
    parser.add_argument("out", type=Path)
    parser.add_argument("--late", action="store_true")
    parser.add_argument("--after-refusal", action="store_true")
    parser.add_argument("--site-replicas", type=int, default=0)
    args = parser.parse_args()
    name = f"{args.site}/{args.replica}"
    settings = SiteRunSettings(args.site, SITES, args.lighthouse.split("//")[-1], OUTER_EVERY,
                               outer_lr=0.7, outer_momentum=0.5)  # fmt: skip
    model = initial_model()
    state = SiteState(settings, [p for p in model.parameters()], INNER_STEPS)
    events = EventLog(args.out, name, f"{args.site}-{args.replica}.jsonl")

    def make_link() -> OuterLink:
        return OuterLink(name, args.lighthouse, state.outer_state_dict,
                         state.load_outer_state_dict, timeout_s=20.0, quorum_timeout_s=60.0)  # fmt: skip

    rounds = OuterRounds(state, make_link, events, name, BATCH)
    rounds.site_replicas = args.site_replicas
    rounds.site_whole_grace_s = 120.0  # the test waits for the late one, however loaded
    if args.after_refusal:
        refused = re.compile(r'"kind":\s*"outer_retry".*came with 1 of its 2 replicas')
        peer_log = args.out / "a-r0.jsonl"
        deadline = time.monotonic() + 120
        while not (peer_log.exists() and refused.search(peer_log.read_text())):
            if time.monotonic() > deadline:
                raise SystemExit("a/r0 was never refused a round without this replica")
            time.sleep(0.05)  # polling a file another process writes, with a deadline
    if not args.late:
        rounds.open_link()
    peer_ahead = args.out / "a-r1-applied-round-0"
    late_heard = args.out / "late-replica-heard"
    fleet_step = 0
    while not state.finished:
        if not state.outer_due(fleet_step):
            inner_step(model, state.stream_step(fleet_step))
            fleet_step += 1
            continue
        if args.late:
            wait_for_file(peer_ahead)
            _ = rounds.link  # heartbeats from here on
            lighthouse_says(args.lighthouse, rf'class="heartbeat\s*">\s*{name}:')
            late_heard.write_text(name)
        elif state.round == 1 and not args.site_replicas:  # the --late scenario's
            # The others ask for round 1 only once the late replica has: a lighthouse
            # forms a quorum of the last one's members at once when they all ask.
            wait_for_file(late_heard)
            lighthouse_says(args.lighthouse, ASKED)
        rounds.run(fleet_step)
        if args.late:
            break
        if name == "a/r1" and state.round == 1:
            peer_ahead.write_text(str(fleet_step))
    torch.save([p.detach().clone() for p in model.parameters()], args.out / f"{args.site}-{args.replica}.pt")
    torch.save([a.clone() for a in state.outer.anchor], args.out / f"{args.site}-{args.replica}.anchor.pt")
    rounds.close()
    os._exit(0)  # torchft's threads would hold a normal exit


if __name__ == "__main__":
    main()
