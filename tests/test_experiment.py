"""``streamgex run``: killed in the middle of training, ``status`` says where it stopped, and
running the same command again skips what is done and resumes the rest."""

import os
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
max_epochs = 60
learning_rate = 0.01
checkpoint_steps = 5
monitor = 200
"""


def status_of(config, capsys, *overrides):
    assert main(["status", str(config), *(a for o in overrides for a in ("--set", o))]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line[:30].strip(): line[30:].split() for line in lines}


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
    assert "training finished" in resumed.err  # linear: skipped
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
    changed = status_of(config, capsys, "train.autoencoder.max_epochs=61")
    assert changed["train autoencoder"][:4] == ["stale", "made", "with", "other"]
    assert changed["train linear"] == ["done"]
