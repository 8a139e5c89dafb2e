"""``streamgex run``: killed in the middle of training, ``status`` says where it stopped, and
running the same command again skips what is done and resumes the rest."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from streamgex.cli import main
from streamgex.training.checkpoint import latest, read_state

CONFIG = """
name = "tiny"
workdir = "{work}"
chunk_samples = 256

[inputs]
geo = "{raw[geo]}"
rnaseq = "{raw[rnaseq]}"
landmarks = "{raw[map_lm]}"
targets = "{raw[map_tg]}"

[split]
train_per_cluster = 100
val_per_cluster = 20

[pca]
enabled = false

[train.linear]

[train.autoencoder]
hidden = [32, 8, 32]
batch = 32
max_epochs = 24
learning_rate = 0.01
checkpoint_steps = 5
monitor = 200
"""


def status_of(config, capsys, *overrides):
    """``status`` as {stage: words of its line}; its exit status is checked against them (0
    when every stage is done, 3 otherwise) and its --json output against its text."""
    args = ["status", str(config), *(a for o in overrides for a in ("--set", o))]
    code = main(args)
    lines = capsys.readouterr().out.splitlines()
    found = {name: rest.split() for name, rest in (re.split(r"\s{2,}", line, maxsplit=1)
                                                   for line in lines)}
    assert code == (0 if all(v[0] == "done" for v in found.values()) else 3), (code, found)
    assert main(args + ["--json"]) == code
    stages = json.loads(capsys.readouterr().out)
    assert {s["name"]: (s["state"] + " " + s["detail"]).split() for s in stages} == found
    return found


def checkpoint_state(run):
    found = latest(run / "checkpoints")
    return read_state(found) if found else None


def test_run_resumes_after_sigkill_and_status_follows(tmp_path, demo_raw, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(work=tmp_path / "work", raw=demo_raw))
    before = status_of(config, capsys)
    assert {v[0] for v in before.values()} == {"to"}, before  # "to do" everywhere

    run = tmp_path / "work" / "runs" / "autoencoder"
    proc = subprocess.Popen([sys.executable, "-m", "streamgex", "run", str(config), "--quiet"],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        state = checkpoint_state(run) if run.exists() else None
        if state and state["epoch"] >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_state(run)
    assert not killed_at["done"]

    middle = status_of(config, capsys)
    assert middle["geo_std store"] == ["done"] and middle["rnaseq_std store"] == ["done"]
    assert middle["split"] == ["done"] and middle["train linear"] == ["done"]
    partial = middle["train autoencoder"]
    text = " ".join(partial)
    assert text.startswith(f"partial {killed_at['epoch']} epochs done"), text
    assert "best validation MAE" in text  # a validation (every 5 epochs) has happened
    assert middle["evaluate autoencoder on test"] == ["to", "do"]
    assert middle["report"][:2] == ["to", "do"]

    assert main(["run", str(config)]) == 0
    resumed = capsys.readouterr()
    assert f"resuming {run} from ckpt-" in resumed.err  # messages go to stderr, results to stdout
    assert "epoch 1:" not in resumed.err + resumed.out  # nothing trained twice from the start
    assert "train linear: up to date" in resumed.err  # skipped
    assert resumed.err.count("up to date") >= 8  # every preprocessing store
    assert "report:" in resumed.out

    after = status_of(config, capsys)
    assert {v[0] for v in after.values()} == {"done"}, after
    log = (run / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log] == list(range(1, len(log) + 1))

    # status judges each store by its step's own rule: changed options make it stale
    changed = status_of(config, capsys, "split.seed=5")
    assert changed["split"][0] == "stale" and changed["geo_std store"] == ["done"]
    changed = status_of(config, capsys, 'normalize.reference="normal"')
    assert changed["geo_norm store"][0] == "stale" and changed["geo_genes store"] == ["done"]
    assert changed["rnaseq_norm store"][0] == "stale"
    changed = status_of(config, capsys, "train.autoencoder.max_epochs=25")
    assert changed["train autoencoder"][:4] == ["stale", "made", "with", "other"]
    assert changed["train linear"] == ["done"]


LINEAR_ONLY = CONFIG.split("[train.autoencoder]")[0]


def test_run_never_reuses_a_model_trained_on_another_split(tmp_path, demo_raw, capsys):
    """Issue 11.1: a split rebuilt in place (other seed) makes the models trained on the old
    one stale: ``run`` names them and trains nothing; ``--retrain`` retrains them."""
    config = tmp_path / "tiny.toml"
    config.write_text(LINEAR_ONLY.format(work=tmp_path / "work", raw=demo_raw))
    model = tmp_path / "work" / "runs" / "linear" / "best" / "linear.npy"
    assert main(["run", str(config), "--quiet"]) == 0
    first = model.read_bytes()
    first_test = (tmp_path / "work" / "runs" / "linear" / "eval" / "test.json").read_text()
    capsys.readouterr()

    assert main(["run", str(config), "--quiet", "--set", "split.seed=5"]) == 1
    err = capsys.readouterr().err
    assert "made with other data or options, so not reused" in err, err
    assert "runs/linear (data)" in err and "--retrain" in err
    assert model.read_bytes() == first  # nothing trained, nothing discarded
    stale = status_of(config, capsys, "split.seed=5")
    assert stale["split"] == ["done"]  # rebuilt before training was refused
    assert stale["train linear"][:4] == ["stale", "made", "with", "other"]
    assert stale["evaluate linear on test"][0] != "done"

    assert main(["run", str(config), "--quiet", "--set", "split.seed=5", "--retrain"]) == 0
    assert model.read_bytes() != first  # least squares on other profiles
    assert (tmp_path / "work" / "runs" / "linear" / "eval" / "test.json").read_text() != first_test
    capsys.readouterr()
    done = status_of(config, capsys, "split.seed=5")
    assert {v[0] for v in done.values()} == {"done"}, done
    # and back: the original split is rebuilt and the model trained on seed 5 is stale again
    assert main(["run", str(config), "--quiet"]) == 1


MOVABLE = CONFIG.replace("max_epochs = 24", "max_epochs = 2") + """
[train.emlp]
hidden = [16]
batch = 32
max_epochs = 2
"""


def test_a_workdir_moved_whole_is_still_up_to_date_and_predicts(tmp_path, demo_raw, capsys):
    """Issue 11.15: a workdir could not be moved (stores and runs recorded absolute paths and
    identities held them): after `mv` every stage was redone or a run failed to find its data.
    Now records are relative and identities are content: nothing is redone, predict works."""
    import numpy as np

    from streamgex.store import open_store

    config = tmp_path / "movable.toml"
    config.write_text(MOVABLE.format(work=tmp_path / "work", raw=demo_raw))
    assert main(["run", str(config), "--quiet"]) == 0
    before = tmp_path / "before.zarr"
    assert main(["predict", str(tmp_path / "work" / "runs" / "emlp"), str(demo_raw["geo"]),
                 "--out", str(before), "--quiet"]) == 0
    os.rename(tmp_path / "work", tmp_path / "moved")
    config.write_text(MOVABLE.format(work=tmp_path / "moved", raw=demo_raw))
    capsys.readouterr()
    states = status_of(config, capsys)
    assert {v[0] for v in states.values()} == {"done"}, states
    log = tmp_path / "moved" / "runs" / "autoencoder" / "log.csv"
    seen = log.stat().st_mtime_ns
    assert main(["run", str(config)]) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and "rebuilding" not in err, err
    assert log.stat().st_mtime_ns == seen
    after = tmp_path / "after.zarr"
    assert main(["predict", str(tmp_path / "moved" / "runs" / "emlp"), str(demo_raw["geo"]),
                 "--out", str(after), "--quiet"]) == 0
    np.testing.assert_array_equal(open_store(after).expression.values,
                                  open_store(before).expression.values)
