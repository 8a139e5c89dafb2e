"""A model kind registered from outside streamgex (here, this test module) trains, evaluates,
predicts and appears in the report through the CLI, with no other file changed."""

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex.cli import main  # noqa: E402
from streamgex.models import registry  # noqa: E402
from streamgex.store import open_store  # noqa: E402


@dataclass(frozen=True)
class ToyOptions(registry.SGDOptions):
    """A toy's one option besides the shared ones."""

    l2: float = 0.0


class Toy(registry.ModelKind):
    """Landmarks -> targets through one linear layer, trained by the streamed loop."""

    name = "toy"
    title = "Toy linear layer"
    Options = ToyOptions
    role = "proposed"
    FILE = "toy.keras"

    def train(self, job):
        import keras

        job.setup_backend()
        model = keras.Sequential([keras.Input((len(job.landmarks),)),
                                  keras.layers.Dense(len(job.targets), name="targets")])
        job.fit(model, job.streams(job.landmarks, job.targets),
                paper_optimizer=lambda: keras.optimizers.SGD(job.options.learning_rate or 0.01,
                                                             momentum=0.9),
                save_best=lambda: registry.save_keras(model, job.run.best(self.FILE)))

    def load(self, run):
        from streamgex.evaluation.predictor import Predictor, compose, gene_keys, load_keras

        import keras

        landmarks, targets = gene_keys(run)
        identity = keras.Sequential([keras.Input((len(targets),))])
        return Predictor(self, run, landmarks, targets,
                         predict=compose(load_keras(run.best(self.FILE)), identity))


@pytest.fixture
def toy():
    kind = registry.register(Toy)
    yield kind
    registry.unregister("toy")


def test_a_registered_kind_runs_through_every_command(toy, demo_experiment, tmp_path, capsys):
    split = demo_experiment[0] / "work" / "split"
    run = tmp_path / "toy"
    assert main(["train", "toy", "--data", str(split), "--run-dir", str(run), "--quiet",
                 "--set", "max_epochs=20", "--set", "batch=64", "--set", "l2=0.5"]) == 0
    assert (run / "best" / "toy.keras").exists()
    assert main(["train", "toy", "--data", str(split), "--run-dir", str(run), "--set",
                 "l2=true"]) == 1
    assert "l2 must be a number, got True" in capsys.readouterr().err

    assert main(["evaluate", str(run), str(split / "test")]) == 0
    out = capsys.readouterr().out
    assert "toy on test" in out
    mae = json.loads((run / "eval" / "test.json").read_text())["mae"]
    test = open_store(split / "test")
    targets = test.expression.values[:, ~test.is_landmark.values.astype(bool)]
    assert mae < 0.9 * np.abs(targets - targets.mean(0)).mean(), "learns more than the mean"

    assert main(["predict", str(run), str(split / "test"), "--out", str(tmp_path / "p.zarr"),
                 "--units", "standardized", "--quiet"]) == 0
    predicted = open_store(tmp_path / "p.zarr").expression.values
    assert np.abs(predicted - targets).mean() == pytest.approx(mae, rel=1e-5)

    linear = demo_experiment[0] / "work" / "runs" / "linear"
    assert main(["report", str(linear), str(run), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| Toy linear layer |" in report
    assert "Toy linear layer vs Linear regression" in report


def test_a_config_table_for_a_registered_kind_is_validated(toy, tmp_path):
    from pathlib import Path

    from streamgex.config import load_config

    config = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"
    loaded = load_config(config, ["train.toy.l2=0.25"])
    assert loaded.train["toy"] == ToyOptions(l2=0.25)
