"""The D-GEX baseline (Chen et al. 2016; its public code), as the paper compares with.

- 3 hidden layers of 9,000 tanh units, linear output, dropout 10% on the
  hidden layers' outputs;
- Glorot-uniform weights ``U(+-sqrt(6 / (n_in + n_out)))``, output weights
  ``U(-1e-4, 1e-4)``;
- SGD with classical momentum 0.5, learning rate 3e-4, and the layers after
  the first learning 3x faster (D-GEX's ``W_lr_scale``);
- the targets split into partitions trained as separate networks (2 halves of
  9,520 targets, 5 sets of 4,258 of 21,290) because of memory; streaming
  removes that reason, so ``partitions=1`` trains one network.
"""

from dataclasses import dataclass

import numpy as np

from ..config import choice, fraction, positive
from .mlp import build_mlp, start_at_least_squares
from .registry import ModelKind, SGDOptions, register, save_keras

HIDDEN = (9000, 9000, 9000)
LEARNING_RATE = 3e-4
MOMENTUM = 0.5
DROPOUT = 0.1
LATER_LAYER_SCALE = 3.0


def partitions(n_targets, count):
    """Contiguous target ranges of near-equal size: ``[(start, stop), ...]``."""
    edges = np.linspace(0, n_targets, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def build_dgex(inputs, outputs, hidden=HIDDEN, *, activation="tanh", dropout=DROPOUT, seed=0,
               linear_skip=False):
    """A D-GEX network ``inputs -> 3 x tanh -> outputs`` (uncompiled Keras model)."""
    import keras

    return build_mlp(
        inputs, outputs, hidden, activation=activation, dropout=dropout, seed=seed, name="dgex",
        output_name="targets", initializer=lambda s: keras.initializers.GlorotUniform(seed=s),
        linear_skip=linear_skip,
    )


def gradient_scales(model):
    """Per-variable gradient multipliers: D-GEX's 3x learning rate after the first layer."""
    import keras

    scales = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense) and layer.name != "hidden1" and not \
                layer.name.endswith("_linear"):  # the skip reads the landmarks, as hidden1
            scales[layer.kernel.path] = LATER_LAYER_SCALE
    return scales


def dgex_optimizer(learning_rate=LEARNING_RATE):
    import keras

    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM)


@dataclass(frozen=True)
class DgexOptions(SGDOptions):
    """``hidden`` empty: 3 x 9,000; ``partitions``: networks over contiguous target sets;
    ``activation``: D-GEX's tanh, or sigmoid (TAAF-D-GEX found it better, Kunc & Klema
    2019) or relu; ``linear_skip``: add a linear map of the landmarks to the output,
    started at least squares' solution (``models.mlp``; not in D-GEX)."""

    partitions: int = positive(1)
    activation: str = choice("tanh", ("tanh", "sigmoid", "relu"))
    dropout: float = fraction(DROPOUT)
    linear_skip: bool = False


class Dgex(ModelKind):
    """D-GEX: landmarks -> targets, one network per target partition, side by side."""

    name = "dgex"
    title = "D-GEX"
    Options = DgexOptions
    role = "reference"

    def networks(self, options):
        return options.partitions

    @staticmethod
    def file(index):
        return f"dgex_part{index + 1}.keras"

    def train(self, job):
        options = job.options
        job.setup_backend()
        for index, (start, stop) in enumerate(partitions(len(job.targets), options.partitions)):
            if not job.trains(index):  # another worker of a cluster trains it
                continue
            model = build_dgex(len(job.landmarks), stop - start, options.hidden or HIDDEN,
                               activation=options.activation, dropout=options.dropout,
                               seed=options.seed + index, linear_skip=options.linear_skip)
            streams = job.streams(job.landmarks, job.targets[start:stop])
            coefficients = job.least_squares(streams[0], index=index) \
                if options.linear_skip else None
            if coefficients is not None:
                start_at_least_squares(model, coefficients, "targets")
            path = job.run.best(self.file(index))
            job.fit(model, streams,
                    paper_optimizer=lambda: dgex_optimizer(options.learning_rate or LEARNING_RATE),
                    index=index, what="this D-GEX network",
                    gradient_scales=gradient_scales(model),
                    save_best=lambda m=model, p=path: save_keras(m, p),
                    start_validated=options.linear_skip)
            # This partition's weights, momentum and optimizer go before the next is built:
            # Keras's global state and its compiled functions' reference cycles kept every
            # trained partition alive (5 full-size ones: 10.6 GiB peak, bench_fullsize.py).
            del model
            job.free_memory()

    def load(self, run):
        """The partitions as pieces, each loaded when asked for (evaluate and predict hold
        one at a time: five full-size ones are 3.9 GiB of weights); ``predict`` of the
        Predictor loads them all."""
        from ..evaluation.predictor import (Predictor, check_saved, gene_keys, load_keras,
                                            loaded_on_first_use, side_by_side)

        landmarks, targets = gene_keys(run)
        count = run.options.partitions
        files = [run.best(self.file(i)) for i in range(count)]
        for f in files:  # a missing one is an error now, not at the first profile predicted
            check_saved(f)
        pieces = [(start, stop, lambda f=f: side_by_side([load_keras(f)]))
                  for (start, stop), f in zip(partitions(len(targets), count), files)]
        everything = loaded_on_first_use(lambda: side_by_side([load_keras(f) for f in files]))
        return Predictor(self, run, landmarks, targets, predict=everything,
                         partitions=count, pieces=pieces)

    def network(self, run):
        """The partition networks side by side as one model (outputs concatenated)."""
        import keras

        from ..evaluation.predictor import load_keras

        parts = [load_keras(run.best(self.file(i))) for i in range(run.options.partitions)]
        landmarks = keras.Input((parts[0].input_shape[-1],), name="landmarks")
        outputs = [part(landmarks) for part in parts]
        return keras.Model(landmarks, outputs[0] if len(outputs) == 1
                           else keras.layers.Concatenate(name="targets")(outputs), name="dgex")


register(Dgex)
