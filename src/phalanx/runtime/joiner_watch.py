"""Whether a replica outside the quorum is about to ask to join (a restart that heartbeats).

A restarted replica heartbeats to the lighthouse from its start, before its
warm-up and its request to join. Its request moves the next quorum, and a step
that speculated on the last one (runtime/sync_fleet.py) is then computed
twice by every member: on the bench, the slowest chip's whole step (0.3-0.4 s)
against the quorum's round trip for a step that waits for the answer.

The lighthouse's status page says whom it hears. It is asked in the background
right after a commit, while the step is applied, because through the fleet's
gate (fleetnet/) each page is a new connection and a handshake: 2-6 ms on one
host, round trips across hosts. A replica heard for longer than a restart takes
to ask is not waited for: a live process whose Python is stuck keeps heartbeating
from torchft's own thread, and the fleet would otherwise never speculate again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

from phalanx.runtime.torchft_access import live_heartbeats

QUERY_TIMEOUT_S = 0.2  # an answer slower than this: speculate, as without the watch
# A restart asks to join after its start, its state's load and its warm-up (two
# forwards and backwards of its share): seconds, even at model scale.
PATIENCE_S = 60.0


class JoinerWatch:
    """One replica's view of who heartbeats outside its quorum (raw replica ids)."""

    def __init__(self, lighthouse: str, patience_s: float = PATIENCE_S) -> None:
        self._lighthouse = lighthouse
        self._patience_s = patience_s
        self._query: threading.Thread | None = None
        self._heard: set[str] | None = None
        self._first_heard_s: dict[str, float] = {}

    def ask(self) -> None:
        """Start asking the lighthouse whom it hears (returns at once)."""
        if self._query is not None and self._query.is_alive():
            return  # the last question is still out: its answer serves
        self._heard = None
        self._query = threading.Thread(target=self._ask_now, name="joiner-watch", daemon=True)
        self._query.start()

    def _ask_now(self) -> None:
        self._heard = live_heartbeats(self._lighthouse, QUERY_TIMEOUT_S)

    def joining(self, members: Collection[str]) -> bool:
        """Is a replica outside `members` heartbeating, first heard within the patience?

        Waits for the answer `ask` started, a bounded time; no question or no answer
        (an unreachable lighthouse) says no.
        """
        if self._query is None:
            return False
        self._query.join(QUERY_TIMEOUT_S)
        heard = self._heard
        if not heard:
            return False
        now_s = time.monotonic()
        outside = heard - set(members)
        for replica in outside:
            self._first_heard_s.setdefault(replica, now_s)
        return any(now_s - self._first_heard_s[r] < self._patience_s for r in outside)
