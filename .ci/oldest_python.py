"""`make check-oldest-python`: what can be proved on the oldest Python pyproject.toml allows.

The floor is read from `requires-python` (">=3.10"). The full suite needs torch, and
the only CPU wheel of torch 2.13.0 on this machine is for Python 3.11 (PyPI's would
be a multi-GB CUDA build), so on the floor this checks, in a throwaway venv with the
small dependencies of phalanx's torch-free parts and phalanx itself (--no-deps):

1. every file of src/, tests/, bench/ and examples/ byte-compiles;
2. every phalanx module imports, or fails only for a package left out here (torch,
   torchft, matplotlib, safetensors): no 3.11-only import such as tomllib or
   datetime.UTC at import time;
3. the installed `phalanx` command parses (`--help`) and plans a fleet from TOML;
4. the torch-free unit tests in TESTS pass (fleet files and `run --config` through
   toml_compat's tomli, the planner, the admission gate's asyncio, ...).

No Python of the floor's version: one line, skipped. pip cannot install the small
dependencies (no network, an index down): one line, skipped. Never fails for either.
Runs with any Python that has tomllib (the host's python3); about 30-45 s.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "check-oldest-python:"

# Dependencies not installed on the floor: torch (no CPU wheel for it here; an
# unpinned one is a multi-GB CUDA build), what needs torch (torchft, safetensors'
# torch API) and matplotlib (plots only, and large).
LEFT_OUT = ("torch", "torchft", "matplotlib", "safetensors")
# From the dev extra: what the tests below need.
TEST_TOOLS = ("pytest", "pytest-timeout", "hypothesis")
# Nothing installed here may pull these in: pip fails instead of downloading them.
NEVER = "torch<0\ntorchft<0\n"

# Unit tests that need no torch (nor anything else in LEFT_OUT). A new torch-free test
# file can be added here; the main suite runs every test on the newest Python.
TESTS = [
    "tests/unit/test_admission.py",
    "tests/unit/test_cli_help.py",
    "tests/unit/test_devices_fleet_file.py",
    "tests/unit/test_devices_telemetry.py",
    "tests/unit/test_energy_operating_points.py",
    "tests/unit/test_energy_summary.py",
    "tests/unit/test_error_line.py",
    "tests/unit/test_fault_and_emulate_specs.py",
    "tests/unit/test_fleet_faults.py",
    "tests/unit/test_fleet_view_memory.py",
    "tests/unit/test_fuzz_inputs.py",
    "tests/unit/test_group_layout.py",
    "tests/unit/test_guard_summary.py",
    "tests/unit/test_layout_file.py",
    "tests/unit/test_layout_plan.py",
    "tests/unit/test_observe_dashboard.py",
    "tests/unit/test_observe_fleet_view.py",
    "tests/unit/test_observe_live.py",
    "tests/unit/test_pacer.py",
    "tests/unit/test_plan_cli.py",
    "tests/unit/test_plan_cost.py",
    "tests/unit/test_plan_device_fleet.py",
    "tests/unit/test_plan_groups.py",
    "tests/unit/test_plan_parse.py",
    "tests/unit/test_plan_planner.py",
    "tests/unit/test_plan_run_file.py",
    "tests/unit/test_power_control.py",
    "tests/unit/test_run_config_file.py",
    "tests/unit/test_run_config_keys.py",
    "tests/unit/test_shares.py",
    "tests/unit/test_sim_engine.py",
    "tests/unit/test_sim_predict_run.py",
]
# Tests in those files that need torch or torchft after all (a prefix deselects all
# of a test's parameters).
DESELECT = [
    # tests.fleet_helpers imports safetensors.torch
    "tests/unit/test_admission.py::test_cli_maps_a_loose_secret_file_to_exit_2",
    # torchft's lighthouse
    "tests/unit/test_admission.py::test_gated_lighthouse_is_restarted_behind_the_same_gate",
    "tests/unit/test_fleet_faults.py::test_a_lighthouse_fault_needs_the_local_lighthouse",
    # matplotlib
    "tests/unit/test_plan_cli.py::test_simulate_writes_json_and_plots",
    # `phalanx run`, `fleet scan` and `report` import torch once their flags are parsed
    "tests/unit/test_fuzz_inputs.py::test_cli_arguments_never_give_a_traceback[run]",
    "tests/unit/test_fuzz_inputs.py::test_cli_arguments_never_give_a_traceback[fleet scan]",
    "tests/unit/test_fuzz_inputs.py::test_cli_arguments_never_give_a_traceback[report]",
    "tests/unit/test_fuzz_inputs.py::test_cli_examples_exit_2",
    "tests/unit/test_layout_file.py::test_phalanx_run_refuses_a_broken_plan_in_one_line_exit_2",
]

LEAKED = "import importlib.util as u; print(*(m for m in ('torch', 'torchft') if u.find_spec(m)))"

# Run inside the floor's venv: import every module of the installed phalanx.
IMPORT_EVERY_MODULE = r"""
import importlib, sys
from pathlib import Path
import phalanx
left_out = set(sys.argv[1].split(","))
base = Path(phalanx.__file__).parent
names = sorted(
    ".".join(("phalanx",) + p.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
    for p in base.rglob("*.py") if p.stem != "__main__"
)
ok, absent, errors = 0, {}, []
for name in names:
    try:
        importlib.import_module(name)
        ok += 1
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        if top in left_out:
            absent[top] = absent.get(top, 0) + 1
        else:
            errors.append(f"{name}: ModuleNotFoundError: {err}")
    except BaseException as err:
        errors.append(f"{name}: {type(err).__name__}: {err}")
need = ", ".join(f"{k} {v}" for k, v in sorted(absent.items()))
print(f"{ok} of {len(names)} modules import; {sum(absent.values())} need a package left out ({need})")
for line in errors:
    print("  ERROR " + line)
sys.exit(1 if errors else 0)
"""


class Skip(Exception):
    """The check cannot run here (no interpreter, no network): say so, pass."""


class Failed(Exception):
    """The floor is broken: say where, fail."""


def say(text: str) -> None:
    print(f"{TAG} {text}", flush=True)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def read_pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            why = f"{sys.executable} has neither tomllib nor tomli to read pyproject.toml"
            raise Skip(why) from None
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def floor_of(project: dict) -> tuple[int, int]:
    found = re.search(r">=\s*(\d+)\.(\d+)", project.get("requires-python", ""))
    if found is None:
        raise Failed(
            f"cannot read a floor from requires-python = {project.get('requires-python')!r}"
        )
    return int(found.group(1)), int(found.group(2))


def find_python(floor: tuple[int, int]) -> tuple[str, str]:
    """An interpreter of the floor's major.minor and its full version, or Skip."""
    x_y = f"{floor[0]}.{floor[1]}"
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [
        os.environ.get("PHALANX_OLDEST_PYTHON"),
        shutil.which(f"python{x_y}"),
        *sorted(glob.glob(f"{pyenv}/versions/{x_y}.*/bin/python"), reverse=True),
        f"/usr/bin/python{x_y}",
        f"/usr/local/bin/python{x_y}",
        *sorted(
            glob.glob(str(Path.home() / f".local/share/uv/python/cpython-{x_y}.*/bin/python{x_y}"))
        ),
    ]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = out.stdout.strip()
        if out.returncode == 0 and version.rsplit(".", 1)[0] == x_y:
            return candidate, version
    raise Skip(
        f"no Python {x_y} found (PATH, pyenv, /usr/bin, uv); "
        f"PHALANX_OLDEST_PYTHON=/path/to/python{x_y} names one"
    )


def requirement_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return found.group(1).lower().replace("_", "-") if found else ""


def small_dependencies(project: dict) -> list[str]:
    """pyproject's dependencies without LEFT_OUT, with their version ranges and markers."""
    dependencies = [d for d in project["dependencies"] if requirement_name(d) not in LEFT_OUT]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    return dependencies + [d for d in dev if requirement_name(d) in TEST_TOOLS]


def run(argv: list, *, timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw
    )


def pip_install(python: Path, args: list, timeout: float, what: str, env: dict) -> None:
    """pip install; trouble reaching an index is a Skip, never a failure."""
    argv = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    argv += ["--timeout", "10", "--retries", "1", *args]
    try:
        done = run(argv, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise Skip(f"pip did not install {what} within {timeout:g} s (network?)") from None
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")]
        last = errors[-1] if errors else tail(done.stderr, 1)
        raise Skip(f"pip could not install {what} (network or index trouble?): {last}")


def check(python: str, version: str, project: dict, tmp: Path) -> None:
    started = time.monotonic()
    say(f"Python {version} ({python}), the floor of requires-python {project['requires-python']!r}")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # nothing written into the tree
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp / "hypothesis")
    env["PIP_NO_INPUT"] = "1"

    venv = tmp / "venv"
    made = run([python, "-m", "venv", venv], timeout=120, env=env)
    if made.returncode != 0:
        raise Skip(f"{python} cannot create a venv: {tail(made.stderr, 1)}")
    py = venv / "bin" / "python"
    never = tmp / "never.txt"
    never.write_text(NEVER)
    small = small_dependencies(project)
    pip_install(py, ["-c", never, *small], 45, "the small dependencies", env)
    # phalanx itself from a copy, so the build writes nothing (build/, egg-info) here
    copy = tmp / "phalanx-src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", copy / "src", ignore=ignore)
    pip_install(py, ["-c", never, "--no-deps", copy], 45, "phalanx (--no-deps)", env)
    leaked = run([py, "-c", LEAKED], timeout=60, env=env).stdout.split()
    if leaked:
        raise Failed(f"{' '.join(leaked)} got into the {version} venv: nothing may install it here")
    names = " ".join(requirement_name(d) for d in small)
    say(f"venv: {names}, phalanx --no-deps ({time.monotonic() - started:.0f} s)")

    step = time.monotonic()
    dirs = [d for d in ("src", "tests", "bench", "examples") if (ROOT / d).is_dir()]
    compiled = run([py, "-m", "compileall", "-q", *dirs], timeout=180, env=env, cwd=ROOT)
    if compiled.returncode != 0:
        raise Failed(f"{' '.join(dirs)} do not byte-compile on {version}:\n{tail(compiled.stdout)}")
    say(f"compileall {' '.join(dirs)}: ok ({time.monotonic() - step:.1f} s)")

    step = time.monotonic()
    imports = run(
        [py, "-c", IMPORT_EVERY_MODULE, ",".join(m.replace("-", "_") for m in LEFT_OUT)],
        timeout=180, env=env, cwd=tmp,
    )  # fmt: skip
    if imports.returncode != 0:
        raise Failed(f"imports on {version}: {tail(imports.stdout + imports.stderr)}")
    say(f"imports: {imports.stdout.strip()} ({time.monotonic() - step:.1f} s)")

    phalanx = venv / "bin" / "phalanx"
    fleet, model = ROOT / "examples/fleets/mixed_10k.toml", ROOT / "examples/models/gpt_1b.toml"
    for argv in ([phalanx, "--help"], [phalanx, "plan", "--fleet", fleet, "--model", model]):
        step = time.monotonic()
        done = run(argv, timeout=120, env=env, cwd=tmp)
        shown = " ".join(["phalanx"] + [str(a).removeprefix(f"{ROOT}/") for a in argv[1:]])
        if done.returncode != 0:
            output = tail(done.stdout + done.stderr)
            raise Failed(f"`{shown}` on {version} exited {done.returncode}:\n{output}")
        say(f"`{shown}`: ok ({time.monotonic() - step:.1f} s)")

    step = time.monotonic()
    argv = [py, "-m", "pytest", "-p", "no:cacheprovider", "--basetemp", tmp / "pytest"]
    # A test added later that needs a left-out package is skipped, not failed (the
    # plugin names the package); DESELECT lists the ones known now.
    argv += ["-p", "left_out_skips", "-rs", *TESTS]
    for node in DESELECT:
        argv += ["--deselect", node]
    tested = run(argv, timeout=300, env={**env, "PYTHONPATH": str(ROOT / ".ci")}, cwd=ROOT)
    if tested.returncode != 0:
        raise Failed(
            f"torch-free unit tests on {version}:\n{tail(tested.stdout + tested.stderr, 60)}"
        )
    summary = tail(tested.stdout, 1).strip("= ")
    say(f"pytest ({len(TESTS)} torch-free files): {summary} ({time.monotonic() - step:.0f} s)")
    say(f"passed on Python {version} in {time.monotonic() - started:.0f} s")


def main() -> int:
    tmp = None
    try:
        project = read_pyproject()["project"]
        floor = floor_of(project)
        python, version = find_python(floor)
        tmp = Path(tempfile.mkdtemp(prefix="phalanx-oldest-python-"))
        check(python, version, project, tmp)
        return 0
    except Skip as why:
        say(f"SKIPPED: {why}")
        return 0
    except Failed as why:
        say(f"FAILED: {why}")
        return 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
