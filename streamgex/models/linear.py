"""Linear regression, the LINCS inference method and D-GEX's baseline.

Multi-task least squares ``Y ~ X W + b`` solved exactly from the normal
equations, accumulated in float64 over streamed batches: ``X'X`` and ``X'Y``
are ``(n_in + 1)^2`` and ``(n_in + 1) x n_out`` whatever the profile count.
``ridge`` adds ``lambda * I`` to ``X'X`` (not on the intercept).
"""

import logging
from dataclasses import dataclass

import numpy as np

from ..config import non_negative
from .registry import ModelKind, StreamOptions, register

log = logging.getLogger(__name__)


class NormalEquations:
    """Running ``X'X`` and ``X'Y`` (with an intercept column)."""

    def __init__(self, inputs, outputs):
        self.xtx = np.zeros((inputs + 1, inputs + 1))
        self.xty = np.zeros((inputs + 1, outputs))
        self.count = 0

    def add(self, x, y):
        x = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
        self.xtx += x.T @ x
        self.xty += x.T @ np.asarray(y, np.float64)
        self.count += len(x)

    def solve(self, ridge=0.0):
        """``(n_in + 1, n_out)`` coefficients, the last row the intercept. Singular
        equations (a landmark constant over the training profiles: a column of zeros once
        standardized) get the minimum-norm solution, which predicts the same."""
        penalty = np.eye(len(self.xtx)) * ridge
        penalty[-1, -1] = 0.0
        try:
            return np.linalg.solve(self.xtx + penalty, self.xty)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(self.xtx + penalty, self.xty, rcond=None)[0]


def accumulate(stream, *, explained=None, desc="normal equations", hidden=False):
    """The ``NormalEquations`` of one pass over ``stream``'s ``(inputs, outputs)`` batches,
    with a progress bar. ``explained(x)``: what another model already predicts; the
    equations are then those of what it leaves (its residuals)."""
    from ..progress import progress

    equations = None
    bar = progress(total=stream.steps_per_epoch, desc=desc, unit="batch", hidden=hidden)
    for x, y in stream.batches(epoch=0):
        if explained is not None:
            y = y - np.asarray(explained(x))
        if equations is None:
            equations = NormalEquations(x.shape[1], y.shape[1])
        equations.add(x, y)
        bar.update(1)
    bar.close()
    return equations


def predict(coefficients, x):
    """``x @ W + b`` as float32."""
    return (np.asarray(x, np.float64) @ coefficients[:-1] + coefficients[-1]).astype(np.float32)


@dataclass(frozen=True)
class LinearOptions(StreamOptions):
    #: ``lambda`` added to ``X'X`` (not on the intercept); 0: ordinary least squares.
    ridge: float = non_negative(0.0)


class Linear(ModelKind):
    """Least squares from normal equations over one pass of the training stream.

    Saved as ``best/linear.npy``: a float64 ``(n_landmarks + 1, n_targets)``
    array, landmarks in the split's order, the intercept as its last row.
    """

    name = "linear"
    title = "Linear regression"
    Options = LinearOptions
    role = "baseline"
    curve_label = " (solved exactly)"
    iterative = False
    FILE = "linear.npy"

    def train(self, job):
        from ..atomic import atomic_path
        from ..training.loop import mean_absolute_error

        train, validation = job.streams(job.landmarks, job.targets)
        equations = accumulate(train)
        coefficients = equations.solve(job.options.ridge)
        job.run.best_dir.mkdir(exist_ok=True)
        with atomic_path(job.run.best(self.FILE)) as tmp, open(tmp, "wb") as f:
            np.save(f, coefficients)
        val_mae = mean_absolute_error(lambda x: predict(coefficients, x), validation)
        with atomic_path(job.run.log_file()) as tmp:
            tmp.write_text(f"epoch,val_mae\n1,{val_mae}\n")
        job.run.mark_done(val_mae=val_mae)
        log.info("linear regression: val MAE %.4f (%s training profiles)", val_mae,
                 f"{equations.count:,}")

    def load(self, run):
        from ..evaluation.predictor import Predictor, gene_keys

        landmarks, targets = gene_keys(run)
        coefficients = np.load(run.best(self.FILE))
        return Predictor(self, run, landmarks, targets,
                         predict=lambda x: predict(coefficients, x))


    def network(self, run):
        return None


register(Linear)
