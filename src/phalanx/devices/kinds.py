"""Device kinds phalanx knows, and the facts that follow from a kind alone."""

from __future__ import annotations

from typing import Literal

DeviceKind = Literal["cuda", "rocm", "xpu", "mps", "npu", "cpu", "emulated"]
KINDS: tuple[str, ...] = ("cuda", "rocm", "xpu", "mps", "npu", "cpu", "emulated")

# dtypes the correctness check runs in, per kind. float64 is left out on
# accelerators: many have little fp64 silicon and training does not use it.
DEFAULT_DTYPES: dict[str, tuple[str, ...]] = {
    "cuda": ("float32", "float16", "bfloat16"),
    "rocm": ("float32", "float16", "bfloat16"),
    "xpu": ("float32", "float16", "bfloat16"),
    "npu": ("float32", "float16", "bfloat16"),
    "mps": ("float32", "float16"),
    "cpu": ("float32", "float64", "bfloat16"),
    "emulated": ("float32", "bfloat16"),
}
DTYPE_NAMES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")


def torch_device_string(kind: str, index: int) -> str:
    """The torch device an actual tensor of this device lives on.

    ROCm builds of torch drive AMD GPUs through the "cuda" device type;
    emulated chips compute on the host CPU.
    """
    if kind in ("cpu", "emulated"):
        return "cpu"
    if kind == "mps":
        return "mps"
    torch_type = "cuda" if kind == "rocm" else kind
    return f"{torch_type}:{index}"


# Kinds whose memory is the host's RAM (mps: Apple's unified memory). The OS
# places a process's pages anywhere in RAM and the host runs everything else
# from it too, so qualification tests only a bounded share and caps nothing.
HOST_MEMORY_KINDS: tuple[str, ...] = ("cpu", "mps")


def uses_host_memory(kind: str) -> bool:
    return kind in HOST_MEMORY_KINDS
