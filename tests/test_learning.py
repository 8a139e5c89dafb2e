"""Every neural kind learns: on a strongly non-linear toy problem it beats least squares.

Targets are a linear mix of four non-linear features of the landmarks (a
sine, a square, a steep tanh, an absolute value), so least squares explains
little of them, and four codes describe them exactly. Each kind trains with
the ``adam`` recipe through the CLI, deterministically, and must reach well
below least squares' test error.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex import store  # noqa: E402
from streamgex.cli import main  # noqa: E402
from streamgex.evaluation.evaluate import evaluate  # noqa: E402

LANDMARKS, TARGETS = 8, 16
#: Test MAE as a multiple of least squares' that each network must beat.
MARGIN = 0.75


def features(x, rng):
    a = rng.standard_normal((LANDMARKS, 4)) / np.sqrt(LANDMARKS)
    u = x @ a
    return np.c_[np.sin(2 * u[:, 0]), u[:, 1] ** 2 - 1, np.tanh(3 * u[:, 2]), np.abs(u[:, 3])]


def write_part(path, values):
    keys = [f"G{i}" for i in range(LANDMARKS + TARGETS)]
    group = store.begin(path, step="split", parameters={}, source={})
    store.start_writing(group, samples=[f"S{i}" for i in range(len(values))], genes=keys,
                        chunk_samples=256,
                        coords={"is_landmark": ("gene", np.arange(len(keys)) < LANDMARKS)})
    store.write_chunks(group, lambda a, b: values[a:b], desc="")
    store.finish(group)


@pytest.fixture(scope="module")
def toy_split(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, LANDMARKS))
    f = features(x, np.random.default_rng(1))
    f = (f - f.mean(0)) / f.std(0)
    y = f @ (rng.standard_normal((4, TARGETS)) / 2) + 0.1 * rng.standard_normal((3000, TARGETS))
    values = np.c_[x, y].astype(np.float32)
    split = tmp_path_factory.mktemp("toy") / "split"
    for part, rows in (("train", slice(0, 2200)), ("val", slice(2200, 2500)),
                       ("test", slice(2500, 3000))):
        write_part(split / part, values[rows])
    return split


def train(kind, split, run, *options, extra=()):
    sets = [a for o in ("recipe=adam", "batch=64", "deterministic=true", "monitor=500", *options)
            for a in ("--set", o)]
    assert main(["train", kind, "--data", str(split), "--run-dir", str(run), "--quiet",
                 *sets, *extra]) == 0
    return evaluate(run, split / "test")["mae"]


@pytest.fixture(scope="module")
def least_squares(toy_split, tmp_path_factory):
    run = tmp_path_factory.mktemp("linear") / "run"
    assert main(["train", "linear", "--data", str(toy_split), "--run-dir", str(run),
                 "--quiet"]) == 0
    return evaluate(run, toy_split / "test")["mae"]


def test_dgex_learns_what_least_squares_cannot(toy_split, least_squares, tmp_path):
    mae = train("dgex", toy_split, tmp_path / "dgex", "hidden=64,64,64", "max_epochs=40")
    assert mae < MARGIN * least_squares, (mae, least_squares)


def test_autoencoder_emlp_and_fine_tuning_learn(toy_split, least_squares, tmp_path):
    coder = train("autoencoder", toy_split, tmp_path / "ae", "hidden=64,8,64", "max_epochs=40")
    assert coder < 0.5 * least_squares, "four features: eight codes reconstruct the targets"
    assert main(["encode", str(tmp_path / "ae"), "--data", str(toy_split), "--out",
                 str(tmp_path / "codes"), "--quiet"]) == 0
    emlp = train("emlp", toy_split, tmp_path / "emlp", "hidden=64,64", "max_epochs=40",
                 extra=["--codes", str(tmp_path / "codes")])
    assert emlp < MARGIN * least_squares, (emlp, least_squares)
    tuned = train("emlp_tuned", toy_split, tmp_path / "tuned", "max_epochs=10",
                  extra=["--from", str(tmp_path / "emlp")])
    assert tuned < emlp, "training E-MLP and decoder on the targets lowers the error"


def test_a_linear_skip_starts_at_least_squares_exactly(toy_split):
    """Before its first step, a network with the skip predicts what least squares does."""
    from streamgex.models import linear
    from streamgex.models.dgex import build_dgex
    from streamgex.models.mlp import start_at_least_squares

    values = store.open_store(toy_split / "train").expression.values
    x, y = values[:, :LANDMARKS], values[:, LANDMARKS:]
    equations = linear.NormalEquations(LANDMARKS, TARGETS)
    equations.add(x, y)
    coefficients = equations.solve()
    model = build_dgex(LANDMARKS, TARGETS, (32, 32, 32), linear_skip=True)
    start_at_least_squares(model, coefficients, "targets")
    np.testing.assert_allclose(model.predict(x, verbose=0), linear.predict(coefficients, x),
                               atol=2e-5)


def test_training_keeps_the_least_squares_start_unless_it_improves_on_it(
        toy_split, least_squares, tmp_path):
    """A rate that wrecks the network in its one epoch: the start (least squares' solution,
    validated as "epoch 0") stays the best model, so the run is least squares, not worse."""
    from streamgex.training.checkpoint import newest_state
    from streamgex.training.run import Run

    mae = train("dgex", toy_split, tmp_path / "wrecked", "hidden=32,32,32", "max_epochs=1",
                "linear_skip=true", "learning_rate=5")
    validations = newest_state(Run(tmp_path / "wrecked").checkpoint_dir(0))["hooks"]["schedule"]
    (start, at_start), (epoch, after) = validations["validations"]
    assert (start, epoch) == (-1, 0) and after > at_start, "the epoch made it worse"
    assert validations["best"] == [-1, at_start]
    assert abs(mae - least_squares) < 1e-4, (mae, least_squares)
