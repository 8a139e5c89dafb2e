"""Training runs end to end, and a run killed mid-epoch resumes to the very same weights."""

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex.cli import main  # noqa: E402
from streamgex.ingest import ingest  # noqa: E402
from streamgex.preprocess.genes import genes  # noqa: E402
from streamgex.preprocess.split import split  # noqa: E402
from streamgex.preprocess.standardize import standardize  # noqa: E402
from streamgex.training.checkpoint import candidates, latest  # noqa: E402
from streamgex.training.run import Run  # noqa: E402
from test_ingest_resume import kill_when  # noqa: E402


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory, demo_raw):
    tmp = tmp_path_factory.mktemp("train")
    ingest(demo_raw["geo"], tmp / "geo.zarr", chunk_samples=128)
    genes(tmp / "geo.zarr", tmp / "g.zarr", landmarks=demo_raw["map_lm"], targets=demo_raw["map_tg"])
    standardize(tmp / "g.zarr", tmp / "s.zarr")
    split(tmp / "s.zarr", tmp / "split", train_per_cluster=100, val_per_cluster=20)
    return tmp / "split"


def latest_checkpoint_weights(run):
    path = latest(Run(run).checkpoint_dir()) / "variables.npz"
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


TRAIN = ["hidden=64,64,64", "max_epochs=3", "batch=50", "checkpoint_steps=7",
         "deterministic=true", "monitor=200"]


