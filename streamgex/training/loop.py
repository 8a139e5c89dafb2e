"""The training loop: streamed batches and compiled steps; everything else is a hook.

One loop trains every neural model. Per epoch it streams the training batches
(``streams.Stream``, a pure function of seed, epoch and step) through a
compiled step, then measures the training error on a fixed monitor subset and
hands the epoch's figures to its hooks (``training.hooks``, Keras-callback
style): the learning-rate rule, validation and early stopping (paper 2.3.6,
2.4), checkpoints, the CSV log and TensorBoard. A checkpoint holds the model,
the optimizer, the loop's position and every hook's state, so re-running the
loop on the same run folder continues at its exact step with the same
batches, the same dropout draws and the same optimizer and schedule state.
"""

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf

from ..errors import StreamgexError
from ..progress import progress
from ..streams import keep_freed_memory
from .eta import format_duration, steps_left
from . import checkpoint
from .backward import fast_backward

log = logging.getLogger(__name__)

#: Profiles per forward pass when measuring an error: the training batch (e.g. 128) would
#: cost a call per 128 rows; 1,024 rows of the full E-MLP's widest layer are 48 MB.
EVAL_BATCH = 1024


def fusable(optimizer):
    """Whether ``optimizer``'s update is exactly TensorFlow's fused Keras-momentum kernel.

    True for plain momentum SGD; False when Keras would do more than
    ``m = momentum m - lr g; w += m`` (or its Nesterov form): loss scaling,
    gradient clipping, weight decay, an EMA of the weights, gradient
    accumulation. Those keep the optimizer's own ``apply``.
    """
    return (isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum > 0
            and optimizer.clipnorm is None and optimizer.clipvalue is None
            and optimizer.global_clipnorm is None and not optimizer.use_ema
            and not optimizer.weight_decay
            and getattr(optimizer, "loss_scale_factor", None) is None
            and not getattr(optimizer, "gradient_accumulation_steps", None))


def value_users(graph, variable):
    """The ops of ``graph`` that use ``variable``'s value as read (through ``Identity`` ops).

    A read hands out the variable's own buffer; an in-place update that runs
    while one of these ops still holds it copies the whole variable first.
    """
    handle = graph.capture(variable.value.handle)
    users = []
    pending = [op for op in graph.get_operations()
               if op.type == "ReadVariableOp" and op.inputs[0] is handle]
    while pending:
        for output in pending.pop().outputs:
            for op in output.consumers():
                (pending if op.type == "Identity" else users).append(op)
    return users


def one_kernel_gradient_at_a_time(variables, gradients, updates):
    """Make each kernel's gradient op wait for the update of the kernel after it in
    ``variables`` (forward order: the kernel whose gradient the backward pass takes
    just before), so that one kernel gradient is alive at a time.

    Without this order the scheduler may start a layer's kernel gradient while the
    update of the layer after it has not run yet, and two kernel-sized gradients
    are alive at once: the full autoencoder's step peaked at 5.72-5.83 GiB in 6
    of 8 runs (4.90-4.97 in the others; ``tools/bench_train.py``, AVX-512 CPU)
    and at 4.90-5.00 GiB in 6 of 6 with the order, at the same speed. Pairs where
    the later update already depends on the gradient (a model whose variables
    are not in forward order) are left alone: the edge would make a cycle.
    """
    kernels = [(g, u) for v, g, u in zip(variables, gradients, updates)
               if len(v.shape) >= 2 and g is not None]
    for (gradient, _), (_, later_update) in zip(kernels, kernels[1:]):
        op = gradient.op
        while op.type in ("Cast", "Identity"):  # bf16: the product itself waits, not its cast
            op = op.inputs[0].op
        if not depends_on(later_update, op):
            op._add_control_input(later_update)  # tf.control_dependencies reaches new ops only


def depends_on(op, target):
    """Whether ``target`` is ``op`` or one of its ancestors (data or control inputs)."""
    seen, pending = set(), [op]
    while pending:
        current = pending.pop()
        if current is target:
            return True
        if current.name in seen:
            continue
        seen.add(current.name)
        pending.extend(t.op for t in current.inputs)
        pending.extend(current.control_inputs)
    return False


