"""A frozen peer fails the collective within a heartbeat timeout, not the collective's.

A killed replica closes its sockets and its peers' collectives fail at once
(runtime/torchft_access.py: close_failed_group). A frozen one (SIGSTOP, a
hung host, a cut link) keeps its sockets open: gloo waits the whole collective
timeout (`--timeout-s`, 5 s by default, often a minute for large models) while
every other replica sits idle. But a frozen process also stops heartbeating,
and the lighthouse drops it from the next quorum after its heartbeat timeout
(0.7 s under `phalanx run`, runtime/liveness.py). So while a collective is
pending past a short grace, the replica asks the lighthouse which members of
its quorum it has given up on; if one is among them, the attempt fails now and
the step is retried in the next quorum, which is formed without that member. Every
survivor asks the same lighthouse, so they give up alike.

The verdict is the lighthouse's own, the one that decides the next quorum: a
slow but live peer keeps heartbeating (torchft's heartbeats come from a Rust
thread that needs no GIL) and is never given up on. A wrong verdict would
cost a retry, never exactness: a failed attempt commits nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from phalanx.runtime.torchft_access import expired_heartbeats, stable_name, when_complete

GRACE_S = 0.25  # a collective pending this long starts the lighthouse queries
# Between queries (one page each, 2-6 ms through the fleet's gate on one host; asked only
# while a collective waits, by the replicas that wait, so the lighthouse sees at most ten
# a second from each). The lighthouse gives up on a frozen peer at a moment no replica
# knows in advance, and every survivor idles until its next query sees it, half a period
# on average: at 0.25 s the bench's survivors saw it 0.12-0.24 s late.
POLL_S = 0.1
QUERY_TIMEOUT_S = 0.5


class PeerFrozen(RuntimeError):
    """A member of the quorum stopped heartbeating while a collective waited for it."""


class FreezeWatch:
    """One replica's view of which quorum members the lighthouse has given up on."""

    def __init__(self, lighthouse: str, own_name: str) -> None:
        self._lighthouse = lighthouse
        self._own_name = own_name
        self._members: tuple[str, ...] = ()

    def set_quorum(self, replica_ids: list[str]) -> None:
        """The raw replica ids (name:uuid) of the quorum the next collectives run in."""
        self._members = tuple(r for r in replica_ids if stable_name(r) != self._own_name)

    def frozen_members(self) -> list[str]:
        """Members of the quorum the lighthouse considers dead (empty if unreachable)."""
        if not self._members:
            return []
        expired = expired_heartbeats(self._lighthouse, QUERY_TIMEOUT_S) or set()
        return [m for m in self._members if m in expired]


@dataclass(frozen=True)
class PendingEnd:
    """A collective given up on that gloo still runs: it ends by its timeout."""

    ended: threading.Event
    launched_s: float  # time.monotonic() at launch

    def settle(self, timeout_s: float) -> bool:
        """Wait until launch + `timeout_s` at most for the end; True if it ended."""
        return self.ended.wait(max(0.0, self.launched_s + timeout_s - time.monotonic()))


class WatchedWork:
    """A collective in flight, waited for on its future while the lighthouse is asked.

    `fleet` is the replica's sync: `errored()` (an earlier collective of the
    attempt gave up: nothing to wait for) and `peer_frozen(members, waited_s)`
    (fail the attempt).
    """

    def __init__(self, work: Any, watch: FreezeWatch, fleet: Any) -> None:
        self._work = work
        self._watch = watch
        self._fleet = fleet
        self._launched = time.monotonic()
        self._done = threading.Event()
        if not when_complete(work, self._done.set):
            self._done.set()  # a placeholder after an error: nothing to wait for

    def ending(self) -> PendingEnd:
        """What to wait on for the collective's end, without holding the collective.

        (A reference to the work would keep a failed group's sockets open:
        runtime/torchft_access.py, close_failed_group.)
        """
        return PendingEnd(self._done, self._launched)

    def wait(self) -> object:
        if not self._done.wait(GRACE_S):
            while not self._done.wait(POLL_S):
                if self._fleet.errored():
                    return False
                frozen = self._watch.frozen_members()
                if frozen:
                    self._fleet.peer_frozen(frozen, time.monotonic() - self._launched)
                    return False
        return self._work.wait()


def describe(frozen: list[str], waited_s: float) -> str:
    """One line for the retry: who, and how long the collective waited."""
    names = ", ".join(sorted(stable_name(r) for r in frozen))
    return (
        f"{names} stopped heartbeating (frozen or cut off) while a collective waited "
        f"{waited_s:.1f} s; the next quorum is formed without it"
    )
