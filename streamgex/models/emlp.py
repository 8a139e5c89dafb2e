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

import keras

from .mlp import build_mlp

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


def build_emlp(inputs, outputs, hidden, *, dropout=DROPOUT, seed=0):
    """An E-MLP ``inputs -> hidden... -> outputs`` (uncompiled Keras model)."""
    return build_mlp(
        inputs, outputs, hidden, activation="elu", dropout=dropout, seed=seed, name="emlp",
        output_name="codes",
        initializer=lambda s: keras.initializers.VarianceScaling(
            2.0, mode="fan_avg", distribution="untruncated_normal", seed=s),
    )


def emlp_optimizer(learning_rate=LEARNING_RATE):
    """Nesterov accelerated gradient, momentum 0.9 (paper 2.3.3)."""
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM, nesterov=True)
