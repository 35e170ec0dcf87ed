import math

import torch

from phalanx.faults.injector import flip_bit
from phalanx.guard.abft import AbftMonitor
from phalanx.guard.defect_hooks import DefectiveLinears, flip_random_bits
from phalanx.guard.fingerprint import fingerprint_chunks, fingerprint_words, majority
from phalanx.guard.grad_sanity import GradientSanity


def test_fingerprint_sees_any_single_bit_and_is_exact_in_float32():
    params = [torch.randn(50, 7, dtype=torch.float64), torch.randn(9)]
    before = fingerprint_words(params)
    for bit in (0, 17, 51, 62, 63):
        changed = [p.clone() for p in params]
        changed[0].view(-1).view(torch.int64)[123] ^= 1 << bit
        assert fingerprint_words(changed) != before
    chunks = fingerprint_chunks(params)
    assert all(0 <= c < 65536 and c == int(c) for c in chunks)
    assert (
        torch.tensor(chunks, dtype=torch.float32).tolist() == chunks
    )  # rides a float32 allreduce exactly


def test_fingerprint_does_not_depend_on_summation_order():
    x = torch.randn(1000, dtype=torch.float32)
    assert fingerprint_words([x]) == fingerprint_words([x.clone()])
    assert fingerprint_words([x[:500], x[500:]])[0] == fingerprint_words([x])[0]


def test_majority_names_the_odd_one_out_and_refuses_a_tie():
    a, b = (1.0, 2.0), (1.0, 3.0)
    assert majority({"r0": a, "r1": a, "r2": b}) == (a, ["r2"])
    assert majority({"r0": a, "r1": a}) == (a, [])
    assert majority({"r0": a, "r1": b}) == (None, ["r0", "r1"])


def test_gradient_sanity_learns_then_flags_outliers_and_non_finite():
    sanity = GradientSanity()
    for _ in range(6):
        assert sanity.check(1.0, 16, 64) is None
        sanity.accept(1.0, 16, 64)
    assert sanity.check(3.0, 16, 64) is None  # a loss spike is not a fault
    assert "median" in sanity.check(1e6, 16, 64)
    assert sanity.check(math.inf, 16, 64) == "non-finite gradient"
    assert sanity.check(math.nan, 16, 64) == "non-finite gradient"


def test_top_exponent_flip_makes_a_value_huge():
    x = torch.tensor([0.01], dtype=torch.float64)
    flip_bit(x, None)
    assert abs(float(x[0])) > 1e300


def test_abft_has_no_false_positives_and_catches_flips():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)
    ).double()
    monitor = AbftMonitor(model)
    for _ in range(20):
        model(torch.randn(16, 64, dtype=torch.float64))
    assert monitor.failures == 0
    defect = DefectiveLinears(model, flip_rate=0.05, seed=1)
    monitor.close()
    monitor = AbftMonitor(model)  # registered after the defect: sees what the chip computed
    model(torch.randn(16, 64, dtype=torch.float64))
    assert defect.flipped > 0
    assert monitor.failures > 0
    defect.close()
    monitor.close()


def test_flip_random_bits_follows_the_rate():
    generator = torch.Generator().manual_seed(3)
    tensor = torch.zeros(100_000)
    flipped = flip_random_bits(tensor, 1e-3, generator)
    assert 50 < flipped < 160
    assert int((tensor != 0).sum()) <= flipped
