import math

import numpy as np
import torch

from phalanx.faults.bitflip import flip_bit, flip_random_bits
from phalanx.guard.abft import AbftMonitor
from phalanx.guard.defect_hooks import DefectiveLinears
from phalanx.guard.fingerprint import fingerprint_chunks, fingerprint_words, majority
from phalanx.guard.offences import OffenceLedger
from phalanx.guard.slice_check import SliceVerdict, judge, reproduces


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


def test_slice_check_judges_against_the_fleets_norm_with_room_for_small_slices():
    assert not judge(1e6, 16, 64, history=[]).vetoed  # no history yet: only non-finite
    history = [1.0] * 6
    assert not judge(3.0 * 16 / 64, 16, 64, history).vetoed  # a loss spike is not a fault
    assert "median" in judge(1e6, 16, 64, history).reason
    assert judge(math.inf, 16, 64, history).reason == "non-finite gradient"
    assert judge(math.nan, 16, 64, history=[]).reason == "non-finite gradient"
    # One allowance per slice: a 1-sample slice may be sqrt(64) further out than the whole
    # batch, and the same samples get the same verdict whoever computes them.
    one_sample = 300.0 / 64  # normalised norm 300: within 50 x sqrt(64) = 400
    assert not judge(one_sample, 1, 64, history).vetoed
    assert judge(one_sample * 64, 64, 64, history).vetoed


def test_reproduces_needs_the_same_verdict_and_a_close_norm():
    vetoed = SliceVerdict(True, 500.0, "x")
    assert reproduces(vetoed, SliceVerdict(True, 500.0 * (1 + 1e-5)))
    assert not reproduces(vetoed, SliceVerdict(False, 1.0))  # a clean rerun: transient fault
    assert not reproduces(vetoed, SliceVerdict(True, 900.0))
    assert reproduces(SliceVerdict(True, math.inf), SliceVerdict(True, math.nan))
    assert not reproduces(SliceVerdict(True, math.inf), SliceVerdict(True, 5.0))


def test_offence_ledger_counts_only_its_own_chip_faults_once_per_step():
    ledger = OffenceLedger("r1", quarantine_after=2)
    assert not ledger.record(3, {"r0": "its rerun of the slice differed"})
    assert ledger.count == 0
    assert not ledger.record(4, {"r1": "its rerun of the slice differed"})
    assert ledger.record(9, {"r1": "its parameters differ from the majority's"})
    assert ledger.reasons == [
        "step 4: its rerun of the slice differed",
        "step 9: its parameters differ from the majority's",
    ]


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
    tensor = torch.zeros(100_000)
    flipped = flip_random_bits(tensor, 1e-3, np.random.default_rng(3))
    assert 50 < flipped < 160
    assert int((tensor != 0).sum()) <= flipped
