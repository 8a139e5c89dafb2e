"""Stores on object storage (issue 28), against moto's S3 server on 127.0.0.1 (tests/s3.py):
ingest from a bucket into a bucket gives the local ingest's values; the Guarantees hold
without a rename (complete only when the last object says so, resume after a SIGKILL, one
writer at a time, --overwrite touching only streamgex's objects)."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rawfiles import small_matrix, write_gctx, write_geuvadis
from s3 import checking_server, faulty_proxy, filesystem  # noqa: F401  (a fixture)
from streamgex import locks, steps, storage, store
from streamgex.cli import main
from streamgex.errors import StreamgexError
from streamgex.ingest import ingest


def put(endpoint, local, url):
    filesystem(endpoint).put(str(local), url)
    return url


def cli(capsys, *argv):
    status = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def assert_same_store(local, remote):
    x, y = store.open_store(local), store.open_store(remote)
    np.testing.assert_array_equal(x.expression.values, y.expression.values)
    assert sorted(x.coords) == sorted(y.coords)
    for name in x.coords:
        assert list(x[name].values) == list(y[name].values), name
    assert x.expression.encoding["chunks"] == y.expression.encoding["chunks"]
    assert store.content(x.attrs["source"]) == store.content(y.attrs["source"]) or \
        x.attrs["source"]["sha256"] == y.attrs["source"]["sha256"]


def root_state(endpoint, url, fs=None):
    """The ``streamgex`` attrs of the root ``zarr.json`` at ``url``, as an S3 reader sees it."""
    try:
        raw = (fs or filesystem(endpoint)).cat_file(f"{url}/zarr.json")
    except FileNotFoundError:
        return {}
    return json.loads(raw)["attributes"]["streamgex"]


def test_ingest_from_a_bucket_into_a_bucket_equals_the_local_ingest(
        tmp_path, s3_endpoint, bucket, capsys):
    values, samples, genes = small_matrix(300, 40, seed=3)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    write_geuvadis(tmp_path / "t.txt.gz", values[:50], samples[:50], genes,
                   [f"S{i}" for i in range(len(genes))])
    for name in ("m.gctx", "t.txt.gz"):
        source = put(s3_endpoint, tmp_path / name, f"{bucket}/raw/{name}")
        local = ingest(tmp_path / name, tmp_path / f"{name}.zarr", chunk_samples=64)
        status, out, err = cli(capsys, "ingest", source, "--out", f"{bucket}/{name}.zarr",
                               "--chunk-samples", 64)
        assert status == 0, err
        assert f"{bucket}/{name}.zarr" in out and f"source      {source}" in out
        assert_same_store(local, f"{bucket}/{name}.zarr")
        # identity by content: the object's ETag, like a file's times, is a place
        assert steps.fingerprint(local) == steps.fingerprint(f"{bucket}/{name}.zarr")
        assert not filesystem(s3_endpoint).exists(f"{bucket}/{name}.zarr.lock")
    # the same command again recognises its store and writes nothing
    objects = filesystem(s3_endpoint).find(bucket, detail=True)
    status, out, err = cli(capsys, "ingest", f"{bucket}/raw/m.gctx", "--out",
                           f"{bucket}/m.gctx.zarr", "--chunk-samples", 64)
    assert status == 0 and "up to date" in err, err
    assert filesystem(s3_endpoint).find(bucket, detail=True) == objects
    status, out, err = cli(capsys, "info", "--verify", f"{bucket}/m.gctx.zarr")
    assert status == 0 and "all 5 chunks read back intact" in out, err


def test_a_store_counts_only_once_its_last_object_says_complete(tmp_path, s3_endpoint, bucket):
    """No rename on S3: the store is built under its final URL; until the root zarr.json
    says complete, open_store and status refuse it (and a plain reader sees the flag)."""
    url = f"{bucket}/s.zarr"
    group = store.begin(url, step="ingest", parameters={}, source={"sha256": "x"})
    store.start_writing(group, samples=["a", "b", "c"], genes=["g1", "g2"], chunk_samples=2)
    store.write_chunks(group, lambda start, stop: np.ones((stop - start, 2), "float32"),
                       desc="test")
    assert root_state(s3_endpoint, url)["complete"] is False
    with pytest.raises(StreamgexError, match="incomplete store.*re-run the same"):
        store.open_store(url)
    assert store.status(url)[0] == "partial"
    assert store.finish(group) == url
    assert root_state(s3_endpoint, url)["complete"] is True
    assert store.status(url) == ("done", "")
    np.testing.assert_array_equal(store.open_store(url).expression.values, np.ones((3, 2)))


def kill_when(code, endpoint, url, reached, timeout=120):
    """Run ``code`` in a fresh interpreter and SIGKILL it once ``reached(progress)``."""
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    deadline, fs = time.monotonic() + timeout, filesystem(endpoint)
    while time.monotonic() < deadline:
        progress = root_state(endpoint, url, fs).get("progress", {})
        if reached(progress):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return progress
        if proc.poll() is not None:
            pytest.fail(f"ingest ended (rc {proc.returncode}) before the kill point: "
                        f"{proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("the kill point was never reached")


def test_a_sigkill_during_a_remote_ingest_resumes_to_the_uninterrupted_store(
        tmp_path, s3_endpoint, bucket, caplog):
    values, samples, genes = small_matrix(1200, 60, seed=5)
    write_gctx(tmp_path / "big.gctx", values, samples, genes, chunks=(16, 60))
    source = put(s3_endpoint, tmp_path / "big.gctx", f"{bucket}/raw/big.gctx")
    url = f"{bucket}/big.zarr"
    code = ("from streamgex.ingest import ingest; "
            f"ingest({source!r}, {url!r}, chunk_samples=16)")
    at_kill = kill_when(code, s3_endpoint, url, lambda p: p.get("chunks_done", 0) >= 10)
    with pytest.raises(StreamgexError, match="incomplete store"):
        store.open_store(url)
    # the killed writer's lock object stays: on this host its dead pid lets the rerun take it
    assert filesystem(s3_endpoint).exists(f"{url}.lock")
    caplog.set_level("INFO")
    ingest(source, url, chunk_samples=16)
    resumed = re.search(rf"resuming {url}: (\d+) chunks already written", caplog.text)
    assert resumed and at_kill["chunks_done"] <= int(resumed[1]) < 75, caplog.text
    assert_same_store(ingest(tmp_path / "big.gctx", tmp_path / "ref.zarr", chunk_samples=16), url)


def test_one_writer_at_a_time_by_a_conditional_create(s3_endpoint, bucket, capsys):
    url = f"{bucket}/held.zarr"
    first = storage.place(f"{url}.lock")
    first.create(b"{}")
    with pytest.raises(FileExistsError):  # S3 answered 412 to If-None-Match: *
        storage.place(f"{url}.lock").create(b"{}")
    first.delete()
    # a live holder on another host: refused in one line naming it, not taken over
    storage.place(f"{url}.lock").create(json.dumps(
        {"pid": 1, "host": "elsewhere", "command": "streamgex ingest x", "since": "now"}).encode())
    with pytest.raises(StreamgexError, match="another streamgex process is writing this store: "
                                             "pid 1 on elsewhere"):
        store.begin(url, step="ingest", parameters={}, source={})
    assert filesystem(s3_endpoint).exists(f"{url}.lock")
    locks.lock_file(url)  # the same name the CLI's message gives
    assert str(locks.lock_file(url)) == f"{url}.lock"


def test_overwrite_removes_only_the_objects_streamgex_wrote(tmp_path, s3_endpoint, bucket,
                                                             capsys):
    values, samples, genes = small_matrix(100, 20, seed=1)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    fs = filesystem(s3_endpoint)
    url = f"{bucket}/m.zarr"
    fs.pipe_file(f"{url}/README.txt", b"not streamgex's")
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", url)
    assert status == 1 and "is not a streamgex store" in err, err
    fs.rm_file(f"{url}/README.txt")
    assert cli(capsys, "ingest", tmp_path / "m.gctx", "--out", url)[0] == 0
    fs.pipe_file(f"{url}/README.txt", b"added since by a user")
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", url,
                         "--chunk-samples", 64)
    assert status == 1 and "pass --overwrite" in err, err
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", url,
                         "--chunk-samples", 64, "--overwrite")
    assert status == 0, err
    assert fs.cat_file(f"{url}/README.txt") == b"added since by a user"
    assert store.open_store(url).expression.encoding["chunks"] == (64, 20)
    np.testing.assert_array_equal(store.open_store(url).expression.values, values)


def test_info_verify_names_a_chunk_gone_from_the_bucket(tmp_path, s3_endpoint, bucket, capsys):
    values, samples, genes = small_matrix(100, 20, seed=1)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    url = f"{bucket}/m.zarr"
    ingest(tmp_path / "m.gctx", url, chunk_samples=32)
    filesystem(s3_endpoint).rm_file(f"{url}/expression/c/1/0")
    status, _, err = cli(capsys, "info", "--verify", url)
    assert status == 1 and "1 of 4 chunks damaged: chunk 1 (profiles 32-63): missing" in err
    with pytest.raises(StreamgexError, match="damaged store"):
        store.open_store(url)
    ingest(tmp_path / "m.gctx", url, chunk_samples=32)  # the same command builds it again
    np.testing.assert_array_equal(store.open_store(url).expression.values, values)


def test_storage_options_from_the_command_line(tmp_path, s3_endpoint, bucket, capsys,
                                               monkeypatch):
    values, samples, genes = small_matrix(10, 5)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", f"{bucket}/m.zarr",
                         "--storage-option", f"endpoint_url={s3_endpoint}")
    assert status == 0, err
    status, _, err = cli(capsys, "info", f"{bucket}/m.zarr", "--storage-option", "endpoint_url")
    assert status == 1 and "--storage-option 'endpoint_url': expected KEY=VALUE" in err, err


def test_a_protocol_without_its_library_is_one_line_naming_the_extra(tmp_path, capsys,
                                                                     monkeypatch):
    real = storage.importlib.util.find_spec
    monkeypatch.setattr(storage.importlib.util, "find_spec",
                        lambda name: None if name == "gcsfs" else real(name))
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", "gs://b/m.zarr")
    assert status == 1 and err.strip().endswith(
        "gs:// needs the gcsfs package: pip install 'streamgex[gcs]'"), err
    status, _, err = cli(capsys, "ingest", "https://example.org/m.gctx", "--out",
                         "https://example.org/m.zarr")
    assert status == 1 and "https:// is read-only" in err, err
    assert list(tmp_path.iterdir()) == []


def test_preprocessing_steps_read_and_write_stores_in_a_bucket_as_on_disk(
        tmp_path, s3_endpoint, bucket, capsys):
    """Each step's store in the bucket holds the local chain's values, with the same input
    fingerprints (identity by content, not by place); a second run of a step redoes
    nothing."""
    values, samples, genes = small_matrix(200, 30, seed=2)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    for where in (str(tmp_path / "local"), f"{bucket}/work"):
        for argv in (["ingest", tmp_path / "m.gctx", "--out", f"{where}/m.zarr",
                      "--chunk-samples", 64],
                     ["dedup", f"{where}/m.zarr", "--out", f"{where}/dedup.zarr",
                      "--clusters", 4],
                     ["standardize", f"{where}/dedup.zarr", "--out", f"{where}/std.zarr"]):
            status, _, err = cli(capsys, *argv, "--quiet")
            assert status == 0, err
    for name in ("dedup", "std"):
        local = store.open_store(tmp_path / "local" / f"{name}.zarr")
        remote = store.open_store(f"{bucket}/work/{name}.zarr")
        np.testing.assert_array_equal(local.expression.values, remote.expression.values)
        assert local.attrs["source"]["fingerprint"] == remote.attrs["source"]["fingerprint"]
    assert remote.attrs["source"]["store"] == f"{bucket}/work/dedup.zarr"
    objects = filesystem(s3_endpoint).find(bucket, detail=True)
    status, _, err = cli(capsys, "standardize", f"{bucket}/work/dedup.zarr", "--out",
                         f"{bucket}/work/std.zarr")
    assert status == 0 and "up to date" in err, err
    assert filesystem(s3_endpoint).find(bucket, detail=True) == objects
    assert not [key for key in objects if key.endswith(".lock") or "/sorted/" in key]


def test_a_stream_from_a_bucket_gives_the_local_stores_batches(tmp_path, s3_endpoint, bucket,
                                                              monkeypatch):
    """Training fed from a store in a bucket: the same batches, in the same order, as from
    the same store on disk (its chunks read through Zarr, several at once), with the
    endpoint given as a storage option, not by the environment."""
    from streamgex.streams import Source, Stream

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setattr(storage, "_options", {"endpoint_url": s3_endpoint})

    n, g = 300, 12
    values = (np.arange(n)[:, None] * 100 + np.arange(g)[None, :]).astype(np.float32)
    write_gctx(tmp_path / "x.gctx", values, [f"S{i}" for i in range(n)],
               [f"g{j}" for j in range(g)])
    local = ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=32)
    remote = ingest(tmp_path / "x.gctx", f"{bucket}/x.zarr", chunk_samples=32)

    def batches(where):
        stream = Stream((Source(where, np.array([0, 1, 2])), Source(where, np.arange(3, 12))),
                        batch=40, seed=7, window=3)
        return [part for batch in stream.batches(epoch=1) for part in batch]

    for a, b in zip(batches(local), batches(remote), strict=True):
        np.testing.assert_array_equal(a, b)


def test_injected_503s_and_dropped_connections_change_nothing(tmp_path, s3_endpoint, bucket,
                                                              capsys, monkeypatch):
    """Through a proxy that answers every 9th request 503 SlowDown and drops the connection
    of another after the service acted on it (a lost answer), an ingest from a bucket into
    a bucket, its verify and a stream over it give the local results: every request is
    retried with backoff, and each write is idempotent (the lock's conditional create,
    retried after its answer was lost, finds its own record and takes it)."""
    from streamgex.streams import Source, Stream

    values, samples, genes = small_matrix(200, 24, seed=4)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    source = put(s3_endpoint, tmp_path / "m.gctx", f"{bucket}/raw/m.gctx")
    local = ingest(tmp_path / "m.gctx", tmp_path / "m.zarr", chunk_samples=64)
    with faulty_proxy(s3_endpoint, every=9) as (proxy, faults):
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
        status, _, err = cli(capsys, "ingest", source, "--out", f"{bucket}/m.zarr",
                             "--chunk-samples", 64, "--quiet")
        assert status == 0, err
        status, out, err = cli(capsys, "info", "--verify", f"{bucket}/m.zarr")
        assert status == 0 and "all 4 chunks read back intact" in out, err
        batches = [Stream((Source(where, np.arange(24)),), batch=50, seed=1, window=2)
                   for where in (local, f"{bucket}/m.zarr")]
        for a, b in zip(*(s.batches(epoch=0) for s in batches), strict=True):
            np.testing.assert_array_equal(a[0], b[0])
    assert faults.spoiled["503"] >= 3 and faults.spoiled["dropped"] >= 3, faults.spoiled
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert_same_store(local, f"{bucket}/m.zarr")
    assert not filesystem(s3_endpoint).exists(f"{bucket}/m.zarr.lock")


def test_an_unreachable_endpoint_or_a_missing_bucket_is_one_line(tmp_path, s3_endpoint, bucket,
                                                                 capsys, monkeypatch):
    values, samples, genes = small_matrix(10, 5)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    status, _, err = cli(capsys, "ingest", tmp_path / "m.gctx", "--out", "s3://no-such/m.zarr")
    assert status == 1 and err.count("\n") == 1 and "bucket no-such does not exist" in err, err
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    status, _, err = cli(capsys, "info", f"{bucket}/m.zarr", "--storage-option",
                         'config_kwargs={"retries": {"max_attempts": 1}}')
    assert status == 1 and err.count("\n") == 1, err
    assert "Could not connect to the endpoint URL" in err and "AWS_ENDPOINT_URL" in err, err


def test_refused_credentials_are_one_line_naming_them_after_two_requests_at_most(
        tmp_path, checking_server, capsys, monkeypatch):
    """Against a server that checks signatures (tests/s3.py): a wrong secret, a key the
    service does not know, or a key not allowed to read the objects is one line naming the
    credentials and the service's code, after at most two requests (a refusal is not
    retried: no retry storm, so no wait); the right secret, given as the line says, works."""
    import s3fs

    server, bucket = checking_server, checking_server["bucket"]
    key, secret = server["streamgex"]
    values, samples, genes = small_matrix(10, 5)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    s3fs.S3FileSystem(endpoint_url=server["endpoint"], key=key, secret=secret,
                      skip_instance_cache=True).put(str(tmp_path / "m.gctx"), f"{bucket}/m.gctx")
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with faulty_proxy(server["endpoint"], every=0) as (endpoint, requests):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        lister = ["--storage-option", f"key={server['lister'][0]}", "--storage-option",
                  f"secret={server['lister'][1]}"]
        for argv, code in [
                (["ingest", f"{bucket}/m.gctx", "--out", tmp_path / "m.zarr"],
                 "SignatureDoesNotMatch"),
                (["info", f"{bucket}/m.zarr"], "SignatureDoesNotMatch"),
                (["info", f"{bucket}/m.zarr", "--storage-option", "key=AKIAUNKNOWNUNKNOWN00",
                  "--storage-option", "secret=x"], "InvalidAccessKeyId"),
                (["ingest", f"{bucket}/m.gctx", "--out", tmp_path / "m.zarr", *lister], "403")]:
            before = requests.count
            status, _, err = cli(capsys, *argv)
            assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, err
            assert f"the service refused these credentials ({code})" in err, err
            assert "AWS_SECRET_ACCESS_KEY" in err and "--storage-option key=" in err, err
            assert requests.count - before <= 2, (argv, requests.count - before)
        status, _, err = cli(capsys, "info", f"{bucket}/m.zarr", "--storage-option",
                             f"secret={secret}")  # botocore wants the key beside it
        assert status == 1 and err.count("\n") == 1, err
        assert "the credentials given are incomplete" in err and "key=..." in err, err
        status, _, err = cli(capsys, "ingest", f"{bucket}/m.gctx", "--out", tmp_path / "m.zarr",
                             "--storage-option", f"key={key}", "--storage-option",
                             f"secret={secret}", "--quiet")
        assert status == 0, err
    np.testing.assert_array_equal(store.open_store(tmp_path / "m.zarr").expression.values, values)


def test_a_dask_cluster_without_a_shared_disk_computes_a_step_in_a_bucket(
        tmp_path, s3_endpoint, bucket, capsys):
    """Workers in their own processes and working folders, with only the store's URL in
    common, read the input chunks from the bucket and write the output's there: the
    result is the local threads' one."""
    from distributed import LocalCluster

    values, samples, genes = small_matrix(300, 30, seed=2)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    source = put(s3_endpoint, tmp_path / "m.gctx", f"{bucket}/raw/m.gctx")
    assert cli(capsys, "ingest", source, "--out", f"{bucket}/m.zarr", "--chunk-samples", 64,
               "--quiet")[0] == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      local_directory=tmp_path / "workers") as cluster:
        status, _, err = cli(capsys, "standardize", f"{bucket}/m.zarr", "--out",
                             f"{bucket}/std.zarr", "--scheduler", cluster.scheduler_address,
                             "--quiet")
        assert status == 0, err
    assert cli(capsys, "standardize", f"{bucket}/m.zarr", "--out", tmp_path / "std.zarr",
               "--quiet")[0] == 0
    np.testing.assert_array_equal(store.open_store(f"{bucket}/std.zarr").expression.values,
                                  store.open_store(tmp_path / "std.zarr").expression.values)


