"""Many-hosts addressing and naming: pure or loopback-only, no processes."""

from pathlib import Path

import pytest

from phalanx.errors import UsageError
from phalanx.fleetnet import hosts
from phalanx.launch.cli import _many_hosts
from phalanx.launch.launcher import RunPlan
from phalanx.runtime.sync_fleet import _natural_key


def test_endpoints_parse_with_and_without_scheme():
    assert hosts.parse_endpoint("--lighthouse", "10.0.0.1:29510") == ("10.0.0.1", 29510)
    assert hosts.parse_endpoint("--lighthouse", "http://node1:80/") == ("node1", 80)
    assert hosts.parse_endpoint("--lighthouse", "[::1]:7") == ("::1", 7)
    assert hosts.lighthouse_url("::1", 7) == "http://[::1]:7"
    for bad in ("10.0.0.1", ":80", "host:0", "host:99999", "host:http"):
        with pytest.raises(UsageError, match="--lighthouse"):
            hosts.parse_endpoint("--lighthouse", bad)


def test_route_and_interface_on_loopback():
    assert hosts.route_address("127.0.0.1", 9) == "127.0.0.1"  # no packet is sent
    assert hosts.gloo_interface("127.0.0.1") == "lo"
    assert hosts.interface_of("127.0.0.1") == "lo"
    assert hosts.interface_of("192.0.2.250") is None  # TEST-NET: not ours
    with pytest.raises(UsageError, match="--advertise-host"):
        hosts.check_advertise_host("192.0.2.250")


def test_names_are_checked_and_prefixed():
    for bad in ("a:b", "a/b", "", "-x", "a b", "x" * 65):
        with pytest.raises(UsageError):
            hosts.check_name("--host-id", bad)
    assert hosts.check_name("--host-id", hosts.default_host_id())
    plan = RunPlan(script=Path("x.py"), out_dir=Path("out"), speeds=[None, None], host_id="b")
    assert plan.names == ["b-r0", "b-r1"]
    assert RunPlan(script=Path("x.py"), out_dir=Path("out"), speeds=[1.0]).names == ["r0"]


def test_every_host_orders_participants_the_same_way():
    names = ["h10-r0", "h2-r1", "h2-r0", "a-r3"]
    assert sorted(names, key=_natural_key) == sorted(reversed(names), key=_natural_key)
    assert sorted(["n-r10", "n-r2"], key=_natural_key) == ["n-r2", "n-r10"]


def test_many_hosts_flags():
    speeds, fields = _many_hosts("127.0.0.1:29510", None, None, None, [None], False)
    assert fields["lighthouse"] == "http://127.0.0.1:29510"
    assert fields["advertise_host"] == "127.0.0.1"
    assert fields["host_id"] == hosts.default_host_id()
    speeds, fields = _many_hosts(None, None, "a,b,c", None, [None], False)
    assert speeds == [None] * 3 and fields["replica_names"] == ["a", "b", "c"]
    with pytest.raises(UsageError, match="one name per replica"):
        _many_hosts(None, None, "a,b", None, [None] * 3, True)
    with pytest.raises(UsageError, match="twice"):
        _many_hosts(None, None, "a,a", None, [None], False)
    with pytest.raises(UsageError, match="needs --lighthouse"):
        _many_hosts(None, None, None, "127.0.0.1", [None], False)