def make_train_step(model, optimizer, gradient_scales=None, placement=None):
    """A compiled step: MSE loss (D-GEX's cost), gradients scaled per variable, update.

    For plain momentum SGD (``fusable``) the update is TensorFlow's fused,
    in-place ``ResourceApplyKerasMomentum`` on Keras's own momentum slots: the
    same arithmetic as ``optimizer.apply`` (``m = momentum m - lr g``;
    ``w += m``, or ``w += momentum m - lr g`` with Nesterov) in one pass over
    each variable, a variable's rate multiplier folded into its rate. Each
    variable is updated as soon as its gradient exists and every op using its
    value has run (``value_users``), so one layer's gradient is alive at a
    time and no update copies its variable: the full E-MLP's step needed 0.59
    GiB besides weights and momentum instead of 1.1, the full autoencoder's
    0.73 instead of 1.35; ``one_kernel_gradient_at_a_time`` keeps the scheduler
    from starting the next kernel gradient before that update. Any other optimizer uses its own ``apply`` after all
    gradients. Dense layers take their input gradients in the faster order of
    ``backward.fast_backward``.

    On the workers of a cluster (``placement.distributed``) the step is
    ``step(x, y, rows)``: each worker's loss is its rows' squared errors over the
    global batch's ``rows`` (so the sum over workers is the one-process loss), the
    gradients are all-reduced (SUM) before anything uses them, and each worker
    applies the same update to its copy: clipping (AdamW's global norm) sees the
    global gradient, as in one process, not each worker's part. The fused update
    all-reduces each gradient on its own, just before its update (all at once, the
    full autoencoder's 1.5 GB of gradients and their transfer buffers took a worker
    to 12.7 GB).
    """
    fast_backward(model)
    scales = [float((gradient_scales or {}).get(v.path, 1.0)) for v in model.trainable_variables]
    optimizer.build(model.trainable_variables)
    fused = fusable(optimizer)
    strategy = placement.strategy() if placement is not None else None
    if strategy is not None and not fused:
        # The gradients reaching ``apply`` are already all-reduced; Keras would sum them
        # again (it all-reduces inside ``apply`` when in a replica context).
        optimizer._all_reduce_sum_gradients = list

    def all_reduce(gradients):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                              gradients)

    def one_step(x, y, rows=None):
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            errors = tf.square(tf.cast(prediction, tf.float32) - y)
            if rows is None:
                loss = tf.reduce_mean(errors)
            else:
                loss = tf.reduce_sum(errors) / tf.cast(rows * tf.shape(y)[1], tf.float32)
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        if not fused:
            if strategy is not None:
                gradients = all_reduce(gradients)
            gradients = [g * s if s != 1.0 else g for g, s in zip(gradients, scales)]
            optimizer.apply(gradients, model.trainable_variables)
            return loss
        graph = tf.compat.v1.get_default_graph()
        rate = tf.cast(optimizer.learning_rate, tf.float32)
        momentum = tf.constant(optimizer.momentum, tf.float32)
        updates = {}
        # On a cluster, made last layer first, the order backward gives the gradients in:
        # collectives run in the order they are made, and made first layer first they would
        # wait for the product that ``one_kernel_gradient_at_a_time`` holds back (a cycle).
        # Alone, in the order the step's memory figures were measured with.
        order = range(len(gradients))
        for i in reversed(order) if strategy is not None else order:
            variable, gradient, scale = model.trainable_variables[i], gradients[i], scales[i]
            if strategy is not None:  # each on its own: one gradient alive at a time still
                gradient = all_reduce(gradient)
            with tf.control_dependencies(value_users(graph, variable)):
                updates[i] = tf.raw_ops.ResourceApplyKerasMomentum(
                    var=variable.value.handle, accum=optimizer.momentums[i].value.handle,
                    lr=rate * scale if scale != 1.0 else rate,
                    grad=tf.cast(gradient, variable.dtype), momentum=momentum,
                    use_locking=False, use_nesterov=optimizer.nesterov)
        one_kernel_gradient_at_a_time(model.trainable_variables, gradients,
                                      [updates[i] for i in range(len(gradients))])
        optimizer.iterations.assign_add(1)
        return loss

    if strategy is None:
        return tf.function(one_step, jit_compile=False, reduce_retracing=True)

    @tf.function(jit_compile=False, reduce_retracing=True)
    def step(x, y, rows):
        losses = strategy.run(one_step, args=(x, y, rows))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step