CONFIG = """
name = "bucket-inputs"
workdir = "{work}"
chunk_samples = 256

[inputs]
geo = "{bucket}/raw/geo.gctx"
rnaseq = "{bucket}/raw/1000g.txt.gz"
landmarks = "{raw[map_lm]}"
targets = "{raw[map_tg]}"

[split]
train_per_cluster = 100
val_per_cluster = 20

[pca]
enabled = false

[storage]
endpoint_url = "{endpoint}"

[dask]
scheduler = "{scheduler}"
"""


def test_preprocess_in_a_bucket_on_a_dask_cluster_without_a_shared_disk(
        tmp_path, s3_endpoint, bucket, demo_raw, capsys, monkeypatch):
    """GEO and 1000G files and the workdir in a bucket, the endpoint in the config's [storage]
    table, the steps on a Dask cluster whose workers have their own folders: the chain
    ingests the files (the local ingest's stores), the workers read and write the stores
    by URL, status says every stage but the report (made by run) done, from a machine
    with no local copy too, and a second preprocess redoes nothing."""
    from distributed import LocalCluster

    for key, name in (("geo", "geo.gctx"), ("rnaseq", "1000g.txt.gz")):
        put(s3_endpoint, demo_raw[key], f"{bucket}/raw/{name}")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = tmp_path / "c.toml"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      local_directory=tmp_path / "workers") as cluster:
        config.write_text(CONFIG.format(work=f"{bucket}/work", bucket=bucket, raw=demo_raw,
                                        endpoint=s3_endpoint,
                                        scheduler=cluster.scheduler_address))
        assert main(["preprocess", str(config), "--quiet"]) == 0, capsys.readouterr().err
    config.write_text(CONFIG.format(work=f"{bucket}/work", bucket=bucket, raw=demo_raw,
                                    endpoint=s3_endpoint, scheduler=""))
    capsys.readouterr()
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "another-machine"))
    main(["status", str(config)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11 and all(line.split()[-1] == "done" for line in lines
                                    if not line.startswith("report")), lines
    assert main(["preprocess", str(config)]) == 0
    assert "ingest" not in capsys.readouterr().err.replace("up to date", "")
    local = ingest(demo_raw["geo"], tmp_path / "geo.zarr", chunk_samples=256)
    assert_same_store(local, f"{bucket}/work/stores/geo.zarr")
    recorded = store.open_store(f"{bucket}/work/stores/1000g.zarr").attrs["source"]
    assert recorded["path"] == f"{bucket}/raw/1000g.txt.gz" and "etag" in recorded


def test_predict_reads_its_input_from_a_bucket_and_writes_its_store_there(
        demo_experiment, tmp_path, s3_endpoint, bucket, capsys):
    """The demo's E-MLP predicts from a raw GCTX and from the test split's store, both in a
    bucket, into stores in the bucket: every value equal to the local prediction."""
    from streamgex.evaluation.predictor import load_predictor

    workdir = demo_experiment[0]
    run, test = workdir / "work" / "runs" / "emlp", workdir / "work" / "split" / "test"
    gctx = put(s3_endpoint, workdir / "raw" / "geo.gctx", f"{bucket}/in/geo.gctx")
    filesystem(s3_endpoint).put(str(test), f"{bucket}/in/test.zarr", recursive=True)
    for source, local_source, units in ((gctx, workdir / "raw" / "geo.gctx", "raw"),
                                        (f"{bucket}/in/test.zarr", test, "standardized")):
        name = source.rsplit("/", 1)[-1]
        status, _, err = cli(capsys, "predict", run, source, "--out", f"{bucket}/out/{name}",
                             "--units", units, "--quiet")
        assert status == 0, err
        status, _, err = cli(capsys, "predict", run, local_source, "--out",
                             tmp_path / name, "--units", units, "--quiet")
        assert status == 0, err
        remote = store.open_store(f"{bucket}/out/{name}")
        np.testing.assert_array_equal(remote.expression.values,
                                      store.open_store(tmp_path / name).expression.values)
        assert remote.attrs["source"]["path" if units == "raw" else "store"] == source
    split = store.open_store(test)
    landmarks = split.is_landmark.values.astype(bool)
    np.testing.assert_array_equal(
        store.open_store(f"{bucket}/out/test.zarr").expression.values,
        load_predictor(run).predict(split.expression.values[:, landmarks]))


def test_export_to_a_bucket_and_predict_from_that_bundle_into_the_bucket(
        demo_experiment, tmp_path, s3_endpoint, bucket, capsys):
    """`export --out s3://...` uploads the bundle with its manifest last; `predict` from that
    URL (a cached local copy) into the bucket gives the run's own predictions; a second
    export without --overwrite is refused, with it the bundle is replaced."""
    workdir = demo_experiment[0]
    run, test = workdir / "work" / "runs" / "emlp", workdir / "work" / "split" / "test"
    status, out, err = cli(capsys, "export", run, "--out", f"{bucket}/bundles/emlp")
    assert status == 0, err
    keys = [k.rsplit("/", 1)[-1] for k in filesystem(s3_endpoint).find(f"{bucket}/bundles/emlp")]
    assert "manifest.json" in keys and "network.keras" in keys
    status, _, err = cli(capsys, "predict", f"{bucket}/bundles/emlp", test, "--out",
                         f"{bucket}/out/pred.zarr", "--units", "standardized", "--quiet")
    assert status == 0, err
    assert cli(capsys, "predict", run, test, "--out", tmp_path / "pred.zarr", "--units",
               "standardized", "--quiet")[0] == 0
    np.testing.assert_array_equal(store.open_store(f"{bucket}/out/pred.zarr").expression.values,
                                  store.open_store(tmp_path / "pred.zarr").expression.values)
    status, _, err = cli(capsys, "export", run, "--out", f"{bucket}/bundles/emlp")
    assert status == 1 and "exists; pass --overwrite" in err, err
    assert cli(capsys, "export", run, "--out", f"{bucket}/bundles/emlp", "--overwrite")[0] == 0


def test_several_series_matrices_from_a_bucket_ingest_into_one_store_in_the_bucket(
        tmp_path, s3_endpoint, bucket, capsys):
    """`ingest A B --out s3://...` with A and B in the bucket: the local ingest of both
    files' values and sample fields, each file recorded by its URL and ETag; the same
    command again writes nothing."""
    from pathlib import Path

    quirks = Path(__file__).parent / "quirks"
    names = ("GSE90001_series_matrix.txt", "GSE90002_series_matrix.txt")
    urls = [put(s3_endpoint, quirks / name, f"{bucket}/raw/{name}") for name in names]
    local = ingest([quirks / name for name in names], tmp_path / "geo.zarr")
    status, _, err = cli(capsys, "ingest", *urls, "--out", f"{bucket}/geo.zarr")
    assert status == 0, err
    assert_same_store(local, f"{bucket}/geo.zarr")
    files = store.open_store(f"{bucket}/geo.zarr").attrs["source"]["files"]
    assert [f["path"] for f in files] == urls and all("etag" in f for f in files)
    assert steps.fingerprint(local) == steps.fingerprint(f"{bucket}/geo.zarr")
    objects = filesystem(s3_endpoint).find(f"{bucket}/geo.zarr", detail=True)
    status, _, err = cli(capsys, "ingest", *urls, "--out", f"{bucket}/geo.zarr")
    assert status == 0 and "up to date" in err, err
    assert filesystem(s3_endpoint).find(f"{bucket}/geo.zarr", detail=True) == objects


def test_predicting_in_passes_fills_a_stores_columns_in_a_bucket_piece_by_piece(
        s3_endpoint, bucket):
    """predict's passes (one per model piece, inference.passes) rewrite each output chunk
    with the next piece's genes: on S3 a chunk is one object, read back and put whole; the
    result is every piece's columns, and a pass the progress records done is not redone."""
    from streamgex.inference.passes import write_in_passes

    values = np.arange(5 * 4, dtype="float32").reshape(5, 4)
    loaded = []

    def piece(start, stop):
        def load():
            loaded.append(start)
            return lambda x: x[:, start:stop]
        return start, stop, load

    url = f"{bucket}/pred.zarr"
    group = store.begin(url, step="predict", parameters={}, source={"sha256": "x"})
    store.start_writing(group, samples=list("abcde"), genes=["g1", "g2", "g3", "g4"],
                        chunk_samples=2)
    done = write_in_passes(group, [piece(0, 3), piece(3, 4)], lambda a, b: values[a:b],
                           lambda z, targets: z, keep=np.ones(4, bool), desc="test",
                           chunks_per_read=1)
    assert done == 5 and loaded == [0, 3]
    assert store.state(group)["progress"] == {"phase": "write", "pass": 1, "chunks_done": 3}
    assert write_in_passes(group, [piece(0, 3), piece(3, 4)], lambda a, b: values[a:b],
                           lambda z, targets: z, keep=np.ones(4, bool), desc="test",
                           chunks_per_read=1) == 0 and loaded == [0, 3]
    store.finish(group)
    np.testing.assert_array_equal(store.open_store(url).expression.values, values)


def test_export_store_reads_a_store_in_a_bucket_and_writes_a_file_there(
        tmp_path, s3_endpoint, bucket, capsys):
    """`export-store s3://...zarr --out s3://...csv`: the local export's bytes, uploaded in one
    piece; again without --overwrite is refused; an AnnData-Zarr folder by URL is one line."""
    values, samples, genes = small_matrix(120, 12, seed=4)
    write_gctx(tmp_path / "m.gctx", values, samples, genes)
    assert cli(capsys, "ingest", tmp_path / "m.gctx", "--out", f"{bucket}/m.zarr", "--quiet")[0] == 0
    for suffix in ("csv", "gctx"):
        status, _, err = cli(capsys, "export-store", f"{bucket}/m.zarr", "--out",
                             f"{bucket}/out/m.{suffix}")
        assert status == 0, err
        status, _, err = cli(capsys, "export-store", f"{bucket}/m.zarr", "--out",
                             tmp_path / f"exported.{suffix}")
        assert status == 0, err
        if suffix == "csv":
            assert filesystem(s3_endpoint).cat_file(f"{bucket}/out/m.csv") == \
                (tmp_path / "exported.csv").read_bytes()
    status, _, err = cli(capsys, "export-store", f"{bucket}/m.zarr", "--out",
                         f"{bucket}/out/m.csv")
    assert status == 1 and "exists; pass --overwrite" in err, err
    status, _, err = cli(capsys, "export-store", f"{bucket}/m.zarr", "--out",
                         f"{bucket}/out/m.zarr")
    assert status == 1 and "written to a local path only" in err and len(err.splitlines()) == 1
