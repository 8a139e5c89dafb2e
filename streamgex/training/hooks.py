"""Small objects the training loop calls, one concern each (Keras-callback style).

The loop (``training.loop.fit``) calls, in list order,

- ``on_train_begin(loop)`` after the newest checkpoint is restored;
- ``on_batch_end(loop)`` after every step;
- ``on_epoch_end(loop, logs)`` with the epoch's figures (``epoch``,
  ``global_step``, ``train_mae``, ``samples_per_second``, ``seconds``; hooks
  earlier in the list add ``learning_rate`` and ``val_mae``);
- ``on_train_end(loop)``.

A hook with a ``name`` has state that goes into every checkpoint
(``get_state`` / ``set_state``), so a resumed run continues it exactly.
"""

import csv
import logging
import math
import time

import tensorflow as tf

from .. import mirror
from ..atomic import atomic_path
from ..models.schedule import Schedule
from .eta import format_duration
from .loop import mean_absolute_error

log = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "global_step", "train_mae", "val_mae", "learning_rate",
              "samples_per_second", "seconds")


class Hook:
    """The do-nothing hook; subclasses override what they need."""

    name = None

    def get_state(self):
        return None

    def set_state(self, state):
        pass

    def on_train_begin(self, loop):
        pass

    def on_batch_end(self, loop):
        pass

    def on_epoch_end(self, loop, logs):
        pass

    def on_train_end(self, loop):
        pass


class LearningRateDecay(Hook):
    """The paper's rule (2.3.6): the learning rate x0.9 when the monitor error rose, floor 1e-5.

    It shares ``schedule`` (``models.schedule.Schedule``) with ``EarlyStopping``,
    which saves it in checkpoints.
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def on_train_begin(self, loop):
        loop.optimizer.learning_rate.assign(self.schedule.learning_rate)

    def on_epoch_end(self, loop, logs):
        logs["learning_rate"] = self.schedule.end_epoch(logs["train_mae"])
        loop.optimizer.learning_rate.assign(logs["learning_rate"])


class WarmupCosine(Hook):
    """The learning rate per step: linear warm-up from 0 over ``warmup_steps``, then a
    cosine from ``base`` down to 0 at ``total_steps`` (a pure function of the global
    step, so a resumed run continues it exactly)."""

    def __init__(self, base, *, warmup_steps, total_steps):
        self.base, self.warmup, self.total = base, max(warmup_steps, 1), max(total_steps, 1)

    def rate(self, step):
        warm = min(1.0, (step + 1) / self.warmup)
        return self.base * warm * 0.5 * (1 + math.cos(math.pi * min(step, self.total) / self.total))

    def on_train_begin(self, loop):
        loop.optimizer.learning_rate.assign(self.rate(loop.state["global_step"]))

    def on_batch_end(self, loop):
        loop.optimizer.learning_rate.assign(self.rate(loop.state["global_step"]))

    def on_epoch_end(self, loop, logs):
        logs["learning_rate"] = self.rate(loop.state["global_step"])


class EarlyStopping(Hook):
    """Validation when the schedule asks (paper 2.4: every 5 epochs), the best model kept,
    stop by the schedule's rule. ``on_best(epoch)`` saves the best model. The schedule's
    state (learning rate, errors, best) goes into checkpoints as ``schedule``."""

    name = "schedule"

    def __init__(self, schedule, validation, on_best=None, validate_start=False):
        self.schedule, self.validation, self.on_best = schedule, validation, on_best
        self.validate_start = validate_start

    def get_state(self):
        return self.schedule.to_dict()

    def set_state(self, state):
        self.schedule.__dict__.update(Schedule.from_dict(state).__dict__)

    def on_train_begin(self, loop):
        """With ``validate_start``, a new run's start is its first candidate ("epoch 0")."""
        if not self.validate_start or self.validation is None or self.schedule.validations \
                or loop.state["global_step"]:
            return
        error = mean_absolute_error(loop.predict, self.validation)
        self.schedule.validated(-1, error)
        log.info("start: val MAE %.4f, kept unless training improves on it", error)
        if self.on_best is not None:
            self.on_best(-1)

    def on_epoch_end(self, loop, logs):
        epoch = logs["epoch"] - 1
        if self.validation is None or not self.schedule.wants_validation(epoch):
            return
        logs["val_mae"] = mean_absolute_error(loop.predict, self.validation)
        improved, stop = self.schedule.validated(epoch, logs["val_mae"])
        if improved and self.on_best is not None:
            self.on_best(epoch)
        loop.stop_training = loop.stop_training or stop


