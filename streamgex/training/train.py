"""``streamgex train``: one model on a split, in a resumable run folder.

A run folder holds ``config.json`` (the resolved options), ``log.csv`` and
``tensorboard/`` (per epoch: training and validation MAE, learning rate,
samples/s), ``checkpoints/`` and the best model (``best/``, Keras format).
Re-running the same command continues from the newest checkpoint; a run
folder made with other options is refused unless ``restart`` discards it.
"""

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import StreamgexError
from ..store import open_store
from ..streams import Source, Stream

KINDS = ("autoencoder", "emlp", "dgex", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (``--set key=value`` overrides any of them)."""

    model: str
    hidden: list = field(default_factory=list)  # empty: the model's default
    batch: int = 200
    max_epochs: int = 250
    seed: int = 0
    learning_rate: float = 0.0  # 0: the model's published rate
    tied: bool = False
    batch_norm: bool = False
    partitions: int = 1
    ridge: float = 0.0
    precision: str = "float32"
    checkpoint_steps: int = 0
    checkpoint_minutes: float = 10.0
    monitor: int = 5000
    deterministic: bool = False
    window: int = 4
    memory_budget: str = ""  # e.g. "8GB"; empty: 80% of the machine's memory


def overrides_from_table(table):
    """``{"hidden": [64, 16, 64], "batch": 64}`` -> ``["hidden=64,16,64", "batch=64"]``."""
    return [f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in table.items()]


def resolve(kind, overrides=()):
    """The config for ``kind`` with ``key=value`` overrides applied and checked."""
    if kind not in KINDS:
        raise StreamgexError(f"unknown model {kind!r}; choose one of {', '.join(KINDS)}")
    config = TrainConfig(model=kind, max_epochs=150 if kind == "autoencoder" else 250)
    fields = {f.name: f for f in config.__dataclass_fields__.values()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or key not in fields or key == "model":
            raise StreamgexError(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                                 f"{', '.join(sorted(k for k in fields if k != 'model'))}")
        current = getattr(config, key)
        try:
            value = ([int(v) for v in text.split(",") if v] if isinstance(current, list)
                     else type(current)(text) if not isinstance(current, bool)
                     else text.lower() in ("1", "true", "yes"))
        except ValueError:
            raise StreamgexError(f"--set {item!r}: {key} must be a {type(current).__name__}") from None
        config = replace(config, **{key: value})
    if config.precision not in ("float32", "bf16"):
        raise StreamgexError("--set precision must be float32 or bf16")
    return config


def _save_inputs(run, data, codes):
    """Record where the run's data (and an E-MLP's codes) are, for evaluate and predict."""
    inputs = {"data": str(Path(data).resolve()),
              "codes": str(Path(codes).resolve()) if codes else None}
    path = run / "inputs.json"
    if path.exists() and json.loads(path.read_text()) != inputs:
        raise StreamgexError(f"{run}: trained on {json.loads(path.read_text())['data']}; "
                             f"pass --restart to retrain it on {data}")
    path.write_text(json.dumps(inputs, indent=1) + "\n")


def run_inputs(run):
    """``{"data": split folder, "codes": codes folder or None}`` of a run folder."""
    path = Path(run) / "inputs.json"
    if not path.exists():
        raise StreamgexError(f"{run}: not a streamgex run folder (no inputs.json); "
                             f"train it with `streamgex train`")
    return json.loads(path.read_text())


def run_progress(run):
    """Loop states of a run's newest checkpoints, one per trained network (D-GEX: per part).

    Returns a list of dicts (epoch, step, schedule, done, ...); empty before the
    first checkpoint. A linear run, solved in one go, is one ``{"done": True}``.
    """
    from .checkpoint import latest

    run = Path(run)
    if (run / "best" / "linear.npy").exists():
        return [{"done": True, "epoch": 1, "schedule": {}}]
    states = []
    for folder in [run, *sorted(run.glob("part*"))]:
        found = latest(folder / "checkpoints")
        if found is not None:
            states.append(json.loads((found / "state.json").read_text()))
    return states


def is_done(run):
    """Whether every network of the run finished training."""
    config = json.loads((Path(run) / "config.json").read_text())
    states = run_progress(run)
    wanted = config["partitions"] if config["model"] == "dgex" else 1
    return len(states) == wanted and all(s["done"] for s in states)


def split_columns(path):
    """Landmark and target column indices of a split store."""
    ds = open_store(path)
    if "is_landmark" not in ds.coords:
        raise StreamgexError(f"{path}: no is_landmark coordinate; train on a split of a genes store")
    mask = ds.is_landmark.values.astype(bool)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def prepare_run(run, config, *, restart=False):
    """Create the run folder or check it was made with this config."""
    run = Path(run)
    saved = run / "config.json"
    if restart and run.exists():
        shutil.rmtree(run)
    if saved.exists():
        old = json.loads(saved.read_text())
        if old != json.loads(json.dumps(asdict(config))):
            changed = sorted(k for k in old if old[k] != asdict(config).get(k))
            raise StreamgexError(
                f"{run}: a run with other options exists (differs in {', '.join(changed)}); "
                f"re-run with its options to resume, or pass --restart to discard it"
            )
    run.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(asdict(config), indent=1) + "\n")
    return run


def streams_for(data, x_columns, y_columns, config, *, y_store=None):
    """Training, validation and monitor streams over a split folder."""
    data = Path(data)

    def make(part, seed):
        y_path = Path(y_store) / part if y_store else data / part
        return Stream((Source(data / part, x_columns), Source(y_path, y_columns)),
                      batch=config.batch, seed=seed, window=config.window)

    return make("train", config.seed), make("val", config.seed)


def check_memory(model, config, stream, what):
    """Refuse before training when the estimate exceeds the budget (see ``memory``)."""
    from . import memory

    budget = (memory.parse_size(config.memory_budget) if config.memory_budget
              else memory.machine_budget())
    widths = sum(stream.widths())
    stream_bytes = 2 * stream.window * stream.chunk_rows * widths * 4
    parts = memory.estimate(model, batch=config.batch, stream_bytes=stream_bytes,
                            precision=config.precision)
    memory.check(parts, budget, what=what)
    return parts


def setup_backend(config):
    """Seeds, op determinism and the precision policy, before any model is built."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if config.precision == "bf16" else "float32")


