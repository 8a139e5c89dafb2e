"""Configuration: TOML files in ``configs/`` and ``--set`` flags, validated once into dataclasses.

Every option reaches the code through one path: ``load_config`` (a config
file plus ``--set section.key=value`` overrides) and ``parse_options`` (a
model's ``[train.<model>]`` table, or ``streamgex train --set key=value``)
both end in ``build``, which checks

- that every key is known (unknown keys are listed with the known ones);
- types: strict booleans (``true``/``false`` only), integers that are not
  booleans, floats, strings, lists of integers (``[64, 16, 64]`` or, on the
  command line, ``64,16,64``);
- the constraints a field declares in its metadata: ``choices`` (an enum),
  ``minimum``, ``below``; and a dataclass's own ``check()`` for rules across fields (a
  symmetric autoencoder).

An error is one line naming where the value came from (the config file, or
the ``--set`` flag) and the key. Nothing runs and nothing is written before a
config is valid. A ``--set`` value is read as TOML (``3``, ``true``, ``"x"``,
``[1, 2]``) and, failing that, as a plain string. Relative paths in a config
are relative to the directory the command runs in.
"""

import dataclasses
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import StreamgexError
from . import storage
from .paths import check_local

#: Raw inputs a config may name by URL (read through a local copy: ``storage.fetch``).
URL_INPUTS = ("geo", "rnaseq")
from .resources import PACKAGED


class OptionError(ValueError):
    """A value that breaks a rule; ``key`` names the field (dotted inside a dataclass)."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key


def positive(default, **metadata):
    """A field whose value must be at least 1."""
    return field(default=default, metadata={"minimum": 1, **metadata})


def non_negative(default, **metadata):
    """A field whose value must be at least 0."""
    return field(default=default, metadata={"minimum": 0, **metadata})


def fraction(default):
    """A field whose value must be from 0 up to, not including, 1 (a dropout rate)."""
    return field(default=default, metadata={"minimum": 0, "below": 1})


def choice(default, choices):
    """A field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices)})


@dataclass(frozen=True)
class Inputs:
    """Raw files: the GEO compendium, the optional RNA-Seq table, the gene maps.

    ``landmarks`` / ``targets``: map files, or ``"dgex"`` (the default) for the
    D-GEX cross-platform maps shipped with streamgex (``streamgex.resources``).
    """

    geo: str
    rnaseq: str = ""
    landmarks: str = PACKAGED
    targets: str = PACKAGED


@dataclass(frozen=True)
class Dedup:
    enabled: bool = True
    clusters: int = positive(100)
    distance: float = non_negative(1.0)
    seed: int = 0


@dataclass(frozen=True)
class Genes:
    drop_missing: bool = False


@dataclass(frozen=True)
class Normalize:
    reference: str = choice("mean", ("mean", "normal"))


@dataclass(frozen=True)
class Split:
    clusters: int = positive(20)
    train_per_cluster: int = positive(4500)
    val_per_cluster: int = positive(700)
    seed: int = 0


@dataclass(frozen=True)
class Pca:
    enabled: bool = True
    genes: str = choice("targets", ("targets", "landmarks", "all"))
    components: int = positive(1000)


@dataclass(frozen=True)
class Evaluate:
    #: Target partitions for the paper's sum-over-partitions figure; 0: the
    #: paper's own (2 for the 9,520 cross-platform targets, 5 for 21,290).
    partitions: int = non_negative(0)


@dataclass(frozen=True)
class Dask:
    scheduler: str = ""


def _model_tables(value, origin, prefix, overridden):
    """``[train.<model>]`` tables -> ``{model: its typed options}``, checked per model kind."""
    from .models import registry

    if not isinstance(value, dict):
        raise StreamgexError(f"{origin}: [{prefix.rstrip('.')}] must hold [train.<model>] tables")
    tables = {}
    for name, table in value.items():
        try:
            kind = registry.get(name)
        except KeyError:
            where = _origin(origin, overridden, f"{prefix}{name}")
            raise StreamgexError(f"{where}: unknown model table [{prefix}{name}]; known models: "
                                 f"{', '.join(registry.names())}") from None
        tables[name] = build(kind.Options, table, origin, prefix=f"{prefix}{name}.",
                             overridden=overridden)
    return tables


def _storage_table(value, origin, prefix, overridden):
    """``[storage]``: options for the object store's filesystem (``storage.configure``), as
    the protocol library takes them (``endpoint_url = "http://..."``, ``anon = false``)."""
    if not isinstance(value, dict):
        raise StreamgexError(f"{origin}: [storage] must be a table of filesystem options, "
                             f"e.g. endpoint_url = \"http://127.0.0.1:9000\"")
    return dict(value)


@dataclass(frozen=True)
class Experiment:
    """An experiment: its raw inputs, where its outputs go, every step's options."""

    name: str
    workdir: str
    inputs: Inputs
    chunk_samples: int = non_negative(0)
    dedup: Dedup = field(default_factory=Dedup)
    genes: Genes = field(default_factory=Genes)
    normalize: Normalize = field(default_factory=Normalize)
    split: Split = field(default_factory=Split)
    pca: Pca = field(default_factory=Pca)
    dask: Dask = field(default_factory=Dask)
    evaluate: Evaluate = field(default_factory=Evaluate)
    #: ``[train.<model>]`` tables: each model's typed options (its kind's
    #: ``Options``), for the runs ``streamgex run`` trains, in table order.
    train: dict = field(default_factory=dict, metadata={"build": _model_tables})
    #: ``[storage]``: filesystem options for inputs given by URL (``storage.configure``).
    storage: dict = field(default_factory=dict, metadata={"build": _storage_table})


