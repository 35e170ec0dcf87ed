"""Help texts show TOML table names as written (rich markup used to eat them)."""

import pytest

from phalanx.cli import main


@pytest.mark.parametrize(
    ("command", "shown"),
    [(["plan", "--help"], "[[class]]"), (["qualify", "--help"], "[device.qualification]")],
)
def test_help_shows_toml_table_names(command, shown, capsys):
    with pytest.raises(SystemExit) as done:
        main(command)
    assert done.value.code == 0
    assert shown in capsys.readouterr().out


def _heavy_modules_after(imports: str) -> list[str]:
    """Which of torch, torchft and matplotlib a fresh interpreter holds after `imports`."""
    import subprocess
    import sys

    code = f"import sys\n{imports}\n"
    code += "print(','.join(m for m in ('torch', 'torchft', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_parsing_a_command_imports_no_torch():
    """Every `phalanx` command is parsed before torch is needed (2.5 s of import on a
    quiet core): a launcher, a usage error or --help must not pay for it."""
    assert _heavy_modules_after("import phalanx.cli\nphalanx.cli._register_all()") == []


def test_a_worker_imports_no_matplotlib():
    # Reports draw plots; a worker (the trainer, the own-loop API, the data readers) never
    # does, and matplotlib's import would add to every start and restart.
    imports = (
        "import phalanx, phalanx.runtime.trainer, phalanx.runtime.own_loop, "
        "phalanx.data.loader_workers, phalanx.launch.warm_spare"
    )
    assert "matplotlib" not in _heavy_modules_after(imports)
