"""Each model builds with the paper's (or D-GEX's) initialisation and optimizer; the rules follow them."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402

from streamgex.models.autoencoder import (  # noqa: E402
    autoencoder_optimizer, build_autoencoder, export_coders)
from streamgex.models.layers import TiedDense  # noqa: E402
from streamgex.models.dgex import build_dgex, dgex_optimizer, gradient_scales, partitions  # noqa: E402
from streamgex.models.emlp import auto_hidden, build_emlp, emlp_optimizer  # noqa: E402
from streamgex.models.linear import NormalEquations, predict  # noqa: E402
from streamgex.models.schedule import Schedule  # noqa: E402


def test_auto_hidden_sizes_are_the_papers():
    assert auto_hidden(2000, 70_000) == (11_850, 11_826)


def test_emlp_initialisation_and_optimizer_follow_the_paper():
    model = build_emlp(400, 300, (500, 600), seed=1)
    h1, h2, out = (model.get_layer(n) for n in ("hidden1", "hidden2", "codes"))
    assert h1.activation.__name__ == "elu" and out.activation.__name__ == "linear"
    for layer, fan_in, fan_out in ((h1, 400, 500), (h2, 500, 600)):
        w = layer.kernel.numpy()
        assert abs(w.std() / np.sqrt(4 / (fan_in + fan_out)) - 1) < 0.03  # eq. 2
        assert abs(w.mean()) < 0.01
    w = out.kernel.numpy()
    assert np.abs(w).max() <= 1e-4 and w.std() > 4e-5  # U(-1e-4, 1e-4)
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.1, 0.1]
    config = emlp_optimizer().get_config()
    assert config["nesterov"] is True and config["momentum"] == 0.9
    assert abs(config["learning_rate"] - 5e-4) < 1e-9


def test_dgex_follows_its_published_settings():
    model = build_dgex(200, 100, (300, 300, 300), seed=2)
    hidden = [model.get_layer(f"hidden{i}") for i in (1, 2, 3)]
    assert all(l.activation.__name__ == "tanh" for l in hidden)
    w = hidden[0].kernel.numpy()
    limit = np.sqrt(6 / (200 + 300))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert np.abs(model.get_layer("targets").kernel.numpy()).max() <= 1e-4
    config = dgex_optimizer().get_config()
    assert config["momentum"] == 0.5 and not config["nesterov"]
    scales = gradient_scales(model)
    assert len(scales) == 3 and set(scales.values()) == {3.0}
    assert hidden[0].kernel.path not in scales
    assert partitions(9520, 2) == [(0, 4760), (4760, 9520)]
    assert [b - a for a, b in partitions(21_290, 5)] == [4258] * 5
    sigmoid = build_dgex(20, 10, (30, 30), activation="sigmoid", dropout=0.0)
    assert {sigmoid.get_layer(f"hidden{i}").activation.__name__ for i in (1, 2)} == {"sigmoid"}
    assert sigmoid.get_layer("dropout1").rate == 0.0


@pytest.mark.parametrize("tied,batch_norm", [(False, False), (True, False), (True, True)])
def test_autoencoder_shapes_tying_and_export(tmp_path, tied, batch_norm):
    auto, encoder, decoder = build_autoencoder(50, (40, 10, 40), tied=tied, batch_norm=batch_norm)
    x = np.random.default_rng(0).normal(size=(8, 50)).astype(np.float32)
    assert encoder(x).shape == (8, 10) and auto(x).shape == (8, 50)
    np.testing.assert_allclose(decoder(encoder(x)), auto(x), rtol=1e-5, atol=1e-6)
    dense_params = sum(np.prod(w.shape) for w in auto.trainable_weights if len(w.shape) == 2)
    assert dense_params == (50 * 40 + 40 * 10) * (1 if tied else 2)
    if tied:
        assert any(isinstance(l, TiedDense) for l in decoder.layers)
    exported = export_coders(encoder, decoder, tmp_path / "encoder.keras",
                             tmp_path / "decoder.keras")
    loaded = keras.saving.load_model(tmp_path / "decoder.keras")
    codes = encoder(x, training=False)
    np.testing.assert_allclose(loaded(codes), decoder(codes, training=False), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(l, TiedDense) for l in exported.layers)
    assert autoencoder_optimizer().get_config()["nesterov"] is True


def test_linear_regression_equals_numpy_least_squares():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 20))
    y = x @ rng.normal(size=(20, 7)) + 0.3 + rng.normal(size=(500, 7))
    equations = NormalEquations(20, 7)
    for start in range(0, 500, 64):
        equations.add(x[start:start + 64], y[start:start + 64])
    coefficients = equations.solve()
    expected = np.linalg.lstsq(np.hstack([x, np.ones((500, 1))]), y, rcond=None)[0]
    np.testing.assert_allclose(coefficients, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(predict(coefficients, x), np.hstack([x, np.ones((500, 1))]) @ expected,
                               rtol=1e-5)
    ridge = equations.solve(ridge=10.0)
    xa = np.hstack([x, np.ones((500, 1))])
    penalty = 10.0 * np.eye(21)
    penalty[-1, -1] = 0
    np.testing.assert_allclose(ridge, np.linalg.solve(xa.T @ xa + penalty, xa.T @ y), rtol=1e-8)


def test_a_constant_landmark_still_gets_least_squares_fit():
    """A landmark constant over the training profiles (zeros once standardized) makes the
    normal equations singular: the fit is the least-squares one without it, not an error."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 5))
    x[:, 2] = 0.0
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=(300, 3))
    equations = NormalEquations(5, 3)
    equations.add(x, y)
    coefficients = equations.solve()
    kept = np.hstack([np.delete(x, 2, axis=1), np.ones((300, 1))])
    expected = kept @ np.linalg.lstsq(kept, y, rcond=None)[0]
    np.testing.assert_allclose(predict(coefficients, x), expected, rtol=1e-4, atol=1e-5)
    assert np.abs(coefficients[2]).max() < 1e-9  # minimum norm: no weight on the constant