class Checkpointer(Hook):
    """A checkpoint every ``steps`` steps, every ``minutes``, and at each epoch's end; for a
    workdir in a bucket, pushed there too once ``minutes`` have passed since the last push
    (``mirror.push_current``): what a crash may lose, at most, on another machine."""

    def __init__(self, *, steps=0, minutes=10.0):
        self.steps, self.minutes = steps, minutes
        self.last = time.monotonic()

    def _save(self, loop):
        loop.save()
        self.last = time.monotonic()
        if loop.chief:
            mirror.push_current(every=60 * self.minutes)

    def on_batch_end(self, loop):
        due_steps = self.steps and loop.state["global_step"] % self.steps == 0
        if due_steps or time.monotonic() - self.last > 60 * self.minutes:
            self._save(loop)

    def on_epoch_end(self, loop, logs):
        if not loop.stop_training:  # a stopping run saves once, as done
            self._save(loop)


class CsvLog(Hook):
    """One row per epoch in ``path``, the whole file rewritten atomically each epoch (a few
    hundred rows at most), so a kill never leaves half a row; on resume, rows of epochs
    after the restored checkpoint are dropped."""

    def __init__(self, path):
        self.path = path

    def _rows(self, through_epoch):
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return [r for r in csv.DictReader(f) if int(r["epoch"]) <= through_epoch]

    def _write(self, rows):
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def on_train_begin(self, loop):
        if self.path.exists():
            self._write(self._rows(loop.state["epoch"]))

    def on_epoch_end(self, loop, logs):
        row = {**logs, "val_mae": "" if logs.get("val_mae") is None else logs["val_mae"]}
        self._write(self._rows(logs["epoch"] - 1) + [row])


class TensorBoard(Hook):
    """The epoch's figures as TensorBoard scalars in Keras's layout: runs ``folder/train`` and
    ``folder/validation``, tags ``epoch_mae`` (in both, so the curves overlay),
    ``epoch_learning_rate`` and ``epoch_samples_per_second`` (train)."""

    #: run -> (tag, key of the epoch's logs)
    TAGS = {"train": (("epoch_mae", "train_mae"), ("epoch_learning_rate", "learning_rate"),
                      ("epoch_samples_per_second", "samples_per_second")),
            "validation": (("epoch_mae", "val_mae"),)}

    def __init__(self, folder):
        self.folder, self.writers = folder, {}

    def on_epoch_end(self, loop, logs):
        for run, tags in self.TAGS.items():
            if all(logs.get(key) is None for _, key in tags):
                continue
            if run not in self.writers:
                self.writers[run] = tf.summary.create_file_writer(str(self.folder / run))
            with self.writers[run].as_default(step=logs["epoch"]):
                for tag, key in tags:
                    if logs.get(key) is not None:
                        tf.summary.scalar(tag, logs[key])

    def on_train_end(self, loop):
        for writer in self.writers.values():
            writer.close()


class Console(Hook):
    """One line per epoch on the ``streamgex`` logger."""

    def on_epoch_end(self, loop, logs):
        val = f", val MAE {logs['val_mae']:.4f}" if logs.get("val_mae") is not None else ""
        left = "" if not logs.get("seconds_left") or loop.stop_training else \
            f", {format_duration(logs['seconds_left'])} left at most"
        log.info("epoch %d/%d: train MAE %.4f%s, lr %.2e, %.0f samples/s%s", logs["epoch"],
                 logs["max_epochs"], logs["train_mae"], val,
                 logs.get("learning_rate", float("nan")), logs["samples_per_second"], left)


def training_hooks(rate, schedule, *, log_file, tensorboard, validation, on_best,
                   checkpoint_steps, checkpoint_minutes, validate_start=False):
    """The hooks every network here trains with, in order: the learning-rate hook ``rate``
    (``LearningRateDecay`` or ``WarmupCosine``: ``training.recipes``), validation and early
    stop, log, TensorBoard, console, checkpoint (last, so it saves what the others did)."""
    return [rate, EarlyStopping(schedule, validation, on_best, validate_start),
            CsvLog(log_file), TensorBoard(tensorboard), Console(),
            Checkpointer(steps=checkpoint_steps, minutes=checkpoint_minutes)]


def worker_hooks(rate, schedule, validation, validate_start=False):
    """The hooks of a worker other than the chief of a cluster: the same rate, validation and
    stopping decisions, no files and no console lines (the chief's)."""
    return [rate, EarlyStopping(schedule, validation, validate_start=validate_start)]
