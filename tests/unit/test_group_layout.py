"""`--emulate a+b,...`: which chips form each replica group, and the ranks each chip hosts."""

from __future__ import annotations

import pytest

from phalanx.errors import UsageError
from phalanx.groups.layout import apportion_ranks, parse_emulate_replicas, ranks_per_group
from phalanx.launch.cli import _emulated_options


def test_plus_joins_chips_into_one_replica_and_commas_separate_replicas() -> None:
    replicas = parse_emulate_replicas("1:mem=2MiB+0.5:mem=1MiB,1+1+1,0.25x2")
    assert [len(r.chips) for r in replicas] == [2, 3, 1, 1]
    assert replicas[0].speed == 1.5 and replicas[0].chips[1].memory_bytes == 2**20
    assert ranks_per_group(replicas) == 3


def test_a_chip_hosts_ranks_in_proportion_to_its_memory_and_at_least_one() -> None:
    two_and_one = parse_emulate_replicas("1:mem=2MiB+1:mem=1MiB")[0].chips
    assert apportion_ranks(two_and_one, 3) == [2, 1]
    assert apportion_ranks(two_and_one, 2) == [1, 1]  # each chip holds something
    tiny = parse_emulate_replicas("1:mem=8MiB+1:mem=1KiB+1:mem=1KiB")[0].chips
    assert apportion_ranks(tiny, 6) == [4, 1, 1]
    alike = parse_emulate_replicas("1+1+1")[0].chips
    assert apportion_ranks(alike, 4) == [2, 1, 1]
    with pytest.raises(ValueError):
        apportion_ranks(alike, 2)


def test_every_replica_of_a_fleet_with_groups_runs_the_same_number_of_ranks() -> None:
    options = _emulated_options("1:mem=800KB+1:mem=400KB,1+1+1,0.5")
    layouts = options["group_parts"]
    assert [len(parts) for parts in layouts] == [3, 3, 3]
    first = layouts[0]
    assert [p.chip for p in first] == [0, 0, 1]
    assert [p.memory_bytes for p in first] == [400_000, 400_000, 400_000]
    assert [p.speed for p in first] == [0.5, 0.5, 1.0]  # a chip's speed over its ranks
    assert [p.speed for p in layouts[2]] == pytest.approx([0.5 / 3] * 3)


def test_a_malformed_group_names_the_item() -> None:
    with pytest.raises(UsageError, match="--emulate"):
        parse_emulate_replicas("1+fast")