@pytest.mark.parametrize("recipe", ["paper", "adam"])
def test_killed_mid_epoch_then_resumed_ends_with_the_same_weights(tmp_path, split_dir, recipe):
    args = ["train", "dgex", "--data", str(split_dir), "--quiet"] + [
        a for s in TRAIN + [f"recipe={recipe}"] for a in ("--set", s)]
    code = f"from streamgex.cli import main; main({args + ['--run-dir', str(tmp_path / 'killed')]!r})"

    def reached(_):
        run = Run(tmp_path / "killed")
        found = latest(run.checkpoint_dir()) if run.config_file.exists() else None
        return found is not None and int(found.name[5:]) >= 50  # mid epoch 2 (37 steps/epoch)

    from streamgex.models.emlp import build_emlp

    build_emlp(8, 4, (4,))  # name counters now differ from the killed process's
    kill_when(code, tmp_path / "killed" / "none", reached)
    # issue 13.5: a partial run says how long it has left, from its checkpoint alone
    from streamgex.experiment import training_stage
    from streamgex.training.eta import remaining

    state = Run(tmp_path / "killed").progress()[0]
    per_epoch = state["steps_per_epoch"]
    from streamgex.store import open_store

    assert per_epoch == -(-open_store(split_dir / "train").sizes["sample"] // 50)  # batch 50
    assert state["step_seconds"] > 0
    left = (3 * per_epoch - (state["epoch"] * per_epoch + state["step"])) * state["step_seconds"]
    killed = Run(tmp_path / "killed")
    assert remaining(killed, killed.progress()) == pytest.approx(left) and left > 0
    assert "left at most" in training_stage("dgex", Run(tmp_path / "killed")).detail
    subprocess.run([sys.executable, "-c", code], check=True)
    assert Run(tmp_path / "killed").is_done()
    assert "left at most" not in training_stage("dgex", Run(tmp_path / "killed")).detail
    assert main(args + ["--run-dir", str(tmp_path / "straight")]) == 0
    a = latest_checkpoint_weights(tmp_path / "killed")  # one partition: one network, no part folders
    b = latest_checkpoint_weights(tmp_path / "straight")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    log = Run(tmp_path / "killed").log_file().read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3"], "one row per epoch"


def test_all_four_models_train_and_a_changed_run_is_refused(tmp_path, split_dir, capsys):
    base = ["--data", str(split_dir), "--quiet"]
    small = ["--set", "max_epochs=5", "--set", "batch=64"]
    assert main(["train", "linear", "--run-dir", str(tmp_path / "lin"), *base]) == 0
    assert main(["train", "autoencoder", "--run-dir", str(tmp_path / "ae"), *base, *small,
                 "--set", "hidden=64,16,64", "--set", "tied=true"]) == 0
    assert (tmp_path / "ae" / "best" / "encoder.keras").exists()
    assert main(["encode", str(tmp_path / "ae"), "--data", str(split_dir), "--out",
                 str(tmp_path / "codes"), "--quiet"]) == 0
    assert main(["train", "emlp", "--run-dir", str(tmp_path / "emlp"), *base, *small,
                 "--set", "hidden=32,32", "--codes", str(tmp_path / "codes")]) == 0
    assert (tmp_path / "emlp" / "best" / "emlp.keras").exists()
    assert main(["train", "dgex", "--run-dir", str(tmp_path / "dgex"), *base, *small,
                 "--set", "hidden=32,32,32", "--set", "partitions=2"]) == 0
    assert sorted(p.name for p in (tmp_path / "dgex" / "best").iterdir()) == [
        "dgex_part1.keras", "dgex_part2.keras"]
    log = (tmp_path / "emlp" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,global_step,train_mae,val_mae,learning_rate")
    assert len(log) == 6 and log[5].split(",")[3] != ""  # validation at epoch 5
    # TensorBoard in Keras's layout: train/ and validation/ runs with the same epoch_mae tag
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = {}
    for run in ("train", "validation"):
        events = EventAccumulator(str(tmp_path / "emlp" / "tensorboard" / run),
                                  size_guidance={"tensors": 0}).Reload()
        curves[run] = {e.step: float(np.asarray(tf.make_ndarray(e.tensor_proto)))
                       for e in events.Tensors("epoch_mae")}
    rows = [line.split(",") for line in log[1:]]
    assert curves["train"] == pytest.approx({int(r[0]): float(r[2]) for r in rows}, rel=1e-6)
    assert curves["validation"] == pytest.approx({5: float(rows[4][3])}, rel=1e-6)
    capsys.readouterr()
    assert main(["train", "dgex", "--run-dir", str(tmp_path / "dgex"), *base, *small,
                 "--set", "hidden=32,32,32"]) == 1
    assert "differs in partitions" in capsys.readouterr().err


def test_a_run_that_cannot_fit_is_refused_with_what_would_fit(tmp_path, split_dir, capsys):
    # the parameters and their state exceed the budget: no batch would do
    status = main(["train", "autoencoder", "--data", str(split_dir), "--run-dir",
                   str(tmp_path / "ae"), "--quiet", "--set", "hidden=2000,500,2000",
                   "--memory-budget", "200MB"])
    err = capsys.readouterr().err
    assert status == 1 and "needs about" in err and "budget is 0.2 GiB" in err
    assert "whatever the batch" in err
    for option in ("tied=true", "smaller hidden", "--memory-budget"):
        assert option in err
    # the activations of a huge batch exceed it: the batch that fits is named
    status = main(["train", "autoencoder", "--data", str(split_dir), "--run-dir",
                   str(tmp_path / "ae2"), "--quiet", "--set", "hidden=2000,500,2000",
                   "--set", "batch=1000000", "--memory-budget", "3GB"])
    err = capsys.readouterr().err
    fits = int(err.split("--set batch=")[1].split(")")[0])
    assert status == 1 and "a batch of" in err and 1 <= fits < 1_000_000, err
    assert "bf16" in err


def test_memory_estimate_counts_parameters_and_their_state():
    from streamgex.models.emlp import build_emlp
    from streamgex.training.memory import estimate, parse_size

    model = build_emlp(100, 50, (300, 200))
    parts = estimate(model, batch=10, stream_bytes=0, precision="float32")
    parameters = 100 * 300 + 300 + 300 * 200 + 200 + 200 * 50 + 50
    assert parts["parameters"] == parameters
    assert parts["weights, gradients, optimizer"] == 12 * parameters
    # applied one by one (the fused momentum update): the largest kernel's gradient only
    each = estimate(model, batch=10, stream_bytes=0, precision="float32", each_gradient=True)
    assert each["weights, gradients, optimizer"] == 8 * parameters + 4 * 300 * 200
    assert parse_size("8GB") == 8 * 2**30 and parse_size("512MiB") == 512 * 2**20


def train_both_ways(make_optimizer, steps=4, scales=None):
    """Model weights and optimizer slots after ``steps`` steps of ``make_train_step`` and of
    Keras's own ``optimizer.apply``, from the same start: ``(ours, keras's)``; ``scales``:
    rate multipliers by variable path (Keras's side multiplies the gradients)."""
    import keras
    import tensorflow as tf

    from streamgex.models.emlp import build_emlp
    from streamgex.training.loop import make_train_step

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12)).astype(np.float32)
    y = rng.normal(size=(16, 5)).astype(np.float32)
    results = []
    for ours in (True, False):
        keras.utils.set_random_seed(3)
        model = build_emlp(12, 5, (20, 20), dropout=0.0)
        optimizer = make_optimizer()
        if ours:
            step = make_train_step(model, optimizer, scales)
        else:
            optimizer.build(model.trainable_variables)

            def step(xb, yb, model=model, optimizer=optimizer):
                with tf.GradientTape() as tape:
                    loss = keras.ops.mean(keras.ops.square(model(xb, training=True) - yb))
                gradients = tape.gradient(loss, model.trainable_variables)
                gradients = [g * (scales or {}).get(v.path, 1.0)
                             for g, v in zip(gradients, model.trainable_variables)]
                optimizer.apply(gradients, model.trainable_variables)
        for _ in range(steps):
            step(x, y)
        assert int(optimizer.iterations.numpy()) == steps
        results.append([v.numpy() for v in model.trainable_variables + optimizer.momentums])
    return results


