"""`phalanx run`: a lighthouse, one worker process per replica, supervision, summary."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from phalanx.devices.placement import fair_threads
from phalanx.errors import (
    EXIT_DISK_FULL,
    EXIT_FATAL,
    EXIT_OUT_OF_MEMORY,
    EXIT_PREEMPTED,
    EXIT_QUARANTINED,
    EXIT_USAGE,
    UsageError,
)
from phalanx.faults.markers import claim_once
from phalanx.faults.spec import FLEET_KINDS, FaultSpec
from phalanx.fleetnet.fleet_secret import default_secret_path, generate_secret_file, load_secret
from phalanx.launch.coordinator import GatedLighthouse
from phalanx.launch.energy_setup import (
    EnergySettings,
    apply_energy_plan,
    describe,
    effective_speeds,
)
from phalanx.launch.lighthouse import LighthouseSettings
from phalanx.launch.spare_pool import SparePool, pool_for
from phalanx.launch.workers import WorkerSlot
from phalanx.observe.console import fleet_progress, print_summary
from phalanx.observe.dashboard import Dashboard, start_dashboard
from phalanx.observe.events import EventLog
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.live import LiveProgress
from phalanx.observe.report import write_report_safely
from phalanx.observe.safe_write import say_once, set_reporter
from phalanx.observe.summary import build_summary, follows_restart, write_summary
from phalanx.observe.tail import EventTail
from phalanx.observe.trackers import LogSpec, TrackerFeed, open_trackers
from phalanx.runtime.checkpoint import list_checkpoints
from phalanx.runtime.liveness import MIN_SHARED_HEARTBEAT_TIMEOUT_MS, RUN_HEARTBEAT_TIMEOUT_MS
from phalanx.runtime.worker_config import WorkerConfig

if TYPE_CHECKING:
    from phalanx.sites.run_settings import SiteRunSettings

POLL_S = 0.05
# After SIGTERM, how long the workers get to reach a step boundary and checkpoint before
# they are killed: inside the 30 s Slurm and Kubernetes give by default before SIGKILL.
PREEMPT_GRACE_S = 25.0
SECRET_FILE = ".fleet-secret"  # a run's own fleet secret (mode 0600), when none is given


@dataclass
class RunPlan:
    script: Path
    out_dir: Path
    speeds: list[float | None]
    script_args: list[str] = field(default_factory=list)
    faults: list[FaultSpec] = field(default_factory=list)
    resume: bool = False
    timeout_s: float = 5.0
    # The own lighthouse's: a killed or frozen replica stalls the survivors about this
    # long (runtime/liveness.py). Ignored with `lighthouse` (the shared one's applies).
    heartbeat_timeout_ms: int = RUN_HEARTBEAT_TIMEOUT_MS
    # Many hosts: join this lighthouse (http://HOST:PORT, a `phalanx lighthouse`) instead
    # of starting one here. Names must then be unique across hosts (see `names`).
    lighthouse: str | None = None
    host_id: str | None = None  # replicas are HOST_ID-r0, HOST_ID-r1, ...
    replica_names: list[str] | None = None  # explicit names instead
    advertise_host: str = "127.0.0.1"  # where other hosts reach this host's replicas
    crash_restart_s: float = 1.0  # restart delay for a crash that was not injected
    max_restarts: int = 5
    # Admission (fleetnet/admission.py): the fleet secret's file. None: a new secret for
    # each run, in the run dir; with --lighthouse, the default path (fleet_secret.py).
    secret_file: Path | None = None
    checkpoint_every: int | None = None
    quiet: bool = False
    progress_every: int = 10
    dashboard_port: int | None = None  # None: no web dashboard; 0: the OS picks a port
    dashboard_bind: str | None = None  # HOST:PORT beyond loopback (token-protected)
    logs: list[LogSpec] = field(default_factory=list)  # --log: TensorBoard, W&B, MLflow
    guard: str | None = None  # None: the script's Trainer(guard=...) decides
    precision: str | None = None  # None: the script's Trainer(precision=...) decides
    rescreen_every_s: float | None = None  # periodic correctness probe on each device
    tariff_per_kwh: float | None = None  # for the cost estimate in summary.json
    subsidy_per_kwh: float | None = None
    co2_g_per_kwh: float | None = None  # for the CO2 estimate
    # Per replica, from a qualified fleet file: emulated defects and profile hints.
    device_tables: list[dict] = field(default_factory=list)
    # Per replica: the most samples of a step it may get (`--emulate ...:max_share=N`).
    max_shares: list[int | None] = field(default_factory=list)
    # Per replica: its kind when emulated as another vendor's (`--emulate ...:kind=b`).
    kinds: list[str | None] = field(default_factory=list)
    # Per replica: the emulated chip's memory in bytes (`--emulate ...:mem=2GiB`), binding.
    memory_caps: list[int | None] = field(default_factory=list)
    # Per replica: its ranks' parts of its chips (`--emulate a+b,...`: replica groups,
    # launch/group_slot.py); empty when every replica is one process.
    group_parts: list[list[Any]] = field(default_factory=list)
    # --objective / --power-budget-w (None: every device at full power).
    energy: EnergySettings | None = None
    power_limits_w: list[float | None] = field(default_factory=list)  # per replica, set by it
    thermal_guard: bool = True
    # Chip seconds per wall second for emulated chips; None: fitted to this host's cores.
    # Benchmarks fix it so runs with different fleets compare in the same time.
    time_scale: float | None = None
    # A sites run (`--site ...`): this fleet is one site; its workers also join the outer
    # quorum (docs/sites.md). None: an ordinary fleet.
    sites: SiteRunSettings | None = None

    @property
    def names(self) -> list[str]:
        if self.replica_names:
            return list(self.replica_names)
        prefix = f"{self.host_id}-" if self.host_id else ""
        return [f"{prefix}r{i}" for i in range(len(self.speeds))]


def validate_plan(plan: RunPlan) -> None:
    if not plan.script.is_file():
        raise UsageError(
            "SCRIPT", "does not exist", "give the path of your training script", str(plan.script)
        )
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        probe = plan.out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(
            "--out",
            f"cannot write there ({err.strerror})",
            "choose a writable directory",
            str(plan.out_dir),
        ) from None
    if list_checkpoints(plan.out_dir) and not plan.resume:
        raise UsageError(
            "--out",
            "already holds checkpoints of a run",
            "add --resume to continue it, or choose a new --out",
            str(plan.out_dir),
        )
    for fault in plan.faults:
        if fault.replica >= len(plan.speeds):
            raise UsageError(
                "--fault",
                f"replica={fault.replica} is not in a fleet of {len(plan.speeds)}",
                f"use replica=0..{len(plan.speeds) - 1}",
                fault.key,
            )
    _validate_admission(plan)


def _validate_admission(plan: RunPlan) -> None:
    """The secret file is checked before anything starts; an unsafe one stops the run."""
    if plan.lighthouse is not None:
        if any(f.kind in FLEET_KINDS for f in plan.faults):
            raise UsageError(
                "--fault",
                "lighthouse faults need the lighthouse this launcher runs",
                "drop --lighthouse, or kill the `phalanx lighthouse` process yourself",
            )
        if plan.secret_file is None:
            default = default_secret_path()
            if not default.exists():
                raise UsageError(
                    "--secret-file",
                    f"is needed with --lighthouse (there is none at {default})",
                    "pass the file `phalanx lighthouse` printed, or copy it to that path",
                )
            plan.secret_file = default
    if plan.secret_file is not None:
        load_secret(plan.secret_file)


def emulation_time_scale(speeds: list[float | None], cores: int | None = None) -> float:
    """Slow every emulated chip by one common factor so the host's cores are not oversubscribed.

    Emulated chips compute on the host's CPU. If their summed demand exceeded
    about a quarter of the cores (compute phases start together), the fast chips would be slowed by CPU contention
    (the slow ones mostly sleep) and the fleet would no longer have the speed
    ratios it was given. A common factor keeps every ratio exact; throughputs
    are then in dilated time, which efficiency ratios do not see.
    """
    demand = sum(s for s in speeds if s is not None)
    if demand == 0:
        return 1.0
    cores = cores or len(os.sched_getaffinity(0))
    return min(1.0, 0.25 * cores / demand)


class Launcher:
    def __init__(self, plan: RunPlan, console: Console | None = None) -> None:
        # Which devices train and at what power limit: decided before anything starts.
        self.energy_plan = apply_energy_plan(plan) if plan.energy and plan.energy.active else None
        validate_plan(plan)  # before anything touches the out dir
        self.plan = plan
        self.console = console or Console(highlight=False)
        self.printer = fleet_progress(self.console, plan.progress_every, plan.quiet)
        # A full disk is said once per kind of file, also under --quiet (observe/safe_write.py).
        set_reporter(self._warn)
        # The line a run stopped by a full disk ends with (printed last, after the summary).
        self._stop_line: str | None = None
        for line in describe(self.energy_plan) if self.energy_plan else []:
            self.printer.say(line)
        self.dashboard: Dashboard | None = start_dashboard(
            plan.dashboard_port, bind=plan.dashboard_bind, token_dir=plan.out_dir
        )
        self.view = FleetView()
        self.events = EventLog(plan.out_dir, source="launcher")
        self.tail = EventTail(plan.out_dir)
        self._fired_kills: dict[str, list[dict]] = {}
        self.spares: SparePool | None = None  # decided with the slots (launch/spare_pool.py)
        self.lighthouse: GatedLighthouse | None = None
        self._lighthouse_faults = [f for f in plan.faults if f.kind in FLEET_KINDS]
        # The lighthouse_down event and the restart's time, until a step follows the restart.
        self._lighthouse_lost: tuple[dict, float | None] | None = None
        self.trackers: TrackerFeed | None = None  # --log
        # SIGTERM (pre-emption): set by the handler, acted on by the supervisor loop.
        self._preempt_requested = False
        self._preempt_deadline: float | None = None

    def run(self) -> int:
        plan = self.plan
        # Many hosts: this host's replicas join the fleet's lighthouse; none runs here.
        lighthouse: GatedLighthouse | None = None
        lighthouse_address = plan.lighthouse
        # One secret per run unless the fleet has one: workers read it from this 0600 file.
        secret_file = plan.secret_file or generate_secret_file(plan.out_dir / SECRET_FILE)
        if lighthouse_address is None:
            # Replicas dial the admission gate; the lighthouse behind it is restarted if it dies.
            lighthouse = GatedLighthouse(
                LighthouseSettings(heartbeat_timeout_ms=plan.heartbeat_timeout_ms),
                load_secret(secret_file),
                plan.out_dir / "logs" / "lighthouse.log",
                on_event=self.events.emit,
            )
            lighthouse_address = lighthouse.address
        self.lighthouse = lighthouse
        from torch.distributed import TCPStore  # the start barrier; imported late (slow import)

        barrier = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        self.tail.read_new()  # a resumed run: do not replay the old run's events as progress
        # The start barrier only spans this host; across hosts `--min-replicas` does its job.
        slots = self._make_slots(lighthouse_address, f"127.0.0.1:{barrier.port}")
        self.spares = pool_for(slots)
        for slot in slots:
            if not getattr(slot, "parts", None):  # a group's ranks restart together, cold
                slot.spares = self.spares
        launched_at_s = time.time()
        for slot in slots:
            slot.config.secret_file = str(secret_file)
            slot.config.launched_at_s = launched_at_s
            slot.config.many_hosts = plan.lighthouse is not None
        # The kind the control block declares: a placed replica's device type too.
        replicas = {
            s.name: {"speed": s.config.speed, "kind": s.config.fleet[s.name]["kind"]} for s in slots
        }
        self.events.emit(
            "run_start",
            script=str(plan.script),
            lighthouse=lighthouse_address,
            own_lighthouse=lighthouse is not None,
            resume=plan.resume,
            replicas=replicas,
            steps=None,
            global_batch_size=None,
            faults=[f.to_json() for f in plan.faults],
            tariff_per_kwh=plan.tariff_per_kwh,
            subsidy_per_kwh=plan.subsidy_per_kwh,
            co2_g_per_kwh=plan.co2_g_per_kwh,
            energy_plan=self.energy_plan.to_json() if self.energy_plan else None,
            power_budget_w=plan.energy.power_budget_w if plan.energy else None,
            sites=plan.sites.to_json() if plan.sites else None,
        )
        self.printer.say(
            f"phalanx: {len(slots)} replicas ({', '.join(_where(s.config) for s in slots)}), "
            f"lighthouse {lighthouse_address}, out {plan.out_dir}"
        )
        if self.dashboard is not None:
            print(f"dashboard: {self.dashboard.url}", flush=True)  # also under --quiet: asked for
        self.trackers = open_trackers(
            plan.logs, plan.out_dir, _tracker_config(plan, replicas), self.printer.say, self._warn
        )
        code = 1
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            for slot in slots:
                slot.launch(restarted=False)
            if self.spares is not None:
                self.spares.start_at_launch()
            code = self._supervise(slots)
        except KeyboardInterrupt:
            # A second Ctrl-C must not cut the shutdown short: the summary and the report
            # of an interrupted run are what the user looks at next.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.printer.say("interrupted: stopping workers (checkpoints on disk are kept)")
            code = 130
        finally:
            self._shut_down(slots, lighthouse)
            del barrier
        self.events.emit("run_end", code=code)
        if code == EXIT_USAGE:
            self._close_trackers({})
            return code
        summary = build_summary(plan.out_dir)
        write_summary(plan.out_dir, summary)
        self._close_trackers(summary)
        write_report_safely(plan.out_dir)
        if not plan.quiet:
            print_summary(self.console, summary, str(plan.out_dir))
        if code == EXIT_DISK_FULL:  # the model is not on disk, whatever the events say
            print(f"error: {self._stop_line}", file=sys.stderr, flush=True)
            return code
        if code == EXIT_PREEMPTED and not summary.get("completed"):
            newest = list_checkpoints(plan.out_dir)
            held = f"checkpoint {newest[0].name} is on disk" if newest else "no checkpoint yet"
            print(
                f"pre-empted (SIGTERM): {held}; run the same command with --resume to go on "
                f"(exit code {EXIT_PREEMPTED})",
                file=sys.stderr,
                flush=True,
            )
            return code
        return 0 if summary.get("completed") else (code or 1)

    def _shut_down(self, slots: list[WorkerSlot], lighthouse: Any) -> None:
        """Stop workers, lighthouse, live view and dashboard; one failing step skips only itself."""
        steps: list[tuple[str, Any]] = [(f"stop {s.name}", s.stop) for s in slots]
        if lighthouse is not None:
            steps.append(
                (
                    "record admissions",
                    lambda: self.events.emit("admission", **lighthouse.admission()),
                )
            )
            steps.append(("stop the lighthouse", lighthouse.shutdown))
        if self.spares is not None:
            steps.append(("stop the warm spare", self.spares.close))
        steps.append(("close the live view", self.printer.close))
        if self.dashboard is not None:
            steps.append(("close the dashboard", self.dashboard.close))
        for what, step in steps:
            try:
                step()
            except Exception as err:  # the run's summary and report still get written
                print(f"warning: could not {what} cleanly: {err}", file=sys.stderr, flush=True)

    def _close_trackers(self, summary: dict) -> None:
        if self.trackers is not None:
            self.trackers.close(summary)
            self.trackers = None

    def _warn(self, line: str) -> None:
        """A disk warning: above the live view on a terminal, else on stderr."""
        if isinstance(self.printer, LiveProgress):
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def _relay(self, replica: str, line: str) -> None:
        """A worker's warning for the user (launch/output_pump.py): a checkpoint not written.

        It comes from the worker's output, not from events.jsonl: on a full disk the
        `checkpoint_failed` event is lost with the checkpoint.
        """
        say_once(line, prefix=f"{replica}: ")  # workers repeat the launcher's own disk lines

    def _make_slots(self, lighthouse: str, barrier: str) -> list[WorkerSlot]:
        plan = self.plan
        limits = plan.power_limits_w or [None] * len(plan.speeds)
        effective = effective_speeds(plan.speeds, plan.device_tables, limits)
        scale = plan.time_scale or emulation_time_scale(effective)
        tables = plan.device_tables or [{} for _ in plan.names]
        max_shares = plan.max_shares or [None for _ in plan.names]
        kinds = plan.kinds or [None for _ in plan.names]
        memory_caps = plan.memory_caps or [None for _ in plan.names]
        fleet = {
            # Profiled throughput is in real time; emulated chips run in dilated time.
            name: {
                # Many hosts: other hosts do not know this host's hints, and shares must be
                # computed from the same inputs everywhere, so no host uses any.
                "hint_sps": table["hint_sps"] * scale
                if table.get("hint_sps") and not plan.lighthouse
                else None,
                # An emulated chip's speed relative to the others: its first shares
                # follow it instead of an equal split (one host only, as the hints).
                "relative_speed": relative if not plan.lighthouse else None,
                "max_share": max_share,
                "device": table.get("id"),
                # What rounds alike: parameter fingerprints are compared within a kind.
                "kind": kind or _device_kind(table, emulated=speed is not None),
            }
            for name, table, max_share, kind, speed, relative in zip(
                plan.names, tables, max_shares, kinds, plan.speeds, effective
            )
        }
        placements = [t.get("placement") or {} for t in tables]
        # Plain CPU replicas share the host's cores fairly; emulated chips pace one thread each.
        plain_cpu = sum(
            1
            for s, p in zip(plan.speeds, placements)
            if s is None and p.get("device", "cpu") == "cpu"
        )
        cpu_threads = fair_threads(plain_cpu)
        slots = []
        for index, (name, speed) in enumerate(zip(plan.names, plan.speeds)):
            device = placements[index].get("device", "cpu")
            threads = cpu_threads if speed is None and device == "cpu" else 1
            config = WorkerConfig(
                replica=name,
                index=index,
                lighthouse=lighthouse,
                advertise_host=plan.advertise_host,
                out_dir=str(plan.out_dir),
                speed=speed,
                time_scale=scale,
                faults=[f.to_json() for f in plan.faults if f.replica == index],
                fleet=fleet,
                timeout_s=plan.timeout_s,
                heartbeat_timeout_ms=(
                    plan.heartbeat_timeout_ms
                    if plan.lighthouse is None
                    else MIN_SHARED_HEARTBEAT_TIMEOUT_MS
                ),
                start_barrier=barrier,
                fleet_size=len(plan.speeds),
                checkpoint_every=plan.checkpoint_every,
                guard=plan.guard,
                precision=plan.precision,
                defects=tables[index].get("defects"),
                device_table=tables[index].get("device"),
                rescreen_every_s=plan.rescreen_every_s,
                power_limit_w=limits[index],
                thermal_guard=plan.thermal_guard,
                emulated_kind=kinds[index],
                emulated_memory_bytes=memory_caps[index],
                device=device,
                threads=threads,
                sites=plan.sites.to_json() if plan.sites else None,
            )
            if plan.group_parts:
                from phalanx.launch.group_slot import GroupSlot

                slots.append(
                    GroupSlot(
                        config,
                        plan.script,
                        plan.script_args,
                        plan.out_dir / "logs",
                        relay=self._relay,
                        parts=plan.group_parts[index],
                    )
                )
                continue
            slots.append(
                WorkerSlot(
                    config, plan.script, plan.script_args, plan.out_dir / "logs", relay=self._relay
                )
            )
        return slots

    def _follow_events(self) -> None:
        for event in self.tail.read_new():
            self.view.apply(event)
            if event.get("kind") == "step" and self.spares is not None:
                # Once the fleet trains (a spare at the workers' priority must not slow
                # their start); after a hand-out, the next; a no-op while one is waiting.
                self.spares.start()
            if self.trackers is not None:
                self.trackers.event(event, self.view)
            self._note_lighthouse(event)
            if event.get("kind") == "fault" and event.get("fault") == "kill":
                self._fired_kills.setdefault(event["replica"], []).append(event)
            elif event.get("kind") == "straggler_exit" and event.get("fleet_finished"):
                self.printer.say(
                    f"{event.get('replica')}: the fleet finished step {event.get('fleet_step')} "
                    "while this replica was away; the final model is on the hosts that finished"
                )
        self._fire_lighthouse_faults()
        self.printer.maybe_print(self.view)
        if self.dashboard is not None:
            self.dashboard.publish(self.view)

    def _note_lighthouse(self, event: dict) -> None:
        """Say when training goes on after a lighthouse loss, and what the pause was."""
        kind = event.get("kind")
        if kind == "lighthouse_down":
            self._lighthouse_lost = (event, None)
            self.printer.say(f"lighthouse lost ({event.get('cause')}); replicas wait for a new one")
        elif kind == "lighthouse_restart" and self._lighthouse_lost is not None:
            self._lighthouse_lost = (self._lighthouse_lost[0], event["t"])
        elif kind == "step" and self._lighthouse_lost is not None:
            lost, restart_t = self._lighthouse_lost
            if restart_t is not None and follows_restart(event, restart_t):
                pause_s = round(event["t"] - lost["t"], 4)
                self._lighthouse_lost = None
                self.events.emit("lighthouse_recovered", step=event["step"], pause_s=pause_s)
                self.printer.say(f"training goes on at step {event['step']}: paused {pause_s:.1f}s")

    def _fire_lighthouse_faults(self) -> None:
        """`--fault lighthouse:step=S`: kill the lighthouse once the fleet has committed S steps."""
        for fault in list(self._lighthouse_faults):
            if self.lighthouse is None or self.view.last_step + 1 < fault.step:
                continue
            self._lighthouse_faults.remove(fault)
            if not claim_once(self.plan.out_dir, fault.key):  # once per run, as workers' faults
                continue
            restart_s = fault.params.get("restart_s")
            self.events.emit(
                "fault", fault=fault.kind, step=fault.step, target="lighthouse", restart_s=restart_s
            )
            self.lighthouse.kill(restart_after_s=restart_s, step=fault.step)

    def _on_sigterm(self, _signum: int, _frame: Any) -> None:
        self._preempt_requested = True  # the supervisor loop acts on it (no I/O in a handler)

    def _preempt(self, slots: list[WorkerSlot], now: float) -> int | None:
        """SIGTERM: pass it on, restart nothing, wait for checkpoints; EXIT_PREEMPTED when done."""
        if self._preempt_deadline is None:
            self._preempt_deadline = now + PREEMPT_GRACE_S
            self.events.emit("preempt", grace_s=PREEMPT_GRACE_S, step=self.view.last_step)
            self.printer.say(
                "SIGTERM: every replica finishes its step and checkpoints, then the run stops"
            )
            for slot in slots:
                slot.restart_at = None
                slot.signal(signal.SIGTERM)  # on Slurm they have it already; twice is harmless
        if any(s.alive for s in slots) and now < self._preempt_deadline:
            return None
        self._follow_events()
        return EXIT_PREEMPTED

    def _supervise(self, slots: list[WorkerSlot]) -> int:
        while True:
            if self._preempt_requested:
                for slot in slots:
                    exit_code = slot.poll()
                    if exit_code is not None:
                        self.events.emit("worker_exit", replica=slot.name, code=exit_code)
                outcome = self._preempt(slots, time.monotonic())
                if outcome is not None:
                    return outcome
                self._follow_events()
                time.sleep(POLL_S)  # supervisor poll interval, not synchronisation
                continue
            self._follow_events()
            if self.lighthouse is not None:
                self.lighthouse.poll()  # restarts a dead lighthouse (from this thread: PDEATHSIG)
            now = time.monotonic()
            for slot in slots:
                code = slot.poll()
                if code is not None:
                    outcome = self._on_exit(slot, code, now, slots)
                    if outcome is not None:
                        return outcome
                if slot.restart_at is not None and now >= slot.restart_at:
                    if any(s.finished for s in slots):
                        slot.restart_at = None  # the run is over; nothing to rejoin
                        continue
                    slot.launch(restarted=True)
                    self.events.emit(
                        "worker_restart", replica=slot.name, launch=slot.launches,
                        warm=slot.warm,
                    )  # fmt: skip
            if not any(s.alive or s.restart_at is not None for s in slots):
                self._follow_events()
                return 0 if any(s.finished for s in slots) else 1
            time.sleep(POLL_S)  # supervisor poll interval, not synchronisation

    def _on_exit(
        self, slot: WorkerSlot, code: int, now: float, slots: list[WorkerSlot]
    ) -> int | None:
        self._follow_events()
        self.events.emit("worker_exit", replica=slot.name, code=code)
        if code == 0:
            slot.finished = True
            return None
        if code == EXIT_FATAL:
            message = (
                slot.last_error_line() or f"worker {slot.name} cannot go on; see {slot.log_path}"
            )
            print(f"error: {message}", file=sys.stderr, flush=True)
            return 1
        if code == EXIT_DISK_FULL:  # the final model could not be written: stop, say how to go on
            self._stop_line = slot.last_error_line() or (
                f"worker {slot.name} could not write what the run needs to {self.plan.out_dir} "
                "(the disk is full, over quota or read-only). Fix: free disk space, then run "
                "again with --resume"
            )
            return EXIT_DISK_FULL
        if code == EXIT_OUT_OF_MEMORY:
            slot.out_of_memory = True
            message = (
                slot.last_error_line() or f"{slot.name} ran out of memory; see {slot.log_path}"
            )
            print(f"error: {message}", file=sys.stderr, flush=True)
            if all(s.out_of_memory for s in slots):
                return EXIT_OUT_OF_MEMORY  # no chip holds the model: the run cannot go on
            return None
        if code == EXIT_QUARANTINED:
            self.printer.say(
                f"{slot.name} quarantined itself (repeated corrupt results); not restarted"
            )
            return None
        if code == EXIT_USAGE:
            message = (
                slot.last_error_line()
                or f"worker {slot.name} rejected its input; see {slot.log_path}"
            )
            print(f"error: {message}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        injected = self._fired_kills.get(slot.name, [])
        if code < 0 and injected:
            restart_s = injected.pop(0).get("restart_s")
            if restart_s is None:
                self.printer.say(
                    f"{slot.name} killed by injected fault; it stays down (no restart_s)"
                )
                return None
            delay_s = float(restart_s)
        else:
            if slot.launches > self.plan.max_restarts:
                # The log's tail is the worker's text (gloo writes "[/path:line]"): never markup.
                self.console.print(
                    f"[red]{slot.name} crashed {slot.launches} times; giving up on it.[/] "
                    f"Last lines of {escape(str(slot.log_path))}:\n{escape(slot.tail())}",
                    highlight=False,
                )
                return None
            delay_s = self.plan.crash_restart_s
            self.printer.say(f"{slot.name} exited with code {code}; restarting in {delay_s:.1f}s")
        slot.restart_at = now + delay_s
        self.events.emit("restart_scheduled", replica=slot.name, after_s=delay_s)
        return None


def _tracker_config(plan: RunPlan, replicas: dict[str, dict]) -> dict[str, Any]:
    """What a tracker records as the run's configuration (workers add steps and batch)."""
    return {
        "script": str(plan.script),
        "script_args": " ".join(plan.script_args),
        "replicas": replicas,  # as run_start has them: each one's speed and kind
        "timeout_s": plan.timeout_s,
        "precision": plan.precision or "script",
        "guard": plan.guard or "script",
        "resume": plan.resume,
        "out_dir": str(plan.out_dir),
    }


def _where(config: WorkerConfig) -> str:
    """A replica as the start line names it: its emulated speed, else its device."""
    return f"{config.replica}@{config.speed if config.speed is not None else config.device}"


def _device_kind(table: dict, emulated: bool) -> str:
    """A replica's kind: its placement's device type, else its fleet-file table's kind.

    A replica with neither is an emulated chip (`--emulate`) or a plain CPU process.
    """
    placement = table.get("placement") or {}
    device = table.get("device") or {}
    default = "emulated" if emulated else "cpu"
    return str(placement.get("kind") or device.get("kind") or default)
