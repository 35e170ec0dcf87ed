"""Blockwise quantisation of flat tensors for the outer step, and error feedback.

A site sends its pseudo-gradient over a slow link once per outer round. The
codecs here cut it to 1 byte (`int8`) or half a byte (`4bit`, two values per
byte) per value, plus one float32 scale per block of `block_size` values:

    scale = max|x| over the block / L        (L = 127 for int8, 7 for 4bit)
    q     = round(x / scale), clamped to [-L, L]   (symmetric, round to nearest, ties to even)
    x'    = q * scale

so |x - x'| <= scale / 2 for every value of a block. `none` sends float32 as it
is, for comparison. Sizes are exact: `Encoded.nbytes` is what crosses the link
for the values (payload + scales), and `Codec.encoded_bytes(n)` gives the same
number without encoding.

Quantisation error is biased per round (a value smaller than scale / 2 is sent as
0 every time), so `ErrorFeedback` keeps what each round lost and adds it to the
next round's input: the sum of what was sent then differs from the sum of what
should have been sent by only the last round's residual, never by a drift.

Decoding is deterministic and happens on every site from the same bytes, so all
sites see bit-identical pseudo-gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phalanx.errors import UsageError

SCHEMES = ("none", "int8", "4bit")
SCALE_BYTES = 4  # one float32 scale per block
FLOAT32_BYTES = 4
_LEVELS = {"int8": 127, "4bit": 7}  # symmetric: q in [-L, L]; 4bit keeps -8 unused
_NIBBLE_OFFSET = 8  # a 4-bit value q is stored as q + 8 in [1, 15]
_FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Encoded:
    """One flat tensor as it crosses the link: payload bytes plus one float32 scale per block."""

    scheme: str
    numel: int
    block_size: int
    dtype: torch.dtype  # of the tensor that was encoded; decode gives it back in this dtype
    payload: torch.Tensor  # uint8
    scales: torch.Tensor  # float32, one per block; empty for "none"

    @property
    def nbytes(self) -> int:
        """Exact bytes of the values on the wire (payload + scales)."""
        return self.payload.numel() + self.scales.numel() * SCALE_BYTES


@dataclass(frozen=True)
class Codec:
    """A quantisation scheme and its block size; encode and decode flat float tensors."""

    scheme: str = "int8"
    block_size: int = 128

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UsageError(
                "compression",
                "is not a known scheme",
                f"use one of {', '.join(SCHEMES)}",
                self.scheme,
            )
        if (
            isinstance(self.block_size, bool)
            or not isinstance(self.block_size, int)
            or self.block_size < 1
        ):
            raise UsageError(
                "compression_block_size",
                "must be a positive integer (values per float32 scale)",
                "use e.g. 64 or 128",
                self.block_size,
            )

    def encoded_bytes(self, numel: int) -> int:
        """Bytes `encode` produces for a tensor of `numel` values (payload + scales)."""
        return self.payload_bytes(numel) + SCALE_BYTES * self.scale_count(numel)

    def payload_bytes(self, numel: int) -> int:
        """Bytes of the quantised values alone (`Encoded.payload`) for `numel` values."""
        if self.scheme == "none":
            return FLOAT32_BYTES * numel
        return numel if self.scheme == "int8" else -(-numel // 2)

    def scale_count(self, numel: int) -> int:
        """float32 scales (`Encoded.scales`) for `numel` values: one per block; none raw."""
        return 0 if self.scheme == "none" else -(-numel // self.block_size)

    def encode(self, flat: torch.Tensor) -> Encoded:
        _check_flat(flat)
        values = flat.detach()
        if self.scheme == "none":
            payload = values.to(torch.float32).contiguous().view(torch.uint8)
            return Encoded(
                "none", values.numel(), self.block_size, values.dtype, payload, _NO_SCALES
            )
        quantised, scales = self._quantise(values)
        int8 = self.scheme == "int8"
        payload = quantised.view(torch.uint8) if int8 else _pack_nibbles(quantised)
        return Encoded(self.scheme, values.numel(), self.block_size, values.dtype, payload, scales)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """The flat tensor the payload stands for, in the dtype that was encoded."""
        if encoded.scheme != self.scheme or encoded.block_size != self.block_size:
            raise ValueError(
                f"payload encoded as {encoded.scheme}/{encoded.block_size}, "
                f"decoded as {self.scheme}/{self.block_size}"
            )
        if self.scheme == "none":
            return encoded.payload.view(torch.float32).to(encoded.dtype)
        if self.scheme == "int8":
            quantised = encoded.payload.view(torch.int8)
        else:
            quantised = _unpack_nibbles(encoded.payload, encoded.numel)
        blocks = _pad_to_blocks(quantised.to(encoded.dtype), self.block_size)
        scales = encoded.scales.to(encoded.dtype)
        return (blocks * scales[:, None]).reshape(-1)[: encoded.numel]

    def _quantise(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q as int8, flat; scales as float32). The scale is rounded to float32 *before*
        dividing, so the q found here are exactly those `decode` multiplies back."""
        levels = _LEVELS[self.scheme]
        blocks = _pad_to_blocks(values, self.block_size)
        scales = (blocks.abs().amax(dim=1) / levels).to(torch.float32)
        if not torch.isfinite(scales).all():
            raise ValueError("a block's largest value does not fit float32: cannot encode it")
        scale = scales.to(values.dtype)
        # A block of zeros has scale 0: divide by 1 there (every q is 0 anyway).
        divisor = torch.where(scale > 0, scale, torch.ones_like(scale))
        quantised = torch.round(blocks / divisor[:, None]).clamp_(-levels, levels)
        return quantised.reshape(-1)[: values.numel()].to(torch.int8), scales


