"""Epoch orders of a dataset: a stored permutation when small, a keyed bijection when large.

Every replica must derive the same order without talking, and a retried or
resumed step must see the same samples. Up to `TABLE_MAX_SAMPLES` samples the
order is `torch.randperm` under a seed mixed from (seed, epoch), kept as a
tuple (fast to index, a few epochs cached). Beyond that a table would hold one
Python object per sample (the `gpt_1b` profile has 2.5e9 samples: tens of GB),
so the order is computed on demand: a balanced Feistel network over the
smallest even-bit domain that holds N, keyed by (seed, epoch, round), with
cycle walking to stay inside [0, N). A Feistel network is a bijection for any
round function, and cycle walking keeps it one on [0, N); memory is
independent of N and a slice of k positions costs O(k) vectorised work.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

TABLE_MAX_SAMPLES = 1 << 20  # above this the order is computed, not stored
FEISTEL_ROUNDS = 6
_PRIME_A, _PRIME_B = 2_147_483_647, 2_147_483_629  # two primes below 2**31
_MULT_A, _MULT_B = 1_540_483_477, 668_265_261  # odd multipliers below 2**31


def order_seed(seed: int, epoch: int) -> int:
    # Mix seed and epoch so that neighbouring seeds do not share epochs.
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_samples: int) -> tuple[int, ...]:
    """The stored order of a small dataset's `epoch` (cached: a few epochs are live at once)."""
    generator = torch.Generator()
    generator.manual_seed(order_seed(seed, epoch))
    return tuple(torch.randperm(num_samples, generator=generator).tolist())


def epoch_indices(seed: int, epoch: int, num_samples: int, offsets: range) -> list[int]:
    """Dataset indices at `offsets` (inside one epoch) of that epoch's order."""
    if num_samples <= TABLE_MAX_SAMPLES:
        return list(epoch_permutation(seed, epoch, num_samples)[offsets.start : offsets.stop])
    return KeyedBijection(num_samples, order_seed(seed, epoch)).apply(offsets)


class KeyedBijection:
    """A seeded permutation of [0, n) evaluated on demand (no table)."""

    def __init__(self, n: int, key: int) -> None:
        if n < 1:
            raise ValueError(f"a permutation needs n >= 1, got {n}")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half_bits = (bits + 1) // 2  # the domain 2**(2*half) holds n, at most 4n
        self.mask = (1 << self.half_bits) - 1
        self.round_keys = [_round_key(key, r) for r in range(FEISTEL_ROUNDS)]

    def apply(self, positions: range | list[int]) -> list[int]:
        x = torch.as_tensor(list(positions) if not isinstance(positions, range) else positions)
        if x.numel() == 0:
            return []
        if int(x.min()) < 0 or int(x.max()) >= self.n:
            raise ValueError(f"positions must lie in [0, {self.n})")
        y = self._encrypt(x.to(torch.int64))
        outside = y >= self.n
        # Cycle walking: re-encrypt what left [0, n) until it lands inside; every
        # walk ends because the orbit of an inside point comes back inside.
        while bool(outside.any()):
            y[outside] = self._encrypt(y[outside])
            outside = y >= self.n
        return y.tolist()

    def _encrypt(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x >> self.half_bits, x & self.mask
        for key in self.round_keys:
            left, right = right, left ^ self._mix(right, key)
        return (left << self.half_bits) | right

    def _mix(self, half: torch.Tensor, key: int) -> torch.Tensor:
        # Every product stays below 2**62: no int64 overflow, so the result is
        # the same on every platform.
        v = (half ^ key) & 0x7FFF_FFFF
        v = (v * _MULT_A) % _PRIME_A
        v = v ^ (v >> 15)
        v = (v * _MULT_B) % _PRIME_B
        v = v ^ (v >> 13)
        return v & self.mask


def _round_key(key: int, round_number: int) -> int:
    digest = hashlib.blake2b(f"{key}:{round_number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF
