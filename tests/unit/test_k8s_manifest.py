"""examples/k8s/phalanx.yaml: its phalanx command lines parse with the real CLI, and its
objects fit together (the lighthouse's port and Service, the secret file, the run
directory, the pre-emption exit code and grace period).

No cluster here: the manifest is read as data. PyYAML is not a phalanx dependency; the
test is skipped where it is missing.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import typer

from phalanx.errors import EXIT_PREEMPTED, EXIT_USAGE, UsageError
from phalanx.fleetnet import hosts
from phalanx.fleetnet.fleet_secret import load_secret
from phalanx.launch.cli import register

yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "k8s" / "phalanx.yaml"
# Values Kubernetes puts into $(NAME) references that come from the pod, not the file.
FROM_THE_POD = {"JOB_COMPLETION_INDEX": "3", "POD_IP": "10.1.2.3"}


def _objects() -> dict[str, dict[str, Any]]:
    with MANIFEST.open() as handle:
        return {d["kind"]: d for d in yaml.safe_load_all(handle) if d}


def _pod(kind: str) -> dict[str, Any]:
    return _objects()[kind]["spec"]["template"]["spec"]


def _expand(container: dict[str, Any], words: list[str]) -> list[str]:
    """Kubernetes' $(NAME) expansion of a container's command, from its env."""
    values = {}
    for var in container.get("env", []):
        values[var["name"]] = var["value"] if "value" in var else FROM_THE_POD[var["name"]]
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], w) for w in words]


def _parse(container: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """The container's `phalanx SUBCOMMAND ...` parsed by the real CLI, without running it:
    (subcommand, its options' values, the script's own arguments)."""
    argv = _expand(container, container["command"] + container.get("args", []))
    assert argv[0] == "phalanx", argv
    app = typer.Typer()
    register(app)
    command = typer.main.get_command(app).commands[argv[1]]  # type: ignore[attr-defined]
    context = command.make_context(argv[1], argv[2:])  # a bad flag or value raises here
    return argv[1], context.params, context.args


def _phalanx_containers() -> dict[str, dict[str, Any]]:
    return {
        c["command"][1]: c
        for kind in ("Deployment", "Job")
        for c in _pod(kind)["containers"]
        if c.get("command", [""])[0] == "phalanx"
    }


def test_every_phalanx_command_line_parses_with_the_real_cli():
    containers = _phalanx_containers()
    assert set(containers) == {"lighthouse", "run"}
    for name, container in containers.items():
        subcommand, _, script_args = _parse(container)
        assert subcommand == name and (script_args == [] or name == "run")


def test_a_misspelt_flag_would_fail_the_check():
    """The parse above is not a formality: the CLI refuses what it does not know."""
    container = dict(_phalanx_containers()["run"])
    container["command"] = [
        "--lighthose" if w == "--lighthouse" else w for w in container["command"]
    ]
    with pytest.raises(UsageError, match="did you mean --lighthouse"):
        _parse(container)


def test_replicas_reach_the_lighthouse_through_its_service():
    _, lighthouse, _ = _parse(_phalanx_containers()["lighthouse"])
    _, run, script_args = _parse(_phalanx_containers()["run"])
    bind_host, _, bind_port = lighthouse["bind"].rpartition(":")
    assert bind_host == "0.0.0.0"  # the pod's address, whatever it is
    service = _objects()["Service"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == port["targetPort"] == int(bind_port)
    assert (
        service["spec"]["selector"]
        == _objects()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    )
    assert hosts.parse_endpoint("--lighthouse", run["lighthouse"]) == (
        service["metadata"]["name"],
        port["port"],
    )
    # Never two lighthouses: each would form quorums of its own.
    deployment = _objects()["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    # Each pod is a host of its own name, reached at its own address.
    assert hosts.check_name("--host-id", run["host_id"]) == "pod-3"
    assert run["advertise_host"] == FROM_THE_POD["POD_IP"]
    assert script_args == ["--steps", "10000"]


def test_the_secret_file_is_the_mounted_secret_and_only_its_owner_reads_it():
    for pod_kind, subcommand in (("Deployment", "lighthouse"), ("Job", "run")):
        container = _phalanx_containers()[subcommand]
        _, params, _ = _parse(container)
        secret_file = Path(params["secret_file"])
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in _pod(pod_kind)["volumes"]}
        (volume,) = [v for v in volumes.values() if "secret" in v]
        assert Path(mounts[volume["name"]]["mountPath"]) == secret_file.parent
        assert volume["secret"]["secretName"] == _objects()["Secret"]["metadata"]["name"]
        mode = volume["secret"]["defaultMode"]
        assert mode & 0o077 == 0 and mode & stat.S_IRUSR, oct(mode)
        assert secret_file.name in _objects()["Secret"]["stringData"]


def test_the_published_secret_is_a_placeholder_phalanx_refuses(tmp_path):
    """Nobody trains with a secret printed in an example."""
    placeholder = tmp_path / "fleet.secret"
    placeholder.write_text(_objects()["Secret"]["stringData"]["fleet.secret"])
    placeholder.chmod(0o600)
    with pytest.raises(UsageError, match="does not hold a secret"):
        load_secret(placeholder)


def test_each_pod_resumes_from_the_shared_run_directory():
    job = _pod("Job")
    container = _phalanx_containers()["run"]
    _, run, _ = _parse(container)
    assert run["resume"]  # a pod that replaces a pre-empted one continues the run
    (runs,) = [v for v in job["volumes"] if "persistentVolumeClaim" in v]
    claim = _objects()["PersistentVolumeClaim"]
    assert runs["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod, on any node
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[runs["name"]]
    assert Path(run["out"]).is_relative_to(mount)
    # The init container makes this pod's --out and links the shared checkpoints there.
    (init,) = job["initContainers"]
    script = " ".join(_expand(init, init["args"]).pop().split())
    assert f"mkdir -p {run['out']} " in script
    assert script.endswith(f"ln -sfn ../../checkpoints {run['out']}/checkpoints")


def test_preemption_exits_75_into_a_new_pod_within_the_grace_period():
    from phalanx.launch.launcher import PREEMPT_GRACE_S

    job = _objects()["Job"]["spec"]
    pod = job["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"]
    # Time for every replica to finish its step and checkpoint, and for the summary.
    assert pod["terminationGracePeriodSeconds"] > PREEMPT_GRACE_S + 10
    assert pod["restartPolicy"] == "Never"  # a podFailurePolicy requires it
    actions = {}
    for rule in job["podFailurePolicy"]["rules"]:
        if "onExitCodes" in rule:
            assert rule["onExitCodes"]["containerName"] == "phalanx"
            assert rule["onExitCodes"]["operator"] == "In"
            actions.update(dict.fromkeys(rule["onExitCodes"]["values"], rule["action"]))
        else:
            assert rule["onPodConditions"] == [{"type": "DisruptionTarget"}]
            assert rule["action"] == "Ignore"
    # Pre-empted: a replacement pod that resumes, not counted as a failure. Bad input:
    # every replacement would fail the same way.
    assert actions == {EXIT_PREEMPTED: "Ignore", EXIT_USAGE: "FailJob"}
