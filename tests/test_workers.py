"""Issue 26: training on several workers (tf.distribute's MultiWorkerMirroredStrategy, a
custom loop): two worker processes on 127.0.0.1, one core each, train through the CLI to the
model one process trains on the same global batches; a worker killed mid-epoch stops its
peer with one line, and re-running both ends with the uninterrupted model; a peer that never
starts is one line within the timeout, not a hang."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from streamgex.training.checkpoint import latest
from streamgex.training.placement import local_ports
from streamgex.training.run import Run
from test_training import split_dir  # noqa: F401  (the module's small split, as a fixture)

OPTIONS = ["hidden=32,32", "max_epochs=3", "batch=64", "dropout=0", "deterministic=true",
           "monitor=200", "checkpoint_steps=5"]
#: Seconds every wait of these tests is bounded by (a worker's peers, a process's end).
TIMEOUT = 60


def command(model, split, run, options, *extra):
    return [sys.executable, "-m", "streamgex", "train", model, "--data", str(split),
            "--run-dir", str(run), *extra,
            *(a for o in options for a in ("--set", o))]


def start(args, core):
    """A worker pinned to one core (the machine has two), TensorFlow's notes silenced."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cores = sorted(os.sched_getaffinity(0))
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cores[core % len(cores)]}))


def cluster(model, split, run, options, *extra, timeout=TIMEOUT):
    """Two workers of one cluster running the same command; their processes."""
    addresses = ",".join(f"127.0.0.1:{p}" for p in local_ports(2))
    return [start(command(model, split, run, options, *extra, "--cluster", addresses,
                          "--rank", str(rank), "--peer-timeout", str(timeout)), rank)
            for rank in range(2)]


def finish(processes):
    errors = [p.communicate(timeout=TIMEOUT * 3)[1] for p in processes]
    return [p.returncode for p in processes], errors


def weights(run, part=None):
    folder = Run(run).checkpoint_dir(part or 0)
    with np.load(latest(folder) / "variables.npz") as f:
        return {k: f[k] for k in f.files if k.startswith("model/")}


def assert_same_model(a, b, atol=1e-5):
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def codes(split_dir, tmp_path_factory):  # noqa: F811
    from streamgex.cli import main

    tmp = tmp_path_factory.mktemp("codes")
    assert main(command("autoencoder", split_dir, tmp / "ae",
                        ["hidden=16,8,16", "max_epochs=1", "batch=64"])[3:]) == 0
    assert main(["encode", str(tmp / "ae"), "--data", str(split_dir), "--out",
                 str(tmp / "codes"), "--quiet"]) == 0
    return tmp / "codes"


@pytest.mark.parametrize("model,recipe", [("dgex", "adam"), ("emlp", "paper")])
def test_two_workers_train_the_model_one_process_trains(tmp_path, split_dir, codes,  # noqa: F811
                                                        model, recipe):
    """D-GEX with AdamW (its global-norm clipping sees the all-reduced gradient) and the E-MLP
    with the paper's Nesterov momentum (the fused update) on two workers: the weights of one
    process on the same global batches, to float32 rounding."""
    options = OPTIONS + [f"recipe={recipe}"]
    extra = ["--codes", str(codes)] if model == "emlp" else []
    codes_, errors = finish(cluster(model, split_dir, tmp_path / "two", options, *extra))
    assert codes_ == [0, 0], errors
    one = subprocess.run(command(model, split_dir, tmp_path / "one", options, *extra),
                         capture_output=True, text=True, timeout=TIMEOUT * 3)
    assert one.returncode == 0, one.stderr[-2000:]
    assert_same_model(weights(tmp_path / "two"), weights(tmp_path / "one"))
    assert Run(tmp_path / "two").is_done()
    log = Run(tmp_path / "two").log_file().read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3"]  # the chief's, once


def test_dgex_partitions_train_a_whole_one_per_worker(tmp_path, split_dir):  # noqa: F811
    """Two partitions on two workers: each trains one, with no all-reduce, to the network
    one process trains; the run is one model for evaluate."""
    options = OPTIONS + ["partitions=2"]
    processes = cluster("dgex", split_dir, tmp_path / "two", options)
    codes_, errors = finish(processes)
    assert codes_ == [0, 0], errors
    subprocess.run(command("dgex", split_dir, tmp_path / "one", options), check=True,
                   capture_output=True, timeout=TIMEOUT * 3)
    for part in (0, 1):
        assert_same_model(weights(tmp_path / "two", part), weights(tmp_path / "one", part),
                          atol=1e-6)
    assert Run(tmp_path / "two").is_done()
    from streamgex.cli import main

    assert main(["evaluate", str(tmp_path / "two"), str(split_dir / "test"), "--quiet"]) == 0


