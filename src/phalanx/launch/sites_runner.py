"""Runs a `SitesPlan`: the outer lighthouse, one `phalanx run` per site, cuts, the summary.

Stopping: Ctrl-C (SIGINT) or SIGTERM is passed on to every site's `phalanx
run`, which stops its own workers as it does alone (SIGTERM: a checkpoint at
the step boundary first); whatever still runs after the grace is killed, the
whole process tree of each site. Every child also dies with its parent
(launch/orphans.py), so even a SIGKILL of `phalanx sites` leaves nothing running.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from typing import Any

from phalanx.errors import EXIT_PREEMPTED, EXIT_USAGE
from phalanx.launch.site_cut import SiteCuts
from phalanx.launch.site_process import SiteProcess
from phalanx.launch.sites_plan import SitesPlan
from phalanx.observe.events import EventLog, read_events
from phalanx.sites.outer_lighthouse import OuterLighthouseProcess, outer_lighthouse_settings
from phalanx.sites.sites_summary import build_sites_summary, summary_lines, write_sites_summary

POLL_S = 0.1  # supervisor tick: exits, cuts, signals; not synchronisation
SITES_EVENTS = "sites_events.jsonl"
INTERRUPT_GRACE_S = 15.0  # a site's launcher stops its workers and writes its summary
PREEMPT_GRACE_S = 35.0  # beyond `phalanx run`'s own 25 s to checkpoint at a step boundary
INTERRUPTED = 130


class SitesRunner:
    def __init__(self, plan: SitesPlan) -> None:
        self.plan = plan
        self.log = EventLog(plan.out_dir, source="sites", file_name=SITES_EVENTS)
        self.sites: dict[str, SiteProcess] = {}
        self._stop_signal: int | None = None  # SIGTERM seen by the handler; acted on by the loop

    def say(self, line: str) -> None:
        if not self.plan.quiet:
            print(f"[sites] {line}", flush=True)

    def run(self) -> int:
        plan = self.plan
        lighthouse = OuterLighthouseProcess(
            outer_lighthouse_settings(len(plan.sites), bind="127.0.0.1:0"),
            plan.out_dir / "logs" / "outer_lighthouse.log",
        )
        self.log.emit("sites_start", sites={s.name: s.emulate for s in plan.sites},
                      outer=lighthouse.address, settings=plan.outer_settings)  # fmt: skip
        described = "; ".join(f"{s.name}: {s.emulate}" for s in plan.sites)
        self.say(
            f"{len(plan.sites)} sites ({described}), outer lighthouse {lighthouse.address}, "
            f"out {plan.out_dir}"
        )
        cuts = SiteCuts(
            plan.cuts,
            {name: plan.run_dir(name) for name in plan.names},
            lambda name: self.sites[name].pid if name in self.sites else None,
            self.log,
            self.say,
        )
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        code: int | None = None
        try:
            columns = shutil.get_terminal_size((120, 24)).columns
            for entry in plan.sites:
                argv = plan.site_argv(entry, lighthouse.address)
                self.sites[entry.name] = SiteProcess(entry.name, argv, plan.quiet, columns)
            code = self._supervise(cuts)
        except KeyboardInterrupt:
            if main_thread:  # a second Ctrl-C must not cut the sites' own shutdown short
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.say("interrupted: stopping every site (checkpoints on disk are kept)")
            cuts.release_all()
            self._stop_all(signal.SIGINT, INTERRUPT_GRACE_S)
            code = INTERRUPTED
        finally:
            cuts.release_all()
            for site in self.sites.values():
                site.kill()  # a no-op for a site that exited; else its whole tree
            lighthouse.shutdown()
        codes = {name: self.sites[name].code if name in self.sites else None for name in plan.names}
        code = self._exit_code(codes) if code is None else code
        self.log.emit("sites_end", code=code, codes=codes)
        if code == EXIT_USAGE:
            return code  # a site refused its input (its line is above): no run to summarise
        self._summarise(codes, code, lighthouse.address)
        return code

    def _supervise(self, cuts: SiteCuts) -> int | None:
        while True:
            if self._stop_signal is not None:
                self.say("SIGTERM: every site checkpoints at its next step and stops")
                cuts.release_all()
                self._stop_all(signal.SIGTERM, PREEMPT_GRACE_S)
                return None
            cuts.tick()
            running = []
            for site in self.sites.values():
                was_running = site.code is None
                if site.poll() is None:
                    running.append(site)
                elif was_running:
                    self._said_exit(site.name, site.code)
            refused = [s for s in self.sites.values() if s.code == EXIT_USAGE]
            if refused and running:
                # A site that refused its input leaves the others waiting at the outer step.
                self.say(f"site {refused[0].name} refused its input: stopping the others")
                cuts.release_all()
                self._stop_all(signal.SIGINT, INTERRUPT_GRACE_S)
                return EXIT_USAGE
            if not running:
                return None
            time.sleep(POLL_S)

    def _said_exit(self, name: str, code: int | None) -> None:
        if code == 0:
            self.say(f"site {name} finished")
        elif code != EXIT_USAGE:  # a refusal stops every site (said where that is done)
            # Without a majority of the sites left, the others wait at their next outer step.
            self.say(f"site {name} exited with code {code}; the other sites go on")

    def _on_sigterm(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum  # the loop acts on it (no I/O in a handler)

    def _stop_all(self, signum: int, grace_s: float) -> None:
        """`signum` to every site's `phalanx run`; after `grace_s`, kill what is left."""
        for site in self.sites.values():
            site.signal(signum)
        deadline = time.monotonic() + grace_s
        while any(s.poll() is None for s in self.sites.values()) and time.monotonic() < deadline:
            time.sleep(POLL_S)  # waiting for the sites to exit, not synchronising
        for site in self.sites.values():
            site.kill()

    @staticmethod
    def _exit_code(codes: dict[str, int | None]) -> int:
        """0 when every site exited 0; else the first site's code that is not 0."""
        failed = [c for c in codes.values() if c != 0]
        if not failed:
            return 0
        if any(c == EXIT_PREEMPTED for c in failed):
            return EXIT_PREEMPTED
        first = failed[0]
        return first if first is not None and first > 0 else 1

    def _summarise(self, codes: dict[str, int | None], code: int, outer: str) -> None:
        plan = self.plan
        summary = build_sites_summary(
            plan.out_dir,
            codes,
            {
                "exit_code": code,
                "outer": {"address": outer, **plan.outer_settings},
                "cuts": [
                    e
                    for e in read_events(plan.out_dir, warn=False, file_name=SITES_EVENTS)
                    if e.get("kind") in ("site_cut", "site_back")
                ],
            },
        )
        path = write_sites_summary(plan.out_dir, summary)
        if plan.quiet:
            return
        for line in summary_lines(summary):
            self.say(line)
        if path is not None:
            self.say(f"summary: {path}")
