import pytest

from streamgex.simulate import simulate


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory):
    """The simulated demo dataset (GCTX, GEUVADIS table, maps), written once."""
    return simulate("demo", tmp_path_factory.mktemp("demo-raw"), seed=0, quiet=True)
