"""Hardware facts per chip model, keyed by the exact name the driver reports.

Numbers are vendor datasheet peaks for dense math (no structured sparsity),
in FLOP/s, bytes/s, bytes and watts. They are used for predictions and for
"how far below its datasheet is this chip" warnings, never for admission.
An unknown model simply has no spec (`spec_for` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass

_T = 1e12
_GB_S = 1e9
_GIB = 2**30


@dataclass(frozen=True)
class ChipSpec:
    model: str
    vendor: str
    peak_flops_float64: float
    peak_flops_float32: float
    peak_flops_tf32: float  # 0 where the chip has no TF32 path
    peak_flops_bfloat16: float  # 0 where unsupported
    peak_flops_float16: float
    memory_bandwidth_bytes_s: float
    memory_bytes: int  # nominal capacity; the driver's figure is a little lower
    tdp_w: float

    def peak_flops(self, dtype: str) -> float | None:
        value = getattr(self, f"peak_flops_{dtype}", None)
        return value if value else None


# fmt: off
_ROWS: tuple[tuple[str, str, float, float, float, float, float, float, int, float], ...] = (
    # model (exact driver name)   vendor  fp64   fp32   tf32   bf16    fp16   (TFLOP/s)  GB/s  GiB  TDP W
    ("NVIDIA H100 80GB HBM3",     "nvidia", 67,   67,    495,   989,    989,    3350,  80,  700),
    ("NVIDIA H100 PCIe",          "nvidia", 51,   51,    378,   756,    756,    2000,  80,  350),
    ("NVIDIA H200",               "nvidia", 67,   67,    495,   989,    989,    4800, 141,  700),
    ("NVIDIA A100-SXM4-80GB",     "nvidia", 19.5, 19.5,  156,   312,    312,    2039,  80,  400),
    ("NVIDIA A100-SXM4-40GB",     "nvidia", 19.5, 19.5,  156,   312,    312,    1555,  40,  400),
    ("NVIDIA A100-PCIE-40GB",     "nvidia", 19.5, 19.5,  156,   312,    312,    1555,  40,  250),
    ("NVIDIA A10G",               "nvidia", 0.98, 31.2,  62.5,  125,    125,     600,  24,  300),
    ("NVIDIA GeForce RTX 3090",   "nvidia", 0.56, 35.6,  35.6,  71,     71,      936,  24,  350),
    ("NVIDIA L4",                 "nvidia", 0.49, 30.3,  60,    121,    121,     300,  24,   72),
    ("NVIDIA GeForce RTX 4090",   "nvidia", 1.3,  82.6,  82.6,  165,    165,    1008,  24,  450),
    # the "old chips" of a mixed fleet: Volta, Turing, Pascal (no TF32, no bf16)
    ("Tesla V100-SXM2-32GB",      "nvidia", 7.8,  15.7,  0,     0,      125,     900,  32,  300),
    ("Tesla V100-SXM2-16GB",      "nvidia", 7.8,  15.7,  0,     0,      125,     900,  16,  300),
    ("Tesla V100-PCIE-16GB",      "nvidia", 7.0,  14.0,  0,     0,      112,     900,  16,  250),
    ("Tesla T4",                  "nvidia", 0.25, 8.1,   0,     0,      65,      320,  16,   70),
    ("Tesla P100-PCIE-16GB",      "nvidia", 4.7,  9.3,   0,     0,      18.7,    732,  16,  250),
    # AMD Instinct (matrix-core peaks)
    ("AMD Instinct MI300X",       "amd",   163.4, 163.4, 653.7, 1307.4, 1307.4, 5300, 192,  750),
    ("AMD Instinct MI250X",       "amd",   95.7,  95.7,  0,     383,    383,    3277, 128,  560),
    ("AMD Instinct MI100",        "amd",   11.5,  46.1,  0,     92.3,   184.6,  1229,  32,  300),
)
# fmt: on

_SPECS: tuple[ChipSpec, ...] = tuple(
    ChipSpec(
        model=model,
        vendor=vendor,
        peak_flops_float64=f64 * _T,
        peak_flops_float32=f32 * _T,
        peak_flops_tf32=tf32 * _T,
        peak_flops_bfloat16=bf16 * _T,
        peak_flops_float16=f16 * _T,
        memory_bandwidth_bytes_s=bw_gb_s * _GB_S,
        memory_bytes=mem_gib * _GIB,
        tdp_w=tdp_w,
    )
    for model, vendor, f64, f32, tf32, bf16, f16, bw_gb_s, mem_gib, tdp_w in _ROWS
)

SPEC_TABLE: dict[str, ChipSpec] = {spec.model: spec for spec in _SPECS}


def spec_for(model: str) -> ChipSpec | None:
    """The datasheet facts for an exact model name, or None when unknown."""
    return SPEC_TABLE.get(model.strip())
