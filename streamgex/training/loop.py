"""The training loop: streamed batches, the paper's schedule, checkpoints mid-epoch.

One loop trains every neural model. Per epoch it streams the training batches
(``streams.Stream``, a pure function of seed, epoch and step), then measures
the training error on a fixed monitor subset (the learning-rate rule) and,
every 5 epochs, the validation error (best model, early stopping; paper 2.4).
Checkpoints go out every ``checkpoint_steps`` steps and every
``checkpoint_minutes``, and at each epoch's end; re-running the loop on the
same run folder restores the newest one and continues at its exact step, with
the same batches, the same dropout draws and the same optimizer state.
"""

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..progress import progress
from . import checkpoint
from ..models.schedule import Schedule

LOG_FIELDS = ("epoch", "global_step", "train_mae", "val_mae", "learning_rate",
              "samples_per_second", "seconds")


@dataclass(frozen=True)
class LoopOptions:
    """How long to train and how often to save.

    ``monitor``: training profiles whose error drives the learning rate (D-GEX
    monitored 5,000).
    """

    max_epochs: int
    checkpoint_steps: int = 0
    checkpoint_minutes: float = 10.0
    monitor: int = 5000
    quiet: bool = False


def make_train_step(model, optimizer, gradient_scales=None):
    """A compiled step: MSE loss (D-GEX's cost), gradients scaled per variable, update.

    For momentum SGD (every model here) the update is TensorFlow's fused,
    in-place ``ResourceApplyKerasMomentum`` on Keras's own momentum slots: the
    same arithmetic as ``optimizer.apply`` (``m = momentum m - lr g``;
    ``w += m``, or ``w += momentum m - lr g`` with Nesterov) in one pass over
    each variable and no temporaries the size of a 140M-weight kernel.
    """
    scales = [float((gradient_scales or {}).get(v.path, 1.0)) for v in model.trainable_variables]
    optimizer.build(model.trainable_variables)
    fused = isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum > 0

    @tf.function(jit_compile=False, reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            loss = tf.reduce_mean(tf.square(tf.cast(prediction, tf.float32) - y))
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        gradients = [g * s if s != 1.0 else g for g, s in zip(gradients, scales)]
        if not fused:
            optimizer.apply(gradients, model.trainable_variables)
            return loss
        rate = tf.cast(optimizer.learning_rate, tf.float32)
        momentum = tf.constant(optimizer.momentum, tf.float32)
        for variable, slot, gradient in zip(model.trainable_variables, optimizer.momentums,
                                            gradients):
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=variable.value.handle, accum=slot.value.handle, lr=rate,
                grad=tf.cast(gradient, variable.dtype), momentum=momentum,
                use_locking=False, use_nesterov=optimizer.nesterov)
        optimizer.iterations.assign_add(1)
        return loss

    return step


def make_predict(model):
    @tf.function(jit_compile=False, reduce_retracing=True)
    def predict(x):
        return tf.cast(model(x, training=False), tf.float32)

    return predict


def mean_absolute_error(predict, stream, *, limit=None):
    """MAE of ``predict`` over a stream's epoch-0 batches (the first ``limit`` profiles).

    ``predict`` maps a batch of inputs to outputs (a TensorFlow function or numpy).
    """
    total, count = 0.0, 0
    for x, y in stream.batches(epoch=0):
        if limit is not None and count >= limit:
            break
        if limit is not None:
            x, y = x[:limit - count], y[:limit - count]
        total += float(np.abs(np.asarray(predict(x)) - y).sum(dtype=np.float64))
        count += x.shape[0]
    width = stream.widths()[1]
    return total / max(count * width, 1)


