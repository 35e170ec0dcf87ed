"""Which members of the last quorum are gone for certain: their process no longer exists.

A killed replica's peers see its collective fail at once, but the lighthouse
forms the next quorum only when its heartbeats have been missing for the
heartbeat timeout (runtime/liveness.py): 0.65 s on average under `phalanx
run`, 2 s across hosts. The survivors need not idle meanwhile. A process that
is gone leaves no listening socket behind, so a connection to its torchft
ManagerServer is refused at once, by its host's kernel; a frozen process, a
slow one or one behind a cut link is never refused (the kernel still accepts
for it, or nothing answers). A refusal is therefore a safe reason to compute
the retried step on the others while the lighthouse catches up
(runtime/sync_fleet.py), and anything else (a timeout, an unreachable
lighthouse) says nothing. The guess is only ever a guess: the quorum that
forms is compared with it before any sum.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Collection
from urllib.parse import urlsplit

from phalanx.runtime.torchft_access import quorum_manager_addresses

STATUS_TIMEOUT_S = 0.2  # the lighthouse's page: 2-6 ms through the fleet's gate on one host
CONNECT_TIMEOUT_S = 0.05  # a refusal comes in one round trip; silence proves nothing
BUDGET_S = 0.25  # all probes together: past this, the step waits for the quorum as before


def refused(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Does the host at `address` (http://host:port) refuse a connection (nothing listens)?"""
    parts = urlsplit(address if "//" in address else f"//{address}")
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout, no route: the peer may be alive behind it
        return False


def gone_members(lighthouse: str, members: Collection[str]) -> set[str]:
    """The raw ids among `members` (of the lighthouse's last quorum) whose process is gone."""
    deadline = time.monotonic() + BUDGET_S
    addresses = quorum_manager_addresses(lighthouse, STATUS_TIMEOUT_S) or {}
    gone = set()
    for member in members:
        if member not in addresses:
            continue
        if time.monotonic() > deadline:
            return set()  # a slow answer is no answer: never guess from part of the fleet
        if refused(addresses[member]):
            gone.add(member)
    return gone
