"""pytest plugin for `make check-oldest-python`: a test that needs a package left out
there (torch, torchft, matplotlib, safetensors) is skipped, not failed.

The floor's venv has no torch (tests/unit files listed in oldest_python.TESTS are
torch-free as files, but a test added to one of them later may need torch). Such a
test is reported as skipped with the missing package's name; every other failure
stays a failure. In-process imports raise ModuleNotFoundError; a child process that
imports one fails with CalledProcessError whose stderr names the module.
"""

from __future__ import annotations

import subprocess

import pytest
from oldest_python import LEFT_OUT  # .ci/ is on the path of the check's pytest run


def _left_out(error: BaseException) -> str | None:
    if isinstance(error, ModuleNotFoundError) and error.name:
        root = error.name.split(".")[0]
        return root if root in LEFT_OUT else None
    if isinstance(error, subprocess.CalledProcessError):
        text = str(error.stderr or "") + str(error.output or "")
        for name in LEFT_OUT:
            if f"No module named '{name}" in text:
                return name
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not report.failed:
        return
    missing = _left_out(call.excinfo.value)
    if missing is not None:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"needs {missing} (left out)")
