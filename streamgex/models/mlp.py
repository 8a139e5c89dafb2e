"""The feed-forward stack the E-MLP and D-GEX share: dense hidden layers with
dropout on their outputs, then a linear float32 output layer initialised from
``U(-1e-4, 1e-4)`` (a regression output starting near zero, as in both)."""

OUTPUT_RANGE = 1e-4


def build_mlp(inputs, outputs, hidden, *, activation, initializer, dropout, seed, name,
              output_name):
    """``inputs -> [Dense(activation) -> Dropout] x len(hidden) -> Dense(outputs)``.

    ``initializer(seed)`` makes each hidden layer's kernel initializer.
    """
    import keras

    x = layer_input = keras.Input((inputs,), name="landmarks")
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation=activation, name=f"hidden{i + 1}",
                               kernel_initializer=initializer(seed + i))(x)
        x = keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout{i + 1}")(x)
    out = keras.layers.Dense(
        outputs, name=output_name, dtype="float32",  # full precision even under mixed bf16
        kernel_initializer=keras.initializers.RandomUniform(-OUTPUT_RANGE, OUTPUT_RANGE,
                                                            seed=seed + 99),
    )(x)
    return keras.Model(layer_input, out, name=name)
