"""The dashboard server in-process: page, fragment, /api/state and /metrics on 127.0.0.1."""

import itertools
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phalanx.errors import UsageError
from phalanx.observe.dashboard import Dashboard, start_dashboard
from phalanx.observe.events import read_events
from phalanx.observe.fleet_view import FleetView

pytestmark = pytest.mark.timeout(30)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"


@pytest.fixture
def dashboard():
    board = Dashboard(0)
    yield board
    board.close()


def _get(board: Dashboard, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(board.url.rstrip("/") + path, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _view_with_telemetry() -> FleetView:
    view = FleetView().apply_all(read_events(RECORDED))
    view.apply(
        {
            "t": view.last_t,
            "kind": "telemetry",
            "replica": "r0",
            "source": "r0",
            "temperature_c": 66.5,
            "power_w": 180.0,
            "energy_j": 5400.0,
        }
    )
    return view


def test_binds_loopback_only_on_an_os_port(dashboard):
    host, port = dashboard._server.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    assert dashboard.url == f"http://127.0.0.1:{port}/"


def test_page_before_any_event_says_it_waits(dashboard):
    status, kind, body = _get(dashboard, "/")
    assert status == 200 and kind.startswith("text/html")
    assert "waiting for the first events" in body


def test_page_state_and_fragment_show_the_fleet(dashboard):
    dashboard.publish(_view_with_telemetry(), force=True)
    _, _, page = _get(dashboard, "/")
    for name in ("r0", "r1", "r2"):
        assert f'data-replica="{name}"' in page
    assert "60/60" in page and "setInterval" in page  # the page refreshes itself
    _, kind, state_text = _get(dashboard, "/api/state")
    state = json.loads(state_text)
    assert kind == "application/json"
    assert state["step"] == 60 and state["faults_survived"] == 2
    assert [r["name"] for r in state["replicas"]] == ["r0", "r1", "r2"]
    _, _, fragment = _get(dashboard, "/fragment")
    assert "<html" not in fragment and 'data-replica="r2"' in fragment
    assert _get(dashboard, "/nope")[0] == 404


def test_metrics_parse_with_prometheus_parser(dashboard):
    dashboard.publish(_view_with_telemetry(), force=True)
    status, kind, text = _get(dashboard, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, sample.labels.get("replica"))] = sample.value
    assert samples[("phalanx_steps_committed_total", None)] == 60
    state = dashboard.state
    for row in state["replicas"]:
        name = row["name"]
        assert samples[("phalanx_replica_steps_committed_total", name)] == row["steps"]
        assert samples[("phalanx_replica_samples_total", name)] == row["samples"]
        assert samples[("phalanx_replica_heals_total", name)] == row["heals"]
        assert ("phalanx_replica_share_samples", name) in samples
    assert samples[("phalanx_replica_faults_total", "r1")] == 1
    assert samples[("phalanx_replica_temperature_celsius", "r0")] == 66.5
    assert samples[("phalanx_replica_power_watts", "r0")] == 180.0
    assert samples[("phalanx_replica_energy_joules_total", "r0")] == 5400.0
    # No telemetry from r1: absent, not a made-up zero.
    assert ("phalanx_replica_power_watts", "r1") not in samples


def test_publish_is_throttled_but_force_goes_through():
    board = Dashboard(0, publish_s=3600.0)
    try:
        view = FleetView()
        view.apply({"t": 0.0, "kind": "worker_start", "replica": "a", "source": "a"})
        board.publish(view)
        view.apply({"t": 1.0, "kind": "worker_start", "replica": "b", "source": "b"})
        board.publish(view)
        assert [r["name"] for r in board.state["replicas"]] == ["a"]
        board.publish(view, force=True)
        assert [r["name"] for r in board.state["replicas"]] == ["a", "b"]
    finally:
        board.close()


def test_bad_or_taken_port_is_a_usage_error(dashboard):
    assert start_dashboard(None) is None
    with pytest.raises(UsageError, match="--dashboard"):
        start_dashboard(70000)
    with pytest.raises(UsageError, match="cannot listen"):
        start_dashboard(dashboard.port)


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_answer_every_family_before_the_first_step(dashboard):
    _, _, text = _get(dashboard, "/metrics")
    samples = _samples(text)
    assert samples[("phalanx_steps_committed_total", ())] == 0
    assert samples[("phalanx_quorums_total", ())] == 0
    assert samples[("phalanx_step_seconds_count", ())] == 0
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"phalanx_replica_up", "phalanx_loss", "phalanx_lighthouse_up"} <= families


