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

import h5py
import numpy as np
import pytest
from s3 import filesystem
from test_experiment import CONFIG, status_of

from streamgex import mirror, storage, store
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


#: The tiny experiment with an E-MLP on codes: every kind of stage (stores, split, a model in
#: a training process of its own, encode, evaluate, report) goes through the bucket. Every
#: checkpoint of the autoencoder is pushed (``checkpoint_minutes = 0``), for the kill.
EXPERIMENT = CONFIG.replace("max_epochs = 24", "max_epochs = 8\ncheckpoint_minutes = 0") + """
[train.emlp]
hidden = [16]
batch = 32
max_epochs = 2
"""


def last_pushed_epoch(fs, url):
    """The newest autoencoder epoch whose checkpoint the bucket's manifest lists."""
    fs.invalidate_cache()
    try:
        files = json.loads(fs.cat_file(f"{url}/{mirror.MANIFEST}"))["files"]
    except FileNotFoundError:
        return None
    found = None
    for name in files:
        if name.startswith("runs/autoencoder/checkpoints/") and name.endswith("state.json"):
            try:  # a later push may have replaced that checkpoint since
                found = max(found or 0, json.loads(fs.cat_file(f"{url}/{name}"))["epoch"])
            except FileNotFoundError:
                continue
    return found


def test_an_experiment_in_a_bucket_killed_in_training_resumes_elsewhere_as_on_a_disk(
        tmp_path, demo_raw, s3_endpoint, bucket, capsys, monkeypatch):
    local, remote, url = tmp_path / "local.toml", tmp_path / "remote.toml", f"{bucket}/demo"
    local.write_text(EXPERIMENT.format(work=tmp_path / "work", raw=demo_raw))
    remote.write_text(EXPERIMENT.format(work=url, raw=demo_raw))
    assert main(["run", str(local), "--quiet"]) == 0
    capsys.readouterr()

    # machine A is killed in the middle of training the autoencoder
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-a"))
    proc = subprocess.Popen([sys.executable, "-m", "streamgex", "run", str(remote), "--quiet"],
                            stderr=subprocess.PIPE, env=os.environ.copy())
    fs, deadline = filesystem(s3_endpoint), time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (last_pushed_epoch(fs, url) or 0) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # machine B (an empty local copy) sees where it stopped and resumes from the bucket
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-b"))
    middle = status_of(remote, capsys)
    assert middle["split"] == ["done"] and middle["train linear"] == ["done"]
    assert middle["train autoencoder"][0] == "partial", middle
    assert main(["run", str(remote)]) == 0
    out, err = capsys.readouterr()
    assert f"resuming {url}/runs/autoencoder from ckpt-" in err, err  # the URL, not the copy
    assert f"report: {url}/report/report.md (local copy: " in out, out
    copy = mirror.local_copy(url)
    assert evaluations(copy) == evaluations(tmp_path / "work") != {}
    rows = (copy / "runs" / "autoencoder" / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, len(rows) + 1))
    # the bucket holds the workdir as Zarr and files: a Zarr user opens its stores by URL
    np.testing.assert_array_equal(
        store.open_store(f"{url}/split/test").expression.values,
        store.open_store(tmp_path / "work" / "split" / "test").expression.values)
    manifest = json.loads(fs.cat_file(f"{url}/{mirror.MANIFEST}"))
    assert "runs/emlp/best/emlp.keras" in manifest["files"]
    assert not any(".partial" in name or name.endswith(".lock") for name in manifest["files"])
    assert not fs.exists(f"{url}.lock")  # the workdir's lock is given back
    # the chain's stores are written in the bucket by the steps themselves (a Dask cluster's
    # workers need only their URL); everything else is the manifest's
    assert {name for name in objects(s3_endpoint, url) if "/stores/" not in name} == \
        {f"{url[5:]}/{name}" for name in [*manifest["files"], mirror.MANIFEST]}
    assert store.status(f"{url}/stores/geo_std.zarr")[0] == "done"

    # machine C finds every stage done, and a second run there changes no object
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-c"))
    before = objects(s3_endpoint, bucket)
    states = status_of(remote, capsys)
    assert {v[0] for v in states.values()} == {"done"}, states
    assert main(["run", str(remote)]) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and "training" not in err, err
    assert objects(s3_endpoint, bucket) == before

    # a run in the bucket is exported and predicts from there, as the local run does
    assert main(["predict", str(tmp_path / "work" / "runs" / "emlp"), str(demo_raw["geo"]),
                 "--out", str(tmp_path / "local.zarr"), "--quiet"]) == 0
    assert main(["predict", f"{url}/runs/emlp", str(demo_raw["geo"]), "--out",
                 f"{bucket}/predicted.zarr", "--gctx", f"{bucket}/predicted.gctx",
                 "--quiet"]) == 0
    expected = store.open_store(tmp_path / "local.zarr").expression.values
    np.testing.assert_array_equal(
        store.open_store(f"{bucket}/predicted.zarr").expression.values, expected)
    fs.get_file(f"{bucket}/predicted.gctx", str(tmp_path / "fetched.gctx"))
    with h5py.File(tmp_path / "fetched.gctx", "r") as gctx:
        np.testing.assert_array_equal(gctx["0/DATA/0/matrix"][:], expected)
    assert main(["export", f"{url}/runs/emlp", "--out", f"{bucket}/bundles/emlp"]) == 0
    assert main(["predict", f"{bucket}/bundles/emlp", str(demo_raw["geo"]), "--out",
                 f"{bucket}/from-bundle.zarr", "--quiet"]) == 0
    np.testing.assert_allclose(
        store.open_store(f"{bucket}/from-bundle.zarr").expression.values, expected, atol=1e-5)
    views = tmp_path / "machine-c" / "views"
    assert not list(views.glob("*-demo/*/stores")) and list(views.glob("*-demo/*/runs/emlp"))