def test_learning_rate_decays_when_training_error_rises_and_stops_at_the_floor():
    schedule = Schedule(learning_rate=5e-4)
    rates = [schedule.end_epoch(e) for e in (1.0, 0.9, 0.95, 0.94, 0.96, 0.97)]
    assert rates == pytest.approx([5e-4, 5e-4, 4.5e-4, 4.5e-4, 4.05e-4, 3.645e-4])
    for _ in range(100):
        schedule.end_epoch(10.0 + _)
    assert schedule.learning_rate == 1e-5


def test_validation_every_five_epochs_and_early_stop_against_25_epochs_earlier():
    schedule = Schedule(learning_rate=5e-4)
    assert [e for e in range(12) if schedule.wants_validation(e)] == [4, 9]
    # validations at epochs 4, 9, ..., errors improve then rise
    errors = {4: 1.0, 9: 0.8, 14: 0.7, 19: 0.65, 24: 0.66, 29: 0.75, 34: 0.79, 39: 0.81}
    outcomes = {e: schedule.validated(e, v) for e, v in errors.items()}
    assert outcomes[19] == (True, False)
    assert outcomes[29] == (False, False), "0.75 beats 1.0 from epoch 4"
    assert outcomes[34] == (False, False), "0.79 beats 0.8 from epoch 9"
    assert outcomes[39] == (False, True), "0.81 is worse than 0.7 from epoch 14"
    assert schedule.best == [19, 0.65]
    restored = Schedule.from_dict(schedule.to_dict())
    assert restored == schedule


