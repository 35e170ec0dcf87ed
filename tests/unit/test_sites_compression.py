"""Blockwise codecs: error bounds per scheme, exact sizes, and error feedback without drift."""

from __future__ import annotations

import math

import pytest
import torch

from phalanx.errors import UsageError
from phalanx.sites.compression import Codec, ErrorFeedback

LEVELS = {"int8": 127, "4bit": 7}
# Below half an int8 step under a block maximum near 3: plain rounding sends it as 0.
DRIFT = 0.004


def _random(numel: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Magnitudes spread over three decades, as a pseudo-gradient's are.
    scale = 10 ** torch.empty(numel, dtype=torch.float64).uniform_(-3, 0, generator=generator)
    return (torch.randn(numel, generator=generator, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("scheme", ["int8", "4bit"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("block_size", [1, 7, 64, 128])
def test_round_trip_error_is_at_most_half_a_step_per_block(
    scheme: str, dtype: torch.dtype, block_size: int
) -> None:
    codec = Codec(scheme, block_size)
    values = _random(1003, dtype)  # not a multiple of any block size but 1
    decoded = codec.decode(codec.encode(values))
    assert decoded.dtype == dtype and decoded.shape == values.shape
    padded = torch.cat([values, values.new_zeros(-values.numel() % block_size)])
    step = padded.view(-1, block_size).abs().amax(dim=1) / LEVELS[scheme]
    bound = (step / 2).repeat_interleave(block_size)[: values.numel()]
    # The scale is stored in float32: allow its rounding (relative 2^-24 of the block's max).
    slack = (step * LEVELS[scheme] * 2**-23).repeat_interleave(block_size)[: values.numel()]
    assert ((values - decoded).abs() <= bound + slack).all()
    # Not lossless: the bound is what is met, not zero error.
    assert (values - decoded).abs().max() > 0


def test_none_is_float32_as_is() -> None:
    codec = Codec("none")
    values32 = _random(100, torch.float32)
    assert torch.equal(codec.decode(codec.encode(values32)), values32)
    values64 = _random(100, torch.float64)
    assert torch.equal(codec.decode(codec.encode(values64)), values64.to(torch.float32).double())


def test_extremes_of_a_block_are_sent_exactly_and_zeros_stay_zero() -> None:
    values = torch.tensor([0.0, 1.0, -1.0, 0.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    for scheme in ("int8", "4bit"):
        codec = Codec(scheme, 4)
        encoded = codec.encode(values)
        decoded = codec.decode(encoded)
        if scheme == "int8":  # max |x| is sent as +-L, exactly
            assert encoded.payload.view(torch.int8)[1:3].tolist() == [127, -127]
        # ... and comes back as +-L times the float32-rounded scale
        assert abs(decoded[1] - 1.0) <= 2**-23 and decoded[2] == -decoded[1]
        assert torch.equal(decoded[5:], torch.zeros(3, dtype=torch.float64))  # all-zero block


@pytest.mark.parametrize("scheme", ["none", "int8", "4bit"])
@pytest.mark.parametrize("numel", [1, 2, 63, 64, 65, 1000, 4097])
@pytest.mark.parametrize("block_size", [64, 128])
def test_sizes_in_bytes_are_exact(scheme: str, numel: int, block_size: int) -> None:
    codec = Codec(scheme, block_size)
    encoded = codec.encode(_random(numel, torch.float32))
    blocks = math.ceil(numel / block_size)
    expected = {
        "none": 4 * numel,
        "int8": numel + 4 * blocks,
        "4bit": math.ceil(numel / 2) + 4 * blocks,
    }[scheme]
    assert encoded.nbytes == expected == codec.encoded_bytes(numel)
    assert encoded.payload.dtype == torch.uint8 and encoded.scales.dtype == torch.float32


def test_four_bit_packs_two_values_per_byte_and_an_odd_tail() -> None:
    codec = Codec("4bit", 8)
    values = torch.tensor([7.0, -7.0, 1.0, 0.0, -3.0], dtype=torch.float32)
    encoded = codec.encode(values)
    assert encoded.payload.numel() == 3
    assert torch.equal(codec.decode(encoded), values)  # integers up to L are exact at scale 1


def _cumulative_gap(codec: Codec, rounds: int, feedback: bool) -> tuple[float, float]:
    """(largest |cumulative true - cumulative sent| over the rounds, one round's worst error)."""
    generator = torch.Generator().manual_seed(1)
    sender = ErrorFeedback(codec)
    true_sum = torch.zeros(512, dtype=torch.float64)
    sent_sum = torch.zeros(512, dtype=torch.float64)
    worst_gap = 0.0
    worst_single = 0.0
    for _ in range(rounds):
        # A biased input: a small drift every round under a few large values per block, the
        # case where plain rounding sends 0 for the drift, round after round.
        values = torch.full((512,), DRIFT, dtype=torch.float64)
        values[::64] = 0.5 * torch.randn(8, generator=generator, dtype=torch.float64) + 3.0
        if feedback:
            (payload,) = sender.encode([values])
        else:
            payload = codec.encode(values)
        sent = codec.decode(payload)
        worst_single = max(worst_single, (values - sent).abs().max().item())
        true_sum += values
        sent_sum += sent
        worst_gap = max(worst_gap, (true_sum - sent_sum).abs().max().item())
    return worst_gap, worst_single


@pytest.mark.parametrize("scheme", ["int8", "4bit"])
def test_error_feedback_keeps_the_cumulative_sum_within_one_rounds_error(scheme: str) -> None:
    codec = Codec(scheme, 64)
    gap_with, single_with = _cumulative_gap(codec, 200, feedback=True)
    gap_without, _ = _cumulative_gap(codec, 200, feedback=False)
    # With feedback the gap is the last residual: bounded by one round's error, no drift.
    assert gap_with <= single_with * (1 + 1e-9)
    # Without it, the drift (DRIFT sent as 0, every round) grows with the rounds.
    assert gap_without > 200 * DRIFT * 0.99


def test_error_feedback_residual_is_exactly_what_was_not_sent() -> None:
    codec = Codec("4bit", 16)
    sender = ErrorFeedback(codec)
    first = _random(100, torch.float64, seed=2)
    second = _random(100, torch.float64, seed=3)
    (p1,) = sender.encode([first])
    (p2,) = sender.encode([second])
    assert sender.residuals is not None
    total_sent = codec.decode(p1) + codec.decode(p2)
    assert torch.allclose(first + second - total_sent, sender.residuals[0], rtol=0, atol=1e-15)


def test_error_feedback_state_round_trips_and_refuses_another_codec() -> None:
    sender = ErrorFeedback(Codec("int8", 32))
    sender.encode([_random(50, torch.float32)])
    state = sender.state_dict()
    restored = ErrorFeedback(Codec("int8", 32))
    restored.load_state_dict(state)
    nxt = _random(50, torch.float32, seed=5)
    assert torch.equal(sender.encode([nxt])[0].payload, restored.encode([nxt])[0].payload)
    with pytest.raises(ValueError, match="compression changed"):
        ErrorFeedback(Codec("4bit", 32)).load_state_dict(state)


def test_bad_codec_settings_are_one_clear_line() -> None:
    with pytest.raises(UsageError) as err:
        Codec("int4")
    assert err.value.field == "compression" and "\n" not in str(err.value)
    assert "none, int8, 4bit" in str(err.value)
    with pytest.raises(UsageError) as err:
        Codec("int8", 0)
    assert err.value.field == "compression_block_size"


def test_non_finite_or_non_flat_input_is_refused() -> None:
    codec = Codec("int8", 8)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="flat"):
        codec.encode(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="flat"):
        codec.encode(torch.zeros(4, dtype=torch.float16))