def write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_a_push_killed_halfway_leaves_the_last_workdir_whole_and_the_next_push_clears_it(
        tmp_path, s3_endpoint, bucket, monkeypatch):
    url, fs = f"{bucket}/work", filesystem(s3_endpoint)
    first = {"report/report.md": "first report", "runs/x/log.csv": "epoch\n1\n",
             "runs/x/checkpoints/ckpt-1/variables.npz": "weights 1"}
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-a"))
    copy = mirror.Mirror(url)
    write(copy.local, first)
    assert copy.push() == 3
    # the next checkpoint's push: two files replaced, one new, one gone; killed after it has
    # replaced the report and uploaded the new checkpoint
    write(copy.local, {"report/report.md": "second report", "runs/x/log.csv": "epoch\n1\n2\n",
                       "runs/x/checkpoints/ckpt-2/variables.npz": "weights 2"})
    (copy.local / "runs/x/checkpoints/ckpt-1/variables.npz").unlink()
    upload = storage.filesystem(url)[0].put

    def killed(sources, targets, **options):
        upload(sources[:2], targets[:2], **options)
        raise OSError("killed in the middle of the upload")

    monkeypatch.setattr(storage.filesystem(url)[0], "put", killed)
    with pytest.raises(OSError):
        copy.push()
    monkeypatch.undo()
    assert fs.cat_file(f"{url}/report/report.md") == b"second report"  # replaced in place

    # another machine reads the workdir the last manifest lists, value for value
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-b"))
    other = mirror.Mirror(url)
    assert other.pull() == 3
    found = {p.relative_to(other.local).as_posix(): p.read_text()
             for p in other.local.rglob("*") if p.is_file() and p.name != mirror.RECORD}
    assert found == first
    # and its next push puts back what the killed one replaced and removes what it left
    assert other.push() == 3  # each file the killed push listed: it may have replaced it
    fs.invalidate_cache()
    assert sorted(path[len(url) - 5 + 1:] for path in fs.find(url)) == \
        sorted([*first, mirror.MANIFEST])
    assert fs.cat_file(f"{url}/report/report.md") == b"first report"

    # killed after its manifest, before it removed what that no longer lists: the next
    # push, from any copy, removes it
    write(other.local, {"runs/x/checkpoints/ckpt-3/variables.npz": "weights 3"})
    (other.local / "runs/x/checkpoints/ckpt-1/variables.npz").unlink()
    def killed_removing(path, **options):
        raise OSError("killed before it removed the first")

    monkeypatch.setattr(storage.filesystem(url)[0], "rm_file", killed_removing)
    with pytest.raises(OSError):
        other.push()
    monkeypatch.undo()
    monkeypatch.setenv("STREAMGEX_CACHE", str(tmp_path / "machine-c"))
    third = mirror.Mirror(url)
    third.pull()
    assert third.push() == 1  # ckpt-3 again: the killed push listed it
    fs.invalidate_cache()
    assert sorted(path[len(url) - 5 + 1:] for path in fs.find(url)) == sorted(
        ["report/report.md", "runs/x/log.csv", "runs/x/checkpoints/ckpt-3/variables.npz",
         mirror.MANIFEST])


def test_checkpoints_are_pushed_once_checkpoint_minutes_have_passed_since_the_last_push():
    """A full-size E-MLP checkpoint is 2.1 GB and an epoch on a GPU takes seconds: a training
    pushes a checkpoint to the bucket only when its `checkpoint_minutes` have passed since the
    last push (a stage's end always pushes)."""
    pushed = []

    class Counting:
        def push(self):
            pushed.append(time.monotonic())

    with mirror.attached(Counting()):
        mirror.push_current(every=600)  # a checkpoint 10 minutes after none: not yet
        assert pushed == []
        mirror.push_current(every=0)  # checkpoint_minutes = 0, or a stage's end
        mirror.push_current()
        assert len(pushed) == 2
        mirror.current().pushed_at -= 601  # ten minutes later
        mirror.push_current(every=600)
        assert len(pushed) == 3
    mirror.push_current()  # nothing attached: a local workdir
    assert len(pushed) == 3


def test_a_run_refused_for_a_missing_input_writes_nothing_to_the_bucket(
        tmp_path, demo_raw, s3_endpoint, bucket, capsys):
    config = tmp_path / "remote.toml"
    config.write_text(EXPERIMENT.format(work=f"{bucket}/demo", raw={
        **demo_raw, "geo": tmp_path / "missing.gctx"}))
    assert main(["run", str(config)]) == 1
    assert "inputs.geo" in capsys.readouterr().err
    fs = filesystem(s3_endpoint)
    fs.invalidate_cache()
    assert fs.find(bucket) == []
