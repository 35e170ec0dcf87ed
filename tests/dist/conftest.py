import pytest

from tests.fleet_helpers import EXACT_ARGS, MLP, local_run


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The float64 MLP trained in one process: what every fleet run must reproduce."""
    return local_run(MLP, tmp_path_factory.mktemp("reference") / "run", EXACT_ARGS)
