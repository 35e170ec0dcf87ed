"""`--devices`: which device each replica binds, its threads, and one clear line for bad lists."""

from __future__ import annotations

import types

import pytest
import torch

from phalanx.devices import placement
from phalanx.devices.placement import Placement, bind, place
from phalanx.errors import UsageError
from phalanx.runtime import precision


def test_cpu_replicas_share_the_host_cores_fairly() -> None:
    assert place("cpu,cpu", host_cores=8) == [Placement("cpu", "cpu", 4)] * 2
    assert place("cpu,cpu,cpu", host_cores=2) == [Placement("cpu", "cpu", 1)] * 3
    assert place(" cpu ", host_cores=6) == [Placement("cpu", "cpu", 6)]


def test_accelerators_get_one_replica_each_and_the_cpu_keeps_its_cores(monkeypatch) -> None:
    monkeypatch.setattr(placement, "_available", lambda device_type, index: True)
    got = place("cuda:0,cuda:1,npu:0,cpu", host_cores=16)
    assert [p.device for p in got] == ["cuda:0", "cuda:1", "npu:0", "cpu"]
    assert [p.kind for p in got] == ["cuda", "cuda", "npu", "cpu"]
    assert got[-1].threads == 16  # the only CPU replica: every core
    assert place("cuda", host_cores=4)[0].device == "cuda:0"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("tpu:0", "unknown device type 'tpu'"),
        ("cuda:x", "bad device index"),
        ("cpu:1", "cpu takes no index"),
        ("", "is empty"),
        (" , ", "is empty"),
    ],
)
def test_malformed_lists_name_the_problem(spec: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        place(spec)
    assert caught.value.field == "--devices" and words in caught.value.problem


def test_a_device_listed_twice_or_missing_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(placement, "_available", lambda device_type, index: index == 0)
    with pytest.raises(UsageError, match="names an accelerator twice"):
        place("cuda:0,cuda:0")
    with pytest.raises(UsageError, match="cuda:3 is not available on this host"):
        place("cuda:0,cuda:3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_without_a_gpu_cuda_is_not_available_and_auto_finds_nothing() -> None:
    with pytest.raises(UsageError, match="cuda:0 is not available"):
        place("cuda:0")
    with pytest.raises(UsageError, match="found no accelerator"):
        place("auto")


def test_bind_uses_the_accelerator_api_where_it_exists(monkeypatch) -> None:
    calls: list[int] = []
    fake = types.SimpleNamespace(set_device_index=calls.append)
    monkeypatch.setattr(torch, "accelerator", fake, raising=False)
    bind("cuda:1")
    bind("cpu")  # nothing to bind
    assert calls == [1]


def test_bind_falls_back_to_the_vendor_module(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(torch, "accelerator", types.SimpleNamespace(), raising=False)
    monkeypatch.setattr(torch, "npu", types.SimpleNamespace(set_device=calls.append), raising=False)
    bind("npu:2")
    assert calls == [2]


def test_bf16_is_refused_on_a_pre_ampere_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Tesla V100")
    assert "Tesla V100" in precision.missing_support("cuda:0", "bf16-mixed")
    assert precision.missing_support("cuda:0", "fp16-mixed") is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 0))
    assert precision.missing_support("cuda:0", "bf16-mixed") is None
    assert precision.missing_support("cpu", "bf16-mixed") is None
