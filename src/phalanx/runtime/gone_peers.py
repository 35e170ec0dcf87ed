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

Where the members listen is on the lighthouse's status page. It is read in
the background once per quorum, right after the quorum forms: through the
fleet's gate a page takes 2-6 ms, but 0.1-0.2 s now and then on a busy host
(measured: p99 0.09 s, max 0.2 s during a bench run), and at a failure every
millisecond of the probe is a millisecond the survivors do not compute.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Collection
from urllib.parse import urlsplit

from phalanx.runtime.torchft_access import quorum_manager_addresses

PAGE_TIMEOUT_S = 1.0  # the page read in the background, after a quorum formed
LATE_PAGE_TIMEOUT_S = 0.2  # read at the failure itself (the background read had not ended)
CONNECT_TIMEOUT_S = 0.05  # a refusal comes in one round trip; silence proves nothing
BUDGET_S = 0.25  # all connections together: past this, the step waits for the quorum


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


class QuorumAddresses:
    """Where the members of this replica's last quorum listen (raw id -> ManagerServer)."""

    def __init__(self, lighthouse: str) -> None:
        self._lighthouse = lighthouse
        self._members: frozenset[str] = frozenset()
        self._known: dict[str, str] = {}
        self._reader: threading.Thread | None = None

    def learn(self, members: Collection[str]) -> None:
        """A quorum of `members` (raw ids) formed: read their addresses in the background."""
        if frozenset(members) == self._members:
            return
        self._members, self._known = frozenset(members), {}
        self._reader = threading.Thread(
            target=self._read, args=(self._members,), name="quorum-addresses", daemon=True
        )
        self._reader.start()

    def _read(self, members: frozenset[str]) -> None:
        page = quorum_manager_addresses(self._lighthouse, PAGE_TIMEOUT_S) or {}
        if members == self._members:  # not a later quorum's read meanwhile
            self._known = {m: a for m, a in page.items() if m in members}

    def gone(self, members: Collection[str]) -> set[str]:
        """The raw ids among `members` whose process is gone for certain (empty: none known)."""
        known = self._known
        if any(m not in known for m in members):
            page = quorum_manager_addresses(self._lighthouse, LATE_PAGE_TIMEOUT_S) or {}
            wanted = self._members or frozenset(members)  # (no quorum learnt yet: these)
            known = {m: a for m, a in page.items() if m in wanted}
            if known:
                self._known = known  # the next failure of this quorum need not read it
        deadline = time.monotonic() + BUDGET_S
        gone = set()
        for member in members:
            if member not in known:
                continue
            if time.monotonic() > deadline:
                return set()  # a slow answer is no answer: never guess from part of the fleet
            if refused(known[member]):
                gone.add(member)
        return gone