def fit(run, model, optimizer, train, *, validation, schedule, options, gradient_scales=None,
        on_best=None):
    """Train ``model`` in the run folder ``run``, resuming from its newest checkpoint.

    Parameters
    ----------
    run : Path
        Holds ``checkpoints/``, ``log.csv``, ``tensorboard/``.
    train, validation : streams.Stream
        ``(inputs, outputs)`` streams; validation may be None.
    schedule : Schedule
        The fresh schedule; a checkpoint's replaces it.
    on_best : callable, optional
        Called with the epoch when validation finds a new best model.

    Returns
    -------
    dict
        The final loop state (epoch, global_step, schedule, stopped_early).
    """
    run = Path(run)
    checkpoints = run / "checkpoints"
    state = {"epoch": 0, "step": 0, "global_step": 0, "schedule": schedule.to_dict(),
             "stopped_early": False, "done": False}
    found = checkpoint.latest(checkpoints)
    if found is not None:
        state = checkpoint.restore(found, model, optimizer)
        _trim_log(run / "log.csv", state["epoch"])
        if not options.quiet:
            print(f"resuming {run} from {found.name}: epoch {state['epoch'] + 1}, "
                  f"step {state['step']}", flush=True)
    else:
        optimizer.build(model.trainable_variables)
    schedule = Schedule.from_dict(state["schedule"])
    optimizer.learning_rate.assign(schedule.learning_rate)
    if state["done"]:
        return state
    train_step = make_train_step(model, optimizer, gradient_scales)
    predict = make_predict(model)
    writer = tf.summary.create_file_writer(str(run / "tensorboard"))
    last_save = time.monotonic()

    def save():
        nonlocal last_save
        state["schedule"] = schedule.to_dict()
        checkpoint.save(checkpoints, model, optimizer, state)
        last_save = time.monotonic()

    for epoch in range(state["epoch"], options.max_epochs):
        started, samples = time.monotonic(), 0
        bar = progress(total=train.steps_per_epoch, initial=state["step"],
                       desc=f"epoch {epoch + 1}", unit="step", quiet=options.quiet)
        for x, y in train.dataset(epoch, state["step"]):
            train_step(x, y)
            samples += int(x.shape[0])
            state["step"] += 1
            state["global_step"] += 1
            bar.update(1)
            due_steps = options.checkpoint_steps and state["global_step"] % options.checkpoint_steps == 0
            due_time = time.monotonic() - last_save > 60 * options.checkpoint_minutes
            if due_steps or due_time:
                save()
        bar.close()
        seconds = time.monotonic() - started
        train_mae = mean_absolute_error(predict, train, limit=options.monitor)
        learning_rate = schedule.end_epoch(train_mae)
        optimizer.learning_rate.assign(learning_rate)
        val_mae, stop = None, False
        if validation is not None and schedule.wants_validation(epoch):
            val_mae = mean_absolute_error(predict, validation)
            improved, stop = schedule.validated(epoch, val_mae)
            if improved and on_best is not None:
                on_best(epoch)
        row = {"epoch": epoch + 1, "global_step": state["global_step"], "train_mae": train_mae,
               "val_mae": "" if val_mae is None else val_mae, "learning_rate": learning_rate,
               "samples_per_second": samples / max(seconds, 1e-9), "seconds": seconds}
        _log(run / "log.csv", row)
        with writer.as_default(step=epoch + 1):
            for key in ("train_mae", "learning_rate", "samples_per_second"):
                tf.summary.scalar(key, row[key])
            if val_mae is not None:
                tf.summary.scalar("val_mae", val_mae)
        if not options.quiet:
            print(_describe(row), flush=True)
        state.update(epoch=epoch + 1, step=0)
        if stop:
            state["stopped_early"] = True
            break
        save()
    state["done"] = True
    save()
    writer.close()
    return state


def _trim_log(path, epochs):
    """Drop log rows of epochs after the checkpoint (logged, then cut short)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= epochs]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _log(path, row):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _describe(row):
    val = f", val MAE {row['val_mae']:.4f}" if row["val_mae"] != "" else ""
    return (f"epoch {row['epoch']}: train MAE {row['train_mae']:.4f}{val}, "
            f"lr {row['learning_rate']:.2e}, {row['samples_per_second']:.0f} samples/s")
