"""`make gpu-check` without a GPU: it says so and checks nothing (CI has no GPU)."""

from __future__ import annotations

from bench import gpu_check


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_check, "find_gpu", lambda: None)
    out = tmp_path / "gpu-check.json"
    monkeypatch.setattr("sys.argv", ["gpu_check", "--out", str(out)])
    assert gpu_check.main() == 0
    assert "no GPU on this host" in capsys.readouterr().out
    assert not out.exists()
