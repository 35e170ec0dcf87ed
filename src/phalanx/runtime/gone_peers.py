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

import errno
import selectors
import socket
import threading
import time
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from phalanx.runtime.torchft_access import quorum_manager_addresses

PAGE_TIMEOUT_S = 1.0  # the page read in the background, after a quorum formed
LATE_PAGE_TIMEOUT_S = 0.2  # read at the failure itself (the background read had not ended)
# All members are dialled at once. A refusal comes in one round trip; what has not
# answered by then counts as alive (silence proves nothing).
CONNECT_WAIT_S = 0.1


def refused_among(addresses: Mapping[str, str], wait_s: float = CONNECT_WAIT_S) -> set[str]:
    """The keys whose address (http://host:port) refuses a connection, all dialled at once.

    Non-blocking connections, one selector: a fleet of thousands costs one round trip,
    not one per member. A connection that is accepted, times out, has no route or
    cannot be resolved says nothing (the peer may be alive behind it).
    """
    selector = selectors.DefaultSelector()
    found: set[str] = set()
    try:
        for key, address in addresses.items():
            target = _target(address)
            if target is None:
                continue
            sock = socket.socket(target[0], socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex(target[1])
            if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                selector.register(sock, selectors.EVENT_WRITE, key)
                continue
            if code == errno.ECONNREFUSED:
                found.add(key)
            sock.close()
        deadline = time.monotonic() + wait_s
        while selector.get_map():
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            for event, _ in selector.select(left_s):
                sock = event.fileobj
                assert isinstance(sock, socket.socket)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED:
                    found.add(event.data)
                selector.unregister(sock)
                sock.close()
    finally:
        for pending in list(selector.get_map().values()):
            selector.unregister(pending.fileobj)
            pending.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return found


def _target(address: str) -> tuple[socket.AddressFamily, tuple] | None:
    """(family, socket address) of `address`'s host and port; None if it names none."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    try:
        if parts.hostname is None or parts.port is None:
            return None
        family, _, _, _, sockaddr = socket.getaddrinfo(
            parts.hostname, parts.port, type=socket.SOCK_STREAM
        )[0]
    except (OSError, ValueError):
        return None
    return family, sockaddr


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
        return refused_among({m: known[m] for m in members if m in known})
