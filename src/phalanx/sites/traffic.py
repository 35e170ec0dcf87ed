"""Bytes across the slow links between sites: per-step sync against outer rounds.

Counted for what a real exchange between the sites would move, both
directions summed, with every site's sample count (one int64) riding along:

- per-step synchronous training (what the fleet does today): every step, the
  sites all-reduce the full float32 gradient. A ring all-reduce of S bytes per
  site over N sites sends 2(N-1)/N * S from each site: 2(N-1) * S in total.
- an outer round: compressed payloads cannot be summed as they are (each block
  has its own scale), so every site sends its payload to every other site and
  each decodes and averages all of them itself (an all-gather): the sum over
  sites of (N-1) * (payload + count). Every site then holds the same bytes and
  computes the same average; nothing is sent back.

For N = 2 both are the same function of the bytes one site sends: 2 * (S + 8).
For N > 2 uncompressed, an all-reduce of pre-weighted deltas would be cheaper
than the all-gather; the runtime can choose it for compression "none".
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.sites.compression import FLOAT32_BYTES

SAMPLE_COUNT_BYTES = 8  # one int64 per site per exchange: the weight of its contribution


def per_step_sync_link_bytes(num_params: int, sites: int) -> int:
    """Bytes across the links for one synchronous step: a ring all-reduce of the gradient."""
    _check_sites(sites)
    per_site_bytes = FLOAT32_BYTES * num_params + SAMPLE_COUNT_BYTES
    return 2 * (sites - 1) * per_site_bytes


def outer_round_link_bytes(payload_bytes_per_site: Sequence[int]) -> int:
    """Bytes across the links for one outer round: every site's payload to every other site.

    `payload_bytes_per_site`: what each taking-part site encoded (0 for a site that was
    cut off and sends only its count of 0 samples).
    """
    sites = len(payload_bytes_per_site)
    _check_sites(sites)
    return sum((sites - 1) * (b + SAMPLE_COUNT_BYTES) for b in payload_bytes_per_site)


def _check_sites(sites: int) -> None:
    if sites < 1:
        raise ValueError(f"an exchange needs at least one site, got {sites}")
