"""The E-MLP: landmarks -> autoencoder codes (paper section 2.3).

- ELU hidden layers (2.3.1), linear output;
- He variance scaling for the hidden layers, ``sigma = sqrt(4 / (n_in + n_out))``
  (eq. 2: Keras ``VarianceScaling(2.0, "fan_avg")``), output weights from
  ``U(-1e-4, 1e-4)`` (2.3.2);
- Nesterov momentum 0.9 (2.3.3), learning rate 5e-4 (2.3.6);
- dropout 10% on every hidden layer's output (2.3.4; as in D-GEX, not on the
  measured landmarks themselves);
- hidden sizes given, or from the paper's formula (2.3.5, ``auto_hidden``).
"""

import math
from dataclasses import dataclass

from ..config import fraction
from .mlp import build_mlp, start_at_least_squares
from .registry import ModelKind, SGDOptions, register, save_keras

LEARNING_RATE = 5e-4
MOMENTUM = 0.9
DROPOUT = 0.1


def auto_hidden(outputs, samples):
    """Two hidden sizes that can represent ``samples`` profiles exactly (paper 2.3.5).

    ``sqrt((m + 2) N) + 2 sqrt(N / (m + 2))`` and ``m sqrt(N / (m + 2))``:
    (11,850, 11,826) for ``m = 2,000`` codes and ``N = 70,000`` profiles.
    """
    m, n = outputs, samples
    first = math.sqrt((m + 2) * n) + 2 * math.sqrt(n / (m + 2))
    second = m * math.sqrt(n / (m + 2))
    return round(first), round(second)


def build_emlp(inputs, outputs, hidden, *, dropout=DROPOUT, seed=0, linear_skip=False):
    """An E-MLP ``inputs -> hidden... -> outputs`` (uncompiled Keras model)."""
    import keras

    return build_mlp(
        inputs, outputs, hidden, activation="elu", dropout=dropout, seed=seed, name="emlp",
        output_name="codes",
        initializer=lambda s: keras.initializers.VarianceScaling(
            2.0, mode="fan_avg", distribution="untruncated_normal", seed=s),
        linear_skip=linear_skip,
    )


def emlp_optimizer(learning_rate=LEARNING_RATE):
    """Nesterov accelerated gradient, momentum 0.9 (paper 2.3.3)."""
    import keras

    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM, nesterov=True)


@dataclass(frozen=True)
class EmlpOptions(SGDOptions):
    """``hidden`` empty: the paper's formula (``auto_hidden``) for the codes and training size;
    ``linear_skip``: add a linear map of the landmarks to the codes, started at least
    squares' solution (``models.mlp``; not in the paper)."""

    dropout: float = fraction(DROPOUT)
    linear_skip: bool = False


class Emlp(ModelKind):
    """Landmarks -> autoencoder codes, decoded by the autoencoder's decoder (paper 2.3, 3.1)."""

    name = "emlp"
    title = "E-MLP"
    Options = EmlpOptions
    role = "proposed"
    codes_from = "autoencoder"
    curve_label = " (on codes)"
    FILE = "emlp.keras"

    def train(self, job):
        from ..store import open_store

        options = job.options
        n_codes = open_store(job.codes / "train").sizes["gene"]
        n_train = open_store(job.data / "train").sizes["sample"]
        hidden = options.hidden or auto_hidden(n_codes, n_train)
        job.setup_backend()
        model = build_emlp(len(job.landmarks), n_codes, hidden, dropout=options.dropout,
                           seed=options.seed, linear_skip=options.linear_skip)
        streams = job.streams(job.landmarks, None, y_store=job.codes)
        coefficients = job.least_squares(streams[0]) if options.linear_skip else None
        if coefficients is not None:  # least squares from the landmarks to the codes
            start_at_least_squares(model, coefficients, "codes")
        job.fit(model, streams,
                paper_optimizer=lambda: emlp_optimizer(options.learning_rate or LEARNING_RATE),
                what="this E-MLP", save_best=lambda: save_keras(model, job.run.best(self.FILE)),
                start_validated=options.linear_skip)

    def load(self, run):
        from ..evaluation.predictor import Predictor, compose, gene_keys, load_keras

        landmarks, targets = gene_keys(run)
        coder = self.autoencoder_of(run)
        decoder = load_keras(coder.best(coder.kind.DECODER))
        return Predictor(self, run, landmarks, targets,
                         predict=compose(load_keras(run.best(self.FILE)), decoder),
                         reconstruct=round_trip(coder, decoder))

    def network(self, run):
        """The E-MLP and its autoencoder's decoder as one model (paper 3.1)."""
        import keras

        from ..evaluation.predictor import load_keras

        coder = self.autoencoder_of(run)
        emlp, decoder = load_keras(run.best(self.FILE)), load_keras(coder.best(coder.kind.DECODER))
        landmarks = keras.Input((emlp.input_shape[-1],), name="landmarks")
        return keras.Model(landmarks, decoder(emlp(landmarks)), name="emlp_decoded")

    def model_files(self, run):
        """The E-MLP and its autoencoder's encoder and decoder."""
        coder = self.autoencoder_of(run)
        return [run.best(self.FILE), coder.best(coder.kind.ENCODER),
                coder.best(coder.kind.DECODER)]

    @staticmethod
    def autoencoder_of(run):
        """The autoencoder ``Run`` whose codes the E-MLP run trained on (``encode`` records it)."""
        from ..errors import StreamgexError
        from ..paths import locate
        from ..store import open_store
        from ..training.run import Run

        source = open_store(run.codes / "train").attrs["source"]
        recorded = source.get("relative", {}).get("run") or source["run"]
        coder = Run(locate(run.codes, recorded))
        if not coder.best(coder.kind.DECODER).exists():
            raise StreamgexError(f"{coder.path}: the autoencoder run of {run.path} is missing "
                                 f"its decoder")
        return coder


def round_trip(coder, decoder=None):
    """The autoencoder run ``coder``'s targets -> codes -> targets, loaded on first use (the
    floor an E-MLP's evaluation reports; the encoder is ~half the autoencoder). ``decoder``:
    its decoder if already loaded."""
    from ..evaluation.predictor import compose, load_keras

    loaded = []

    def reconstruct(y):
        if not loaded:
            loaded.append(compose(load_keras(coder.best(coder.kind.ENCODER)),
                                  decoder or load_keras(coder.best(coder.kind.DECODER))))
        return loaded[0](y)

    return reconstruct


register(Emlp)
