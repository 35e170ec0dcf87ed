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
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch

from phalanx.runtime.torchft_access import (
    forget_failed_quorum,
    quorum_pending,
    quorum_process_group,
)
from phalanx.sites.compression import Codec
from phalanx.sites.outer_step import SiteUpload
from phalanx.sites.wire import HEADER_BYTES, WireUpload, pack, pad, unpack

StateDict = dict[str, Any]


def outer_quorum_size(sites: int) -> int:
    """The smallest quorum that two quorums cannot both form without sharing a site."""
    return sites // 2 + 1


class OuterRoundFailed(Exception):
    """The round's exchange failed (a peer died or hung): ask again with a new quorum."""


class OuterQuorumUnavailable(Exception):
    """No outer quorum formed in time (the lighthouse is away, or too few sites are)."""


class AnchorsDiffer(Exception):
    """Sites began from different parameters: no outer step can combine their deltas."""


@dataclass(frozen=True)
class Exchanged:
    """What an outer round's exchange gave: one upload per site present, ascending site."""

    uploads: list[WireUpload]
    replicas_by_site: dict[int, int]  # site -> its participants in the quorum
    # This replica is a follower: it took part (the quorum's collectives need everyone)
    # but applies nothing, and received no payloads.
    follower: bool = False


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
        """The round's quorum; a replica behind the others heals here (state loaded).

        Raises OuterQuorumUnavailable when no quorum formed in the quorum timeout (no
        lighthouse, too few sites): the caller asks again, or gives up in the end.
        """
        try:
            self.manager.start_quorum()
        except Exception as err:
            forget_failed_quorum(self.manager)
            raise OuterQuorumUnavailable(
                str(err).splitlines()[0] if str(err) else repr(err)
            ) from err

    def quorum_pending(self) -> bool:
        """Inside `join`: still waiting for the outer lighthouse (nothing healed yet)."""
        return quorum_pending(self.manager)

    def set_round(self, round_index: int) -> None:
        """Where this replica's outer state is (a heal inside the site, a checkpoint)."""
        self.manager.load_state_dict({"step": round_index, "batches_committed": 0})

    def exchange(
        self,
        mine: WireUpload,
        codec: Codec,
        numels: Sequence[int],
        dtypes: Sequence[torch.dtype],
        sites: int,
    ) -> Exchanged:
        """One upload per site present (its own site's included), after `join`.

        An all-gather moves every participant's header only: who is there, from
        which site, in which round, on which anchor. Each site's first participant
        (lowest quorum rank) that is not a follower is its sender (`senders_by_site`);
        the others of the site hold the same delta (exact inner steps). A site present
        with followers only sends nothing this round. Then the senders swap payloads
        point to point and hand them on inside their sites (`_payloads`), so the slow
        link carries each payload once to each other site, whatever the sites' sizes.

        Raises OuterRoundFailed when a transfer failed, a participant's outer
        state is unsound (its heal failed), the participants disagree on the round,
        or fewer than a majority of the sites are present; the round then counts
        for nobody (torchft's commit vote is agreed only within one replica, not
        across the quorum), and `commit` says False. Raises AnchorsDiffer when the
        participants hold different anchors in round 0: the sites did not start
        from the same parameters, which no retry mends.
        """
        if self.manager.errored() is not None:
            mine = replace(mine, sound=False)
        participants = self.manager.num_participants()
        rank = self.manager.participating_rank()
        pg = quorum_process_group(self.manager)  # reconfigured for every quorum
        header_only = replace(mine, upload=SiteUpload(mine.upload.site, mine.upload.samples, ()))
        headers = [unpack(t, codec, numels, dtypes)
                   for t in self._allgather(pg, pack(header_only), participants)]  # fmt: skip
        senders = senders_by_site(headers)
        self._refuse_unless_agreed(headers, sites)
        if mine.follower:  # it applies nothing this round: no payloads for it
            return Exchanged([], {}, follower=True)
        uploads = self._payloads(pg, rank, mine, headers, senders, codec, numels, dtypes)
        present = {site: sum(1 for h in headers if h.upload.site == site and not h.follower)
                   for site in senders}  # fmt: skip
        return Exchanged(uploads, present)

    def _payloads(
        self,
        pg: Any,
        rank: int,
        mine: WireUpload,
        headers: list[WireUpload],
        senders: dict[int, int],
        codec: Codec,
        numels: Sequence[int],
        dtypes: Sequence[torch.dtype],
    ) -> list[WireUpload]:
        """Every site's upload: senders swap payloads across the slow link, then each
        sender hands every payload, its own included, to its site's peers over the
        site's own link.

        Each payload crosses to each other site once, whatever the sites' sizes (an
        all-gather over every replica would send it to every remote replica). Every
        replica of a site applies its sender's bytes for the site, not the upload it
        computed: the two agree when the replicas' residuals do (exact inner steps),
        and a replica that missed a round its peers encoded (a follower) holds older
        residuals, whose upload would give it another anchor than its site's.
        """
        own_site = mine.upload.site
        sizes = {site: _packed_bytes(headers[r], codec, numels) for site, r in senders.items()}
        sending = senders[own_site] == rank
        received = {site: torch.empty(sizes[site], dtype=torch.uint8)
                    for site in sorted(senders) if site != own_site or not sending}  # fmt: skip
        try:
            if sending:
                # The site's step time is its sender's: each replica clocks its own, and
                # every replica must plan the next round from the same numbers.
                received[own_site] = pack(replace(mine, sender=True))
                works = []
                for site, buffer in received.items():
                    if site != own_site:
                        works.append(pg.send([received[own_site]], senders[site], 0))
                        works.append(pg.recv([buffer], senders[site], 0))
                for work in works:
                    work.wait()
            else:
                works = [pg.recv([buffer], senders[own_site], 1 + site)
                         for site, buffer in received.items()]  # fmt: skip
                for work in works:
                    work.wait()
        except Exception as err:  # a peer died or hung: this replica's round fails
            self.manager.report_error(err)
            raise OuterRoundFailed(str(err).splitlines()[0] if str(err) else repr(err)) from err
        if sending:
            self._hand_on(pg, rank, own_site, headers, received)
        uploads = [unpack(b, codec, numels, dtypes) for b in received.values()]
        return sorted(uploads, key=lambda w: w.upload.site)

    def _hand_on(
        self,
        pg: Any,
        rank: int,
        own_site: int,
        headers: list[WireUpload],
        payloads: dict[int, torch.Tensor],
    ) -> None:
        """Every site's payload to this site's peers. A peer that dies meanwhile
        fails only its own round (it heals at the next one): not ours."""
        peers = [i for i, h in enumerate(headers)
                 if h.upload.site == own_site and i != rank and not h.follower]  # fmt: skip
        try:
            works = [pg.send([buffer], peer, 1 + site)
                     for peer in peers for site, buffer in payloads.items()]  # fmt: skip
            for work in works:
                work.wait()
        except Exception:
            pass

    def _allgather(self, pg: Any, data: torch.Tensor, participants: int) -> list[torch.Tensor]:
        from torch.distributed.distributed_c10d import AllgatherOptions

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
        return out[0]

    def _refuse_unless_agreed(self, headers: list[WireUpload], sites: int) -> None:
        """The same decision on every participant: they all see the same headers.

        A site present with followers only counts towards the majority: its replicas
        healed in this quorum, so they hold the outer state everyone does.
        """
        present = {h.upload.site for h in headers}
        unsound = sorted({h.upload.site for h in headers if not h.sound})
        rounds = sorted({h.round for h in headers})
        why = ""
        if unsound:
            why = f"sites {unsound} hold an unsound outer state this round"
        elif len(rounds) > 1:
            why = f"participants are in different outer rounds {rounds}"
        elif len(present) < outer_quorum_size(sites):
            why = (
                f"only sites {sorted(present)} are present, fewer than a majority "
                f"of the {sites} sites"
            )
        elif short := sites_short_of_replicas(headers):
            came = "; ".join(
                f"site {s} came with {n} of its {m} replicas" for s, (n, m) in short.items()
            )
            why = f"{came}: asking again, so that a site's replicas meet in one round"
        elif len({h.anchor_checksum for h in headers}) > 1:
            if rounds == [0]:
                raise AnchorsDiffer(
                    "the sites did not start from the same parameters: seed the model's "
                    "initialisation (torch.manual_seed before building it) in the script"
                )
            why = "participants hold different anchors"
        if why:
            failure = OuterRoundFailed(why)
            self.manager.report_error(failure)
            raise failure

    def commit(self) -> bool:
        """The round's vote: True when every participant exchanged (the round counts)."""
        return bool(self.manager.should_commit())

    def abstain(self, why: str) -> None:
        """Vote no on a round this replica took part in but does not apply (a follower):
        its outer step stays where it was, so its next join heals it like any late one."""
        self.manager.report_error(OuterRoundFailed(why))
        self.manager.should_commit()

    def close(self) -> None:
        self.manager.shutdown(wait=False)