def make_predict(model):
    @tf.function(jit_compile=False, reduce_retracing=True)
    def predict(x):
        return tf.cast(model(x, training=False), tf.float32)

    return predict


def mean_absolute_error(predict, stream, *, limit=None):
    """MAE of ``predict`` over a stream's epoch-0 batches (the first ``limit`` profiles).

    ``predict`` maps a batch of inputs to outputs (a TensorFlow function or numpy). The rows
    are the stream's, read in batches of at least ``EVAL_BATCH``.
    """
    total, count = 0.0, 0
    if stream.batch < EVAL_BATCH:
        stream = dataclasses.replace(stream, batch=EVAL_BATCH)
    for x, y in stream.batches(epoch=0):
        if limit is not None and count >= limit:
            break
        if limit is not None:
            x, y = x[:limit - count], y[:limit - count]
        total += float(np.abs(np.asarray(predict(x)) - y).sum(dtype=np.float64))
        count += x.shape[0]
    width = stream.widths()[1]
    return total / max(count * width, 1)


class Loop:
    """What hooks see: the model, the optimizer, ``predict`` (a compiled forward pass), the
    loop's position, ``stop_training``.

    ``state``: ``epoch`` (epochs finished), ``step`` (steps into the current
    epoch), ``global_step``, ``stopped_early``, ``done``, and ``hooks`` (each
    hook's saved state by name).
    """

    def __init__(self, model, optimizer, *, predict, checkpoints, hooks, chief=True):
        self.model, self.optimizer, self.predict = model, optimizer, predict
        self.checkpoints, self.hooks, self.chief = checkpoints, hooks, chief
        self.state = {"epoch": 0, "step": 0, "global_step": 0, "stopped_early": False,
                      "done": False, "hooks": {}}
        self.stop_training = False

    def save(self):
        """Write a checkpoint of the model, the optimizer, the position and every hook's state
        (the chief alone, on a cluster: every worker holds the same)."""
        if not self.chief:
            return
        self.state["hooks"] = {h.name: h.get_state() for h in self.hooks if h.name}
        checkpoint.save(self.checkpoints, self.model, self.optimizer, self.state)

    def restore(self):
        """Continue from the newest checkpoint, if any; returns its name or None."""
        found, state = checkpoint.restore_newest(self.checkpoints, self.model, self.optimizer)
        if found is None:
            self.optimizer.build(self.model.trainable_variables)
            return None
        self.state = {**self.state, **state}
        for hook in self.hooks:
            if hook.name in self.state.get("hooks", {}):
                hook.set_state(self.state["hooks"][hook.name])
        return found.name


class _Speed:
    """Seconds per training step in this process, the first step (tracing) left out, kept
    in the loop state (``step_seconds``) so checkpoints carry it to ``status``."""

    def __init__(self, state):
        self.state, self.since, self.steps = state, None, 0

    def step(self):
        now = time.monotonic()
        if self.since is None:
            self.since = now
            return
        self.steps += 1
        self.state["step_seconds"] = (now - self.since) / self.steps


def _left(state, max_epochs):
    return state["step_seconds"] * steps_left(epoch=state["epoch"], step=state["step"],
                                              max_epochs=max_epochs,
                                              steps_per_epoch=state["steps_per_epoch"])


def diverged(loop, loss, epoch):
    """The error for a training loss that became NaN or infinite: training stops there, with
    no checkpoint of the broken weights; ``best/`` keeps the last model that improved."""
    rate = float(np.asarray(keras.ops.convert_to_numpy(loop.optimizer.learning_rate)))
    return StreamgexError(
        f"{loop.checkpoints.parent}: training diverged, the loss became {loss} at epoch "
        f"{epoch + 1}, step {loop.state['step'] + 1} (learning rate {rate:.3g}); best/ keeps "
        f"the last model that improved, if any. Lower learning_rate (recipe=\"adam\" clips "
        f"gradients) and retrain with --restart")


