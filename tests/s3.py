"""A loopback S3 service for the tests: moto's ``ThreadedMotoServer`` on 127.0.0.1 (the
fixture zarr-python's own tests use), started once per session, with each test its own
bucket. Nothing leaves the machine; the credentials are moto's dummies."""

import contextlib
import logging
import os
import uuid

import pytest

ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "streamgex-test", "AWS_SECRET_ACCESS_KEY": "streamgex-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_server():
    """Yield the endpoint URL of a moto S3 server on a free loopback port; stopped after."""
    server_module = pytest.importorskip("moto.server", reason="the test extra installs "
                                        "moto[server]")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once it listens
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """The session's moto server, named by the standard ``AWS_*`` environment (as a user's
    own endpoint would be), restored when the session ends."""
    pytest.importorskip("s3fs", reason="the s3 extra installs s3fs")
    with moto_server() as endpoint:
        saved = {key: os.environ.get(key) for key in (*ENVIRONMENT, "AWS_ENDPOINT_URL")}
        os.environ.update(ENVIRONMENT, AWS_ENDPOINT_URL=endpoint)
        try:
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def bucket(s3_endpoint, tmp_path, monkeypatch):
    """A new, empty bucket: its ``s3://`` URL. Remote inputs are cached under ``tmp_path``."""
    import s3fs

    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "cache"))
    name = f"streamgex-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_endpoint).mkdir(name)
    return f"s3://{name}"


def filesystem(endpoint):
    """A plain s3fs filesystem on the test server, to put raw files and look at objects."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
