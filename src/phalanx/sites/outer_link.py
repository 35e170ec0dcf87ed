"""One replica's end of the outer quorum: the exchange of uploads between sites.

Every replica of every site holds, beside its site's Manager, a second torchft
Manager on the *outer* lighthouse (two Managers in one process, each with its own
gloo group, quorum and commit, work side by side). One outer round is one step of
that Manager:

    quorum  ->  all-gather of the packed uploads  ->  commit vote

The quorum heals a replica whose outer state is behind (a site that was cut off,
a restarted process) from a live peer with torchft's own heal: the state is what
`state_dict`/`load_state_dict` give (the outer optimizer's anchor and momentum,
the round). The all-gather moves compressed bytes (sites/wire.py): quantised
payloads cannot be summed on the wire, so each replica receives every upload and
applies the same outer step to the same bytes (sites/outer_step.py).

A peer that dies inside the all-gather fails the round for everyone in it; the
caller asks again, and the next quorum leaves the dead out.

The outer lighthouse must form quorums of a majority of the sites
(`outer_quorum_size`). With quorums of one, a site restarting (at round 0) or
returning could form a quorum alone while the others train, and commit a round
the others committed too, with another outcome: two anchors under one round
number, which no later heal notices (torchft heals only a replica that is
*behind*). Two majorities always share a site, and that site is ahead of
whoever missed a round, so the next quorum with it heals them. The price: with
two sites, a site cut off stops the other at the next outer step until it
returns (its inner progress is kept, nothing is lost). The outer
lighthouse's join timeout is how long a live but slow site is waited for;
a site whose heartbeats stop (cut off, dead) leaves the quorum after the
heartbeat timeout instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch

from phalanx.runtime.torchft_access import quorum_process_group
from phalanx.sites.compression import Codec
from phalanx.sites.wire import WireUpload, pack, pad, unpack

StateDict = dict[str, Any]


def outer_quorum_size(sites: int) -> int:
    """The smallest quorum that two quorums cannot both form without sharing a site."""
    return sites // 2 + 1


class OuterRoundFailed(Exception):
    """The round's exchange failed (a peer died or hung): ask again with a new quorum."""


class OuterLink:
    def __init__(
        self,
        replica_id: str,
        lighthouse: str,
        state_dict: Callable[[], StateDict],
        load_state_dict: Callable[[StateDict], None],
        timeout_s: float = 60.0,
        quorum_timeout_s: float = 300.0,
        host: str = "127.0.0.1",
        heartbeat_ms: int = 100,
    ) -> None:
        from torch.distributed import TCPStore
        from torchft.manager import Manager
        from torchft.process_group import ProcessGroupGloo

        from phalanx.runtime.heal_transport import StreamingStateTransport

        timeout = timedelta(seconds=timeout_s)
        self._store = TCPStore(host, 0, is_master=True, wait_for_workers=False)
        self.manager = Manager(
            pg=ProcessGroupGloo(timeout=timeout),
            load_state_dict=load_state_dict,
            state_dict=state_dict,
            min_replica_size=1,
            use_async_quorum=False,  # a behind replica heals before it exchanges
            timeout=timeout,
            quorum_timeout=timedelta(seconds=quorum_timeout_s),
            connect_timeout=timedelta(seconds=max(timeout_s, 10.0)),
            rank=0,
            world_size=1,
            store_addr=host,
            store_port=self._store.port,
            lighthouse_addr=lighthouse,
            replica_id=replica_id,
            hostname=host if host != "0.0.0.0" else socket.gethostname(),
            heartbeat_interval=timedelta(milliseconds=heartbeat_ms),
            init_sync=True,
            # Heals travel to `host` (torchft's default transport advertises the machine's
            # hostname, which on hosts that share a name leads a healing site to itself).
            checkpoint_transport=StreamingStateTransport(host, timeout),
        )

    @property
    def round(self) -> int:
        """The outer rounds committed so far (healed forward with the state)."""
        return int(self.manager.current_step())

    def join(self) -> None:
        """The round's quorum; a replica behind the others heals here (state loaded)."""
        self.manager.start_quorum()

    def exchange(
        self,
        mine: WireUpload,
        codec: Codec,
        numels: Sequence[int],
        dtypes: Sequence[torch.dtype],
    ) -> list[WireUpload]:
        """Every participant's upload (its own included), after `join`.

        Raises OuterRoundFailed when the all-gather failed, or when a participant's
        outer state is unsound (its heal failed: its delta is from a stale anchor); the
        round then counts for nobody, since torchft's commit vote is agreed only within
        one replica, not across the quorum. `commit` then says False.
        """
        from torch.distributed.distributed_c10d import AllgatherOptions

        if self.manager.errored() is not None:
            mine = WireUpload(mine.upload, mine.sender, mine.step_time_s, sound=False)
        data = pack(mine)
        participants = self.manager.num_participants()
        pg = quorum_process_group(self.manager)  # reconfigured for every quorum
        try:
            sizes_out = [[torch.zeros(1, dtype=torch.int64) for _ in range(participants)]]
            size = torch.tensor([data.numel()], dtype=torch.int64)
            pg.allgather(sizes_out, [size], AllgatherOptions()).wait()
            largest = max(int(s.item()) for s in sizes_out[0])
            out = [[torch.zeros(largest, dtype=torch.uint8) for _ in range(participants)]]
            pg.allgather(out, [pad(data, largest)], AllgatherOptions()).wait()
        except Exception as err:  # a peer died or hung: the round fails for everyone
            self.manager.report_error(err)
            raise OuterRoundFailed(str(err).splitlines()[0] if str(err) else repr(err)) from err
        uploads = [unpack(tensor, codec, numels, dtypes) for tensor in out[0]]
        unsound = sorted(w.upload.site for w in uploads if not w.sound)
        if unsound:
            failure = OuterRoundFailed(f"sites {unsound} hold an unsound outer state this round")
            self.manager.report_error(failure)
            raise failure
        return uploads

    def commit(self) -> bool:
        """The round's vote: True when every participant exchanged (the round counts)."""
        return bool(self.manager.should_commit())

    def close(self) -> None:
        self.manager.shutdown(wait=False)