@pytest.mark.parametrize("build", [build_dgex, build_emlp])
def test_a_linear_skip_makes_least_squares_the_network_with_its_hidden_part_at_zero(
        tmp_path, build):
    """``linear_skip``: output = hidden part + a linear map of the inputs. With the hidden
    part's output layer at zero the network is exactly that linear map; it saves and loads
    like any model, and the paper's 3x later-layer rate leaves the skip (fed by the inputs)
    at 1x."""
    from streamgex.evaluation.predictor import load_keras
    from streamgex.models.registry import save_keras

    inputs, outputs = 7, 5
    model = build(inputs, outputs, (6, 4), linear_skip=True)
    assert model.output_shape == (None, outputs)
    head = [l for l in model.layers if l.name.endswith("_hidden")]
    linear = [l for l in model.layers if l.name.endswith("_linear")]
    assert len(head) == 1 and len(linear) == 1
    head[0].set_weights([np.zeros_like(w) for w in head[0].get_weights()])
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(inputs, outputs)), rng.normal(size=outputs)
    linear[0].set_weights([w.astype("float32"), b.astype("float32")])
    x = rng.normal(size=(9, inputs)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ w + b, rtol=1e-5, atol=1e-5)
    save_keras(model, tmp_path / "m.keras")
    np.testing.assert_array_equal(load_keras(tmp_path / "m.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    if build is build_dgex:
        scales = gradient_scales(model)
        assert linear[0].kernel.path not in scales and head[0].kernel.path in scales
    assert len(build(inputs, outputs, (6, 4)).layers) == len(model.layers) - 2  # Dense + Add


def test_a_saved_model_loads_with_its_exact_weights_and_the_layers_are_left_as_they_were(
        tmp_path):
    """``save_keras`` hands Keras TensorFlow's buffers instead of copies, only while saving."""
    import keras

    from streamgex.models.autoencoder import build_autoencoder
    from streamgex.models.registry import _Buffer, save_keras

    model = build_autoencoder(30, (20, 5, 20), batch_norm=True)[0]
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    for name in ("a.keras", "b.keras"):
        save_keras(model, tmp_path / name)
        loaded = keras.saving.load_model(tmp_path / name, compile=False)
        for saved, original in zip(loaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(saved, original)
    assert not [layer.name for layer in model.layers if "save_own_variables" in vars(layer)]
    kernel = model.layers[1].kernel  # what Keras's np.array makes of it: the buffer itself
    assert np.shares_memory(np.array(_Buffer(kernel)), np.array(_Buffer(kernel)))


def test_a_checkpoint_round_trips_and_is_never_written_with_broken_weights(tmp_path):
    """Checkpoints are written one variable at a time in ``np.savez``'s format; NaN weights
    leave no checkpoint (not even a partial one) behind."""
    from streamgex.errors import StreamgexError
    from streamgex.training import checkpoint

    model = build_emlp(6, 4, (5,), seed=3)
    optimizer = emlp_optimizer()
    optimizer.build(model.trainable_variables)
    optimizer.momentums[0].assign(np.full((6, 5), 0.25, np.float32))
    saved = [v.numpy().copy() for v in model.variables + optimizer.variables]
    path = checkpoint.save(tmp_path, model, optimizer, {"global_step": 7, "epoch": 1})
    with np.load(path / "variables.npz") as arrays:
        assert len(arrays.files) == len(saved)
        np.testing.assert_array_equal(arrays["optimizer/00002"], optimizer.variables[2].numpy())
    for v in model.trainable_variables + optimizer.momentums:
        v.assign(np.zeros(v.shape, np.float32))
    found, state = checkpoint.restore_newest(tmp_path, model, optimizer)
    assert found == path and state["global_step"] == 7
    for before, after in zip(saved, model.variables + optimizer.variables):
        np.testing.assert_array_equal(before, after.numpy())
    model.layers[1].kernel.assign(np.full((6, 5), np.nan, np.float32))
    with pytest.raises(StreamgexError, match="diverged"):
        checkpoint.save(tmp_path, model, optimizer, {"global_step": 8})
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
