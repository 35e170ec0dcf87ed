"""Emulated chip memory: sizes, what a replica holds, and failing as a chip would."""

from __future__ import annotations

import pytest
import torch

from phalanx.emulate.memory import ChipMemory, EmulatedOutOfMemory, optimizer_state_bytes
from phalanx.emulate.memory_size import parse_size_bytes
from phalanx.emulate.spec import parse_emulate_chips
from phalanx.errors import UsageError


def test_sizes_as_people_write_them():
    assert parse_size_bytes("2GiB") == 2 * 1024**3
    assert parse_size_bytes("512 MiB") == 512 * 1024**2
    assert parse_size_bytes("1.5GB") == 1_500_000_000
    assert parse_size_bytes("700KB") == 700_000
    assert parse_size_bytes("3e9") == 3_000_000_000
    for bad in ("lots", "2 GiBs", "-1GiB", "", "0"):
        assert parse_size_bytes(bad) is None


def test_the_emulate_option_mem():
    chips = parse_emulate_chips("1:mem=2GiB,0.5x2:mem=1GiB:max_share=4,0.25")
    assert [c.memory_bytes for c in chips] == [2 * 1024**3, 1024**3, 1024**3, None]
    with pytest.raises(UsageError) as err:
        parse_emulate_chips("1:mem=lots")
    assert err.value.field == "--emulate: mem" and "mem=2GiB" in str(err.value.fix)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
    ).double()


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_optimizer_state_is_estimated_before_the_first_step_and_measured_after():
    model = _model()
    size = _param_bytes(model)
    counters = 4 * len(list(model.parameters()))  # a float32 `step` tensor per parameter
    adamw = torch.optim.AdamW(model.parameters())
    assert optimizer_state_bytes(adamw) == (2 * size + counters, False)
    amsgrad = torch.optim.Adam(model.parameters(), amsgrad=True)
    assert optimizer_state_bytes(amsgrad)[0] == 3 * size + counters
    assert optimizer_state_bytes(torch.optim.SGD(model.parameters(), lr=0.1))[0] == 0
    assert (
        optimizer_state_bytes(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))[0] == size
    )


@pytest.mark.parametrize(
    "kind",
    ["Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adadelta", "Adagrad", "RMSprop", "Rprop",
     "ASGD", "SGD"],
)  # fmt: skip
def test_the_estimate_is_what_the_optimizer_then_holds_to_the_byte(kind):
    # A chip's cap is met to the byte: an estimate a few bytes short fails the step after.
    model = _model()
    extra = {"momentum": 0.9} if kind == "SGD" else {}
    optimizer = getattr(torch.optim, kind)(model.parameters(), lr=0.01, **extra)
    estimate, _ = optimizer_state_bytes(optimizer)  # Adagrad makes its state at once
    model(torch.randn(4, 16, dtype=torch.float64)).sum().backward()
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == (estimate, True)


def test_activations_grow_with_the_micro_batch_and_cap_it():
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randn(64, 16, dtype=torch.float64)

    def forward_of(n: int) -> torch.Tensor:
        return model(x[:n].clone()).sum()

    state = 4 * _param_bytes(model)  # weights, gradients, two Adam moments
    per_sample = None
    for cap in (state + 10_000, state + 40_000):
        memory = ChipMemory("r1", cap, model, optimizer)
        memory.probe(forward_of, 64)
        per_sample = memory.per_sample_bytes
        fits = memory.max_microbatch()
        assert memory.fixed_bytes + fits * per_sample <= cap - state
        assert memory.fixed_bytes + (fits + 1) * per_sample > cap - state
        # a micro-batch that fits passes; one sample more fails, naming chip, need and cap
        with memory.guard(fits):
            forward_of(fits)
        with pytest.raises(EmulatedOutOfMemory) as err, memory.guard(fits + 1):
            forward_of(fits + 1)
        assert str(err.value).startswith("r1 (emulated, ") and "out of memory: needs" in str(
            err.value
        )
        assert err.value.cap_bytes == cap and err.value.need_bytes > cap
    # per sample, float64: the input (saved by the first Linear) and the ReLU output
    # (saved by the ReLU, and by the second Linear: one storage, counted once)
    assert per_sample == (16 + 64) * 8


def test_state_that_does_not_fit_leaves_no_room_for_a_sample():
    model = _model()
    memory = ChipMemory("r0", _param_bytes(model), model, torch.optim.AdamW(model.parameters()))
    memory.probe(lambda n: model(torch.randn(n, 16, dtype=torch.float64)).sum(), 8)
    assert memory.max_microbatch() == 0
    message = str(memory.out_of_memory(1))
    assert "optimizer state estimated" in message and "activations of 1 sample " in message
