"""Addresses for a fleet that spans hosts: the lighthouse to join, the address to advertise.

On one host every endpoint is on loopback. Across hosts each replica must
advertise an address the other hosts can reach (its rendezvous store, its
torchft ManagerServer, its checkpoint server for healing peers), and gloo must
bind the interface that carries that address. The machine's hostname is no
guide: in a container or a network namespace it often resolves to an address
nobody else can reach.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import struct
from pathlib import Path

from phalanx.errors import UsageError

_SIOCGIFADDR = 0x8915  # Linux ioctl: the (primary) IPv4 address of an interface
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_endpoint(flag: str, text: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or 'http://HOST:PORT' -> (host, port)."""
    rest = text.strip().removeprefix("http://").rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise UsageError(flag, "is not HOST:PORT", f"write e.g. {flag} 10.0.0.1:29510", text)
    return host, int(port_text)


def url_host(host: str) -> str:
    """A host as it goes into a URL or HOST:PORT: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def lighthouse_url(host: str, port: int) -> str:
    return f"http://{url_host(host)}:{port}"


def route_address(host: str, port: int) -> str:
    """This host's address on the route to HOST: the one peers behind that route can reach.

    A UDP connect() only asks the kernel for a route and a source address;
    no packet leaves the machine.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as err:
        raise UsageError(
            "--lighthouse", f"cannot resolve {host} ({err})", "give its IP address", host
        ) from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)
        except OSError as err:
            raise UsageError(
                "--lighthouse",
                f"no route to {host} ({err.strerror})",
                "check the address, or pass --advertise-host",
                host,
            ) from None
        return str(probe.getsockname()[0])


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def interface_of(address: str) -> str | None:
    """The name of this host's network interface that holds ADDRESS, or None (Linux).

    IPv4: each interface's primary address (ioctl); IPv6: /proc/net/if_inet6.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6:
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/if_inet6").read_text().splitlines():
                fields = line.split()
                if len(fields) >= 6 and ipaddress.ip_address(int(fields[0], 16)) == ip:
                    return fields[5]
        return None
    try:
        import fcntl
    except ImportError:  # not Linux
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on this interface
                continue
            if socket.inet_ntoa(reply[20:24]) == str(ip):
                return name
    return None


def gloo_interface(advertise_host: str) -> str | None:
    """The interface gloo binds to: loopback for a one-host fleet, else the advertised one.

    None: not found (gloo then falls back to resolving the hostname).
    """
    return "lo" if is_loopback(advertise_host) else interface_of(advertise_host)


def check_advertise_host(address: str) -> str:
    """An address given with --advertise-host must be one of this host's own."""
    if is_loopback(address):
        return address
    if interface_of(address) is None:
        raise UsageError(
            "--advertise-host",
            "is not an address of this host's interfaces",
            "give this host's IP address on the network the other hosts share",
            address,
        )
    return address


def check_name(flag: str, name: str) -> str:
    """A host id or replica name: it goes into file names and torchft replica ids."""
    if not _NAME.match(name) or len(name) > 64:
        raise UsageError(
            flag,
            "must be letters, digits, '.', '_' or '-' (at most 64, no ':' or '/')",
            f"write e.g. {flag} node1",
            name,
        )
    return name


def default_host_id() -> str:
    """This host's short hostname, made safe for use in replica names."""
    short = socket.gethostname().split(".", 1)[0]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", short).strip("-.") or "host"
    return cleaned[:64]
