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
