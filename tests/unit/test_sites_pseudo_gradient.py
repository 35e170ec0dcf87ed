"""The sample-weighted pseudo-gradient and one whole outer step over encoded uploads."""

from __future__ import annotations

import itertools

import pytest
import torch

from phalanx.sites.compression import Codec, ErrorFeedback
from phalanx.sites.outer_optimizer import OuterOptimizer, OuterSettings
from phalanx.sites.outer_step import apply_outer_step, prepare_upload
from phalanx.sites.pseudo_gradient import SiteDelta, site_delta, weighted_pseudo_gradient


def _delta(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=generator, dtype=torch.float64)]


def test_weights_are_samples_not_site_count() -> None:
    fast, slow = _delta(1), _delta(2)
    result = weighted_pseudo_gradient([SiteDelta(0, 300, fast), SiteDelta(1, 100, slow)])
    expected = 0.75 * fast[0] + 0.25 * slow[0]
    assert torch.allclose(result[0], expected, rtol=0, atol=1e-15)
    by_count = 0.5 * fast[0] + 0.5 * slow[0]
    assert not torch.allclose(result[0], by_count)


def test_site_order_does_not_change_a_bit() -> None:
    deltas = [SiteDelta(i, 17 * (i + 1) + i * i, _delta(i)) for i in range(4)]
    reference = weighted_pseudo_gradient(deltas)
    for permutation in itertools.permutations(deltas):
        assert torch.equal(weighted_pseudo_gradient(list(permutation))[0], reference[0])


def test_sites_without_samples_are_left_out_and_weights_renormalised() -> None:
    garbage = [torch.full((4, 3), float("nan"), dtype=torch.float64)]  # never read
    only = _delta(5)
    result = weighted_pseudo_gradient([SiteDelta(0, 0, garbage), SiteDelta(1, 64, only)])
    assert torch.equal(result[0], only[0])  # weight exactly 1.0
    two = weighted_pseudo_gradient(
        [SiteDelta(0, 10, _delta(6)), SiteDelta(1, 0, garbage), SiteDelta(2, 30, _delta(7))]
    )
    assert torch.allclose(two[0], 0.25 * _delta(6)[0] + 0.75 * _delta(7)[0], rtol=0, atol=1e-15)


def test_inputs_are_not_modified() -> None:
    first = _delta(1)
    kept = first[0].clone()
    weighted_pseudo_gradient([SiteDelta(0, 1, first), SiteDelta(1, 1, _delta(2))])
    assert torch.equal(first[0], kept)


@pytest.mark.parametrize(
    ("deltas", "message"),
    [
        ([SiteDelta(0, 0, _delta(1))], "nothing to average"),
        ([SiteDelta(0, 5, _delta(1)), SiteDelta(0, 5, _delta(2))], "twice"),
        ([SiteDelta(0, -1, _delta(1))], "samples"),
        ([SiteDelta(0, 1, _delta(1)), SiteDelta(1, 1, [torch.zeros(3, 4)])], "different models"),
    ],
)
def test_bad_rounds_are_refused(deltas: list[SiteDelta], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        weighted_pseudo_gradient(deltas)


def test_site_delta_points_from_params_to_anchor() -> None:
    anchor = [torch.tensor([1.0, 2.0], dtype=torch.float64)]
    params = [torch.tensor([0.5, 3.0], dtype=torch.float32)]
    assert site_delta(anchor, params)[0].tolist() == [0.5, -1.0]


def test_outer_step_on_uploads_equals_the_pure_computation_without_compression() -> None:
    anchor = [torch.zeros(5, 3, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)]
    generator = torch.Generator().manual_seed(0)
    params = [
        [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in anchor] for _ in range(2)
    ]
    codec = Codec("none")
    settings = OuterSettings(lr=1.0, momentum=0.0)
    uploads = [
        prepare_upload(site, samples, anchor, p, ErrorFeedback(codec))
        for site, samples, p in [(1, 40, params[1]), (0, 120, params[0])]
    ]
    new_anchor = apply_outer_step(uploads, codec, OuterOptimizer(anchor, settings))
    # lr 1, no momentum: the weighted average of the parameters, rounded to float32 on the link
    for index, tensor in enumerate(new_anchor):
        expected = (
            0.75 * params[0][index].float().double() + 0.25 * params[1][index].float().double()
        )
        assert torch.allclose(tensor, expected, rtol=0, atol=1e-12)
    assert uploads[0].payload_bytes == 4 * (15 + 7)


def test_a_round_without_samples_leaves_anchor_and_momentum_alone() -> None:
    anchor = [torch.ones(3, dtype=torch.float64)]
    codec = Codec("int8", 2)
    outer = OuterOptimizer(anchor, OuterSettings())
    feedback = ErrorFeedback(codec)
    upload = prepare_upload(0, 0, anchor, [torch.zeros(3, dtype=torch.float64)], feedback)
    assert upload.payloads == () and feedback.residuals is None
    result = apply_outer_step([upload], codec, outer)
    assert torch.equal(result[0], anchor[0]) and outer.rounds == 0