def senders_by_site(headers: Sequence[WireUpload]) -> dict[int, int]:
    """Each site's sender: its lowest-ranked participant that is not a follower.

    A follower missed an outer round its site's peers applied and trained on from, or
    was away while they trained: it holds none of its site's newest work. A peer of
    its site that is present speaks for the site; a site present with followers only
    sends nothing this round (its work arrives later, pending, as a cut site's does).
    """
    senders: dict[int, int] = {}
    for index, header in enumerate(headers):
        if not header.follower:
            senders.setdefault(header.upload.site, index)
    return senders


def sites_short_of_replicas(headers: Sequence[WireUpload]) -> dict[int, tuple[int, int]]:
    """Sites present with fewer replicas than one of them says trained with it: site ->
    (present, expected).

    A site's replicas must meet in one outer round, or none of them take part in it.
    torchft's lighthouse forms a quorum as soon as every member of the last one has
    asked ("fast quorum"), without a replica it hears but which asked a moment later:
    a site's restarted replica, at its first round, in step with its peer. The peer
    then applied the round alone, and waited for the restarted one in the site's next
    inner quorum while that one waited in the outer quorum for a round the other sites
    had already applied (a sites run hung for 300 s). Refused, the round is asked for
    again, and the late replica, whose request the lighthouse holds, is in the next
    quorum. Every participant reads the same headers: the same verdict everywhere.
    """
    present: dict[int, int] = {}
    expected: dict[int, int] = {}
    for header in headers:
        site = header.upload.site
        present[site] = present.get(site, 0) + 1
        expected[site] = max(expected.get(site, 0), header.site_replicas)
    return {s: (present[s], expected[s]) for s in sorted(present) if present[s] < expected[s]}


def _packed_bytes(header: WireUpload, codec: Codec, numels: Sequence[int]) -> int:
    """The length of a sender's packed upload, from its header (no lengths travel)."""
    if header.upload.samples == 0:
        return HEADER_BYTES
    return HEADER_BYTES + sum(codec.encoded_bytes(n) for n in numels)
