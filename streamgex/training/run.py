"""``Run``: a training run's folder, and the only code that knows its layout.

::

    RUN/
      config.json        the model kind and its resolved options
      inputs.json        what it trains on: the split folder (an E-MLP's codes folder,
                         a fine-tuned run's source run and its model files' times) and
                         the content fingerprints of their train and val stores
      log.csv            one row per epoch (a run of several networks: per part folder)
      tensorboard/       the same curves for TensorBoard
      checkpoints/       the newest two checkpoints (``training.checkpoint``)
      part1/, part2/ ... a kind training several networks (D-GEX partitions):
                         log.csv, tensorboard/, checkpoints/ of each
      done.json          a network finished without checkpoints (least squares)
      best/              the best model files (Keras ``.keras``, ``linear.npy``)
      eval/              NAME.json and NAME_genes.csv per evaluated dataset

Every file here that records state or results is written atomically
(``atomic``). A run folder is made for one kind, one set of options and one
split's content; ``create`` refuses another unless ``restart`` discards the old
run. The split is known by what its stores hold (``steps.fingerprint``: the
step, options and inputs that made them, back to the raw files' content), not
by its path: a split rebuilt in place from other data or with other options
makes the run stale.
"""

import dataclasses
import shutil
from dataclasses import asdict, fields
from functools import cached_property
from pathlib import Path

from .. import digest
from ..atomic import read_json, write_json
from ..errors import StreamgexError
from ..paths import locate, relative


class Run:
    """A run folder (see the module doc); ``Run.open`` reads one, ``Run.create`` makes one."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

    # -- files ------------------------------------------------------------------------------
    @property
    def config_file(self):
        return self.path / "config.json"

    @property
    def inputs_file(self):
        return self.path / "inputs.json"

    @property
    def best_dir(self):
        return self.path / "best"

    @property
    def eval_dir(self):
        return self.path / "eval"

    def best(self, name):
        """The path of the best-model file ``name`` (``emlp.keras``, ``linear.npy``)."""
        return self.best_dir / name

    def network_dir(self, index):
        """Folder of network ``index`` (0-based): the run itself, or ``partN`` for several."""
        return self.path if self.networks == 1 else self.path / f"part{index + 1}"

    def _done_file(self, index):
        return self.network_dir(index) / "done.json"

    def checkpoint_dir(self, index=0):
        return self.network_dir(index) / "checkpoints"

    def log_file(self, index=0):
        return self.network_dir(index) / "log.csv"

    def tensorboard_dir(self, index=0):
        return self.network_dir(index) / "tensorboard"

    def log_files(self):
        """The ``log.csv`` of each network that has one."""
        return [self.log_file(i) for i in range(self.networks) if self.log_file(i).exists()]

    def result_file(self, name):
        """An evaluation's JSON (``eval/NAME.json``)."""
        return self.eval_dir / f"{name}.json"

    def genes_file(self, name):
        """An evaluation's per-gene table (``eval/NAME_genes.csv``)."""
        return self.eval_dir / f"{name}_genes.csv"

    def result_files(self):
        return sorted(self.eval_dir.glob("*.json")) if self.eval_dir.exists() else []

    # -- what the run is ---------------------------------------------------------------------
    @classmethod
    def open(cls, path):
        """An existing run folder; an error when ``path`` is not one."""
        run = cls(path)
        if not run.config_file.exists() or not run.inputs_file.exists():
            raise StreamgexError(f"{run.path}: not a streamgex run folder (no config.json or "
                                 f"inputs.json); train one with `streamgex train`")
        return run

    @classmethod
    def create(cls, path, kind, options, *, data, codes=None, source=None, restart=False):
        """Make the run folder for ``kind`` with ``options`` on the split ``data``,
        or check that the one there was made so; ``restart`` discards it first."""
        run = cls(path)
        if restart and run.path.exists():
            if not run.config_file.exists():
                raise StreamgexError(f"{run.path}: exists and is not a run folder; --restart "
                                     f"removes only run folders")
            shutil.rmtree(run.path)
        changed = run.differences(kind, options, data=data, codes=codes, source=source)
        if changed == ["data"]:
            raise StreamgexError(f"{run.path}: trained on other data than {data} holds now "
                                 f"(trained on {run.data} as it was "
                                 f"then); pass --restart to retrain it")
        if changed:
            raise StreamgexError(
                f"{run.path}: a run with other options exists (differs in "
                f"{', '.join(changed)}); re-run with its options to resume, or pass "
                f"--restart to discard it")
        if run.path.exists() and not run.config_file.exists() and any(run.path.iterdir()):
            raise StreamgexError(f"{run.path}: exists and is not a run folder; choose another "
                                 f"--run-dir")
        run.path.mkdir(parents=True, exist_ok=True)
        config, inputs = _identity(kind, options, data, codes, source, folder=run.path)
        write_json(run.config_file, config)
        write_json(run.inputs_file, inputs)
        return run

    def differences(self, kind, options, *, data, codes=None, source=None):
        """What differs between this run folder and one of ``kind`` with ``options`` on
        ``data``: option names, ``data`` or ``codes`` (other content), ``source`` (another
        source run or retrained since); empty for the same run or no run yet."""
        config, inputs = _identity(kind, options, data, codes, source, folder=self.path)
        changed = []
        if self.config_file.exists():
            # an option added to streamgex since the run was made counts as its default there
            # (an added option's default keeps what was done before it existed)
            old = {**_plain(_defaults(kind.Options)), **read_json(self.config_file)}
            changed += sorted(k for k in {**old, **config} if old.get(k) != config.get(k))
        if self.inputs_file.exists():
            old = read_json(self.inputs_file)
            for key in ("data", "codes"):
                if "content" in old:
                    differs = old["content"].get(key) != inputs["content"][key]
                else:  # a run folder from before content fingerprints: its paths only
                    differs = old.get(key) != inputs[key]
                changed += [key] if differs else []
            old_models = (old.get("source") or {}).get("models")
            if old_models != (inputs["source"] or {}).get("models") and not _same_times(
                    old_models, source):
                changed.append("source")
        return changed

    def identity(self, kind, options, *, data, codes=None, source=None):
        """What a run of ``kind`` with ``options`` on ``data`` is, by content (no folder):
        its ``config.json`` and the content of its data, codes and source models."""
        config, inputs = _identity(kind, options, data, codes, source, folder=self.path)
        return {"config": config, "content": inputs["content"],
                "source": (inputs["source"] or {}).get("models")}

    @cached_property
    def config(self):
        """``config.json``: ``{"model": kind name, option: value, ...}`` (read once; a run's
        options never change after ``create``)."""
        return read_json(self.config_file)

    @property
    def kind(self):
        from ..models import registry

        name = self.config["model"]
        try:
            return registry.get(name)
        except KeyError:
            raise StreamgexError(f"{self.path}: trained as model kind {name!r}, which this "
                                 f"streamgex does not have") from None

    @property
    def options(self):
        """The kind's typed options, as the run was made with."""
        from ..config import build

        values = {k: v for k, v in self.config.items() if k != "model"}
        return build(self.kind.Options, values, str(self.config_file))

    @cached_property
    def networks(self):
        return self.kind.networks(self.options)

    @property
    def data(self):
        """The split folder the run trains on."""
        return locate(self.path, read_json(self.inputs_file)["data"])

    @property
    def codes(self):
        """The codes folder an E-MLP run trains on (None for other kinds)."""
        codes = read_json(self.inputs_file)["codes"]
        return locate(self.path, codes) if codes else None

    @property
    def source(self):
        """The run a fine-tuned run started from (None for other kinds)."""
        source = read_json(self.inputs_file).get("source")
        return Run(locate(self.path, source["run"])) if source else None

    # -- progress ---------------------------------------------------------------------------
    def progress(self):
        """Loop states of the newest checkpoint of each network started (list of dicts:
        epoch, step, schedule, done, ...); a network solved in one go reports ``done.json``."""
        from .checkpoint import newest_state

        states = []
        for index in range(self.networks):
            found = newest_state(self.checkpoint_dir(index))
            if found is not None:
                states.append(found)
            elif self._done_file(index).exists():
                states.append(read_json(self._done_file(index)))
        return states

    def mark_done(self, index=0, **state):
        """Record that network ``index`` finished without checkpoints (least squares)."""
        write_json(self._done_file(index),
                   {"done": True, "epoch": 1, "step": 0, "schedule": {}, **state})

    def is_done(self):
        """Whether every network of the run finished training."""
        if not self.config_file.exists():
            return False
        states = self.progress()
        return len(states) == self.networks and all(s["done"] for s in states)

    def check_done(self):
        """An error unless training finished (what evaluate and predict need)."""
        if not self.is_done():
            raise StreamgexError(f"{self.path}: training has not finished; re-run its "
                                 f"`streamgex train` command to complete it")
        return self


