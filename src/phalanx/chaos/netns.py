"""Hosts on one machine: Linux network namespaces on a bridge, whose links can be cut.

Each host is a namespace with one veth pair: the inner end (addressed) inside
the namespace, the outer end on a bridge in the root namespace. Taking the
outer end down cuts the host off from every other host while its processes
keep running; bringing it up restores the link. The root namespace gets no
address on the bridge, so several networks (parallel schedules, a test) may
reuse the same subnet without seeing each other.

A host's link can also be limited to a rate both ways (`limit`, tc htb: this
kernel has no netem, so no added latency), and the bytes that crossed it are
read from the kernel's counters of its outer veth end (`link_bytes`): whole
frames, protocol overhead included, as a real link would carry them.

Needs root and iproute2 (`ip`); `unavailable()` says why not, for a skip or a
category left out. The chaos campaign runs a schedule's replicas as hosts here, and
tests/e2e/test_multihost_netns.py builds its hosts with it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEGRADED_RATE_MBIT = 20.0  # `degrade`'s bandwidth limit where the kernel has no netem


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"phx-probe-{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    ip("netns", "del", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    return None


@dataclass(frozen=True)
class LinkBytes:
    """Bytes that crossed a host's link, as the kernel counted them (Ethernet frames)."""

    sent_bytes: int  # from the host out over its link (its upload)
    received_bytes: int  # from the other hosts to it (its download)

    @property
    def total_bytes(self) -> int:
        return self.sent_bytes + self.received_bytes

    def __sub__(self, earlier: LinkBytes) -> LinkBytes:
        return LinkBytes(
            self.sent_bytes - earlier.sent_bytes, self.received_bytes - earlier.received_bytes
        )


@dataclass
class Host:
    label: str
    ns: str
    address: str
    outer: str  # veth end on the bridge (root namespace): down = cut off
    inner: str  # veth end inside the namespace


@dataclass
class Network:
    """Namespaces on one bridge, all named with one random token: networks do not collide."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"pb{self.token}"  # interface names are at most 15 characters

    def create_bridge(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("link", "set", self.bridge, "up")

    def add_host(self, label: str, address: str) -> Host:
        index = len(self.hosts)
        host = Host(
            label,
            f"phx-{self.token}-{label}",
            address,
            f"pv{self.token}{index}",
            f"pn{self.token}{index}",
        )
        self.hosts.append(host)  # registered first: cleanup must see half-made hosts too
        ip("netns", "add", host.ns)
        ip("-n", host.ns, "link", "set", "lo", "up")
        ip("link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
        ip("link", "set", host.inner, "netns", host.ns)
        ip("-n", host.ns, "addr", "add", f"{address}/24", "dev", host.inner)
        ip("-n", host.ns, "link", "set", host.inner, "up")
        ip("link", "set", host.outer, "master", self.bridge, "up")
        return host

    def degrade(self, host: Host) -> str:
        """Slow the host's link both ways; returns what was applied.

        Latency and loss (tc netem) where the kernel has sch_netem, otherwise a
        20 Mbit/s bandwidth limit (htb), which still exercises a slow link.
        """
        netem = ["netem", "delay", "20ms", "5ms", "loss", "1%"]
        outer = ["tc", "qdisc", "add", "dev", host.outer, "root", *netem]
        if subprocess.run(outer, capture_output=True, timeout=30).returncode == 0:
            inner = ["ip", "netns", "exec", host.ns, "tc", "qdisc", "add", "dev", host.inner]
            subprocess.run([*inner, "root", *netem], check=True, capture_output=True, timeout=30)
            return "netem delay 20ms ±5ms, loss 1%"
        self._shape(host, DEGRADED_RATE_MBIT)
        return "htb 20 Mbit/s (no netem in this kernel)"

    def limit(self, host: Host, rate_mbit: float) -> str:
        """Limit the host's link to `rate_mbit` each way (tc htb); returns what was applied.

        Both veth ends get an htb root whose one class takes all traffic: the
        outer end shapes what reaches the host, the inner end what it sends.
        Queues stay the device's default: a small request crossing a link that
        one bulk TCP transfer saturated at 20 Mbit/s waited about 15 ms (at most
        about 0.1 s) on this kernel, so heartbeats are not stuck behind a
        bloated queue (TCP's small-queue limit seems to keep it short). The
        link also carries wire-sized frames (`count_frames`), so `link_bytes`
        counts what a real link would carry.
        """
        if rate_mbit <= 0:
            raise ValueError(f"rate_mbit must be > 0, got {rate_mbit}")
        self._shape(host, rate_mbit)
        self.count_frames(host)
        return f"htb {rate_mbit:g} Mbit/s each way"

    def _shape(self, host: Host, rate_mbit: float) -> None:
        in_host = ["ip", "netns", "exec", host.ns]
        for prefix, dev in (([], host.outer), (in_host, host.inner)):
            qdisc = ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb"]
            rate = ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb"]
            for command in ([*qdisc, "default", "1"], [*rate, "rate", f"{rate_mbit:g}mbit"]):
                subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=30)

    def count_frames(self, host: Host) -> None:
        """Make the host's link carry one frame per packet, so its counters count every header.

        A veth passes TCP's segmentation-offload batches (up to 64 KiB with one
        set of headers) whole, and counts them so: the headers of all but one
        packet of a batch would be missing (about 5% of a bulk transfer's
        bytes). With one segment per batch allowed on both ends, the kernel
        cuts batches into MTU-sized frames before they cross, as a wire has them.
        That costs CPU per frame: nothing at tens of Mbit/s, but on an unlimited
        veth a 6.6 MB allreduce took ~0.2 s instead of ~0.05 s on 2 cores.
        """
        ip("link", "set", "dev", host.outer, "gso_max_segs", "1")
        ip("-n", host.ns, "link", "set", "dev", host.inner, "gso_max_segs", "1")

    def link_bytes(self, host: Host) -> LinkBytes:
        """Bytes that crossed the host's link so far (the outer veth end's counters).

        What the host sends arrives at the outer end (its rx); what it receives
        leaves the outer end (its tx). Read in the root namespace, so the
        processes in the host cannot disturb the reading. Ethernet frames
        without preamble and checksum; headers of every packet only after
        `count_frames` (or `limit`).
        """
        stats = Path("/sys/class/net") / host.outer / "statistics"
        return LinkBytes(
            sent_bytes=int((stats / "rx_bytes").read_text()),
            received_bytes=int((stats / "tx_bytes").read_text()),
        )

    def cut(self, host: Host) -> None:
        """Take the host's link down: its packets go nowhere, its processes run on."""
        ip("link", "set", host.outer, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.outer, "up")

    def spawn(
        self, host: Host, argv: list[str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Run `argv` inside the host's namespace, in its own session (killed as a group)."""
        with log.open("w") as sink:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, *argv],
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def cleanup(self) -> None:
        """Kill whatever runs in the namespaces, then remove them and the bridge."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        for host in self.hosts:
            # Workers die with their launcher (PDEATHSIG); anything left in the namespace goes now.
            listed = subprocess.run(
                ["ip", "netns", "pids", host.ns], capture_output=True, text=True, timeout=30
            )
            for pid in listed.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", host.ns, check=False)
            ip("link", "del", host.outer, check=False)  # gone with the namespace, normally
        ip("link", "del", self.bridge, check=False)
