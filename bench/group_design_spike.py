"""Design spike for issue 15: replica groups as HSDP with virtual shards.

Not the runtime: the experiment that chose its design (docs/groups.md, "Training a
group"). FSDP2 (`fully_shard`, gloo, CPU) shards the model inside a group; torchft
replicates across groups rank by rank (rank j of every group holds the same slice,
and its Manager allreduces with rank j of the others). Every group has the same
number S of ranks; a chip hosts as many ranks as its memory allows, so a group of
unequal chips (a 2-unit and a 1-unit chip) and a group of three 1-unit chips share
one shard layout. A chip of group 1 is killed mid-run: its group goes down as one,
group 0 retries the step alone, group 1 restarts and heals rank by rank from group
0. Both end within float64 rounding of one process.

    python -m bench.group_design_spike [--out bench/results/group-design-spike.json]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

S = 3  # shards (ranks) per group, fleet-wide
B = 24  # global batch
STEPS = 80
N = 240  # samples
KILL = (1, 1, 10)  # group, rank, step: the chip hosting that rank dies (all its ranks)
# group -> chips -> ranks hosted. Group 0: a 2-unit chip (ranks 0,1) + a 1-unit chip.
LAYOUT = {0: [[0, 1], [2]], 1: [[0], [1], [2]]}


def data():
    import torch

    g = torch.Generator().manual_seed(7)
    x = torch.randn(N, 64, generator=g, dtype=torch.float64)
    y = torch.randn(N, 1, generator=g, dtype=torch.float64)
    return x, y


def build():
    import torch

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    blocks = [torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh()) for _ in range(4)]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(64, 1))


def batch(step, lo, hi, x, y):
    idx = [(step * B + i) % N for i in range(lo, hi)]
    return x[idx], y[idx]


def split(total, parts, index):
    base, extra = divmod(total, parts)
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def reference(out):
    import torch

    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = data()
    for step in range(STEPS):
        xb, yb = batch(step, 0, B, x, y)
        (((model(xb) - yb) ** 2).sum() / B).backward()
        opt.step()
        opt.zero_grad()
    torch.save(model.state_dict(), out)


def member(group, rank, store_port, lighthouse, out, kill_step, fleet_port):
    import torch
    import torch.distributed as dist
    from torch.distributed import PrefixStore, ReduceOp, TCPStore
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torchft.manager import Manager
    from torchft.process_group import ProcessGroupGloo

    store = TCPStore("127.0.0.1", store_port, is_master=False, timeout=timedelta(seconds=30))
    dist.init_process_group(
        "gloo",
        store=PrefixStore("fsdp", store),
        rank=rank,
        world_size=S,
        timeout=timedelta(seconds=10),
    )
    model = build()
    mesh = init_device_mesh("cpu", (S,))
    for block in model[:4]:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in [*model[:4], model]:
        m.set_gradient_divide_factor(1.0)  # a sum, as phalanx's weighted losses need
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)

    def state_dict():
        opt_state = {
            i: {k: (v.to_local() if isinstance(v, DTensor) else v) for k, v in opt.state[p].items()}
            for i, p in enumerate(params)
            if p in opt.state
        }
        return {"params": [p.to_local() for p in params], "opt": opt_state}

    def load_state_dict(sd):
        with torch.no_grad():
            for p, t in zip(params, sd["params"]):
                p.to_local().copy_(t)
        for i, st in sd["opt"].items():
            p = params[int(i)]
            opt.state[p] = {
                k: (
                    DTensor.from_local(
                        v.clone(), p.device_mesh, p.placements, shape=p.shape, stride=p.stride()
                    )
                    if torch.is_tensor(v) and v.dim() > 0
                    else v.clone()
                )
                for k, v in st.items()
            }

    manager = Manager(
        pg=ProcessGroupGloo(timeout=timedelta(seconds=5)),
        load_state_dict=load_state_dict,
        state_dict=state_dict,
        min_replica_size=1,
        use_async_quorum=False,
        timeout=timedelta(seconds=5),
        rank=rank,
        world_size=S,
        store_addr="127.0.0.1",
        store_port=store_port,
        lighthouse_addr=lighthouse,
        replica_id=f"g{group}",
        heartbeat_interval=timedelta(milliseconds=100),
    )
    x, y = data()
    if kill_step >= 0:  # first start: the whole fleet begins together (a restart does not wait)
        fleet = TCPStore("127.0.0.1", fleet_port, is_master=False, timeout=timedelta(seconds=60))
        fleet.add("ready", 1)
        fleet.wait(["go"])
    log = open(out / f"g{group}r{rank}.jsonl", "a")  # noqa: SIM115
    while manager.current_step() < STEPS:
        manager.start_quorum()
        step = manager.current_step()
        n, gi = manager.num_participants(), manager.participating_rank()
        glo, ghi = split(B, n, gi)
        rlo, rhi = split(ghi - glo, S, rank)
        xb, yb = batch(step, glo + rlo, glo + rhi, x, y)
        t0 = time.perf_counter()
        loss = ((model(xb) - yb) ** 2).sum() / B
        if (group, rank, step) == (KILL[0], KILL[1], kill_step):
            os.kill(os.getpid(), signal.SIGKILL)
        loss.backward()
        t1 = time.perf_counter()
        flat = torch.cat([p.grad.to_local().reshape(-1) for p in params])
        manager.allreduce(flat, reduce_op=ReduceOp.SUM).wait()
        t2 = time.perf_counter()
        ok = manager.should_commit()
        if ok:
            offset = 0
            for p in params:
                local = p.grad.to_local()
                local.copy_(flat[offset : offset + local.numel()].view_as(local))
                offset += local.numel()
            opt.step()
        opt.zero_grad()
        log.write(
            json.dumps(
                {
                    "step": step,
                    "n": n,
                    "gi": gi,
                    "ok": ok,
                    "compute_s": t1 - t0,
                    "reduce_s": t2 - t1,
                    "shard_numel": flat.numel(),
                }
            )
            + "\n"
        )
        log.flush()
    full = {k: v.full_tensor() for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save(full, out / f"g{group}.pt")
    manager.shutdown(wait=False)
    os._exit(0)


def main():
    import argparse
    import tempfile

    import torch
    from torch.distributed import TCPStore
    from torchft.coordination import LighthouseServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/results/group-design-spike.json")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="group-spike-"))
    reference(out / "ref.pt")
    lh = LighthouseServer(
        bind="[::]:0", min_replicas=1, join_timeout_ms=200, heartbeat_timeout_ms=1000
    )
    stores, procs = {}, {}
    fleet = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)

    def start(group, incarnation, kill_step):
        stores[group] = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        procs[group] = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "member",
                    str(group),
                    str(r),
                    str(stores[group].port),
                    lh.address(),
                    str(out),
                    str(kill_step),
                    str(fleet.port),
                ],
                stdout=open(out / f"g{group}-inc{incarnation}.log", "w"),  # noqa: SIM115 (the child owns it)
                stderr=subprocess.STDOUT,
            )
            for r in range(S)
        ]

    t0 = time.time()
    for g in LAYOUT:
        start(g, 0, KILL[2])
    while fleet.add("ready", 0) < S * len(LAYOUT):
        time.sleep(0.05)
    fleet.set("go", "1")
    restarted = False
    while any(p.poll() is None for ps in procs.values() for p in ps) or not restarted:
        time.sleep(0.2)
        ps = procs[KILL[0]]
        if not restarted and any(p.poll() not in (None, 0) for p in ps):
            for p in ps:  # the group goes down as one
                if p.poll() is None:
                    p.kill()
            for p in ps:
                p.wait()
            print(
                f"group {KILL[0]} down at {time.time() - t0:.1f} s: codes {[p.returncode for p in ps]}",
                flush=True,
            )
            start(KILL[0], 1, -1)
            restarted = True
    wall_s = time.time() - t0
    ref = torch.load(out / "ref.pt")
    total = sum(v.numel() for v in ref.values())
    result = {
        "shards_per_group": S,
        "steps": STEPS,
        "global_batch": B,
        "params": total,
        "killed": {"group": KILL[0], "rank": KILL[1], "step": KILL[2]},
        "wall_s": round(wall_s, 1),
        "exit_codes": {g: [p.returncode for p in ps] for g, ps in procs.items()},
        "groups": {},
    }
    for g, chips in LAYOUT.items():
        got = torch.load(out / f"g{g}.pt")
        rows = {
            r: [json.loads(line) for line in (out / f"g{g}r{r}.jsonl").read_text().splitlines()]
            for r in range(S)
        }
        shard = {r: rows[r][0]["shard_numel"] for r in range(S)}
        # weights + gradients + two AdamW moments, float64: 32 bytes per element held
        chip_bytes = [sum(shard[r] for r in ranks) * 32 for ranks in chips]
        result["groups"][g] = {
            "chips_ranks": chips,
            "chip_state_bytes": chip_bytes,
            "unsharded_state_bytes": total * 32,
            "max_abs_diff_vs_one_process": max(
                (got[k] - v).abs().max().item() for k, v in ref.items()
            ),
            "steps_logged_rank0": len(rows[0]),
            "alone_steps": sorted({e["step"] for e in rows[0] if e["n"] == 1 and e["ok"]}),
            "failed_attempts": sorted(e["step"] for e in rows[0] if not e["ok"]),
        }
        print(
            f"group {g}: chips hold {chip_bytes} of {total * 32} state bytes; "
            f"max |param - one process| = {result['groups'][g]['max_abs_diff_vs_one_process']:.2e}"
        )
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    lh.shutdown()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "member":
        g, r, port, lh, out, ks, fp = sys.argv[2:9]
        member(int(g), int(r), int(port), lh, Path(out), int(ks), int(fp))
    else:
        main()
