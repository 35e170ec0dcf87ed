"""A peer is gone for certain only when its ManagerServer's port refuses: a real lighthouse's
page names the last quorum's addresses, and real sockets answer (or do not)."""

import socket
import threading
from datetime import timedelta

from phalanx.runtime.gone_peers import QuorumAddresses, refused_among
from phalanx.runtime.torchft_access import quorum_manager_addresses


def refused(address: str) -> bool:
    return bool(refused_among({address: address}, wait_s=30.0))


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_closed_port_refuses_and_a_listening_one_or_a_bad_address_says_nothing():
    with socket.create_server(("127.0.0.1", 0)) as alive:
        port = alive.getsockname()[1]
        assert not refused(f"http://127.0.0.1:{port}")
    assert refused(f"http://127.0.0.1:{_closed_port()}")
    assert refused(f"127.0.0.1:{_closed_port()}")  # no scheme
    assert not refused("not an address")


def test_a_whole_fleet_is_dialled_at_once_and_only_the_closed_ports_refuse():
    alive = [socket.create_server(("127.0.0.1", 0)) for _ in range(60)]
    try:
        addresses = {f"a{i}": f"http://127.0.0.1:{s.getsockname()[1]}" for i, s in enumerate(alive)}
        closed = {f"c{i}": f"http://127.0.0.1:{_closed_port()}" for i in range(60)}
        unknown = {"bad": "not an address", "no port": "http://127.0.0.1"}
        assert refused_among({**addresses, **closed, **unknown}, wait_s=30.0) == set(closed)
    finally:
        for server in alive:
            server.close()


def test_the_lighthouse_page_names_the_quorum_and_only_the_dead_member_is_gone(monkeypatch):
    from torchft._torchft import LighthouseClient

    from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings
    from phalanx.runtime import gone_peers

    # What is checked is who is gone, not how fast a busy host answers.
    monkeypatch.setattr(gone_peers, "PAGE_TIMEOUT_S", 30.0)
    monkeypatch.setattr(gone_peers, "LATE_PAGE_TIMEOUT_S", 30.0)
    monkeypatch.setattr(gone_peers, "CONNECT_WAIT_S", 30.0)

    server = Lighthouse(LighthouseSettings(min_replicas=2, join_timeout_ms=60_000))
    alive = socket.create_server(("127.0.0.1", 0))
    try:
        members = {
            "r0:uuid-a": f"http://127.0.0.1:{alive.getsockname()[1]}",
            "r1:uuid-b": f"http://127.0.0.1:{_closed_port()}",
        }

        def ask(replica_id: str) -> None:
            client = LighthouseClient(server.address, timedelta(seconds=5))
            client.quorum(
                replica_id=replica_id,
                timeout=timedelta(seconds=30),
                address=members[replica_id],
                store_address="127.0.0.1:1",
                step=0,
                world_size=1,
            )

        askers = [threading.Thread(target=ask, args=(r,)) for r in members]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(60)
        assert quorum_manager_addresses(server.address, 5.0) == members
        # Read in the background once the quorum formed, then probed at the failure.
        addresses = QuorumAddresses(server.address)
        addresses.learn(list(members))
        assert addresses._reader is not None
        addresses._reader.join(30)
        assert addresses._known == members
        assert addresses.gone(list(members)) == {"r1:uuid-b"}
        assert addresses.gone(["r0:uuid-a"]) == set()
        assert addresses.gone(["someone:else"]) == set()  # not in the quorum
        # Not read yet (a quorum just formed): the page is read at the failure.
        late = QuorumAddresses(server.address)
        assert late.gone(list(members)) == {"r1:uuid-b"}
    finally:
        alive.close()
        server.shutdown()
    # An unreachable lighthouse, nothing read: nobody is known to be gone. (Not the one
    # just shut down: on a loaded host its page was still served for a moment.)
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    assert QuorumAddresses(unreachable).gone(list(members)) == set()