@pytest.mark.parametrize("nesterov", [True, False])
def test_fused_momentum_update_equals_the_keras_optimizer(nesterov):
    import keras

    from streamgex.training.loop import fusable

    def make():
        return keras.optimizers.SGD(0.05, momentum=0.9, nesterov=nesterov)

    assert fusable(make())
    scales = {"hidden1/kernel": 0.5, "codes/bias": 3.0}  # D-GEX-style per-layer rates
    for fused_value, keras_value in zip(*train_both_ways(make, scales=scales)):
        np.testing.assert_allclose(fused_value, keras_value, rtol=1e-5, atol=1e-7)


def test_each_update_waits_for_every_use_of_its_weights():
    """An in-place update running while the backward still holds the weights it read copies
    the whole variable (a 560 MB kernel in the E-MLP): each update must come after every
    op that uses its variable's value, and only after those."""
    import keras

    from streamgex.models.emlp import build_emlp
    from streamgex.training.loop import make_train_step, value_users

    model = build_emlp(12, 5, (20, 20), dropout=0.1)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    step = make_train_step(model, optimizer)
    x, y = np.zeros((4, 12), np.float32), np.zeros((4, 5), np.float32)
    graph = step.get_concrete_function(x, y).graph
    updates = [op for op in graph.get_operations() if op.type == "ResourceApplyKerasMomentum"]
    assert len(updates) == len(model.trainable_variables) == 6
    for variable in model.trainable_variables:
        handle = graph.capture(variable.value.handle)
        (update,) = [op for op in updates if op.inputs[0] is handle]
        users = value_users(graph, variable)
        kinds = sorted(op.type for op in users)
        # a kernel: the forward product and, past the first layer, the input gradient's
        assert kinds in (["MatMul"], ["MatMul", "MatMul"], ["AddV2"]), (variable.path, kinds)
        assert set(users) <= set(update.control_inputs), variable.path
    hidden2 = value_users(graph, model.get_layer("hidden2").kernel)
    assert len(hidden2) == 2  # read by the backward too: the case the ordering is for


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_each_kernel_gradient_waits_for_the_update_of_the_layer_after_it(precision):
    """Two kernel-sized gradients alive at once cost the full autoencoder 0.8 GiB of peak in
    most runs: the product giving a kernel's gradient must come after the update of the
    kernel whose gradient the backward took before it; the step still runs (no cycle)."""
    import keras

    from streamgex.models.autoencoder import autoencoder_optimizer, build_autoencoder
    from streamgex.training.loop import depends_on, make_train_step

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        model = build_autoencoder(24, (16, 6, 16), seed=2)[0]
        step = make_train_step(model, autoencoder_optimizer())
        x = np.random.default_rng(0).normal(size=(4, 24)).astype(np.float32)
        graph = step.get_concrete_function(x, x).graph
        assert np.isfinite(float(step(x, x)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    updates = {op.inputs[0].name: op for op in graph.get_operations()
               if op.type == "ResourceApplyKerasMomentum"}
    kernels = [v for v in model.trainable_variables if len(v.shape) == 2]
    assert len(kernels) == 4
    for kernel, later in zip(kernels, kernels[1:]):
        later_update = updates[graph.capture(later.value.handle).name]
        products = [op for op in graph.get_operations()
                    if op.type == "MatMul" and later_update in op.control_inputs]
        assert len(products) == 1, kernel.path
        # the product is the one whose output becomes this kernel's gradient
        (update,) = [updates[graph.capture(kernel.value.handle).name]]
        assert depends_on(update, products[0]), kernel.path
    waiting = [op for op in graph.get_operations() if op.type == "MatMul"
               and set(op.control_inputs) & set(updates.values())]
    assert len(waiting) == 3  # the last kernel's gradient, the backward's first, waits for none



@pytest.mark.parametrize("extra", [{"clipnorm": 0.01}, {"weight_decay": 0.1}, {"use_ema": True}])
def test_an_optimizer_doing_more_than_momentum_keeps_its_own_update(extra):
    import keras

    from streamgex.training.loop import fusable

    def make():
        return keras.optimizers.SGD(0.05, momentum=0.9, **extra)

    assert not fusable(make())
    for ours, keras_value in zip(*train_both_ways(make, steps=3)):
        np.testing.assert_allclose(ours, keras_value, rtol=1e-5, atol=1e-7)


def test_a_run_knows_its_split_by_content_not_by_path(tmp_path, split_dir, capsys):
    """Issue 11.1: the same split under another path is the same data; a split rebuilt in
    place with other options is other data, and the run trained on it is refused."""
    import shutil

    copy = tmp_path / "split"
    shutil.copytree(split_dir, copy)
    run = ["train", "linear", "--run-dir", str(tmp_path / "lin")]
    assert main(run + ["--data", str(split_dir)]) == 0
    capsys.readouterr()
    assert main(run + ["--data", str(copy)]) == 0
    assert "up to date (training finished)" in capsys.readouterr().err
    split(split_dir.parent / "s.zarr", copy,
          train_per_cluster=100, val_per_cluster=20, seed=5, overwrite=True)
    assert main(run + ["--data", str(copy)]) == 1
    assert "trained on other data than" in capsys.readouterr().err
    assert main(run + ["--data", str(copy), "--restart"]) == 0


def test_a_diverging_run_stops_with_one_line_and_is_not_done(tmp_path, split_dir, capsys):
    """Issue 11.8: a loss that becomes NaN stops training (exit 1) instead of saving a NaN
    model as the best and finishing."""
    run = tmp_path / "nan"
    status = main(["train", "dgex", "--data", str(split_dir), "--run-dir", str(run), "--quiet",
                   "--set", "hidden=32,32", "--set", "max_epochs=3", "--set", "batch=64",
                   "--set", "learning_rate=1e12", "--set", "checkpoint_steps=1"])
    err = capsys.readouterr().err
    assert status == 1 and "training diverged" in err and "--restart" in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not Run(run).is_done()
    for found in Run(run).checkpoint_dir().glob("ckpt-*/variables.npz"):
        with np.load(found) as arrays:
            assert all(np.isfinite(arrays[k]).all() for k in arrays.files if k.startswith("model/"))
    assert main(["evaluate", str(run), str(split_dir / "test")]) == 1


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, split_dir, capsys):
    """Issue 11.10: a run killed mid-epoch whose newest checkpoint is then cut short (and a
    newer empty one appears) resumes from the older one kept, with a warning, and ends with
    the very weights of an uninterrupted run."""
    args = ["train", "dgex", "--data", str(split_dir), "--quiet"] + [
        a for s in TRAIN for a in ("--set", s)]
    killed = tmp_path / "killed"
    code = f"from streamgex.cli import main; main({args + ['--run-dir', str(killed)]!r})"

    def reached(_):
        found = latest(Run(killed).checkpoint_dir()) if Run(killed).config_file.exists() else None
        return found is not None and int(found.name[5:]) >= 50

    kill_when(code, killed / "none", reached)
    # two complete ones (three when the kill fell between a save and the old one's removal)
    assert len(candidates(Run(killed).checkpoint_dir())) >= 2
    newest = latest(Run(killed).checkpoint_dir())
    data = (newest / "variables.npz").read_bytes()
    (newest / "variables.npz").write_bytes(data[:len(data) // 2])
    (Run(killed).checkpoint_dir() / "ckpt-999999999999").mkdir()
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"] + ["--run-dir", str(killed)]) == 0
    err = capsys.readouterr().err
    assert err.count("falling back to the checkpoint before it") == 2, err
    assert main(args + ["--run-dir", str(tmp_path / "straight")]) == 0
    a, b = latest_checkpoint_weights(killed), latest_checkpoint_weights(tmp_path / "straight")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    log = Run(killed).log_file().read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3"]


def test_killed_while_writing_the_model_leaves_no_file_that_says_done(tmp_path, split_dir):
    """Issue 11.6: a kill while best/linear.npy was written left a 0-byte file that later
    said "up to date" (then EOFError). Killed in the middle of that write, the run is not
    done and the re-run trains it."""
    import signal
    import time

    run = tmp_path / "lin"
    args = ["train", "linear", "--data", str(split_dir), "--run-dir", str(run), "--quiet"]
    code = ("import time, numpy as np\n"
            "def stuck(f, array, *a, **k):\n"
            "    f.write(b'\\x93NUMPY'); f.flush(); time.sleep(600)\n"
            "np.save = stuck\n"
            f"from streamgex.cli import main; main({args!r})")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list(run.glob("best/*.partial.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(run.glob("best/*.partial.*")), "killed inside the write"
    assert not (run / "best" / "linear.npy").exists() and not Run(run).is_done()
    assert main(args) == 0
    assert Run(run).is_done() and np.load(run / "best" / "linear.npy").size > 0
    assert main(["evaluate", str(run), str(split_dir / "val")]) == 0


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_the_faster_backward_order_gives_keras_gradients(precision):
    """``backward.fast_backward`` reorders the input-gradient product of every plain Dense
    layer; the gradients must be Keras's own (E-MLP-like stack with a linear skip, an
    autoencoder with batch normalization, under float32 and mixed bf16)."""
    import keras
    import tensorflow as tf

    from streamgex.models.autoencoder import build_autoencoder
    from streamgex.models.mlp import build_mlp
    from streamgex.training.backward import fast_backward

    def models():
        yield build_mlp(20, 7, (30, 25), activation="elu", dropout=0.1, seed=4, name="m",
                        output_name="out", linear_skip=True,
                        initializer=lambda s: keras.initializers.GlorotUniform(seed=s))
        yield build_autoencoder(24, (16, 6, 16), batch_norm=True, seed=2)[0]

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        x = np.random.default_rng(1).normal(size=(9, 24)).astype(np.float32)
        for plain, fast in zip(models(), models()):
            assert fast_backward(fast) >= 3
            inputs = x[:, :plain.input_shape[-1]]
            grads = []
            for model in (plain, fast):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(tf.cast(model(inputs, training=False),
                                                            tf.float32)))
                grads.append(tape.gradient(loss, model.trainable_variables))
            tolerance = {"rtol": 1e-5, "atol": 1e-7} if precision == "float32" \
                else {"rtol": 2e-2, "atol": 1e-3}
            for a, b in zip(*grads):
                np.testing.assert_allclose(np.asarray(b, np.float32), np.asarray(a, np.float32),
                                           **tolerance)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_trained_network_is_freed_with_its_step():
    """The faster backward must not keep a traced network's weights alive once the model and
    its step are gone (``tf.custom_gradient`` did: 151 MiB more after the third network than
    after the first here, D-GEX's five partitions at 9.6 GiB). Three networks of two
    3,000 x 3,000 kernels in turn."""
    import gc

    import keras
    import psutil

    from streamgex.models.emlp import build_emlp
    from streamgex.training.loop import make_train_step

    def resident():
        return psutil.Process().memory_info().rss

    found = []
    for _ in range(3):
        model = build_emlp(50, 5, (3000, 3000), dropout=0.1)
        step = make_train_step(model, keras.optimizers.SGD(0.05, momentum=0.9))
        step(np.zeros((4, 50), np.float32), np.zeros((4, 5), np.float32))
        del model, step
        gc.collect()
        found.append(resident())
    # each network: 72 MB of kernels and as much momentum
    assert found[2] - found[0] < 60 * 2**20, [f / 2**20 for f in found]


def test_evaluate_holds_one_dgex_partition_at_a_time_and_equals_the_whole_model(
        tmp_path, split_dir, monkeypatch):
    """Five full-size D-GEX partitions are 3.9 GiB of weights: evaluate loads them one by one
    (5.71 GiB peak with all five at 8,000 profiles, bench_fullsize.py)."""
    import gc
    import weakref

    from streamgex import store
    from streamgex.evaluation import predictor as loading
    from streamgex.evaluation.evaluate import columns_of, evaluate, read_gene_errors

    run = tmp_path / "dgex"
    assert main(["train", "dgex", "--run-dir", str(run), "--data", str(split_dir), "--quiet",
                 "--set", "max_epochs=2", "--set", "batch=64", "--set", "hidden=16,16,16",
                 "--set", "partitions=3"]) == 0
    whole = loading.load_predictor(run)
    test = store.open_store(split_dir / "test")
    keys = store.strings(test.gene.values)
    values = test.expression.values
    predicted = whole.predict(values[:, columns_of(keys, whole.inputs, "test", "input")])
    expected = np.abs(predicted - values[:, columns_of(keys, whole.targets, "test", "target")])
    del whole
    gc.collect()

    real, loaded = loading.load_keras, []

    def load_one(path):
        assert all(model() is None for model in loaded), "an earlier partition is still loaded"
        model = real(path)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(loading, "load_keras", load_one)
    result = evaluate(run, split_dir / "test")
    assert len(loaded) == 3
    assert result["mae"] == pytest.approx(expected.mean(), rel=1e-5)
    genes = read_gene_errors(Run(run).genes_file("test"))
    np.testing.assert_allclose(genes["mae"].astype(float), expected.mean(0), rtol=1e-4)
