"""examples/hf_own_loop.py: a transformers GPT-2 built from a config, the user's own loop,
2 emulated chips and a kill, equal to one process (issue 18)."""

import pytest

from tests.fleet_helpers import (
    ROOT,
    events,
    independent_data_check,
    local_run,
    max_param_diff,
    phalanx,
)

pytest.importorskip("transformers")  # the `hf` extra; `make setup` installs it

pytestmark = [pytest.mark.dist, pytest.mark.timeout(400)]

EXAMPLE = ROOT / "examples" / "hf_own_loop.py"
ARGS = ["--dtype", "float64", "--steps", "16", "--checkpoint-every", "4"]


def test_a_transformers_model_in_its_own_loop_is_exact_across_a_kill(tmp_path):
    reference = local_run(EXAMPLE, tmp_path / "reference", ARGS)
    run = tmp_path / "run"
    result = phalanx(
        "run", str(EXAMPLE), "--out", str(run), "--emulate", "1,0.5", "--timeout-s", "2",
        "--quiet", "--fault", "kill:replica=1,step=6,restart_s=0", "--", *ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not exact" not in result.stdout + result.stderr  # keyed dropout covers GPT-2's
    # Restarted at once: the survivor finishes the last steps in about a second (it computes
    # while the lighthouse decides), and a restart due later would find the fleet done.
    assert any(e["kind"] == "worker_restart" for e in events(run))
    assert max_param_diff(run, reference) < 1e-9
    assert independent_data_check(run, num_samples=_windows(reference)) == (0, 0)


def _windows(run_dir):
    import json

    for line in (run_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["kind"] == "worker_start":
            return event["num_samples"]
    raise AssertionError("no worker_start event")
