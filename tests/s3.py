"""A loopback S3 service for the tests: moto's ``ThreadedMotoServer`` on 127.0.0.1 (the
fixture zarr-python's own tests use), started once per session, with each test its own
bucket. Nothing leaves the machine; the credentials are moto's dummies."""

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
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


def _check_signatures(endpoint):
    """Make the moto server of this process at ``endpoint`` check every request's signature
    as AWS does (moto's IAM authentication), after creating a bucket and two IAM users:
    ``{"bucket", "streamgex", "lister"}``, each user's ``[access key, secret]``, one
    allowed ``s3:*``, the other only to list the bucket (it sees the bucket, not its
    objects). moto keeps this switch, like its buckets and users, in module globals: the
    whole process's servers check."""
    import boto3
    from moto import settings

    anyone = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                  aws_secret_access_key="setup")
    iam = boto3.client("iam", **anyone)
    keys = {}
    # moto asks s3:HeadBucket for HEAD of a bucket (AWS asks s3:ListBucket)
    for user, action in (("streamgex", "s3:*"), ("lister", ["s3:ListBucket", "s3:HeadBucket"])):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = [key["AccessKeyId"], key["SecretAccessKey"]]
    boto3.client("s3", **anyone).create_bucket(Bucket="checked")
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # what moto's /moto-api/reset-auth sets
    return {"bucket": "s3://checked", **keys}


def _serve(check_signatures, latency):
    """The child of ``served_apart``: one JSON line saying what it serves, then serve until
    stdin closes."""
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_server())
        served = {"endpoint": endpoint}
        if check_signatures:
            served.update(_check_signatures(endpoint))
        if latency is not None:
            served["slow"] = stack.enter_context(faulty_proxy(endpoint, every=0,
                                                              delay=latency))[0]
        print(json.dumps(served), flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def served_apart(*, check_signatures=False, latency=None):
    """A moto S3 server in a process of its own, stopped after; yields ``{"endpoint": URL}``,
    plus ``"slow"``, a proxy adding ``latency`` seconds per request in that process, and
    with ``check_signatures``, what ``_check_signatures`` made. Its own process: moto's
    globals (buckets, users, the checking switch) are not the session server's, and a
    benchmark's client does not share its interpreter lock with the service."""
    pytest.importorskip("moto.server", reason="the test extra installs moto[server]")
    argv = [sys.executable, __file__, "serve", *(["--check-signatures"] * check_signatures),
            *(["--latency", str(latency)] if latency is not None else [])]
    process = subprocess.Popen(argv, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={**os.environ, **ENVIRONMENT})
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError("the moto server process did not start within 60 s")
        yield json.loads(line)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def checking_server():
    """A moto S3 server, in its own process, that checks every request's signature as AWS
    does: ``{"endpoint", "bucket", "streamgex", "lister"}`` (``_check_signatures``)."""
    pytest.importorskip("s3fs", reason="the s3 extra installs s3fs")
    with served_apart(check_signatures=True) as served:
        yield served


def filesystem(endpoint):
    """A plain s3fs filesystem on the test server, to put raw files and look at objects."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)


class _Faults:
    """Which requests a ``faulty_proxy`` spoils: every ``every``-th answered 503 SlowDown,
    every ``every``-th after that (offset by half) has its connection dropped once the
    service has acted on it (the answer lost: the client cannot know the write happened).
    ``count``: the requests that reached the proxy, spoiled or not."""

    def __init__(self, every):
        import threading

        self.every, self.count, self.lock = every, 0, threading.Lock()
        self.spoiled = {"503": 0, "dropped": 0}

    def next(self):
        with self.lock:
            self.count += 1
            if not self.every:
                return None
            if self.count % self.every == 0:
                self.spoiled["503"] += 1
                return "503"
            if self.count % self.every == self.every // 2:
                self.spoiled["dropped"] += 1
                return "drop"
            return None


@contextlib.contextmanager
def faulty_proxy(endpoint, *, every=7, delay=0.0):
    """An HTTP proxy in front of ``endpoint`` that spoils requests now and then (``_Faults``;
    ``every=0``: none) and adds ``delay`` seconds to each round trip (a distant service,
    for ``tools/bench_remote.py``); yields ``(its URL, the _Faults counting what it
    spoiled)``."""
    import http.client
    import http.server
    import threading
    from urllib.parse import urlsplit

    target = urlsplit(endpoint)
    faults = _Faults(every)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _any(self):
            body = self._body()
            if delay:
                time.sleep(delay)
            fault = faults.next()
            if fault == "503":
                payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown"
                           b"</Code><Message>Please reduce your request rate.</Message></Error>")
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("transfer-encoding", "connection")}
            if "content-length" not in {k.lower() for k in headers} and body:
                headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length",
                                       "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a client that gave up on a dropped answer: what the faults are for

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


if __name__ == "__main__":  # served_apart's child
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--check-signatures", action="store_true")
    parser.add_argument("--latency", type=float, default=None)
    arguments = parser.parse_args()
    _serve(arguments.check_signatures, arguments.latency)