def test_metrics_step_histogram_quorums_lighthouse_and_one_up_series_per_replica(dashboard):
    view = FleetView()
    view.apply({"t": 0.0, "kind": "run_start", "own_lighthouse": True, "replicas": {"r0": {}}})
    events = read_events(RECORDED)
    view.apply_all(events)
    view.apply({"t": view.last_t, "kind": "lighthouse_down", "cause": "killed"})
    view.apply({"t": view.last_t, "kind": "lighthouse_restart", "down_s": 1.0})
    dashboard.publish(view, force=True)
    samples = _samples(_get(dashboard, "/metrics")[2])
    first_report: dict[int, float] = {}  # a step counts when its first participant reports it
    for event in events:
        if event["kind"] == "step":
            first_report.setdefault(event["step"], event["t"])
    commits = list(first_report.values())
    assert samples[("phalanx_step_seconds_count", ())] == len(commits) - 1
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    assert samples[("phalanx_step_seconds_sum", ())] == pytest.approx(sum(gaps), abs=1e-3)
    assert samples[("phalanx_step_seconds_bucket", (("le", "+Inf"),))] == len(gaps)
    quorum_keys = {(e.get("quorum_id"), e["step"]) for e in events if e["kind"] == "quorum"}
    assert samples[("phalanx_quorums_total", ())] == len(quorum_keys) > 0
    assert samples[("phalanx_lighthouse_up", ())] == 1
    assert samples[("phalanx_lighthouse_restarts_total", ())] == 1
    for row in dashboard.state["replicas"]:
        ups = [
            k for k in samples if k[0] == "phalanx_replica_up" and ("replica", row["name"]) in k[1]
        ]
        assert len(ups) == 1  # no state label: a state change does not start a new series
        states = {
            dict(k[1])["phalanx_replica_state"]: v
            for k, v in samples.items()
            if k[0] == "phalanx_replica_state" and dict(k[1])["replica"] == row["name"]
        }
        assert sum(states.values()) == 1 and states[row["state"]] == 1


def test_a_dashboard_beyond_loopback_needs_the_token(tmp_path):
    board = start_dashboard(None, bind="0.0.0.0:0", token_dir=tmp_path)
    try:
        token_file = tmp_path / ".dashboard-token"
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token) >= 24
        assert board.url.endswith(f"/?token={token}")
        base = f"http://127.0.0.1:{board.port}"

        def get(path, headers=None):
            request = urllib.request.Request(base + path, headers=headers or {})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.headers.get("Set-Cookie")
            except urllib.error.HTTPError as err:
                return err.code, None

        assert get("/metrics")[0] == 401
        assert get("/api/state?token=wrong")[0] == 401
        status, cookie = get(f"/?token={token}")
        assert status == 200 and cookie.startswith(f"phalanx_token={token};")
        assert get("/fragment", {"Cookie": f"phalanx_token={token}"})[0] == 200
        assert get("/metrics", {"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        board.close()


def test_loopback_bind_needs_no_token_and_a_bad_bind_is_a_usage_error(tmp_path):
    board = start_dashboard(None, bind="127.0.0.1:0", token_dir=tmp_path)
    try:
        assert board.token is None and not (tmp_path / ".dashboard-token").exists()
        assert _get(board, "/metrics")[0] == 200
    finally:
        board.close()
    for bad in ("8080", "host:", ":80", "h:http"):
        with pytest.raises(UsageError, match="--dashboard-bind"):
            start_dashboard(None, bind=bad)
