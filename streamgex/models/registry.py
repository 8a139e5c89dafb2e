"""The registry of model kinds: what ``train``, ``evaluate``, ``predict``, ``report``,
``run``, ``status`` and the CLI look a model up in, instead of branching on its name.

A kind is a ``ModelKind`` subclass, declared once in its own module (``linear``,
``autoencoder``, ``emlp``, ``dgex``) and registered with ``register``:

- ``name``, ``title``: the key in configs and run folders, the name in reports;
- ``Options``: a frozen dataclass of typed options with defaults (subclass
  ``StreamOptions`` or ``SGDOptions``), validated by ``config.build``;
- ``train(job)``: how it trains on a ``training.train.TrainJob`` (streamed SGD
  through ``job.fit``, or anything else, such as normal equations);
- ``load(run)``: the saved model as an ``evaluation.predictor.Predictor``;
- how it appears in the report (``role``, ``curve_label``, ``iterative``).

Adding a model kind is one module with a ``ModelKind`` subclass plus one
``register(...)`` call; nothing else changes.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import OptionError, choice, non_negative, positive
from ..training.recipes import NAMES as RECIPES

_KINDS = {}


@dataclass(frozen=True)
class StreamOptions:
    """Options every kind has: how the split is streamed to it."""

    batch: int = positive(200)
    seed: int = 0
    #: Chunks read together and shuffled as one window (``streams.Stream``).
    window: int = positive(4)


@dataclass(frozen=True)
class SGDOptions(StreamOptions):
    """Options of a network trained by the streamed loop (``training.loop``)."""

    hidden: tuple[int, ...] = ()  # empty: the kind's default sizes
    #: How it is optimized (``training.recipes``): "paper" (the kind's published
    #: momentum SGD and rules) or "adam" (AdamW, warm-up and cosine decay, clipping).
    recipe: str = choice("paper", RECIPES)
    max_epochs: int = positive(250)
    learning_rate: float = non_negative(0.0)  # 0: the recipe's rate (paper: the kind's)
    #: adam recipe: stop after this many epochs without a better validation error.
    patience: int = positive(10)
    #: adam recipe: AdamW's decoupled weight decay.
    weight_decay: float = non_negative(0.0)
    #: Keras mixed precision: "bf16" (AVX512_BF16 / AMX CPUs, GPUs of compute capability
    #: 8.0 on), "float16" (older GPUs; with dynamic loss scaling), or "float32".
    precision: str = choice("float32", ("float32", "bf16", "float16"))
    checkpoint_steps: int = non_negative(0)
    checkpoint_minutes: float = non_negative(10.0)
    monitor: int = positive(5000)
    deterministic: bool = False
    memory_budget: str = ""  # e.g. "8GB"; empty: 80% of the machine's memory

    def check(self):
        if self.memory_budget:
            from ..errors import StreamgexError
            from ..training.memory import parse_size

            try:
                parse_size(self.memory_budget)
            except StreamgexError:
                raise OptionError("memory_budget", f"must be a size such as 8GB or 512MB, got "
                                                   f"{self.memory_budget!r}") from None


class ModelKind:
    """One kind of model; subclasses set the attributes and implement ``train`` and ``load``.

    Attributes
    ----------
    name : str
        Key in configs (``[train.<name>]``), the CLI and run folders.
    title : str
        Name in reports.
    Options : type
        Frozen dataclass of its options (``StreamOptions`` or a subclass).
    role : str
        ``"baseline"`` (least squares), ``"reference"`` (the method compared
        with), ``"proposed"`` or ``"autoencoder"`` (reconstructs the targets,
        infers nothing from landmarks: Table 1, not Tables 2-3).
    codes_from : str or None
        The kind whose run's codes this one trains on (E-MLP: autoencoder);
        ``run`` trains that one first and encodes the split with it.
    starts_from : str or None
        The kind whose finished run this one starts from (the fine-tuned
        E-MLP: the E-MLP); ``run`` trains that one first.
    curve_label : str
        Added to its name in the validation-curve figure (" (on codes)").
    iterative : bool
        Trained over epochs (False: solved in one go; drawn as a level line).
    """

    name = ""
    title = ""
    Options = StreamOptions
    role = "proposed"
    codes_from = None
    starts_from = None
    curve_label = ""
    iterative = True

    @property
    def infers_targets(self):
        """Whether it predicts targets from landmarks (every role but the autoencoder)."""
        return self.role != "autoencoder"

    def networks(self, options):
        """How many networks it trains one after another (D-GEX: one per target partition)."""
        return 1

    def train(self, job):
        """Train on ``job`` (``training.train.TrainJob``) into ``job.run``."""
        raise NotImplementedError

    def load(self, run):
        """The best model of a finished ``run`` as an ``evaluation.predictor.Predictor``."""
        raise NotImplementedError

    def network(self, run):
        """The best model of a finished ``run`` as one Keras model, landmarks -> targets
        (``export`` saves it); None for a kind that is not a network (linear regression)."""
        raise NotImplementedError

    def model_files(self, run):
        """The files whose change makes its evaluations stale (default: every best model file,
        not a ``*.partial.*`` left by a kill mid-save nor ``digest.DIGESTS``)."""
        from ..atomic import is_partial

        return sorted(p for p in run.best_dir.glob("*") if p.is_file() and not is_partial(p)
                      and not p.name.startswith("."))

    def describe(self, options):
        """A few words on its shape for the report (Table 1: hidden sizes)."""
        hidden = getattr(options, "hidden", ())
        return "-".join(map(str, hidden)) or "default"


def save_keras(model, path):
    """Save a Keras model to ``path`` (``.keras``) atomically, with no copy of its weights.

    Keras builds a ``.keras`` archive's weights file in memory when it guesses
    the memory suffices (half of what is free): a second copy of every weight,
    0.7 GB for the full decoder, at the moment training holds the most. Saved
    unzipped to a folder beside ``path`` and stored into the archive here, the
    file is the same (``metadata.json``, ``config.json``, ``model.weights.h5``,
    uncompressed, as Keras writes it and ``keras.saving.load_model`` reads it).
    And Keras takes each variable to numpy twice over (``np.array`` of the
    variable's ``numpy()``): 1.3 GB for the full autoencoder's largest kernel,
    the peak of its training stage; ``_zero_copy_saving`` hands it TensorFlow's
    own buffer instead.
    """
    import shutil
    import zipfile

    from ..atomic import atomic_path, partial_path

    path = Path(path)
    unzipped = partial_path(path.with_suffix(".unzipped"))
    shutil.rmtree(unzipped, ignore_errors=True)
    try:
        with _zero_copy_saving(model):
            model.save(unzipped, zipped=False)
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                       allowZip64=True) as archive:
            for name in ("metadata.json", "config.json", "model.weights.h5"):
                archive.write(unzipped / name, name)
    finally:
        shutil.rmtree(unzipped, ignore_errors=True)
    return path


class _Buffer:
    """A variable as numpy sees it through ``np.array``: TensorFlow's buffer, not a copy."""

    def __init__(self, variable):
        self.variable = variable

    def __array__(self, dtype=None, copy=None):
        # numpy 2 takes what __array__(copy=True) returns as the copy: no second one
        from ..training.checkpoint import as_array

        array = as_array(self.variable)
        return array if dtype is None else array.astype(dtype)


class _BufferStore:
    """A Keras weights store that receives variables as ``_Buffer``s."""

    def __init__(self, store):
        self.store = store

    def __setitem__(self, key, value):
        import keras

        self.store[key] = _Buffer(value) if isinstance(value, keras.Variable) else value

    def __getattr__(self, name):
        return getattr(self.store, name)


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


@contextmanager
def _zero_copy_saving(model):
    """While saving ``model``, its layers write their variables from TensorFlow's buffers."""
    patched = []
    try:
        for layer in _layers(model):
            if "save_own_variables" in vars(layer):  # reached twice (a shared layer)
                continue
            own = layer.save_own_variables
            layer.save_own_variables = lambda store, own=own: own(_BufferStore(store))
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            del layer.save_own_variables


def register(kind):
    """Add a ``ModelKind`` instance (or class) to the registry; returns it."""
    kind = kind() if isinstance(kind, type) else kind
    if not kind.name:
        raise ValueError(f"{type(kind).__name__} has no name")
    _KINDS[kind.name] = kind
    return kind


def unregister(name):
    """Remove a kind (tests that register their own)."""
    _KINDS.pop(name, None)


#: The order kinds appear in (reports, ``names``): the least-squares baseline
#: first, the model compared with, the proposed ones, then the autoencoder.
ROLES = ("baseline", "reference", "proposed", "autoencoder")


#: The kinds that come with streamgex; each module registers its kind when imported.
BUILTINS = ("linear", "dgex", "emlp", "finetune", "autoencoder")


def _builtins():
    import importlib

    for module in BUILTINS:
        importlib.import_module(f"{__package__}.{module}")


def get(name):
    """The kind called ``name``; ``KeyError`` if there is none."""
    _builtins()
    return _KINDS[name]


def kinds():
    """Every registered kind, by role (``ROLES``), then in registration order."""
    _builtins()
    return sorted(_KINDS.values(), key=lambda kind: ROLES.index(kind.role))


def names():
    """Every kind's name, in the order of ``kinds``: linear, D-GEX, E-MLP, autoencoder, ..."""
    return [kind.name for kind in kinds()]


def training_order(selected):
    """``selected`` kind names ordered so that a kind comes after the ones it takes codes or
    its start from."""
    ordered, pending = [], list(selected)
    while pending:
        for name in pending:
            needs = [s for s in (get(name).codes_from, get(name).starts_from)
                     if s is not None and s in selected]
            if all(source in ordered for source in needs):
                ordered.append(name)
                pending.remove(name)
                break
    return ordered