def test_a_killed_worker_stops_its_peer_and_both_resume_to_the_same_model(
        tmp_path, split_dir):  # noqa: F811
    options = OPTIONS + ["recipe=adam", "max_epochs=4"]
    run = tmp_path / "killed"
    processes = cluster("dgex", split_dir, run, options)
    deadline = time.monotonic() + TIMEOUT * 2
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        found = latest(Run(run).checkpoint_dir()) if Run(run).config_file.exists() else None
        if found is not None and int(found.name[5:]) >= 20:  # mid epoch 2: 16 steps an epoch
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in processes), finish(processes)[1]
    processes[1].send_signal(signal.SIGKILL)
    started = time.monotonic()
    codes_, errors = finish(processes)
    assert time.monotonic() - started < TIMEOUT
    assert codes_[0] == 1 and "a peer of the cluster stopped answering" in errors[0], errors
    assert "Traceback" not in errors[0]
    assert not Run(run).is_done()

    codes_, errors = finish(cluster("dgex", split_dir, run, options))
    assert codes_ == [0, 0], errors
    assert "resuming" in errors[0]
    finish_straight = finish(cluster("dgex", split_dir, tmp_path / "straight", options))
    assert finish_straight[0] == [0, 0], finish_straight[1]
    assert_same_model(weights(run), weights(tmp_path / "straight"), atol=1e-6)


def test_a_peer_that_never_starts_is_one_line_within_the_timeout(tmp_path, split_dir):  # noqa: F811
    address = ",".join(f"127.0.0.1:{p}" for p in local_ports(2))
    started = time.monotonic()
    alone = start(command("dgex", split_dir, tmp_path / "alone", OPTIONS, "--cluster", address,
                          "--rank", "0", "--peer-timeout", "5"), 0)
    _, err = alone.communicate(timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT
    assert alone.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("streamgex: error:")]
    assert len(lines) == 1 and "not every worker of the cluster answered within 5 s" in lines[0]
    assert "Traceback" not in err


def test_a_worker_with_other_options_is_refused_before_training(tmp_path, split_dir):  # noqa: F811
    addresses = ",".join(f"127.0.0.1:{p}" for p in local_ports(2))
    processes = [start(command("dgex", split_dir, tmp_path / "run", OPTIONS + [f"seed={rank}"],
                               "--cluster", addresses, "--rank", str(rank),
                               "--peer-timeout", "30"), rank) for rank in range(2)]
    codes_, errors = finish(processes)
    assert codes_ == [1, 1], errors
    assert all("started with other options, data or model" in e for e in errors), errors
    assert not (tmp_path / "run").exists()


def test_run_on_two_workers_makes_the_experiment_worker_0_makes_alone(tmp_path, demo_raw):
    """``run --cluster``: worker 0 makes every stage, worker 1 waits for the split and joins
    each training stage; then ``status`` finds every stage done."""
    from streamgex.cli import main
    from test_experiment import LINEAR_ONLY

    config = tmp_path / "tiny.toml"
    config.write_text(LINEAR_ONLY.format(work=tmp_path / "work", raw=demo_raw) + """
[train.dgex]
hidden = [32]
batch = 64
max_epochs = 2
dropout = 0.0
""")
    addresses = ",".join(f"127.0.0.1:{p}" for p in local_ports(2))
    processes = [start([sys.executable, "-m", "streamgex", "run", str(config), "--cluster",
                        addresses, "--rank", str(rank), "--peer-timeout", "60"], rank)
                 for rank in (1, 0)]
    codes_, errors = finish(processes)
    assert codes_ == [0, 0], errors
    assert "waiting for worker 0 to make" in errors[0] and "joining" in errors[0]
    assert "data-parallel" in errors[1]
    assert main(["status", str(config)]) == 0


def test_float16_trains_with_loss_scaling_and_a_device_not_there_is_one_line(
        tmp_path, split_dir, capsys):  # noqa: F811
    """``--precision float16`` (a GPU without bf16) trains through Keras's loss-scale
    optimizer to a finite model; ``--device gpu:99`` is refused in one line, for training
    and for a command that only runs a model."""
    import json

    from streamgex.cli import main

    args = command("dgex", split_dir, tmp_path / "half", ["hidden=16,16", "max_epochs=2",
                                                           "batch=64"])[3:]
    assert main(args + ["--precision", "float16", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "half" / "config.json").read_text())["precision"] == "float16"
    assert main(["evaluate", str(tmp_path / "half"), str(split_dir / "test"), "--device",
                 "cpu"]) == 0
    assert np.isfinite(json.loads((tmp_path / "half" / "eval" / "test.json").read_text())["mae"])
    capsys.readouterr()
    for command_line in (args + ["--device", "gpu:99"],
                         ["evaluate", str(tmp_path / "half"), str(split_dir / "test"),
                          "--device", "gpu:99"]):
        assert main(command_line) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--device gpu:99: TensorFlow sees" in err[0], err
