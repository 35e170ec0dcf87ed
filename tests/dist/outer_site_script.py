"""One site of the outer-link test: float64 inner steps, then an outer round, R times.

python outer_site_script.py SITE LIGHTHOUSE OUT ROUNDS [--die-at-round R]

Each round starts from the anchor, so a site's delta is a function of (anchor,
site, round) alone: the test replays the whole run in one process from the
participants recorded in SITE.jsonl. `--die-at-round`: SIGKILL this process just
before that round's exchange (first incarnation only, marked by a file).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import torch

from phalanx.sites.compression import Codec, ErrorFeedback
from phalanx.sites.outer_link import OuterLink, OuterRoundFailed
from phalanx.sites.outer_optimizer import OuterOptimizer, OuterSettings
from phalanx.sites.outer_step import apply_outer_step, prepare_upload
from phalanx.sites.wire import WireUpload

BATCH = 4
INNER_STEPS = (3, 2, 1)  # a slower site does fewer inner steps per round
CODEC = Codec("none")
SETTINGS = OuterSettings(lr=0.7, momentum=0.5)


def initial_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(6, 1).double()


def train_round(model: torch.nn.Module, site: int, round_index: int) -> int:
    """The site's inner steps of one round (plain SGD, data keyed by site/round/step)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(INNER_STEPS[site]):
        generator = torch.Generator().manual_seed(1000 * round_index + 10 * site + step)
        x = torch.randn(BATCH, 6, generator=generator, dtype=torch.float64)
        y = x.sum(dim=1, keepdim=True) * 0.5
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return INNER_STEPS[site] * BATCH


def outer_round(model: torch.nn.Module, outer: OuterOptimizer, uploads: list, codec: Codec) -> None:
    new_anchor = apply_outer_step(uploads, codec, outer)
    with torch.no_grad():
        for param, value in zip(model.parameters(), new_anchor):
            param.copy_(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", type=int)
    parser.add_argument("lighthouse")
    parser.add_argument("out", type=Path)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--die-at-round", type=int, default=None)
    parser.add_argument(
        "--hold-at-round",
        type=int,
        default=None,
        help="before this round, wait until a restarted site says it is back (the scenario "
        "needs it back before the end: the survivors' rounds take milliseconds)",
    )
    args = parser.parse_args()
    model = initial_model()
    params = list(model.parameters())
    outer = OuterOptimizer([p.detach() for p in params], SETTINGS)
    feedback = ErrorFeedback(CODEC)
    link = OuterLink(f"site{args.site}", args.lighthouse, outer.state_dict, outer.load_state_dict)
    numels = [p.numel() for p in params]
    dtypes = [p.dtype for p in params]
    marker = args.out / f"site{args.site}.died"
    log = (args.out / f"site{args.site}.jsonl").open("a")
    log.write(json.dumps({"kind": "start", "pid": os.getpid()}) + "\n")
    log.flush()
    back = args.out / "restarted-site-is-back"
    if marker.exists():  # this is the restarted incarnation, heartbeating from here on
        back.write_text(str(os.getpid()))
    while link.round < args.rounds:
        if link.round == args.hold_at_round:
            deadline = time.monotonic() + 120
            while not back.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("the restarted site did not come back")
                time.sleep(0.05)  # polling a file the test's scenario writes, with a deadline
        link.join()  # heals the outer state when this site is behind
        round_index = link.round
        with torch.no_grad():
            for param, value in zip(params, outer.anchor):
                param.copy_(value)
        samples = train_round(model, args.site, round_index)
        # The residuals change only with a round that counts: a failed exchange is sent again.
        residuals = feedback.state_dict()
        upload = prepare_upload(args.site, samples, outer.anchor, params, feedback)
        if args.die_at_round == round_index and not marker.exists():
            marker.write_text(str(round_index))
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            mine = WireUpload(upload, True, 0.0, round=round_index)
            exchanged = link.exchange(mine, CODEC, numels, dtypes, sites=len(INNER_STEPS))
        except OuterRoundFailed as failure:
            link.commit()  # votes no; the next join leaves the dead out
            feedback.load_state_dict(residuals)
            log.write(json.dumps({"kind": "failed", "round": round_index, "why": str(failure)}))
            log.write("\n")
            log.flush()
            continue
        if not link.commit():
            feedback.load_state_dict(residuals)
            continue
        uploads = [w.upload for w in exchanged.uploads]
        outer_round(model, outer, uploads, CODEC)
        record = {"kind": "round", "round": round_index, "sites": sorted(u.site for u in uploads)}
        log.write(json.dumps(record) + "\n")
        log.flush()
    torch.save([a.clone() for a in outer.anchor], args.out / f"site{args.site}.pt")
    link.close()
    os._exit(0)  # torchft's threads would hold a normal exit


if __name__ == "__main__":
    main()
