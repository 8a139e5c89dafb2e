"""A trained run as one function: standardized inputs -> standardized targets.

Every model kind answers the same question, so evaluation and ``predict``
need not know which one they hold: each kind's ``load`` (``models.registry``)
builds a ``Predictor`` with the helpers here, e.g. the linear solution as
``x @ W + b``, D-GEX's partition networks side by side (``side_by_side``), the
E-MLP's codes through its autoencoder's decoder (``compose``; paper 3.1), the
autoencoder's round trip (Table 1). An E-MLP also carries ``reconstruct``, its
autoencoder's round trip on the true targets: the error floor the E-MLP
cannot beat (paper 3.2.2).
"""

import functools
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import store
from ..errors import StreamgexError
from ..store import open_store
from ..training.run import Run

#: The weights file inside a ``.keras`` archive.
WEIGHTS = "model.weights.h5"

#: Profiles per forward pass: large enough that the matmuls run near their peak.
BATCH = 1024


@dataclass
class Predictor:
    """A run's model as a function of the split's gene keys.

    Attributes
    ----------
    kind : models.registry.ModelKind
    run : training.run.Run
    inputs, targets : numpy.ndarray of str
        Gene keys the model reads and predicts, in model order.
    predict : callable
        ``(n, n_inputs) float32 -> (n, n_targets) float32``, z-scores.
    reconstruct : callable or None
        E-MLP only: ``(n, n_targets) -> (n, n_targets)`` through its autoencoder.
    partitions : int
        D-GEX's target partitions (1 for the others).
    pieces : list or None
        ``[(start, stop, load)]``: networks that each predict the target columns
        ``start:stop``, ``load()`` giving that network's predict function
        (D-GEX's partitions); None: ``predict`` is one piece.
    """

    kind: object
    run: object
    inputs: np.ndarray
    targets: np.ndarray
    predict: object
    reconstruct: object = None
    partitions: int = 1
    pieces: list = None

    def in_pieces(self):
        """``[(start, stop, load)]`` over the targets: D-GEX's partitions one by one, so a
        caller that predicts piece after piece holds one partition's weights at a time
        (evaluate, predict); any other kind as one piece."""
        return self.pieces or [(0, len(self.targets), lambda: self.predict)]

    @property
    def data(self):
        """The split folder the run was trained on."""
        return self.run.data


def load_predictor(run):
    """Load the best model of a finished run folder (any registered kind)."""
    run = Run.open(run).check_done()
    return run.kind.load(run)


def gene_keys(run):
    """``(landmark keys, target keys)`` of the split a run trained on, in model order."""
    genes = open_store(run.data / "train")
    keys = store.strings(genes.gene.values)
    mask = genes.is_landmark.values.astype(bool)
    return keys[mask], keys[~mask]


def load_keras(path):
    """A ``.keras`` model, built without drawing initial weights, its weights read from disk.

    ``keras.saving.load_model`` builds the model with its random initializers
    (362M numbers drawn only to be overwritten, for E-MLP + decoder) and reads
    the whole weights file into memory before assigning it: 14 s and a 6.3 GB
    peak. Here the layers start from zeros and Keras reads the weights file,
    extracted beside the model, variable by variable: 7-9 s and a 3.9-4.1 GB
    peak for the full E-MLP + decoder (the encoder is loaded only when asked
    for). Copying the arrays in slices with a strided-slice assignment peaked
    lower, 2.4 GB, but left the variables 5-8% slower to read in every forward
    pass (predict at 0.79-0.81 of the matmul rate instead of 0.84).
    """
    import keras

    check_saved(path)
    with zipfile.ZipFile(path) as archive:
        config = _zero_initializers(json.loads(archive.read("config.json")))
        model = keras.models.model_from_json(json.dumps(config))
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".weights-") as tmp:
            archive.extract(WEIGHTS, tmp)
            model.load_weights(Path(tmp) / WEIGHTS)
    return model


def check_saved(path):
    """Refuse a model file the run never saved (before anything is predicted with it)."""
    if not path.exists():
        raise StreamgexError(f"{path}: missing; the run's best model was never saved")


def _zero_initializers(config):
    """A Keras config with every ``*_initializer`` replaced by zeros (weights loaded after)."""
    if isinstance(config, dict):
        return {key: ({"module": "keras.initializers", "class_name": "Zeros", "config": {},
                       "registered_name": None} if key.endswith("_initializer") and value
                      else _zero_initializers(value))
                for key, value in config.items()}
    if isinstance(config, list):
        return [_zero_initializers(item) for item in config]
    return config


def _batched(forward):
    """``forward`` (a tf.function of a float32 batch) applied ``BATCH`` profiles at a time."""
    def apply(x):
        x = np.asarray(x, dtype=np.float32)
        parts = np.array_split(x, max(1, -(-len(x) // BATCH)))  # equal batches, none tiny
        return np.concatenate([forward(part).numpy() for part in parts])
    return apply


def _signature(model):
    import tensorflow as tf

    # One trace for every batch size: a plain tf.function would retrace for the last batch.
    return [tf.TensorSpec((None, model.input_shape[-1]), tf.float32)]


def loaded_on_first_use(load):
    """``predict`` that calls ``load()`` (-> a predict function) on its first use only."""
    found = []

    def predict(x):
        if not found:
            found.append(load())
        return found[0](x)

    return predict


def compose(first, second):
    return _traced(_composed, first, second)


def side_by_side(models):
    return _traced(_concatenated, *models)


def _traced(forward, *models):
    """``forward(models, x)`` as one traced function of ``x``, batched. A ``partial``, not a
    closure: TensorFlow counts traces by code object and would take the partitions of a
    D-GEX, evaluated one by one, for one function retraced again and again (a warning)."""
    import tensorflow as tf

    return _batched(tf.function(functools.partial(forward, models),
                                input_signature=_signature(models[0])))


def _composed(models, x):
    import tensorflow as tf

    first, second = models
    return tf.cast(second(first(x, training=False), training=False), tf.float32)


def _concatenated(models, x):
    import tensorflow as tf

    return tf.concat([tf.cast(m(x, training=False), tf.float32) for m in models], axis=1)
