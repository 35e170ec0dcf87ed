"""Replicas of different kinds: fingerprints within a kind, a coarse check across kinds."""

from phalanx.guard.kinds import RESYNC_EVERY, check_replicas

A, B = (1.0, 2.0), (1.0, 3.0)


def test_one_kind_is_the_plain_majority():
    kinds = {"r0": "a", "r1": "a", "r2": "a"}
    check = check_replicas({"r0": A, "r1": A, "r2": B}, {}, kinds, step=3)
    assert set(check.diverged) == {"r2"} and not check.tie and not check.resync
    assert check_replicas({"r0": A, "r1": B}, {}, {"r0": "a", "r1": "a"}, step=3).tie


def test_last_bits_that_differ_between_kinds_blame_nobody():
    kinds = {"r0": "a", "r1": "a", "r2": "b"}
    coarse = {"r0": (10.0, 50.0), "r1": (10.0, 50.0), "r2": (10.0 + 1e-9, 50.0 - 1e-9)}
    check = check_replicas({"r0": A, "r1": A, "r2": B}, coarse, kinds, step=3)
    assert check.diverged == {} and not check.tie


def test_a_corrupt_replica_of_another_kind_is_still_caught():
    kinds = {"r0": "a", "r1": "a", "r2": "b"}
    coarse = {"r0": (10.0, 50.0), "r1": (10.0, 50.0), "r2": (1e30, 1e30)}  # a flipped exponent
    check = check_replicas({"r0": A, "r1": A, "r2": B}, coarse, kinds, step=3)
    assert set(check.diverged) == {"r2"}


def test_two_of_a_kind_that_disagree_are_told_apart_by_the_other_kinds():
    kinds = {"r0": "a", "r1": "a", "r2": "b"}
    coarse = {"r0": (10.0, 50.0), "r1": (-3e20, 3e20), "r2": (10.0, 50.0)}
    check = check_replicas({"r0": A, "r1": B, "r2": A}, coarse, kinds, step=3)
    assert set(check.diverged) == {"r1"} and not check.tie


def test_other_kinds_resynchronise_from_the_largest_kind_periodically():
    kinds = {"r0": "a", "r1": "a", "r2": "b"}
    coarse = {name: (10.0, 50.0) for name in kinds}
    fingerprints = {"r0": A, "r1": A, "r2": B}
    assert check_replicas(fingerprints, coarse, kinds, step=RESYNC_EVERY).resync == ["r2"]
    assert check_replicas(fingerprints, coarse, kinds, step=RESYNC_EVERY + 1).resync == []
