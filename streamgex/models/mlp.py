"""The feed-forward stack the E-MLP and D-GEX share: dense hidden layers with
dropout on their outputs, then a linear float32 output layer initialised from
``U(-1e-4, 1e-4)`` (a regression output starting near zero, as in both).

``linear_skip`` (beyond both papers) adds a linear map of the inputs to the
output: least squares is then this network with its hidden part at zero, so
the hidden layers only learn what no linear model can, instead of first
rebuilding the linear part through saturating units. On the accuracy benchmark
(README, "Training recipes") it took D-GEX from 0.871x to 0.844x least squares'
test error with nothing else changed; it adds ``inputs x outputs`` weights (21M
of a full D-GEX's 382M).
"""

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