def _identity(kind, options, data, codes, source=None, *, folder):
    """``(config.json, inputs.json)`` contents of a run of ``kind`` with ``options`` in the run
    folder ``folder``: paths relative to it (a workdir moved whole keeps working), and the
    content fingerprints runs are compared by."""
    config = {"model": kind.name, **_plain(asdict(options))}
    inputs = {"data": relative(data, folder),
              "codes": relative(codes, folder) if codes else None,
              "source": _source(source, folder),
              "content": {"data": _content(data), "codes": _content(codes)}}
    return config, inputs


def _content(folder):
    """Fingerprints of the ``train`` and ``val`` stores of a split or codes folder (None for
    none): what a run learns from and selects its best model on."""
    from ..steps import fingerprint

    if folder is None:
        return None
    return {part: fingerprint(Path(folder) / part) if (Path(folder) / part).exists() else None
            for part in ("train", "val")}


def _source(source, folder):
    """A source run and the SHA-256s of its model files (retraining it makes this run
    stale; copying or moving it does not)."""
    if source is None:
        return None
    source = source if isinstance(source, Run) else Run(source)
    return {"run": relative(source.path, folder),
            "models": {f.name: digest.sha256(f, remember=True) for f in _model_files(source)}}


def _model_files(source):
    files = source.kind.model_files(source) if source.config_file.exists() else []
    return [f for f in files if f.exists()]


def _same_times(recorded, source):
    """A record made before model files were known by content (their modification times):
    the same while those times are (as it was then)."""
    if not recorded or not all(isinstance(v, int) for v in recorded.values()) or not source:
        return False
    source = source if isinstance(source, Run) else Run(source)
    return recorded == {f.name: f.stat().st_mtime_ns for f in _model_files(source)}


def _defaults(options_class):
    """``{option: default}`` of a kind's options dataclass."""
    return {f.name: f.default for f in fields(options_class)
            if f.default is not dataclasses.MISSING}


def _plain(values):
    """Options as JSON values (tuples as lists), so a saved config compares equal to a new one."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
