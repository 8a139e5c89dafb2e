"""``streamgex train``: one model of any registered kind on a split, in a resumable run folder.

``train`` validates the options (``config.parse_options`` into the kind's
``Options``), makes or reopens the ``Run`` (refusing one made with other
options or data), and hands the kind a ``TrainJob``: the split's landmark and
target columns and the helpers a streamed network needs (streams, the memory
check, ``fit`` with the paper's hooks). Re-running the same command continues
from the newest checkpoint; a finished run is skipped.
"""

import dataclasses
import logging
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import locks
from ..config import parse_options
from ..errors import StreamgexError
from ..store import open_store
from ..streams import Source, Stream
from .run import Run

log = logging.getLogger(__name__)


def split_columns(path):
    """Landmark and target column indices of a split store."""
    ds = open_store(path)
    if "is_landmark" not in ds.coords:
        raise StreamgexError(f"{path}: no is_landmark coordinate; train on a split of a genes store")
    mask = ds.is_landmark.values.astype(bool)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


@dataclass
class TrainJob:
    """What a kind's ``train`` gets: the run, its options, the split and its columns.

    Attributes
    ----------
    run : Run
    options : the kind's ``Options``
    data : Path
        The split folder (``train/``, ``val/``, ``test/`` stores).
    codes : Path or None
        The codes folder (``streamgex encode``) for a kind with ``codes_from``.
    source : Run or None
        The finished run a kind with ``starts_from`` starts from.
    landmarks, targets : (n,) int64
        Column indices of the split's landmark and target genes.
    """

    run: Run
    options: object
    data: Path
    codes: Path
    landmarks: np.ndarray
    targets: np.ndarray
    source: Run = None
    #: Where its steps run (``training.placement``); default this process's CPU.
    placement: object = None
    #: The networks this worker trains (None: every one): a cluster that trains a kind's
    #: independent networks side by side gives each worker whole networks.
    assigned: tuple = None

    def __post_init__(self):
        if self.placement is None:
            from .placement import Placement

            self.placement = Placement()

    @contextmanager
    def placed(self):
        """Within this, models and optimizers are built where the steps run (the device,
        or mirrored on a cluster's workers: ``Placement.scope``)."""
        self._scope = self.placement.scope()
        self._scope.__enter__()
        try:
            yield self
        finally:
            self._scope.__exit__(None, None, None)

    def free_memory(self):
        """Drop every network built so far before the next (Keras's global state and its
        compiled functions' reference cycles would keep them alive), staying placed: Keras's
        ``clear_session`` also clears the distribution strategy a scope entered."""
        import keras

        self._scope.__exit__(None, None, None)
        keras.backend.clear_session(free_memory=True)
        self._scope = self.placement.scope()
        self._scope.__enter__()

    def trains(self, index):
        """Whether this worker trains network ``index`` of the run."""
        return self.assigned is None or index in self.assigned

    def streams(self, x_columns, y_columns, *, y_store=None):
        """Training and validation streams: ``x_columns`` of the split, ``y_columns`` of the
        split (or of ``y_store``'s parts, row-aligned with it: codes)."""
        def make(part):
            y_path = Path(y_store) / part if y_store else self.data / part
            return Stream((Source(self.data / part, x_columns), Source(y_path, y_columns)),
                          batch=self.options.batch, seed=self.options.seed,
                          window=self.options.window)

        return make("train"), make("val")

    def setup_backend(self):
        """Seeds, op determinism and the precision policy, before any model is built."""
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(self.options.seed)
        if self.options.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.mixed_precision.set_global_policy(
            {"bf16": "mixed_bfloat16", "float16": "mixed_float16"}.get(self.options.precision,
                                                                       "float32"))

    def least_squares(self, stream, *, index=0, explained=None):
        """Least squares' exact solution of ``stream``'s outputs on its inputs from one pass
        over it (``models.linear.accumulate``: ``(n_in + 1)^2`` and ``(n_in + 1) x
        n_out`` float64 sums, whatever the profile count), the start of a network's linear
        skip (``models.mlp.start_at_least_squares``); None when network ``index`` resumes
        from a checkpoint, whose weights replace any start. ``explained(x)``: what the rest
        of the network already predicts; the solution then fits what it leaves."""
        from ..models.linear import accumulate
        from .checkpoint import latest

        if latest(self.run.checkpoint_dir(index)) is not None:
            return None
        return accumulate(stream, explained=explained, desc="least squares start",
                          hidden=not self.placement.chief).solve()

    def check_memory(self, model, stream, what, slots=1, each_gradient=False):
        """Refuse before training when the estimate exceeds the budget (``memory``)."""
        from . import memory

        options = self.options
        budget = (memory.parse_size(options.memory_budget) if options.memory_budget
                  else memory.machine_budget())
        parts = memory.estimate(model, batch=options.batch, stream_bytes=stream.buffer_bytes(),
                                precision=options.precision, slots=slots,
                                each_gradient=each_gradient)
        memory.check(parts, budget, what=what, batch=options.batch)
        return parts

    def fit(self, model, streams, *, paper_optimizer, index=0, save_best, gradient_scales=None,
            learning_rate=None, what="this network", start_validated=False):
        """Train network ``index`` of the run by the options' recipe (``recipes``), resumably.

        ``streams``: ``(train, validation)`` from ``streams``;
        ``paper_optimizer()``: the kind's published optimizer (the ``paper``
        recipe's); ``gradient_scales``: its per-variable rate multipliers (paper
        recipe only); ``save_best()`` writes the model files (called at each new
        best validation error, and once at the end if validation never ran);
        ``learning_rate``: the kind's rate for the ``adam`` recipe when the
        options give none (default: the recipe's).
        ``start_validated``: the model as built is a candidate (least squares' solution, or a
        trained run it continues): validated before the first step as "epoch 0", so the
        model kept is never worse on validation than the start.
        """
        from . import recipes
        from .hooks import training_hooks, worker_hooks
        from .loop import fit, fusable

        train, validation = streams
        run, options, chief = self.run, self.options, self.placement.chief
        recipe = recipes.get(options.recipe)
        optimizer = recipe.optimizer(options, paper_optimizer, learning_rate)
        if options.precision == "float16":  # float16's range needs the loss scaled
            import keras

            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.check_memory(model, train, what, slots=recipe.optimizer_slots,
                          each_gradient=fusable(optimizer))
        run.best_dir.mkdir(exist_ok=True)
        run.network_dir(index).mkdir(exist_ok=True)
        schedule = recipe.schedule(optimizer, options)
        rate = recipe.rate_hook(schedule, options, train.steps_per_epoch)
        # Every worker decides the rate, validation and stopping alike (the same weights,
        # the same errors); only the chief writes files.
        hooks = training_hooks(rate, schedule, log_file=run.log_file(index),
                               tensorboard=run.tensorboard_dir(index), validation=validation,
                               on_best=lambda epoch: save_best(),
                               checkpoint_steps=options.checkpoint_steps,
                               checkpoint_minutes=options.checkpoint_minutes,
                               validate_start=start_validated) if chief \
            else worker_hooks(rate, schedule, validation, validate_start=start_validated)
        fit(run.checkpoint_dir(index), model, optimizer, train, hooks=hooks,
            max_epochs=options.max_epochs, monitor=options.monitor,
            gradient_scales=gradient_scales if recipe.gradient_scales else None,
            placement=self.placement)
        if schedule.best is None and chief:  # validation never ran: the final model is kept
            save_best()


