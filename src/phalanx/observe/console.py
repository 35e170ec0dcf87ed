"""What a user reads while a fleet trains: live view or progress lines, a final summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from phalanx.observe.chip_memory import describe_chip_memory
from phalanx.observe.fleet_state import STATE_COLORS as _STATE_STYLE
from phalanx.observe.fleet_state import format_duration
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.live import LiveProgress


def fleet_progress(
    console: Console, every_steps: int = 10, quiet: bool = False
) -> ProgressPrinter | LiveProgress:
    """The live view on a terminal; plain lines where output is a pipe or a CI log."""
    if console.is_terminal and not console.is_dumb_terminal and not quiet:
        return LiveProgress(console)
    return ProgressPrinter(console, every_steps, quiet)


class ProgressPrinter:
    def __init__(self, console: Console, every_steps: int = 10, quiet: bool = False) -> None:
        self.console = console
        self.every_steps = max(1, every_steps)
        self.quiet = quiet
        self._printed_at = -1

    def say(self, text: str) -> None:
        if not self.quiet:
            # Plain text: lines quote paths and other processes' words, never markup.
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Nothing to tear down: lines are already printed (LiveProgress has the same call)."""

    def maybe_print(self, view: FleetView) -> None:
        done = view.steps_done()
        if self.quiet or done == 0 or done == self._printed_at:
            return
        if done % self.every_steps and done != view.planned_steps:
            return
        self._printed_at = done
        tput = view.throughput_sps()
        eff = view.efficiency()
        fleet = " ".join(
            f"[{_STATE_STYLE.get(v.state, 'white')}]{name}:{v.state}"
            + (f"({v.share})" if v.state == "training" else "")
            + "[/]"
            for name, v in sorted(view.replicas.items())
        )
        loss = f"{view.last_loss:.4f}" if view.last_loss is not None else "-"
        eta = format_duration(view.eta_s()) if done < view.planned_steps else "0:00"
        self.console.print(
            f"step {done:>4}/{view.planned_steps}  loss {loss}  "
            f"{(f'{tput:,.0f}' if tput else '-'):>7} samples/s  "
            f"eff {(f'{eff:.2f}' if eff else '-'):>4}  ETA {eta:>5}  {fleet}",
            highlight=False,
            soft_wrap=True,
        )


def _length(summary: dict[str, Any]) -> str:
    if "outer_rounds" in summary:  # a site: as many inner steps as its speed allowed
        return f"{summary['steps']} inner steps, {summary['outer_rounds']} outer rounds,"
    return f"{summary['steps']}/{summary['planned_steps']} steps"


def print_summary(console: Console, summary: dict[str, Any], run_dir: str) -> None:
    ok = summary.get("completed")
    data = summary.get("data", {})
    faults = summary.get("faults", {})
    console.print()
    console.print(
        f"[bold]{'Finished' if ok else 'Stopped early'}[/]: {_length(summary)} "
        f"of {summary['global_batch_size']} samples in {summary['wall_s']:.1f} s; "
        f"final loss {summary['final_loss'] if summary['final_loss'] is None else round(summary['final_loss'], 4)}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.get("efficiency") is not None:
        console.print(
            f"Throughput {summary['throughput_sps']:,.0f} samples/s = {summary['efficiency']:.0%} of the fleet's "
            f"ideal {summary['ideal_sps']:,.0f} (the sum of each chip's own speed).",
            highlight=False,
            soft_wrap=True,
        )
    injected = faults.get("injected", [])
    if injected:
        kinds = ", ".join(
            f"{f['kind']} of {f['replica']} at step {f['step']}"
            if f.get("replica") is not None
            else f"{f['kind']} kill at step {f['step']}"  # a fleet service (the lighthouse)
            for f in injected
        )
        console.print(
            f"Faults injected: {kinds}; survived {faults.get('survived', 0)} of {len(injected)}.",
            highlight=False,
            soft_wrap=True,
        )
    stalls = [r for r in summary.get("recoveries", []) if r["kind"] in ("kill", "hang")]
    if stalls:
        console.print(
            "Cost of each fault (fleet stalled): "
            + ", ".join(f"{r['kind']} {r['stall_s']:.1f}s" for r in stalls),
            highlight=False,
            soft_wrap=True,
        )
    restarts = summary.get("lighthouse_restarts") or []
    if restarts:
        console.print(
            f"Lighthouse lost {len(restarts)}x and restarted; training paused "
            + ", ".join(
                f"{r['pause_s']:.1f}s at step {r['at_step']}"
                if r["pause_s"] is not None
                else f"until the end at step {r['at_step']}"
                for r in restarts
            )
            + " (loss -> next commit).",
            highlight=False,
            soft_wrap=True,
        )
    admission = summary.get("admission") or {}
    if admission.get("refused"):
        peers = ", ".join(sorted(admission.get("refused_by_peer") or {}))
        console.print(
            f"Admission: refused {admission['refused']} connection(s) without the fleet secret "
            f"(from {peers}).",
            highlight=False,
            soft_wrap=True,
        )
    if data and data.get("fleet_accounting"):  # one site of a sites run: misses are fleet-wide
        console.print(
            f"Data: {data['samples_seen']:,} samples used by this site, "
            f"{data['duplicates']} duplicated; missed samples: see {data['fleet_accounting']}.",
            highlight=False,
            soft_wrap=True,
        )
    elif data:
        console.print(
            f"Data: {data['samples_seen']:,} samples used, {data['epochs_completed']} full epoch(s), "
            f"{data['duplicates']} duplicated, {data['missing']} missed.",
            highlight=False,
            soft_wrap=True,
        )
    energy = summary.get("energy")
    if energy:
        extras = []
        if energy.get("cost_estimate") is not None:
            extras.append(f"cost estimate {energy['cost_estimate']:.6f} at the given tariff")
        if energy.get("co2_g_estimate") is not None:
            extras.append(f"CO2 estimate {energy['co2_g_estimate']:.3f} g")
        console.print(
            f"Energy: {energy['energy_j']:,.1f} J ({energy['j_per_sample']:.4f} J/sample)"
            + (f"; {'; '.join(extras)}" if extras else ""),
            highlight=False,
            soft_wrap=True,
        )
    guard = summary.get("guard") or {}
    if guard.get("detections") or guard.get("quarantined"):
        quarantined = ", ".join(q["replica"] for q in guard.get("quarantined", [])) or "none"
        console.print(
            f"SDC guard: {len(guard.get('detections', []))} detection(s); quarantined: {quarantined}.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        "Shares at the end: "
        + ", ".join(
            f"{d['id']} ({_speed_label(d)}) {d['final_share']}" for d in summary.get("devices", [])
        ),
        highlight=False,
        soft_wrap=True,
    )
    held = [
        f"{d['id']}: {describe_chip_memory(d['memory'])}"
        for d in summary.get("devices", [])
        if d.get("memory")
    ]
    if held:
        console.print(
            "Chip memory held (most): " + "; ".join(held), highlight=False, soft_wrap=True
        )
    console.print(
        f"Run directory: {run_dir} (report.html, summary.json, events.jsonl, model.safetensors, checkpoints/)",
        highlight=False,
        soft_wrap=True,
    )


def _speed_label(device: dict[str, Any]) -> str:
    """An emulated chip's speed; a real device has none of its own: what it measured."""
    if device.get("speed") is not None:
        return f"speed {device['speed']}"
    measured = device.get("solo_sps")
    return f"{measured:,.0f} samples/s" if measured else "real device"
