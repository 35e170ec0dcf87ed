"""The feed: a user's collate_fn, reader processes that read ahead, and no orphans."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from phalanx.data.build import make_feed
from phalanx.errors import UsageError

CPU = torch.device("cpu")


class Augmented(torch.utils.data.Dataset):
    """Noise drawn from torch's generator in __getitem__: as image augmentations do."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.full((3,), float(i)) + torch.rand(3), "i": i}


def _feed(workers: int, **kw):
    return make_feed(Augmented(), 3, 8, 3, kw.pop("collate_fn", None), workers, None, CPU)


def _flatten(batches):
    return [(b.position, b.count, b.batch["x"].tolist(), b.batch["i"].tolist()) for b in batches]


def test_readers_give_the_same_batches_as_the_training_process():
    inline = _feed(0)
    readers = _feed(2)
    readers.start()
    try:
        for start, end in [(0, 5), (5, 8), (8, 16), (37, 45)]:
            assert _flatten(readers.take(start, end)) == _flatten(inline.take(start, end))
    finally:
        readers.close()


def test_the_guessed_next_slices_are_read_ahead_and_wrong_guesses_are_dropped():
    feed = _feed(2)
    feed.start()
    try:
        first = feed.take(0, 5)
        feed.read_ahead(8, 13, 8)  # two workers: this slice and the one a batch later
        assert [key for key, _ in feed._ahead] == [(8, 13), (16, 21)]
        assert [b.position for b in feed.take(8, 13)] == [8, 11]  # micro-batches of 3
        feed.read_ahead(16, 21, 8)  # keeps (16, 21), adds (24, 29)
        assert [key for key, _ in feed._ahead] == [(16, 21), (24, 29)]
        assert (feed.read_ahead_hits, feed.read_ahead_misses) == (1, 0)
        feed.take(16, 19)  # the share changed: the guesses are dropped, the slice read now
        assert (feed.read_ahead_hits, feed.read_ahead_misses) == (1, 2)
        assert not feed._ahead
        assert first[0].count == 3 and first[1].count == 2
    finally:
        feed.close()


def test_a_user_collate_fn_builds_the_batches():
    def collate(samples):
        return {"x": torch.stack([s["x"] for s in samples]).sum(0), "i": [s["i"] for s in samples]}

    feed = make_feed(Augmented(), 0, 8, None, collate, 1, None, CPU)
    feed.start()
    try:
        (micro,) = feed.take(0, 4)
        assert micro.batch["x"].shape == (3,) and len(micro.batch["i"]) == 4
    finally:
        feed.close()


def test_an_error_in_a_reader_reaches_the_training_process_whole():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i >= 0 and self.armed:
                raise UsageError("dataset[i]", "is broken", "fix the dataset")
            return torch.zeros(1)

    data = Broken()
    data.armed = False
    feed = make_feed(data, 0, 4, None, None, 1, None, CPU)
    data.armed = True  # the readers fork with it armed
    feed.start()
    try:
        with pytest.raises(UsageError, match="dataset\\[i\\]: is broken"):
            feed.take(0, 4)
    finally:
        feed.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_loader_workers_must_be_a_count(bad):
    with pytest.raises(UsageError, match="loader_workers"):
        make_feed(TensorDataset(torch.zeros(4)), 0, 4, None, None, bad, None, CPU)


@pytest.mark.timeout(120)
def test_readers_die_with_a_killed_replica(tmp_path):
    # A replica killed with SIGKILL cannot stop its readers: they must go by themselves.
    script = textwrap.dedent(
        """
        import os, sys, torch
        from torch.utils.data import TensorDataset
        from phalanx.data.build import make_feed
        feed = make_feed(TensorDataset(torch.zeros(8)), 0, 4, None, None, 2, None, torch.device("cpu"))
        feed.start()
        children = [p.pid for p in feed._workers._pool._processes.values()]
        print(" ".join(map(str, children)), flush=True)
        sys.stdin.read()  # until killed
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as proc:  # fmt: skip
        children = [int(p) for p in proc.stdout.readline().split()]
        assert len(children) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the process table: the kernel has no wait-for-non-child
    assert not any(_alive(pid) for pid in children)


def test_readers_outlive_a_sigterm_to_the_replicas_process_group():
    # A pre-emption's SIGTERM reaches the replica's whole process group (phalanx run,
    # Slurm): the replica reads its step to the end, checkpoints and leaves.
    feed = _feed(2)
    feed.start()
    try:
        before = _flatten(feed.take(0, 8))
        for pid in [p.pid for p in feed._workers._pool._processes.values()]:
            os.kill(pid, signal.SIGTERM)
        assert _flatten(feed.take(0, 8)) == before
        assert _flatten(feed.take(8, 16)) == _flatten(_feed(0).take(8, 16))
    finally:
        feed.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_for_an_accelerator_are_pinned_and_a_cpu_chips_are_not(monkeypatch, workers):
    # No accelerator here, so pinning itself is recorded rather than done: every tensor of
    # the collated batch (nested in a dict) is pinned once, in the training process.
    pinned = []

    def pin(tensor):
        pinned.append(tuple(tensor.shape))
        return tensor

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    for device, expect_pinned in ((torch.device("cuda", 0), True), (CPU, False)):
        pinned.clear()
        feed = make_feed(Augmented(), 3, 8, 3, None, workers, None, device)
        feed.start()
        try:
            batches = feed.take(0, 5)  # micro-batches of 3 and 2
        finally:
            feed.close()
        assert [b.count for b in batches] == [3, 2]
        assert pinned == ([(3, 3), (3,), (2, 3), (2,)] if expect_pinned else [])
    # The user can refuse it even for an accelerator.
    pinned.clear()
    make_feed(Augmented(), 3, 8, 3, None, 0, False, torch.device("cuda", 0)).take(0, 5)
    assert pinned == []
