"""One rank's CPU time for a micro-batch, its model whole vs sharded over a group (FSDP2).

    python bench/group_microbatch.py RANKS SAMPLES WIDTH   # prints JSON on the first rank

Starts RANKS processes over gloo on this host; each times forward+backward of a
micro-batch of SAMPLES samples of examples/mlp.py's model (width WIDTH, float32,
one thread), first unsharded, then sharded as a replica group shards it
(groups/sharding.py). `thread_time` is what an emulated chip paces by its
speed (emulate/pacer.py); bench/groups.py reports both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
WARMUP, REPEATS = 5, 40


def _time_rank(rank: int, ranks: int, port: int, samples: int, width: int) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from mlp import RepeatedMLP

    from phalanx.groups.sharding import shard_model

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=ranks)
    x, y = torch.randn(samples, 32), torch.rand(samples, 1)
    result = {}
    for sharded in (False, True):
        torch.manual_seed(0)
        net = RepeatedMLP(32, width, 1)
        if sharded:
            shard_model(net, dist.group.WORLD)

        def one(net: torch.nn.Module = net) -> None:
            torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()

        for _ in range(WARMUP):
            one()
        dist.barrier()
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for _ in range(REPEATS):
            one()
        key = "sharded" if sharded else "whole"
        result[f"{key}_cpu_ms"] = (time.thread_time() - cpu0) / REPEATS * 1e3
        result[f"{key}_wall_ms"] = (time.perf_counter() - wall0) / REPEATS * 1e3
    if rank == 0:
        print(json.dumps({"ranks": ranks, "samples": samples, "width": width, **result}))
    dist.destroy_process_group()


def measure(ranks: int, samples: int, width: int) -> dict[str, float]:
    """Run the ranks; the first rank's figures."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    argv = [str(store.port), str(samples), str(width)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--rank", str(r), str(ranks), *argv],
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in range(ranks)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("group_microbatch: a rank failed")
    return json.loads(outputs[0].strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1] == "--rank":
        rank, ranks, port, samples, width = (int(a) for a in sys.argv[2:7])
        _time_rank(rank, ranks, port, samples, width)
    else:
        print(json.dumps(measure(*(int(a) for a in sys.argv[1:4]))))
