"""Bad input: one clear line naming the field and the fix, exit code 2, no traceback."""

import subprocess
import sys

import pytest

from tests.fleet_helpers import MLP, ROOT, one_clear_line, phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


_one_clear_line = one_clear_line


def test_nonsense_emulate(tmp_path):
    _one_clear_line(
        phalanx("run", str(MLP), "--out", str(tmp_path), "--emulate", "fast,slow"),
        "--emulate",
        "Fix:",
    )


def test_unknown_fault_kind(tmp_path):
    result = phalanx(
        "run",
        str(MLP),
        "--out",
        str(tmp_path),
        "--emulate",
        "1x2",
        "--fault",
        "meteor:replica=0,step=1",
    )
    _one_clear_line(result, "unknown fault kind 'meteor'", "kill")


def test_fault_key_typo(tmp_path):
    result = phalanx(
        "run",
        str(MLP),
        "--out",
        str(tmp_path),
        "--emulate",
        "1x2",
        "--fault",
        "kill:replica=0,step=1,restart=2",
    )
    _one_clear_line(result, "unknown key 'restart'", "restart_s")


def test_missing_script(tmp_path):
    _one_clear_line(
        phalanx("run", str(tmp_path / "nope.py"), "--out", str(tmp_path / "o")),
        "SCRIPT",
        "does not exist",
    )


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_clear_line(
        phalanx("run", str(MLP), "--out", str(blocker / "run"), "--emulate", "1"),
        "--out",
        "cannot write",
    )


def test_global_batch_smaller_than_the_fleet(tmp_path):
    result = phalanx(
        "run", str(MLP), "--out", str(tmp_path / "run"), "--emulate", "1x4", "--", "--batch", "3"
    )
    _one_clear_line(result, "global_batch_size", "4 replicas")


def test_standalone_script_with_bad_argument_has_no_traceback(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(MLP), "--batch", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    _one_clear_line(result, "global_batch_size", "positive")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["run", "--bogus"], ["--bogus", "is not a flag of phalanx run"]),
        (["run", str(MLP), "--checkpoint-every", "abc"], ["'--checkpoint-every'", "phalanx run --help"]),
        (["plan", "--model", "m.toml"], ["--fleet: is needed", "--emulate SPEC"]),
        (["simulate", "--fleet", "f", "--model", "m", "--seed", "1.5"], ["'--seed'"]),
        (["fleet", "scan", "--bogus"], ["No such option: --bogus", "phalanx fleet scan --help"]),
        (["report"], ["Missing argument", "phalanx report --help"]),
        (["nosuchcommand"], ["No such command", "phalanx --help"]),
    ],
)  # fmt: skip
def test_flag_errors_are_one_line_not_a_box(tmp_path, argv, needles):
    # typer's own errors (unknown option, missing argument, a number that does not
    # parse) follow the same rule as phalanx's: one line, exit 2.
    _one_clear_line(phalanx(*argv, cwd=tmp_path), *needles)


def test_help_is_not_an_error():
    result = phalanx("plan", "--help")
    assert result.returncode == 0, result.stderr
    assert "--fleet" in result.stdout and not result.stderr


def test_resume_when_every_checkpoint_is_damaged(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    args = ["--steps", "4", "--checkpoint-every", "2", "--batch", "16", "--samples", "64"]
    subprocess.run(
        [sys.executable, str(MLP), *args, "--width", "16", "--out", str(run)],
        check=True,
        capture_output=True,
        timeout=280,
    )
    newest, older = sorted((run / "checkpoints").iterdir(), reverse=True)
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF  # tampered: one byte flipped
    (newest / "model.safetensors").write_bytes(bytes(data))
    optimizer = older / "optimizer.safetensors"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # truncated
    files = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}

    result = phalanx(
        "run", str(MLP), "--out", str(run), "--emulate", "1", "--resume", "--quiet",
        "--", *args, "--steps", "6", "--width", "16",
    )  # fmt: skip
    _one_clear_line(
        result,
        "checkpoints: none can be loaded",
        "step_00000004: model.safetensors fails its checksum (truncated or tampered)",
        "step_00000002: optimizer.safetensors fails its checksum",
        "Fix:",
    )
    # Nothing was deleted or rewritten: the damaged checkpoints are there to look at.
    assert {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()} == files


@pytest.mark.parametrize(
    ("devices", "needles"),
    [
        ("cuda:7", ["--devices", "cuda:7 is not available on this host"]),
        ("cpu,tpu:0", ["--devices", "unknown device type 'tpu'"]),
    ],
)
def test_devices_that_do_not_exist(tmp_path, devices, needles):
    result = phalanx("run", str(MLP), "--out", str(tmp_path), "--devices", devices)
    _one_clear_line(result, *needles, "Fix:")
    assert not (tmp_path / "events.jsonl").exists()  # refused before anything ran


def test_devices_with_emulate(tmp_path):
    result = phalanx("run", str(MLP), "--out", str(tmp_path), "--devices", "cpu", "--replicas", "2")
    _one_clear_line(result, "--devices", "cannot be combined")


def test_a_mistyped_flag_is_not_passed_to_the_script(tmp_path):
    result = phalanx("run", str(MLP), "--out", str(tmp_path), "--emualte", "1x2")
    _one_clear_line(result, "--emualte", "did you mean --emulate?")
    assert not (tmp_path / "events.jsonl").exists()  # nothing started


def test_script_flags_before_the_separator_are_refused_after_it_accepted():
    from typer.main import get_command

    from phalanx.cli import _register_all, app
    from phalanx.errors import UsageError
    from phalanx.launch.flag_check import reject_unknown_flags

    _register_all()
    run = get_command(app).commands["run"]
    reject_unknown_flags(run, ["train.py", "--emulate", "1x2", "--timeout-s", "-1", "--", "--lr=1"])
    reject_unknown_flags(run, ["train.py", "--emulate=1x2", "--quiet", "--", "--steps", "9"])
    with pytest.raises(UsageError, match="--steps"):
        reject_unknown_flags(run, ["train.py", "--steps", "9", "--", "--lr", "1"])


def test_the_scripts_own_argument_error_is_shown(tmp_path):
    # argparse in the user's script says what is wrong; "worker r0 rejected its input" did not.
    result = phalanx(
        "run", str(MLP), "--out", str(tmp_path), "--emulate", "1x2", "--", "--steps", "abc"
    )
    _one_clear_line(
        result, "mlp.py rejected its arguments", "--steps: invalid int value: 'abc'", "logs"
    )


def test_a_model_that_renormalises_its_embedding_in_forward_is_refused_on_a_fleet(tmp_path):
    """Before: each replica renormalised the rows of its own samples, and the guard stopped
    the run at step 1 telling the user to resume on more replicas to outvote a bad chip."""
    script = ROOT / "tests" / "e2e" / "max_norm_script.py"
    result = phalanx("run", str(script), "--out", str(tmp_path / "run"), "--emulate", "1,1")
    one_clear_line(result, "emb: nn.Embedding(max_norm=...)", "max_norm=None")
    alone = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "alone")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert alone.returncode == 0 and "final loss" in alone.stdout, alone.stderr
