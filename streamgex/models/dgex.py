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

import keras
import numpy as np

from .mlp import build_mlp

HIDDEN = (9000, 9000, 9000)
LEARNING_RATE = 3e-4
MOMENTUM = 0.5
DROPOUT = 0.1
LATER_LAYER_SCALE = 3.0


def partitions(n_targets, count):
    """Contiguous target ranges of near-equal size: ``[(start, stop), ...]``."""
    edges = np.linspace(0, n_targets, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def build_dgex(inputs, outputs, hidden=HIDDEN, *, dropout=DROPOUT, seed=0):
    """A D-GEX network ``inputs -> 3 x tanh -> outputs`` (uncompiled Keras model)."""
    return build_mlp(
        inputs, outputs, hidden, activation="tanh", dropout=dropout, seed=seed, name="dgex",
        output_name="targets", initializer=lambda s: keras.initializers.GlorotUniform(seed=s),
    )


def gradient_scales(model):
    """Per-variable gradient multipliers: D-GEX's 3x learning rate after the first layer."""
    scales = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense) and layer.name != "hidden1":
            scales[layer.kernel.path] = LATER_LAYER_SCALE
    return scales


def dgex_optimizer(learning_rate=LEARNING_RATE):
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM)
