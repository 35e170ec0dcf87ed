"""An upload as the outer all-gather moves it: packed, padded, unpacked, the same."""

import pytest
import torch

from phalanx.sites.compression import Codec, ErrorFeedback
from phalanx.sites.outer_link import senders_by_site, sites_short_of_replicas
from phalanx.sites.outer_step import SiteUpload, prepare_upload
from phalanx.sites.wire import HEADER_BYTES, WireUpload, pack, pad, unpack

SHAPES = [(7, 5), (5,), (130,)]


@pytest.mark.parametrize("scheme", ["none", "int8", "4bit"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_upload_survives_packing_and_padding_bit_for_bit(scheme, dtype):
    generator = torch.Generator().manual_seed(3)
    anchor = [torch.randn(s, generator=generator, dtype=dtype) for s in SHAPES]
    params = [a - 0.01 * torch.randn(a.shape, generator=generator, dtype=dtype) for a in anchor]
    codec = Codec(scheme, block_size=16)
    upload = prepare_upload(2, 96, anchor, params, ErrorFeedback(codec))
    data = pack(WireUpload(upload, sender=True, step_time_s=0.25))
    assert data.numel() == HEADER_BYTES + upload.payload_bytes  # no length fields travel
    numels, dtypes = [a.numel() for a in anchor], [a.dtype for a in anchor]
    back = unpack(pad(data, data.numel() + 37), codec, numels, dtypes)
    assert (back.upload.site, back.upload.samples, back.sender, back.step_time_s) == (
        2, 96, True, 0.25,
    )  # fmt: skip
    for sent, got in zip(upload.payloads, back.upload.payloads):
        assert torch.equal(codec.decode(sent), codec.decode(got))


def test_a_site_with_no_samples_sends_its_header_only():
    codec = Codec("int8")
    upload = prepare_upload(1, 0, [torch.zeros(4)], [torch.ones(4)], ErrorFeedback(codec))
    data = pack(WireUpload(upload, sender=False, step_time_s=0.0))
    assert data.numel() == HEADER_BYTES
    back = unpack(data, codec, [4], [torch.float32])
    assert (back.upload.samples, back.upload.payloads, back.sender) == (0, (), False)


def test_an_unsound_sender_says_so_on_the_wire():
    codec = Codec("int8")
    upload = prepare_upload(1, 4, [torch.zeros(4)], [torch.ones(4)], ErrorFeedback(codec))
    back = unpack(pack(WireUpload(upload, True, 0.0, sound=False)), codec, [4], [torch.float32])
    assert (back.sender, back.sound) == (True, False)


def test_a_payload_for_another_model_is_refused():
    codec = Codec("none")
    upload = prepare_upload(0, 8, [torch.zeros(3)], [torch.ones(3)], ErrorFeedback(codec))
    with pytest.raises(ValueError, match="sent 1 tensors, the model has 2"):
        unpack(pack(WireUpload(upload, True, 0.0)), codec, [3, 3], [torch.float32] * 2)


def test_the_header_carries_round_inner_steps_and_anchor_checksum():
    codec = Codec("none")
    wire = WireUpload(SiteUpload(2, 0, ()), False, 0.25, round=7, inner_steps=123,
                      anchor_checksum=-1.5e-3)  # fmt: skip
    back = unpack(pack(wire), codec, [3], [torch.float32])
    assert (back.round, back.inner_steps, back.anchor_checksum) == (7, 123, -1.5e-3)
    assert (back.upload.site, back.sender, back.step_time_s) == (2, False, 0.25)


def test_a_follower_says_so_and_a_present_peer_of_its_site_sends_for_it():
    codec = Codec("none")
    follower = WireUpload(SiteUpload(0, 0, ()), False, 0.0, follower=True)
    back = unpack(pack(follower), codec, [4], [torch.float32])
    assert back.follower and not back.sender
    peer = WireUpload(SiteUpload(0, 64, ()), False, 0.0)
    other_site = WireUpload(SiteUpload(1, 32, ()), False, 0.0)
    # Quorum ranks: the follower ranks first in site 0, yet its peer sends for the site.
    assert senders_by_site([follower, other_site, peer]) == {0: 2, 1: 1}
    # Followers alone: their site sends nothing this round (it trains the round later).
    assert senders_by_site([follower, other_site]) == {1: 1}
    assert senders_by_site([peer, follower]) == {0: 0}


def test_a_site_short_of_the_replicas_of_its_last_inner_step_is_named():
    codec = Codec("none")
    wire = WireUpload(SiteUpload(0, 8, ()), True, 0.0, site_replicas=2)
    assert unpack(pack(wire), codec, [4], [torch.float32]).site_replicas == 2

    def header(site: int, replicas: int) -> WireUpload:
        return WireUpload(SiteUpload(site, 8, ()), False, 0.0, site_replicas=replicas)

    # Site 0 trained its last inner step with two replicas and came with one; one of
    # them saying so is enough (the other may be the one missing).
    assert sites_short_of_replicas([header(0, 2), header(1, 1)]) == {0: (1, 2)}
    assert sites_short_of_replicas([header(0, 2), header(1, 1), header(0, 2)]) == {}
    # 0: the replica stopped waiting for a missing peer (gone since that step), or
    # knows no inner step (a script driving the rounds itself): nobody is waited for.
    assert sites_short_of_replicas([header(0, 0), header(1, 0)]) == {}
    assert sites_short_of_replicas([header(0, 3), header(0, 0), header(1, 2)]) == {
        0: (2, 3),
        1: (1, 2),
    }