def load_config(path, overrides=()):
    """Read and validate a config file into an ``Experiment``; errors name the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise StreamgexError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise StreamgexError(f"{path}: a folder, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise StreamgexError(f"{path}: not valid TOML ({exc})") from None
    overridden = apply_overrides(data, overrides)
    experiment = build(Experiment, data, str(path), overridden=overridden)
    where = f"{_origin(str(path), overridden, 'workdir')}: workdir ="
    if storage.is_url(experiment.workdir):  # worked on through a local copy (``mirror``)
        storage.check_writable(experiment.workdir, where)
    else:
        check_local(experiment.workdir, where)
    for key, value in asdict(experiment.inputs).items():
        where = f"{_origin(str(path), overridden, 'inputs.' + key)}: inputs.{key} ="
        if value and key in URL_INPUTS and storage.is_url(value):
            storage.check(value, where)
        elif value:
            check_local(value, where)
    return experiment


def parse_options(cls, overrides=(), table=None, *, origin="--set"):
    """``cls`` (a kind's ``Options``) from a table and ``key=value`` overrides, validated."""
    data = dict(table or {})
    overridden = apply_overrides(data, overrides)
    return build(cls, data, origin, overridden=overridden)


def apply_overrides(data, overrides):
    """Apply ``key=value`` strings to nested ``data`` in place; returns ``{dotted key: flag}``."""
    overridden = {}
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise StreamgexError(f"--set {override!r}: expected KEY=VALUE, e.g. "
                                 f"--set split.seed=1 or --set batch=200")
        *parents, last = key.split(".")
        node = data
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StreamgexError(f"--set {override!r}: {'.'.join(parents[:depth + 1])} is a "
                                     f"value, not a section")
        node[last] = parse_value(text)
        overridden[key] = override
    return overridden


def parse_value(text):
    """A ``--set`` value: TOML if it parses (``3``, ``true``, ``"x"``, ``[1, 2]``), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def build(cls, data, origin, *, prefix="", overridden=None):
    """Validate ``data`` (a dict) into the dataclass ``cls``; see the module doc.

    ``origin``: the config file or ``--set``, for messages; ``overridden``:
    the dotted keys a ``--set`` flag gave (``apply_overrides``), so an error
    in one names the flag instead of the file.
    """
    overridden = overridden or {}
    if not isinstance(data, dict):
        raise StreamgexError(f"{origin}: [{prefix.rstrip('.')}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise StreamgexError(f"{_origin(origin, overridden, key)}: unknown key {key}; known "
                             f"keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise StreamgexError(f"{origin}: missing required key {key}")
            continue
        if "build" in spec.metadata:
            values[name] = spec.metadata["build"](data[name], origin, f"{key}.", overridden)
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = build(hints[name], data[name], origin, prefix=f"{key}.",
                                 overridden=overridden)
        else:
            try:
                values[name] = _checked(hints[name], data[name], spec.metadata)
            except OptionError as exc:
                raise StreamgexError(f"{_origin(origin, overridden, key)}: {key} {exc}") from None
    try:
        result = cls(**values)
        if hasattr(result, "check"):
            result.check()
    except OptionError as exc:
        key = f"{prefix}{exc.key}"
        raise StreamgexError(f"{_origin(origin, overridden, key)}: {key} {exc}") from None
    return result


def _origin(origin, overridden, key):
    return f"--set {overridden[key]!r}" if key in overridden else origin


def _checked(kind, value, metadata):
    """``value`` as the type ``kind`` (str, int, float, bool, tuple of int), constraints applied."""
    if typing.get_origin(kind) in (tuple, list) or kind in (tuple, list):
        if isinstance(value, str):  # the command line's 64,16,64
            try:
                value = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise OptionError("", f"must be a list of integers, got {value!r}") from None
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise OptionError("", f"must be a list of integers, got {value!r}")
        if any(v < 1 for v in value):
            raise OptionError("", f"must hold positive sizes, got {value!r}")
        return tuple(value)
    if isinstance(kind, types.UnionType):  # pragma: no cover - no such field today
        raise TypeError(kind)
    expected = {str: str, int: int, float: (int, float), bool: bool}[kind]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, expected):
        raise OptionError("", f"must be {_article(kind)}, got {value!r}")
    value = float(value) if kind is float else value
    if "choices" in metadata and value not in metadata["choices"]:
        raise OptionError("", f"must be one of {', '.join(map(str, metadata['choices']))}, "
                              f"got {value!r}")
    if "minimum" in metadata and value < metadata["minimum"]:
        raise OptionError("", f"must be at least {metadata['minimum']}, got {value!r}")
    if "below" in metadata and value >= metadata["below"]:
        raise OptionError("", f"must be below {metadata['below']}, got {value!r}")
    return value


def _article(kind):
    return {str: "a string", int: "an integer", float: "a number",
            bool: "true or false"}[kind]
