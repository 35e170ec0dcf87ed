"""A limited link between two namespaces: the htb class is there and its counters see the bytes.

What bench/sites_link.py relies on, checked fast: `Network.limit` installs an
htb class of the requested rate on both ends of one host's link, and
`Network.link_bytes` counts the bytes of a TCP transfer across that link, each
way, with the headers of every frame (as a wire would carry them). No timing is asserted (the rate is the kernel's business; the class that
enforces it is what we check). Addresses are 10.78.1.0/24 inside the namespaces.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fleet_helpers import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.e2e, pytest.mark.timeout(60)]

SUBNET = "10.78.1"
RATE_MBIT = 40.0
PORT = 5071
UPLOAD_BYTES = 400_000  # from the limited host: 0.08 s at 40 Mbit/s
DOWNLOAD_BYTES = 300_000  # to it (different sizes: a swapped direction shows)
# A 1500-byte MTU frame carries at most 1460 bytes of TCP payload under at least 54 bytes
# of Ethernet, IP and TCP headers.
MTU_PAYLOAD_BYTES, MIN_HEADER_BYTES = 1460, 54

# Listens, reads the peer's upload to its end, then sends the download back.
SERVER = f"""
import socket
listener = socket.create_server(("0.0.0.0", {PORT}))
print("listening", flush=True)
conn, _ = listener.accept()
got = 0
while chunk := conn.recv(65536):
    got += len(chunk)
conn.sendall(b"d" * {DOWNLOAD_BYTES})
conn.close()
print("got", got, flush=True)
"""

CLIENT = f"""
import socket, sys
conn = socket.create_connection((sys.argv[1], {PORT}), timeout=15)
conn.sendall(b"u" * {UPLOAD_BYTES})
conn.shutdown(socket.SHUT_WR)
got = 0
while chunk := conn.recv(65536):
    got += len(chunk)
print("got", got, flush=True)
"""


def _htb_classes(prefix: list[str], dev: str) -> str:
    return subprocess.run(
        [*prefix, "tc", "class", "show", "dev", dev],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def _on_the_wire(payload_bytes: int) -> int:
    """The fewest bytes a TCP payload takes in MTU-sized Ethernet frames."""
    frames = -(-payload_bytes // MTU_PAYLOAD_BYTES)
    return payload_bytes + frames * MIN_HEADER_BYTES


def test_limited_link_has_its_rate_and_counts_the_bytes(network, tmp_path):
    near = network.add_host("near", f"{SUBNET}.1")
    far = network.add_host("far", f"{SUBNET}.2")
    assert network.limit(far, RATE_MBIT) == "htb 40 Mbit/s each way"

    # Both ends of the far host's link carry one htb class at the rate asked for.
    for prefix, dev in (([], far.outer), (["ip", "netns", "exec", far.ns], far.inner)):
        classes = _htb_classes(prefix, dev)
        assert "class htb 1:1" in classes and "rate 40Mbit" in classes, classes
    # The other host's link is left alone.
    assert "htb" not in _htb_classes([], near.outer)

    server_log = tmp_path / "server.out"
    server = network.spawn(near, [sys.executable, "-c", SERVER], server_log)
    wait_for(lambda: "listening" in server_log.read_text(), 15, "the server to listen")
    before = network.link_bytes(far)
    client = subprocess.run(
        ["ip", "netns", "exec", far.ns, sys.executable, "-c", CLIENT, near.address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.split() == ["got", str(DOWNLOAD_BYTES)]
    assert server.wait(timeout=15) == 0
    assert server_log.read_text().split()[-2:] == ["got", str(UPLOAD_BYTES)]
    crossed = network.link_bytes(far) - before

    # The payload plus every frame's headers crossed, each way (offload batches were cut
    # into frames); the counters do not swap the directions.
    assert crossed.sent_bytes >= _on_the_wire(UPLOAD_BYTES)
    assert crossed.received_bytes >= _on_the_wire(DOWNLOAD_BYTES)
    assert crossed.sent_bytes < UPLOAD_BYTES + DOWNLOAD_BYTES  # not the download counted too
    assert crossed.received_bytes < UPLOAD_BYTES + DOWNLOAD_BYTES
    assert crossed.total_bytes == crossed.sent_bytes + crossed.received_bytes


def test_limit_refuses_a_rate_that_is_not_positive(network):
    host = network.add_host("h", f"{SUBNET}.3")
    with pytest.raises(ValueError, match="rate_mbit"):
        network.limit(host, 0)
