"""A small real file system for full-disk tests: a tmpfs mounted for one test, and filling it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, size: str, must_unmount: bool = False) -> Iterator[Path]:
    """`path` as a tmpfs of `size` (e.g. "1m") for the block; the test skips without root.

    `must_unmount`: fail if the file system is still in use at the end (a file left open
    or mapped), instead of detaching it lazily.
    """
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    busy = False
    try:
        yield path
    finally:
        busy = subprocess.run(["umount", str(path)], capture_output=True).returncode != 0
        if busy:
            subprocess.run(["umount", "-l", str(path)], check=False)
    assert not (must_unmount and busy), f"{path} was still in use at the end of the test"


def fill(disk: Path) -> Path:
    """Write until the file system takes not one byte more; the filler's path."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        size = 1 << 16
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler
