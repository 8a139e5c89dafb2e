"""A workdir in a bucket (issue 28; ``streamgex.mirror``), against moto's S3 server on
127.0.0.1: the experiment run there gives the local run's values, ``status`` says done from
any machine, a second ``run`` changes no object, and a SIGKILL during training resumes,
on another machine (another local copy), from the last checkpoint the bucket got."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from s3 import filesystem
from test_experiment import CONFIG, MOVABLE, status_of

from streamgex import mirror, store
from streamgex.cli import main


def objects(endpoint, url):
    """Every object under ``url`` with its ETag: what a second run must leave as it is."""
    fs = filesystem(endpoint)
    fs.invalidate_cache()
    return {path: info["ETag"] for path, info in fs.find(url, detail=True).items()}


def evaluations(work):
    """Every evaluation's figures under a workdir's runs: ``{run/dataset: mae}``."""
    found = {}
    for path in sorted((work / "runs").glob("*/eval/*.json")):
        found[f"{path.parent.parent.name}/{path.stem}"] = json.loads(path.read_text())["mae"]
    return found


def test_an_experiment_with_its_workdir_in_a_bucket_runs_as_on_a_disk(
        tmp_path, demo_raw, s3_endpoint, bucket, capsys, monkeypatch):
    local, remote = tmp_path / "local.toml", tmp_path / "remote.toml"
    local.write_text(MOVABLE.format(work=tmp_path / "work", raw=demo_raw))
    remote.write_text(MOVABLE.format(work=f"{bucket}/demo", raw=demo_raw))
    assert main(["run", str(local), "--quiet"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-a"))
    assert main(["run", str(remote)]) == 0
    out = capsys.readouterr().out
    assert f"report: {bucket}/demo/report/report.md (local copy: " in out, out
    copy = mirror.local_copy(f"{bucket}/demo")
    assert evaluations(copy) == evaluations(tmp_path / "work") != {}
    # the bucket holds the workdir as Zarr and files: a Zarr user opens its stores by URL
    np.testing.assert_array_equal(
        store.open_store(f"{bucket}/demo/split/test").expression.values,
        store.open_store(tmp_path / "work" / "split" / "test").expression.values)
    fs = filesystem(s3_endpoint)
    manifest = json.loads(fs.cat_file(f"{bucket}/demo/{mirror.MANIFEST}"))
    assert "runs/emlp/best/emlp.keras" in manifest["files"]
    assert not any(".partial" in name or name.endswith(".lock") for name in manifest["files"])
    assert not fs.exists(f"{bucket}/demo.lock")  # the workdir's lock is given back

    # another machine (an empty local copy) finds every stage done, and a second run there
    # changes no object of the bucket
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-b"))
    before = objects(s3_endpoint, bucket)
    states = status_of(remote, capsys)
    assert {v[0] for v in states.values()} == {"done"}, states
    assert main(["run", str(remote)]) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and "training" not in err, err
    assert objects(s3_endpoint, bucket) == before


def test_a_sigkill_during_training_in_a_bucket_workdir_resumes_on_another_machine(
        tmp_path, demo_raw, s3_endpoint, bucket, capsys, monkeypatch):
    text = CONFIG.replace("max_epochs = 60", "max_epochs = 14")
    local, remote = tmp_path / "local.toml", tmp_path / "remote.toml"
    local.write_text(text.format(work=tmp_path / "work", raw=demo_raw))
    remote.write_text(text.format(work=f"{bucket}/demo", raw=demo_raw))
    assert main(["run", str(local), "--quiet"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-a"))
    proc = subprocess.Popen([sys.executable, "-m", "streamgex", "run", str(remote), "--quiet"],
                            stderr=subprocess.PIPE, env=os.environ.copy())
    fs, deadline, pushed = filesystem(s3_endpoint), time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        try:
            files = json.loads(fs.cat_file(f"{bucket}/demo/{mirror.MANIFEST}"))["files"]
        except FileNotFoundError:
            files = {}
        for name in files:
            if name.startswith("runs/autoencoder/checkpoints/") and name.endswith("state.json"):
                try:  # a later push may have replaced that checkpoint since
                    epoch = json.loads(fs.cat_file(f"{bucket}/demo/{name}"))["epoch"]
                except FileNotFoundError:
                    continue
                pushed = max(epoch, pushed or 0)
        if pushed is not None and pushed >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-b"))
    middle = status_of(remote, capsys)
    assert middle["train autoencoder"][0] == "partial", middle
    assert main(["run", str(remote)]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "from ckpt-" in err, err
    copy = mirror.local_copy(f"{bucket}/demo")
    assert evaluations(copy) == evaluations(tmp_path / "work") != {}
    rows = (copy / "runs" / "autoencoder" / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, len(rows) + 1))
