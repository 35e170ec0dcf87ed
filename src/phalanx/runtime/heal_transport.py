"""Healing from a live peer without unpickling whatever the peer sends.

torchft's `HTTPTransport` fetches a healing replica's state from a peer over
HTTP and loads it with `weights_only=False`: full pickle, so whoever answers at
the address the quorum names (a rogue joiner, anything that can reach the
lighthouse) runs code in every replica that heals from it. phalanx's state
holds only tensors, numbers, strings and plain containers (the same
restriction durable checkpoints already impose: their non-tensor state is
JSON), so the restricted unpickler of `weights_only=True` reads all of it and
refuses anything else.
"""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from typing import TypeVar

import torch
from torch.utils._pytree import tree_map
from torchft.checkpointing import HTTPTransport

from phalanx.runtime.torchft_access import load_state_safely

T = TypeVar("T")


class SafeHTTPTransport(HTTPTransport[T]):
    """torchft's HTTP checkpoint transport, loading with `weights_only=True`.

    Unchunked only: the chunked mode also ships a pytree `TreeSpec`, which the
    restricted unpickler (rightly) does not know.
    """

    def __init__(self, timeout: timedelta, num_chunks: int = 0) -> None:
        if num_chunks != 0:
            raise ValueError("SafeHTTPTransport sends the state unchunked (num_chunks=0)")
        super().__init__(timeout=timeout, num_chunks=0)

    @classmethod
    def _load_from_address(cls, address: str, timeout: timedelta) -> object:
        with urllib.request.urlopen(address, timeout=timeout.total_seconds()) as response:
            state = load_state_safely(response)
        # The loaded tensors share one read-only bytes buffer, and the optimizer keeps
        # its state tensors as given and updates them in place: give it its own memory.
        return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, state)
