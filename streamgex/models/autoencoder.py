"""The target autoencoder (paper section 2.2, Table 1).

Symmetric about its code: ``targets -> h1 -> ... -> code -> ... -> h1 ->
targets`` (8000-2000-8000 for the 21,290 GEO targets, 6000-2000-6000 for the
9,520 cross-platform ones). Hidden layers are ELU with He variance scaling (the
paper's choice for its MLPs; it does not name the autoencoder's), the code and
the output are linear so codes are unbounded regression targets. Options:

- ``tied``: the decoder reuses the encoder's kernels transposed ("tying
  weights ... can simplify the training process", 2.2), halving parameters;
- ``batch_norm``: batch normalization before each hidden activation.

``build_autoencoder`` returns the training model and the encoder and decoder
sharing its layers; ``export_coders`` saves encoder and decoder as plain,
separate Keras models (tied kernels copied out).
"""

from dataclasses import dataclass

from ..config import OptionError, positive
from .registry import ModelKind, SGDOptions, register, save_keras

LEARNING_RATE = 5e-4
MOMENTUM = 0.9


def check_symmetric(hidden):
    """Hidden sizes must mirror around the code: (8000, 2000, 8000)."""
    hidden = tuple(int(h) for h in hidden)
    if len(hidden) % 2 != 1 or hidden != hidden[::-1]:
        raise ValueError(f"autoencoder hidden sizes must be symmetric around the code, got {hidden}")
    return hidden


def _hidden(units, name, batch_norm, seed):
    import keras

    init = keras.initializers.VarianceScaling(2.0, mode="fan_avg",
                                              distribution="untruncated_normal", seed=seed)
    if not batch_norm:
        return [keras.layers.Dense(units, activation="elu", kernel_initializer=init, name=name)]
    return [keras.layers.Dense(units, kernel_initializer=init, name=name),
            keras.layers.BatchNormalization(name=f"{name}_bn"),
            keras.layers.Activation("elu", name=f"{name}_elu")]


def build_autoencoder(targets, hidden, *, tied=False, batch_norm=False, seed=0):
    """``(autoencoder, encoder, decoder)`` Keras models sharing one set of layers."""
    import keras

    from .layers import TiedDense

    hidden = check_symmetric(hidden)
    depth = len(hidden) // 2
    encoder_layers, kernels = [], []
    for i, units in enumerate(hidden[:depth]):
        block = _hidden(units, f"encode{i + 1}", batch_norm, seed + i)
        encoder_layers += block
        kernels.append(block[0])
    code = keras.layers.Dense(hidden[depth], name="code",
                              kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 50))
    encoder_layers.append(code)
    kernels.append(code)
    decoder_layers = []
    sizes = list(hidden[depth + 1:]) + [targets]
    for i, units in enumerate(sizes):
        last = i == len(sizes) - 1
        name = "reconstruction" if last else f"decode{i + 1}"
        if tied:
            source = kernels[depth - i]
            if last or not batch_norm:
                decoder_layers.append(TiedDense(source, None if last else "elu", name=name,
                                                dtype="float32" if last else None))
            else:
                decoder_layers += [TiedDense(source, None, name=name),
                                   keras.layers.BatchNormalization(name=f"{name}_bn"),
                                   keras.layers.Activation("elu", name=f"{name}_elu")]
        elif last:
            decoder_layers.append(keras.layers.Dense(
                units, name=name, dtype="float32",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 60)))
        else:
            decoder_layers += _hidden(units, name, batch_norm, seed + 70 + i)

    def apply(layers, x):
        for layer in layers:
            x = layer(x)
        return x

    inputs = keras.Input((targets,), name="targets")
    codes = apply(encoder_layers, inputs)
    outputs = apply(decoder_layers, codes)
    autoencoder = keras.Model(inputs, outputs, name="autoencoder")
    encoder = keras.Model(inputs, codes, name="encoder")
    code_input = keras.Input((hidden[depth],), name="codes")
    decoder = keras.Model(code_input, apply(decoder_layers, code_input), name="decoder")
    return autoencoder, encoder, decoder


def export_coders(encoder, decoder, encoder_path, decoder_path):
    """Save encoder and decoder as standalone Keras models (``.keras`` files); returns the
    decoder saved.

    An untied decoder is saved as it is (its layers are the autoencoder's).
    A tied one is rebuilt from plain Dense layers holding the transposed kernels,
    started from zeros rather than drawn at random (the draw alone was a
    temporary the size of the largest kernel), so either file loads with no
    streamgex code.
    """
    import keras
    from keras import ops

    from .layers import TiedDense

    save_keras(encoder, encoder_path)
    if not any(isinstance(layer, TiedDense) for layer in decoder.layers):
        save_keras(decoder, decoder_path)
        return decoder
    plain = keras.Sequential([keras.Input(decoder.input_shape[1:])], name="decoder")
    for layer in decoder.layers[1:]:
        if isinstance(layer, TiedDense):
            units = layer.tied_to.kernel.shape[0]
            dense = keras.layers.Dense(units, activation=layer.activation, name=layer.name,
                                       kernel_initializer="zeros")
            plain.add(dense)
            dense.kernel.assign(ops.transpose(layer.tied_to.kernel))
            dense.bias.assign(layer.bias)
        else:
            clone = layer.__class__.from_config(layer.get_config())
            plain.add(clone)
            clone.set_weights(layer.get_weights())
    save_keras(plain, decoder_path)
    return plain


def autoencoder_optimizer(learning_rate=LEARNING_RATE):
    """Nesterov momentum 0.9, as the paper's MLPs (it names no optimizer for the autoencoder)."""
    import keras

    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=MOMENTUM, nesterov=True)


@dataclass(frozen=True)
class AutoencoderOptions(SGDOptions):
    """``hidden`` empty: 8000-2000-8000 for over 15,000 targets, else 6000-2000-6000 (Table 1)."""

    max_epochs: int = positive(150)
    tied: bool = False
    batch_norm: bool = False

    def check(self):
        super().check()
        if self.hidden and (len(self.hidden) % 2 != 1 or self.hidden != self.hidden[::-1]):
            raise OptionError("hidden", f"must be symmetric around the code, e.g. "
                                        f"[6000, 2000, 6000]; got {list(self.hidden)}")


class Autoencoder(ModelKind):
    """Targets -> codes -> targets (paper 2.2); its encoder makes the E-MLP's codes."""

    name = "autoencoder"
    title = "Autoencoder"
    Options = AutoencoderOptions
    role = "autoencoder"
    ENCODER, DECODER = "encoder.keras", "decoder.keras"

    def train(self, job):
        options = job.options
        hidden = options.hidden or ((8000, 2000, 8000) if len(job.targets) > 15_000
                                    else (6000, 2000, 6000))
        job.setup_backend()
        model, encoder, decoder = build_autoencoder(len(job.targets), hidden, tied=options.tied,
                                                    batch_norm=options.batch_norm,
                                                    seed=options.seed)
        job.fit(model, job.streams(job.targets, job.targets),
                paper_optimizer=lambda: autoencoder_optimizer(options.learning_rate
                                                              or LEARNING_RATE),
                what="this autoencoder",
                save_best=lambda: export_coders(encoder, decoder, job.run.best(self.ENCODER),
                                                job.run.best(self.DECODER)))

    def load(self, run):
        from ..evaluation.predictor import Predictor, compose, gene_keys, load_keras

        _, targets = gene_keys(run)
        model = compose(load_keras(run.best(self.ENCODER)), load_keras(run.best(self.DECODER)))
        return Predictor(self, run, targets, targets, predict=model)


register(Autoencoder)