def on_device(batches, placement):
    """The batches as tensors on ``placement``'s GPU, each copied while the step before runs
    (one batch ahead, on a thread), so the stream's host-to-device copy is off the step's
    path; on the CPU the numpy batches as they are."""
    if not placement.device.startswith("gpu"):
        yield from batches
        return
    from concurrent.futures import ThreadPoolExecutor

    def copy(batch):
        with tf.device(placement.tf_device()):
            return tuple(tf.identity(tf.convert_to_tensor(a)) for a in batch)

    with ThreadPoolExecutor(1, thread_name_prefix="streamgex-h2d") as copier:
        pending = None
        for batch in batches:
            ahead = copier.submit(copy, batch)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()


def fit(checkpoints, model, optimizer, train, *, hooks, max_epochs, monitor=5000,
        gradient_scales=None, placement=None):
    """Train ``model``, resuming from the newest checkpoint in ``checkpoints``.

    Parameters
    ----------
    checkpoints : Path
        The checkpoint folder of this network (the hooks write the other files).
    train : streams.Stream
        The ``(inputs, outputs)`` training stream (validation is a hook's).
    hooks : list of hooks.Hook
        Called in order at each point of the loop (``training.hooks``).
    max_epochs : int
    monitor : int
        Training profiles whose error is measured after each epoch (D-GEX
        monitored 5,000): ``train_mae`` for the hooks.
    placement : placement.Placement, optional
        Where the steps run (default: this process's CPU). On a cluster every worker
        runs ``fit`` with the same arguments; it steps on its rows of each global batch,
        and only the chief writes checkpoints and shows progress.

    Returns
    -------
    dict
        The final loop state (epoch, global_step, stopped_early, done).
    """
    from .placement import Placement, peer_error

    placement = placement or Placement()
    loop = Loop(model, optimizer, predict=make_predict(model), checkpoints=checkpoints,
                hooks=hooks, chief=placement.chief)
    resumed = loop.restore()
    if resumed:
        log.info("resuming %s from %s: epoch %d, step %d", checkpoints.parent, resumed,
                 loop.state["epoch"] + 1, loop.state["step"])
    for hook in hooks:
        hook.on_train_begin(loop)
    if loop.state["done"]:
        return loop.state
    train_step = make_train_step(model, optimizer, gradient_scales, placement)
    if placement.device.startswith("gpu"):
        keep_freed_memory()  # the stream must keep up with the GPU
    state = loop.state
    state["steps_per_epoch"] = train.steps_per_epoch
    speed = _Speed(state)
    for epoch in range(state["epoch"], max_epochs):
        started, samples = time.monotonic(), 0
        bar = progress(total=train.steps_per_epoch, initial=state["step"],
                       desc=f"epoch {epoch + 1}/{max_epochs}", unit="step",
                       hidden=not placement.chief)
        # numpy batches straight into the compiled step: tf.data's from_generator moved
        # ~2,700 full profiles/s (tools/bench_stream.py), the stream itself several times more
        for batch in on_device(train.batches(epoch, state["step"]), placement):
            part, rows = placement.shard(batch)
            try:
                loss = float(train_step(*part, rows) if placement.distributed
                             else train_step(*part))
            except tf.errors.OpError as exc:
                if not placement.distributed:
                    raise
                bar.close()
                raise peer_error(placement, exc) from None
            if not math.isfinite(loss):
                bar.close()
                raise diverged(loop, loss, epoch)
            samples += rows
            state["step"] += 1
            state["global_step"] += 1
            speed.step()
            bar.update(1)
            if state["step"] % 20 == 0 and state.get("step_seconds"):
                bar.set_postfix_str(f"run: {format_duration(_left(state, max_epochs))} left "
                                    f"at most", refresh=False)
            for hook in hooks:
                hook.on_batch_end(loop)
        bar.close()
        seconds = time.monotonic() - started
        logs = {"epoch": epoch + 1, "global_step": state["global_step"],
                "train_mae": mean_absolute_error(loop.predict, train, limit=monitor),
                "val_mae": None, "samples_per_second": samples / max(seconds, 1e-9),
                "seconds": seconds, "max_epochs": max_epochs}
        state.update(epoch=epoch + 1, step=0)
        logs["seconds_left"] = _left(state, max_epochs) if state.get("step_seconds") else None
        for hook in hooks:
            hook.on_epoch_end(loop, logs)
        if loop.stop_training:
            state["stopped_early"] = True
            break
    state["done"] = True
    loop.save()
    for hook in hooks:
        hook.on_train_end(loop)
    return state
