"""`phalanx lighthouse`: the gated quorum service creates, then reuses, its fleet secret."""

from __future__ import annotations

import os
import stat

import pytest

from tests.fleet_helpers import kill_tree, lighthouse_service, phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_service_creates_then_reuses_its_secret(tmp_path):
    secret = tmp_path / "fleet.secret"
    contents = []
    for run, word in enumerate(("created", "existing")):
        log = tmp_path / f"lighthouse{run}.out"
        service, _ = lighthouse_service(secret, log)
        kill_tree(service)
        text = log.read_text()
        assert f"fleet secret: {secret} ({word};" in text
        assert "lighthouse serving at http://127.0.0.1:" in text
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        contents.append(secret.read_text())
    assert contents[0] == contents[1]  # a restarted service keeps its fleet


def test_service_refuses_a_loose_secret_file(tmp_path):
    secret = tmp_path / "fleet.secret"
    secret.write_text("ab" * 32 + "\n")
    os.chmod(secret, 0o640)
    result = phalanx(
        "lighthouse", "--bind", "127.0.0.1:0", "--secret-file", str(secret), timeout_s=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"chmod 600 {secret}" in lines[0]


def test_an_address_it_cannot_bind_is_one_line_not_a_traceback(tmp_path):
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host.
    result = phalanx(
        "lighthouse", "--bind", "192.0.2.1:29510", "--secret-file", str(tmp_path / "secret"),
        timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "--bind: cannot be bound" in result.stderr and "Fix:" in result.stderr
