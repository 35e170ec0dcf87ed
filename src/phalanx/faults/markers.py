"""Once-per-run fault markers: a fault fires only after its marker is on disk.

The marker (`RUN_DIR/.faults/KEY`, created with O_EXCL) is what makes a fault
fire once per run, across worker restarts and `--resume`. Used by the workers'
`FaultInjector` and by the launcher (lighthouse faults); no torch here.

On a full disk the marker cannot be created, and the fault does not fire
(one warning says so): firing without a marker could fire it a second time
after a restart or a resume, which would make the run something else than
the one asked for. A fault skipped this way is tried again the next time
its step comes round (a retried step), once space is free.
"""

from __future__ import annotations

import os
from pathlib import Path

from phalanx.observe.safe_write import write_or_warn

MARKER_DIR = ".faults"


def claim_once(run_dir: str | Path, key: str) -> bool:
    """True for exactly one caller per run and `key`; False if claimed before or not writable."""
    marker_dir = Path(run_dir) / MARKER_DIR
    fresh: list[bool] = []

    def create() -> None:
        marker_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(marker_dir / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        fresh.append(True)

    written = write_or_warn(
        f"the marker of fault {key}",  # one line per fault: each one skipped is news
        marker_dir / key,
        create,
        "the fault is not injected (a fault fires only once its marker is on disk, "
        "so it can never fire twice)",
        "free space there; the fault fires if its step comes round again",
    )
    return written and bool(fresh)