def train(kind, data, run, *, overrides=(), options=None, codes=None, source=None,
          restart=False, placement=None):
    """Train a model of ``kind`` (a registered name) on the split folder ``data`` in ``run``.

    ``options``: the kind's typed ``Options`` (from a config); else built from
    ``overrides`` (``key=value`` strings), validated before anything is
    written. ``codes``: for a kind trained on codes (E-MLP), the folder
    ``streamgex encode`` wrote; ``source``: for a kind that starts from
    another's run (the fine-tuned E-MLP), that run's folder. ``placement``
    (``training.placement``): the device, or this worker's place in a cluster that
    trains the run together (every worker calls ``train`` with the same arguments but
    its rank; they must share the run folder's filesystem). Returns the ``Run``.
    """
    from ..models import registry
    from .placement import Placement

    try:
        model_kind = registry.get(kind)
    except KeyError:
        raise StreamgexError(f"unknown model {kind!r}; choose one of "
                             f"{', '.join(registry.names())}") from None
    if options is None:
        options = parse_options(model_kind.Options, overrides)
    if model_kind.codes_from and codes is None:
        raise StreamgexError(f"{model_kind.title} trains on {model_kind.codes_from} codes: pass "
                             f"--codes, the folder `streamgex encode` wrote")
    if model_kind.starts_from:
        if source is None:
            raise StreamgexError(f"{model_kind.title} starts from a finished run of "
                                 f"{registry.get(model_kind.starts_from).title}: pass --from RUN")
        source = Run.open(source).check_done()
        if source.kind.name != model_kind.starts_from:
            raise StreamgexError(f"{source.path}: a run of {source.kind.title}; "
                                 f"{model_kind.title} starts from a run of "
                                 f"{registry.get(model_kind.starts_from).title}")
    data, placement = Path(data), placement or Placement()
    landmarks, targets = split_columns(data / "train")
    if placement.distributed and not model_kind.iterative:
        if not placement.chief:  # solved in one pass over the data: worker 0's alone
            log.info("%s is solved by worker 0 alone", model_kind.title)
            return Run(run)
        placement = dataclasses.replace(placement, workers=(), rank=0)
    job = TrainJob(None, options, data, Path(codes) if codes else None, landmarks, targets,
                   source, placement)

    def create():
        return Run.create(run, model_kind, options, data=data, codes=codes, source=source,
                          restart=restart)

    if not placement.distributed:
        with locks.hold(run, what="this run folder"):
            return _train(model_kind, dataclasses.replace(job, run=create()))
    placement.agree({"world": placement.world,
                     **Run(run).identity(model_kind, options, data=data, codes=codes,
                                         source=source)})
    with locks.hold(run, what="this run folder") if placement.chief else nullcontext():
        if placement.chief:  # prepares the run folder while the others wait
            create()
        placement.barrier()
        return _train(model_kind, dataclasses.replace(job, run=Run.open(run)))


def _train(model_kind, job):
    """Train what this worker trains of ``job.run``: alone, every network; on a cluster,
    one network data-parallel, or whole networks each (``job.assigned``)."""
    run, options, placement = job.run, job.options, job.placement
    if run.is_done():
        log.info("%s: up to date (training finished)", run.path)
        return run
    networks = model_kind.networks(options)
    if placement.distributed and networks >= placement.world:
        # Independent networks (D-GEX's partitions): each worker trains whole ones on its
        # own device, with no all-reduce at all, instead of all of them together.
        assigned = tuple(range(placement.rank, networks, placement.world))
        log.info("training network(s) %s of %d here (whole networks per worker: they are "
                 "independent, so no gradients cross the network)",
                 ", ".join(str(i + 1) for i in assigned), networks)
        job = dataclasses.replace(job, placement=dataclasses.replace(placement, workers=(),
                                                                     rank=0),
                                  assigned=assigned)
    elif placement.distributed:
        log.info("data-parallel on %d workers: %d profiles of each batch of %d here",
                 placement.world, options.batch // placement.world, options.batch)
    with job.placed():
        model_kind.train(job)
    return run