class ErrorFeedback:
    """One site's residuals: what quantisation lost last round, added to the next input.

    Keep one per site, for the whole run: the residuals belong in the site's
    checkpoint (`state_dict`), since a site that forgets them loses those updates.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.residuals: list[torch.Tensor] | None = None

    def encode(self, tensors: Sequence[torch.Tensor]) -> list[Encoded]:
        """Encode each flat tensor plus its residual; keep the new residual."""
        for tensor in tensors:
            _check_flat(tensor)
        if self.residuals is None:
            self.residuals = [torch.zeros_like(t) for t in tensors]
        _check_matches(self.residuals, tensors)
        encoded = []
        for index, tensor in enumerate(tensors):
            corrected = tensor.detach() + self.residuals[index]
            payload = self.codec.encode(corrected)
            self.residuals[index] = corrected - self.codec.decode(payload)
            encoded.append(payload)
        return encoded

    def state_dict(self) -> dict[str, Any]:
        residuals = None if self.residuals is None else [r.clone() for r in self.residuals]
        return {
            "scheme": self.codec.scheme,
            "block_size": self.codec.block_size,
            "residuals": residuals,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["scheme"], state["block_size"]) != (self.codec.scheme, self.codec.block_size):
            raise ValueError(
                f"residuals of {state['scheme']}/{state['block_size']} cannot feed "
                f"{self.codec.scheme}/{self.codec.block_size}: the run's compression changed"
            )
        residuals = state["residuals"]
        self.residuals = None if residuals is None else [r.clone() for r in residuals]


_NO_SCALES = torch.empty(0, dtype=torch.float32)


def _check_flat(tensor: torch.Tensor) -> None:
    if tensor.dim() != 1 or tensor.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"codecs take flat float32/float64 tensors, got shape {tuple(tensor.shape)} "
            f"of {tensor.dtype}"
        )
    if not torch.isfinite(tensor).all():
        raise ValueError("cannot encode a tensor with NaN or inf (the round must not commit)")


def _check_matches(residuals: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor]) -> None:
    if len(residuals) != len(tensors) or any(
        r.shape != t.shape or r.dtype != t.dtype for r, t in zip(residuals, tensors)
    ):
        raise ValueError("error feedback got tensors of other shapes or dtypes than last round")


def _pad_to_blocks(flat: torch.Tensor, block_size: int) -> torch.Tensor:
    padding = -flat.numel() % block_size
    if padding:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    return flat.view(-1, block_size)


def _pack_nibbles(quantised: torch.Tensor) -> torch.Tensor:
    """Two values per byte: even positions in the low nibble, odd ones in the high nibble."""
    nibbles = (quantised.to(torch.int16) + _NIBBLE_OFFSET).to(torch.uint8)
    if nibbles.numel() % 2:
        nibbles = torch.cat([nibbles, nibbles.new_full((1,), _NIBBLE_OFFSET)])
    pairs = nibbles.view(-1, 2)
    return pairs[:, 0] | (pairs[:, 1] << 4)


def _unpack_nibbles(packed: torch.Tensor, numel: int) -> torch.Tensor:
    low = (packed & 0x0F).to(torch.int16)
    high = (packed >> 4).to(torch.int16)
    values = torch.stack([low, high], dim=1).reshape(-1)[:numel]
    return (values - _NIBBLE_OFFSET).to(torch.int8)
