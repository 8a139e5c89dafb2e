"""The feed-forward stack the E-MLP and D-GEX share: dense hidden layers with
dropout on their outputs, then a linear float32 output layer initialised from
``U(-1e-4, 1e-4)`` (a regression output starting near zero, as in both).

``linear_skip`` (beyond both papers) adds a linear map of the inputs to the
output: least squares is then this network with its hidden part at zero, so
the hidden layers only learn what no linear model can, instead of first
rebuilding the linear part through saturating units. Training starts it there
(``start_at_least_squares``): the skip at least squares' exact solution, the
hidden part's output layer at zero, so before its first step the network
predicts exactly as least squares, and early stopping, which validates that
start, keeps nothing worse. On the accuracy benchmark (README, "Training
recipes") the skip took D-GEX from 0.871x to 0.844x least squares' test error
with nothing else changed; it adds ``inputs x outputs`` weights (21M of a full
D-GEX's 382M).
"""

import numpy as np

OUTPUT_RANGE = 1e-4


def build_mlp(inputs, outputs, hidden, *, activation, initializer, dropout, seed, name,
              output_name, linear_skip=False):
    """``inputs -> [Dense(activation) -> Dropout] x len(hidden) -> Dense(outputs)``, plus
    ``Dense(outputs)`` of the inputs with ``linear_skip``.

    ``initializer(seed)`` makes each hidden layer's kernel initializer.
    """
    import keras

    x = layer_input = keras.Input((inputs,), name="landmarks")
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation=activation, name=f"hidden{i + 1}",
                               kernel_initializer=initializer(seed + i))(x)
        x = keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout{i + 1}")(x)
    out = keras.layers.Dense(
        outputs, name=f"{output_name}_hidden" if linear_skip else output_name,
        dtype="float32",  # full precision even under mixed bf16
        kernel_initializer=keras.initializers.RandomUniform(-OUTPUT_RANGE, OUTPUT_RANGE,
                                                            seed=seed + 99),
    )(x)
    if linear_skip:
        linear = keras.layers.Dense(
            outputs, name=f"{output_name}_linear", dtype="float32",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 98))(layer_input)
        out = keras.layers.Add(name=output_name, dtype="float32")([out, linear])
    return keras.Model(layer_input, out, name=name)


def start_at_least_squares(model, coefficients, output_name):
    """Put ``model``'s skip (``{output_name}_linear``) at least squares' solution
    ``coefficients`` (``(n_in + 1, n_out)``, the intercept last: ``linear.NormalEquations``)
    and its hidden part's output layer (``{output_name}_hidden``) at zero: the model then
    predicts ``x W + b`` exactly. The output layer's gradient is not zero there (the hidden
    activations times the residual), so the hidden layers start learning at the first step."""
    linear = model.get_layer(f"{output_name}_linear")
    hidden = model.get_layer(f"{output_name}_hidden")
    linear.kernel.assign(np.asarray(coefficients[:-1], np.float32))
    linear.bias.assign(np.asarray(coefficients[-1], np.float32))
    hidden.kernel.assign(np.zeros(hidden.kernel.shape, np.float32))
    hidden.bias.assign(np.zeros(hidden.bias.shape, np.float32))
