import pytest
from s3 import bucket, s3_endpoint  # noqa: F401  (fixtures: a loopback S3 service)

from streamgex.simulate import simulate


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory):
    """The simulated ``small`` preset (the demo's genes and files, GCTX, GEUVADIS table and
    maps, with 3,000 profiles instead of 14,000), written once."""
    return simulate("small", tmp_path_factory.mktemp("demo-raw"), seed=0)


@pytest.fixture(scope="session")
def demo_experiment(tmp_path_factory):
    """``streamgex demo`` run once: ``(workdir, stdout, stderr)`` of its first run."""
    import contextlib
    import io

    from streamgex.cli import main

    workdir = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["demo", "--workdir", str(workdir)]) == 0, err.getvalue()[-2000:]
    return workdir, out.getvalue(), err.getvalue()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``tools/test.sh`` runs two workers), every test of the demo run
    goes to one worker: the run is made once there, not once per worker."""
    for item in items:
        if "demo_experiment" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo"))
