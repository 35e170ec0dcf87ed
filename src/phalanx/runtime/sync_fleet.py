"""The fleet interface on torchft: quorum, heal, SUM allreduces, commit.

We use torchft's Manager directly (not its DDP wrapper, which crashed the
survivors when a peer died inside the allreduce). Exact slicing needs the
ordered membership before compute, and a healing replica loads its state at
quorum time and takes part in the same step: the semantics of torchft's
synchronous quorum. But the quorum's round trip to the lighthouse then sits
on every step's critical path. So the next step's quorum is *requested early*,
right after this step's commit vote (torchft's asynchronous quorum), and
travels while this replica applies the step, writes events and checkpoints;
`begin_step` then only collects it, applies a heal at once and restores
synchronous participation (runtime/torchft_access.py). A state served to a
healing peer meanwhile waits until the step is applied (runtime/state.py).

When the step may *speculate* (runtime/step.py says when), `begin_step` does
not even wait for that answer: it returns the last quorum's members, and the
replica computes its slice while the round trip travels. The answer is
collected at the first collective of the step (`allreduce`), by then long
arrived. If it is the same quorum (same id, same members, no state to heal),
the step goes on as if it had waited; if not, no collective is issued, the
attempt's gradients are dropped (`moved`), and the step begins again from
the quorum that formed, synchronously. The members cannot be wrong at a sum:
every collective is confirmed first. While the lighthouse hears a replica
outside the last quorum (a restart about to ask to join), a step does not
speculate: the join would move the quorum and every member's step would be
computed twice (runtime/joiner_watch.py).

After a failed commit the next quorum is new, and it forms only once the
lighthouse gives up on the replica that failed it (its heartbeat timeout).
If that replica's process is gone for certain (its ManagerServer refuses a
connection, runtime/gone_peers.py), or the freeze watch saw the lighthouse
give up on it, the step speculates on the *rest* of the last quorum: it
recomputes the retried step on them while the lighthouse decides, instead of
after. The quorum that forms is accepted only if it has exactly those
members and brings no heal, under any id; the rate exchange a changed quorum
begins with is issued once the slice is computed (runtime/step.py), so every
member issues the same collectives in the same order.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from datetime import timedelta
from typing import Any

import torch
from torch.distributed import ReduceOp

from phalanx.runtime.freeze_watch import (
    FreezeWatch,
    PeerFrozen,
    PendingEnd,
    WatchedWork,
    describe,
)
from phalanx.runtime.gone_peers import QuorumAddresses
from phalanx.runtime.joiner_watch import JoinerWatch
from phalanx.runtime.liveness import stood_still_limit_s
from phalanx.runtime.stall_clock import StallClock
from phalanx.runtime.state import TrainState
from phalanx.runtime.sync import DoneWork, FleetProgress, Sync, Work
from phalanx.runtime.torchft_access import (
    close_failed_group,
    current_quorum_id,
    finish_quorum_as_synchronous,
    forget_failed_quorum,
    heal_pending,
    quorum_answered_within,
    quorum_pending,
    record_quorums,
    settle_reaper,
    stable_name,
)
from phalanx.runtime.worker_config import WorkerConfig

QUORUM_RETRY_S = 0.1  # between quorum attempts while no lighthouse answers
# After a lighthouse restart, how long a replica that got a shrunken first quorum waits
# before asking again: 10 heartbeat intervals (100 ms) for live peers' reconnects and
# heartbeats to reach the new lighthouse.
RESTART_SETTLE_S = 1.0
# torchft's ManagerServer retries a failed lighthouse call about every 0.1 s, on a new
# connection: a lighthouse restart then costs no error at all. With no retries left it
# leaves our call hanging until the quorum timeout, so never let it run out first:
# the quorum timeout, not this count, bounds each call.
QUORUM_RETRIES = 100_000
ADMISSION_CHECK_S = 10.0  # how long a new worker waits for its first handshake's verdict
# A speculative step whose quorum has not answered this long after its first sum began
# to wait looks for a member gone for certain (the lighthouse answers within a few ms of
# the last member's request; a dead member never sends one).
PROBE_AFTER_S = 0.05


class _NotRequested(Exception):
    """No early quorum is in flight: ask for one now."""


def _natural_key(name: str) -> tuple[str, int]:
    match = re.match(r"^(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


class FleetSync(Sync):
    def __init__(self, config: WorkerConfig, state: TrainState, host: str | None = None) -> None:
        # Imported here: local runs must not pay for torchft's import.
        from torch.distributed import TCPStore
        from torchft.manager import Manager
        from torchft.process_group import ProcessGroupGloo

        from phalanx.runtime.heal_transport import StreamingStateTransport

        # What peers on other hosts dial: our store, ManagerServer and checkpoint server.
        host = host or config.advertise_host
        self.name = config.replica
        self.lighthouse_wait_s = config.lighthouse_wait_s
        # Admission: torchft's client dials our tunnel, which proves the fleet secret to the gate.
        self._tunnel: Any = None
        lighthouse_addr = config.lighthouse
        if config.secret_file:
            from phalanx.fleetnet.admission import AdmissionTunnel
            from phalanx.fleetnet.fleet_secret import load_secret

            self._tunnel = AdmissionTunnel(
                load_secret(config.secret_file),
                config.lighthouse,
                launched_at_s=config.launched_at_s,
            )
            lighthouse_addr = self._tunnel.address
        self.state = state
        timeout = timedelta(seconds=config.timeout_s)
        # Each replica group owns a store for its PG rendezvous: one process's own, or
        # the launcher's store for a group of ranks (groups/member.py), where rank j of
        # every group replicates with rank j of the others.
        if config.group_ranks > 1:
            store_host, store_port = (config.group_store or "").rsplit(":", 1)
            self._store = None
            group_rank, group_size = config.group_rank, config.group_ranks
        else:
            self._store = TCPStore(host, 0, is_master=True, wait_for_workers=False)
            store_host, store_port = host, str(self._store.port)
            group_rank, group_size = 0, 1
        self._pg = ProcessGroupGloo(timeout=timeout)
        self.manager = Manager(
            pg=self._pg,
            load_state_dict=state.load_state_dict,
            state_dict=state.state_dict,
            min_replica_size=1,
            use_async_quorum=True,  # requested early, collected in begin_step (see above)
            timeout=timeout,
            quorum_timeout=timedelta(seconds=config.quorum_timeout_s),
            connect_timeout=timedelta(seconds=max(config.timeout_s, 10.0)),
            rank=group_rank,
            world_size=group_size,
            store_addr=store_host,
            store_port=int(store_port),
            lighthouse_addr=lighthouse_addr,
            replica_id=config.replica,
            hostname=host if host != "0.0.0.0" else socket.gethostname(),
            heartbeat_interval=timedelta(milliseconds=config.heartbeat_ms),
            init_sync=True,
            quorum_retries=QUORUM_RETRIES,
            checkpoint_transport=StreamingStateTransport(host, timeout),
        )
        # The lighthouse (through our tunnel, if any) tells which peers it gave up on.
        self._freeze_watch = FreezeWatch(lighthouse_addr, config.replica)
        # ... and whom it hears outside our quorum: a restart about to join.
        self._joiners = JoinerWatch(lighthouse_addr)
        # ... and where our quorum's members listen: who is gone after a failed collective.
        self._addresses = QuorumAddresses(lighthouse_addr)
        tunnel = self._tunnel
        # A group's ranks past the first get their quorums from rank 0, never from the
        # lighthouse: their tunnels learn no incarnation, so they number quorums raw
        # (the same on rank j of every group, which is all torchft's prefixes need).
        leads = config.group_rank == 0
        self._recorder = record_quorums(
            self.manager, (lambda: tunnel.incarnation) if tunnel is not None and leads else None
        )
        self.quorum_id: int | None = None
        self._last_members: set[str] = set()  # of the last quorum this replica trained in
        self._last_quorum: tuple[int, tuple[str, ...]] | None = None
        self._quorum_changed = True
        self._settled_epoch: int | None = None  # restarted lighthouse already waited for
        self._first_quorum = True
        self._restarted = config.restarted
        self._fleet_size = config.fleet_size
        self._last_error = ""
        self._early = False  # the next quorum was requested right after the last commit
        # This step computes on the last quorum's members, taken on trust (begin_step);
        # the first collective confirms them. `_moved`: it formed otherwise.
        self._speculating = False
        self._moved = False
        # Speculating on the last quorum without these members (names): gone after a
        # failed commit. None: on the last quorum as it was.
        self._guess: set[str] | None = None
        self._lost_peers = False  # the last failed commit: a collective failed (a peer gone?)
        # Raw ids known gone in the last attempt: the freeze watch gave up on them, or a
        # probe found them gone while a speculative step waited.
        self._known_gone: set[str] = set()
        self._fresh_request = False  # the early request is new (not one collected already)
        self._last_committed = False  # a failed commit makes a new quorum: no speculating
        self._may_speculate = group_size == 1  # a group's ranks take quorums from rank 0
        self._abandoned = False  # this attempt left a collective running (a frozen peer)
        self._timeout_s = config.timeout_s
        self._attempt_works: list[WatchedWork] = []  # this attempt's collectives
        self._left_open: list[PendingEnd] = []  # given up on, maybe still inside gloo
        self._lighthouse_addr = lighthouse_addr
        self._clock = StallClock()
        # Standing still this long during a step (frozen, suspended) vetoes this replica's
        # commit (runtime/liveness.py): under what lets the lighthouse give up on it.
        self._stood_still_s = stood_still_limit_s(config.heartbeat_timeout_ms, config.heartbeat_ms)
        # When this step's quorum was requested: the peers may start its collectives (and
        # give up on us) from then on, even while this process has not collected it yet.
        self._step_t0 = time.monotonic()
        self._requested_at = time.monotonic()  # of the early quorum request, if any
        self._raw_quorum_id: int | None = None  # as the lighthouse numbers it
        if self._tunnel is not None:
            self._check_admitted(config)

    def _check_admitted(self, config: WorkerConfig) -> None:
        """A wrong secret is a usage error, said at once (not a quorum that never comes).

        torchft's heartbeats dial the tunnel right after the Manager starts; the
        first handshake tells whether the gate takes our secret.
        """
        from phalanx.errors import UsageError

        deadline = time.monotonic() + ADMISSION_CHECK_S
        tunnel = self._tunnel
        while (
            tunnel.incarnation is None
            and not tunnel.secret_rejected
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)  # polling the tunnel's first handshake, with a deadline
        if tunnel.incarnation is None and tunnel.secret_rejected:
            raise UsageError(
                "--secret-file",
                f"is not the secret of the fleet at {config.lighthouse} (its gate refused us)",
                "pass the file `phalanx lighthouse` printed for that fleet",
                config.secret_file,
            )

    def set_step(self, step: int) -> None:
        """Tell torchft where a checkpoint left us, before the first quorum."""
        self.manager.load_state_dict({"step": step, "batches_committed": 0})

    def prepare_next(self) -> None:
        """Request the next step's quorum now; `begin_step` collects it."""
        try:
            self.manager.start_quorum()
        except Exception:  # no lighthouse right now: begin_step retries, and says so
            forget_failed_quorum(self.manager)
            return
        self._early = True
        self._fresh_request = True
        self._requested_at = time.monotonic()
        if self._short():  # the answer travels while the step is applied
            self._joiners.ask()

    def begin_step(self, speculate: bool = False) -> list[str]:
        """Join the next quorum (healing first if behind); return the ordered participants."""
        # A step that speculated and returned before any collective (held back, the fleet
        # finished) left its request in flight: collect it, never ask over it.
        early, self._early = self._early or self._speculating, False
        fresh, self._fresh_request = self._fresh_request, False
        self._abandoned = False
        self._moved = False
        self._attempt_works = []
        self._left_open = [end for end in self._left_open if not end.ended.is_set()]
        self._speculating, self._guess = False, None
        known_gone, self._known_gone = self._known_gone, set()
        step_t0 = self._requested_at if early else time.monotonic()
        may = (
            speculate
            and fresh
            and early
            and self._may_speculate
            and self._last_quorum is not None
            and quorum_pending(self.manager)  # an answer already here: just take it
        )
        if (
            may
            and self._last_committed
            and not known_gone
            and not (self._short() and self._joiners.joining(self._last_quorum[1]))
        ):
            # The same members as the last quorum, confirmed at the first collective.
            self._speculating = True
            self._quorum_changed = False
            self._step_t0 = step_t0
            return sorted(self._last_members, key=_natural_key)
        lost = self._lost_peers or known_gone
        survivors = self._survivors(known_gone) if may and lost else None
        if survivors:
            # The last quorum without the members that are gone, confirmed at the first
            # collective like any speculation; its id is known only then.
            self._speculating = True
            self._guess = survivors
            self._quorum_changed = True
            self._step_t0 = step_t0
            return sorted(survivors, key=_natural_key)
        try:
            if not early:
                raise _NotRequested()
            self.manager.wait_quorum()
        except Exception:
            forget_failed_quorum(self.manager)
            self._start_quorum()
        result = self._recorder.last
        finish_quorum_as_synchronous(self.manager, result)
        restarted_alone = self._restarted_alone(result)  # asked on the first quorum only
        if self._shrunk_by_a_restart(result) or restarted_alone:
            # A lighthouse that has just started knows only the replicas whose heartbeat
            # reached it, and forms a quorum as soon as those have asked: the first to ask
            # after a restart can be a quorum of one while live peers at the same step are
            # still reconnecting, and two quorums then commit the same step (chaos bug 13).
            # So a quorum from a new lighthouse that lost members of the last one is not
            # trained in: after the settle time every live peer heartbeats to the new
            # lighthouse, and the quorum asked for then waits for them (once per restart).
            time.sleep(RESTART_SETTLE_S)  # heartbeats reach the new lighthouse meanwhile
            self._start_quorum()
            result = self._recorder.last
            finish_quorum_as_synchronous(self.manager, result)
        if self._from_a_restarted_lighthouse(result):
            print(
                f"{self.name}: quorum {result.quorum_id} from a restarted lighthouse: "
                "torchft rebuilds the process group under a new prefix",
                flush=True,
            )
        self._step_t0 = step_t0
        names = self._adopt(result)
        if len(names) < len(result.replica_ids):
            # Two live replicas under one name would compute the same slice twice.
            # (A crashed predecessor still in the quorum ends the same way: the restart heals it.)
            raise RuntimeError(
                f"two replicas in quorum {result.quorum_id} share a name ({sorted(result.replica_ids)}): "
                "give every host its own --host-id"
            )
        return sorted(names, key=_natural_key)

    def _adopt(self, result: Any) -> set[str]:
        """Make `result` the quorum this step trains in; its members' names."""
        # torchft gives a quorum a new id after a failed commit, even with the same
        # members, and the raw ids name processes: every member compares alike.
        quorum = (result.quorum_id, tuple(result.replica_ids))
        self._quorum_changed = quorum != self._last_quorum
        self._last_quorum = quorum
        self.quorum_id = result.quorum_id
        self._raw_quorum_id = int(getattr(result, "raw_quorum_id", result.quorum_id))
        self._freeze_watch.set_quorum(list(result.replica_ids))
        self._addresses.learn(result.replica_ids)
        names = {stable_name(rid) for rid in result.replica_ids}
        self._last_members = names
        return names

    def _survivors(self, known_gone: set[str]) -> set[str] | None:
        """The last quorum's members without those gone for certain (names); None: none gone.

        Gone: known already (the freeze watch saw the lighthouse give up on it in the
        failed attempt, or a probe while the step waited), or its ManagerServer refuses
        connections (its process is dead).
        """
        others = self._others()
        gone = {r for r in others if r in known_gone}
        gone |= self._addresses.gone([r for r in others if r not in gone])
        if not gone:
            return None
        return {stable_name(r) for r in self._last_quorum[1] if r not in gone}

    def _short(self) -> bool:
        """Is the last quorum smaller than the fleet this launcher started (a restart may come)?"""
        return self._last_quorum is not None and len(self._last_quorum[1]) < self._fleet_size

    def _from_a_restarted_lighthouse(self, result: Any) -> bool:
        """Did another lighthouse incarnation (the quorum id's upper bits) give this quorum?

        False for this replica's first quorum: there is no earlier one to compare with.
        """
        return self.quorum_id is not None and result.quorum_id >> 32 != self.quorum_id >> 32

    def _restarted_alone(self, result: Any) -> bool:
        """A restarted replica's first quorum, smaller than the fleet it was launched in?

        It knows no last quorum to compare with, and its state may be far behind
        the fleet's: if the lighthouse has just restarted too, the quorum it gets
        may hold only replicas as far behind as itself (chaos, seed 2, schedule 9:
        a replica restarted at step 0 trained step 0 alone while its peers, at
        step 7, were reconnecting). So it asks once more after the settle time;
        then the live peers are in the quorum, and it heals from them.
        """
        first, self._first_quorum = self._first_quorum, False
        return first and self._restarted and len(result.replica_ids) < self._fleet_size

    def _shrunk_by_a_restart(self, result: Any) -> bool:
        """Is this the first quorum of a restarted lighthouse, without members of the last?"""
        if not self._from_a_restarted_lighthouse(result):
            return False
        epoch = result.quorum_id >> 32
        if epoch == self._settled_epoch:
            return False  # asked again once already for this lighthouse: take what it gives
        self._settled_epoch = epoch
        names = {stable_name(rid) for rid in result.replica_ids}
        return not self._last_members <= names

    def _start_quorum(self) -> None:
        """torchft's quorum, retried while no lighthouse answers (it may be restarting).

        A step needs the lighthouse only for its quorum: a replica that loses it
        finishes its step, then waits here. After `lighthouse_wait_s` it gives
        up; the launcher then restarts it from the newest durable checkpoint.
        """
        lost_at: float | None = None
        while True:
            attempt_t0 = time.monotonic()
            try:
                self.manager.start_quorum()
                self.manager.wait_quorum()
            except Exception as err:
                now = time.monotonic()
                if lost_at is None:
                    lost_at = attempt_t0
                    first_line = (str(err).splitlines() or [type(err).__name__])[0]
                    print(
                        f"{self.name}: the quorum failed ({first_line}); "
                        f"retrying for up to {self.lighthouse_wait_s:g} s",
                        flush=True,
                    )
                if now - lost_at > self.lighthouse_wait_s:
                    raise RuntimeError(
                        f"no lighthouse answered for {self.lighthouse_wait_s:g} s"
                    ) from err
                # torchft keeps the failed quorum's future and re-raises it on the next call.
                forget_failed_quorum(self.manager)
                time.sleep(QUORUM_RETRY_S)  # back-off between attempts, not synchronisation
                continue
            if lost_at is not None:
                waited_s = time.monotonic() - lost_at
                print(f"{self.name}: a quorum again after {waited_s:.2f} s", flush=True)
            return

    def _confirm(self) -> bool:
        """Collect the quorum speculated on; True when it is the one assumed.

        Called at the step's first collective, possibly inside backward (a gradient
        bucket's hook): so a heal is never applied here, where the parameters are in
        use. A quorum that brings one, or other members, or a new id (a failed commit
        elsewhere) is left collected for `begin_step`, which applies it.
        """
        self._speculating = False
        guess, self._guess = self._guess, None
        if (
            guess is None
            and not quorum_answered_within(self.manager, PROBE_AFTER_S)
            and self._left_us()
        ):
            # A member died before it asked for this quorum: the lighthouse answers only
            # after its heartbeat timeout. Begin again on the others meanwhile (begin_step),
            # the request still in flight.
            self._early = self._fresh_request = True
            self._moved = True
            return False
        try:
            self.manager.wait_quorum()
        except Exception:  # begin_step asks again, as for any failed quorum
            self._moved = True
            return False
        result = self._recorder.last
        if guess is None:
            expected = self._last_quorum == (result.quorum_id, tuple(result.replica_ids))
        else:
            # Any id: the one the lighthouse gives the survivors. Each member exactly
            # once, from the same lighthouse (a restarted one settles first, begin_step).
            names = [stable_name(r) for r in result.replica_ids]
            expected = (
                set(names) == guess
                and len(names) == len(guess)
                and not self._from_a_restarted_lighthouse(result)
            )
        if heal_pending(self.manager) or not expected:
            self._early = True  # collected: the next begin_step takes it from here
            self._moved = True
            return False
        finish_quorum_as_synchronous(self.manager, result)
        if guess is not None:
            self._adopt(result)
        return True

    def _left_us(self) -> bool:
        """Is a member of the last quorum gone for certain (its process dead)? Remembered."""
        gone = self._addresses.gone(self._others())
        self._known_gone |= gone
        return bool(gone)

    def _others(self) -> list[str]:
        """The last quorum's members other than this replica (raw ids)."""
        assert self._last_quorum is not None
        return [r for r in self._last_quorum[1] if stable_name(r) != self.name]

    def moved(self) -> bool:
        return self._moved

    def moved_already(self) -> bool:
        # Collected here when it has come: between micro-batches, not inside backward.
        if self._speculating and not quorum_pending(self.manager):
            self._confirm()
        return self._moved

    def unconfirmed(self) -> bool:
        return self._speculating

    def quorum_changed(self) -> bool:
        return self._quorum_changed

    def allreduce(self, tensor: torch.Tensor) -> Work:
        if self._speculating:
            self._confirm()
        if self._moved:  # nothing is summed in a quorum that formed otherwise
            return DoneWork()
        work = self.manager.allreduce(tensor, reduce_op=ReduceOp.SUM)
        watched = WatchedWork(work, self._freeze_watch, self)
        self._attempt_works.append(watched)
        return watched

    def peer_frozen(self, members: list[str], waited_s: float) -> None:
        """A quorum member stopped heartbeating: this attempt fails now (freeze_watch.py)."""
        self._abandoned = True  # gloo still waits, and may complete it when the peer wakes
        self._known_gone |= set(members)
        self._left_open += [work.ending() for work in self._attempt_works]
        if self.manager.errored() is None:
            self.manager.report_error(PeerFrozen(describe(members, waited_s)))

    def abandoned(self) -> bool:
        return self._abandoned

    def commit(self, local_ok: bool, reason: str = "") -> bool:
        if self._speculating:  # a step that issued no collective: confirm before voting
            self._confirm()
        if self._moved:
            self._last_error = "the quorum formed with other members than assumed"
            self._last_committed = False
            self._lost_peers = False
            return False
        collective_failed = self.manager.errored() is not None
        if local_ok and not collective_failed:
            behind = self._left_behind()
            if behind:
                local_ok, reason = False, behind
        if not local_ok and not collective_failed:  # keep the collective's own error
            self.manager.report_error(RuntimeError(reason or "local veto"))
        error = self.manager.errored()
        self._last_error = str(error.original_exception) if error is not None else reason
        try:
            committed = self.manager.should_commit()
        except Exception as err:
            # A process frozen inside the vote (its own ManagerServer's call) wakes past
            # the call's deadline: torchft raises. The step is not committed, exactly as
            # a failed vote; the replica heals if the fleet went on (it crashed before,
            # and a restart without a checkpoint began again from step 0).
            self._last_error = f"the commit vote failed ({err})"
            committed = False
        self._attempt_works = []  # references to its works would keep a dead group open
        self._last_committed = committed
        self._lost_peers = collective_failed
        if collective_failed:
            close_failed_group(self.manager)
        return committed

    def _left_behind(self) -> str:
        """Why the fleet may have gone on without this replica's step ('' if it cannot have).

        Peers give up on a replica whose heartbeats stopped (freeze_watch.py) and
        retry the step without it, but the collective they left stays open in
        gloo and completes if this replica wakes in time: its commit would be a
        second history of the step. So a step that lasted long enough for that
        is not committed when this process stood still during it, or when the
        lighthouse has formed a newer quorum meanwhile (heartbeats cut off).
        """
        # A step shorter than the limit cannot have been given up on by the peers (they
        # wait out the lighthouse's heartbeat timeout first): no checks before commit.
        if time.monotonic() - self._step_t0 < self._stood_still_s:
            return ""
        stood_s = self._clock.longest_gap_since(self._step_t0)
        if stood_s >= self._stood_still_s:
            return (
                f"{self.name} stood still for {stood_s:.1f} s during the step (frozen or "
                "suspended): its peers may have gone on without it"
            )
        newest = current_quorum_id(self._lighthouse_addr, 1.0)
        if newest is not None and newest != self._raw_quorum_id:
            return (
                f"the lighthouse formed quorum {newest} while {self.name} was in quorum "
                f"{self._raw_quorum_id}: the fleet went on without it"
            )
        return ""

    def errored(self) -> bool:
        return self.manager.errored() is not None

    @property
    def last_error(self) -> str:
        return self._last_error.splitlines()[0] if self._last_error else ""

    def report_step(self, step: int) -> None:
        """Tell the gate a committed step (many hosts: the fleet's newest step)."""
        if self._tunnel is not None:
            self._tunnel.report_step(step)

    def exchange_progress(
        self, step: int, complete: bool, rewind: bool = False
    ) -> FleetProgress | None:
        """Tell the admission gate our progress; return the fleet's (None: no gate, or unreachable).

        On a host of its own a replica sees the fleet's progress only through
        the gate (fleetnet/fleet_progress.py).
        """
        if self._tunnel is None:
            return None
        progress: FleetProgress | None = self._tunnel.exchange_progress(step, complete, rewind)
        return progress

    def close(self) -> None:
        # A collective given up on (a frozen peer) ends only at gloo's timeout, on a
        # thread of gloo's that then calls back into Python. If the interpreter is
        # already shutting down by then the process aborts (SIGABRT, exit -6) after a
        # finished run, and its launcher restarts it. So let such collectives end
        # first: at most the collective timeout after they were launched.
        for end in self._left_open:
            end.settle(self._timeout_s + 1.0)
        settle_reaper(self._timeout_s + 1.0)
        # Shutting down after peers vanished must not fail a finished run.
        with contextlib.suppress(Exception):
            self.manager.shutdown(wait=False)
        if self._tunnel is not None:
            self._tunnel.close()