def train(kind, data, run, *, overrides=(), codes=None, restart=False, quiet=False):
    """Train a ``kind`` model on the split folder ``data`` in the run folder ``run``.

    ``codes``: for an E-MLP, the folder ``streamgex encode`` wrote the training
    and validation codes to. Returns the run folder.
    """
    from ..models import autoencoder, dgex, emlp
    from ..models.schedule import Schedule
    from .loop import LoopOptions, fit

    config = resolve(kind, overrides)
    data, run = Path(data), prepare_run(run, config, restart=restart)
    _save_inputs(run, data, codes)
    if is_done(run):
        if not quiet:
            print(f"{run}: up to date (training finished)")
        return run
    landmarks, targets = split_columns(data / "train")
    if kind == "linear":
        return _train_linear(data, run, landmarks, targets, config, quiet)
    setup_backend(config)
    options = LoopOptions(max_epochs=config.max_epochs, checkpoint_steps=config.checkpoint_steps,
                          checkpoint_minutes=config.checkpoint_minutes, monitor=config.monitor,
                          quiet=quiet)
    best = run / "best"
    best.mkdir(exist_ok=True)

    if kind == "autoencoder":
        hidden = config.hidden or ([8000, 2000, 8000] if len(targets) > 15_000 else [6000, 2000, 6000])
        model, encoder, decoder = autoencoder.build_autoencoder(
            len(targets), hidden, tied=config.tied, batch_norm=config.batch_norm, seed=config.seed)
        optimizer = autoencoder.autoencoder_optimizer(config.learning_rate or autoencoder.LEARNING_RATE)
        train_stream, val_stream = streams_for(data, targets, targets, config)
        check_memory(model, config, train_stream, "this autoencoder")
        fit(run, model, optimizer, train_stream, validation=val_stream,
            schedule=Schedule(optimizer.learning_rate.numpy().item()), options=options,
            on_best=lambda epoch: autoencoder.export_coders(encoder, decoder, best))
        if not (best / "encoder.keras").exists():
            autoencoder.export_coders(encoder, decoder, best)
        return run

    if kind == "emlp":
        if codes is None:
            raise StreamgexError("an E-MLP trains on autoencoder codes: pass --codes, the folder "
                                 "`streamgex encode` wrote")
        n_codes = open_store(Path(codes) / "train").sizes["gene"]
        n_train = open_store(data / "train").sizes["sample"]
        hidden = config.hidden or list(emlp.auto_hidden(n_codes, n_train))
        model = emlp.build_emlp(len(landmarks), n_codes, hidden, seed=config.seed)
        optimizer = emlp.emlp_optimizer(config.learning_rate or emlp.LEARNING_RATE)
        train_stream, val_stream = streams_for(data, landmarks, None, config, y_store=codes)
        check_memory(model, config, train_stream, "this E-MLP")
        fit(run, model, optimizer, train_stream, validation=val_stream,
            schedule=Schedule(optimizer.learning_rate.numpy().item()), options=options,
            on_best=lambda epoch: model.save(best / "emlp.keras"))
        if not (best / "emlp.keras").exists():
            model.save(best / "emlp.keras")
        return run

    for index, (start, stop) in enumerate(dgex.partitions(len(targets), config.partitions)):
        part_run = run / f"part{index + 1}"
        model = dgex.build_dgex(len(landmarks), stop - start, config.hidden or dgex.HIDDEN,
                                seed=config.seed + index)
        optimizer = dgex.dgex_optimizer(config.learning_rate or dgex.LEARNING_RATE)
        train_stream, val_stream = streams_for(data, landmarks, targets[start:stop], config)
        check_memory(model, config, train_stream, "this D-GEX network")
        path = best / f"dgex_part{index + 1}.keras"
        fit(part_run, model, optimizer, train_stream, validation=val_stream,
            schedule=Schedule(optimizer.learning_rate.numpy().item()), options=options,
            gradient_scales=dgex.gradient_scales(model),
            on_best=lambda epoch, m=model, p=path: m.save(p))
        if not path.exists():
            model.save(path)
    return run


def _train_linear(data, run, landmarks, targets, config, quiet):
    """Least squares from normal equations accumulated over the training stream."""
    from ..models.linear import NormalEquations, predict
    from ..progress import progress
    from .loop import mean_absolute_error

    train_stream, val_stream = streams_for(data, landmarks, targets, config)
    equations = NormalEquations(len(landmarks), len(targets))
    bar = progress(total=train_stream.steps_per_epoch, desc="normal equations", unit="batch",
                   quiet=quiet)
    for x, y in train_stream.batches(epoch=0):
        equations.add(x, y)
        bar.update(1)
    bar.close()
    coefficients = equations.solve(config.ridge)
    (run / "best").mkdir(exist_ok=True)
    np.save(run / "best" / "linear.npy", coefficients)
    val_mae = mean_absolute_error(lambda x: predict(coefficients, x), val_stream)
    (run / "log.csv").write_text(f"epoch,val_mae\n1,{val_mae}\n")
    if not quiet:
        print(f"linear regression: val MAE {val_mae:.4f} ({equations.count:,} training profiles)")
    return run
