"""How soon a dead or frozen replica is given up on, and what that asks of the others.

The lighthouse leaves a replica out of the next quorum once it has heard no
heartbeat from it for its heartbeat timeout; torchft's Rust thread sends one
every `HEARTBEAT_INTERVAL_MS`, whatever Python is doing. The survivors of a
kill wait for that before their next quorum, and the freeze watch gives up on
a frozen peer only once the lighthouse has (freeze_watch.py), so the timeout
is most of what a kill or a freeze costs: `phalanx run`'s own lighthouse, on
one host over loopback, uses `RUN_HEARTBEAT_TIMEOUT_MS`; `phalanx lighthouse`,
across hosts whose links jitter, defaults to 2 s.

The timeout also bounds a safety check. A replica that stood still (SIGSTOP,
a suspended VM) may have been given up on while its collective stayed open,
and must not commit that step: it would be a second history
(sync_fleet._left_behind). The lighthouse can give up on it only after a
whole timeout without its heartbeat, which needs the process to stand still
for at least timeout - interval (its last heartbeat left at most one interval
before). So standing still for less is harmless, and a step shorter than that
cannot have been given up on. A lighthouse that the launcher did not start
may use any timeout from `MIN_SHARED_HEARTBEAT_TIMEOUT_MS` up (`phalanx
lighthouse` refuses less); a replica then assumes that floor.

Why 0.7 s and not less: the check must also stay above a busy host's gaps, or
it vetoes healthy replicas. Its limit was 0.5 s when the timeout was 1 s, and
the chaos campaign ran with that. At 0.5 s of timeout (a 0.3 s limit), a 57M
model trained beside the test suite missed 0.4 s of its stall clock once and
vetoed a healthy step. 0.7 s keeps the 0.5 s limit and still takes 0.3 s off
every kill and freeze.
"""

from __future__ import annotations

HEARTBEAT_INTERVAL_MS = 100
RUN_HEARTBEAT_TIMEOUT_MS = 700
MIN_SHARED_HEARTBEAT_TIMEOUT_MS = 1000
# Allowance for a late heartbeat (its thread scheduled late on a busy host) and the
# stall clock's own tick (runtime/stall_clock.py): the check fires this much early.
_MARGIN_S = 0.1
# Never above this: the check's value before timeouts were configurable, which the
# chaos campaign exercised (a longer lighthouse timeout only widens the safety room).
_CEILING_S = 0.5


def stood_still_limit_s(
    heartbeat_timeout_ms: int, heartbeat_ms: int = HEARTBEAT_INTERVAL_MS
) -> float:
    """Standing still this long (or a step this long) may have let the peers go on without us."""
    if heartbeat_timeout_ms <= 2 * heartbeat_ms:
        raise ValueError(
            f"a heartbeat timeout of {heartbeat_timeout_ms} ms leaves no room for heartbeats "
            f"every {heartbeat_ms} ms"
        )
    return min(_CEILING_S, (heartbeat_timeout_ms - heartbeat_ms) / 1000 - _MARGIN_S)
