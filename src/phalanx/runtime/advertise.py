"""torchft's checkpoint server for healing peers, advertised at an address they can reach.

torchft's HTTPTransport listens on every interface but tells peers to fetch
from `http://<socket.gethostname()>:<port>`: across hosts (or in a network
namespace) the hostname may resolve to an address the healing peer cannot
reach, and healing then fails. This subclass only changes the advertised host
(its base, SafeHTTPTransport, loads what a peer sends without full pickle).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from phalanx.fleetnet.hosts import url_host
from phalanx.runtime.heal_transport import SafeHTTPTransport


class AdvertisedHTTPTransport(SafeHTTPTransport):  # type: ignore[type-arg]
    def __init__(self, host: str, timeout: timedelta, num_chunks: int = 0) -> None:
        self._advertise_host = host  # set first: the base constructor logs address()
        super().__init__(timeout=timeout, num_chunks=num_chunks)

    def address(self) -> str:
        port = self._server.socket.getsockname()[1]
        return f"http://{url_host(self._advertise_host)}:{port}/checkpoint/"


def checkpoint_transport(host: str, timeout: timedelta) -> Any:
    """What FleetSync passes to torchft's Manager (same settings as torchft's default)."""
    return AdvertisedHTTPTransport(host, timeout=timeout, num_chunks=0)
