"""Experiment configuration: TOML files in ``configs/``, validated once into dataclasses.

Relative paths in a config are relative to the directory the command runs
in. ``overrides`` (``--set section.key=value`` on the command line) replace
single values; a value is read as TOML (``3``, ``true``, ``"x"``) and, failing
that, as a plain string.
"""

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StreamgexError


@dataclass(frozen=True)
class Inputs:
    """Raw files: the GEO compendium, the optional RNA-Seq table, the gene maps."""

    geo: str
    landmarks: str
    targets: str
    rnaseq: str = ""


@dataclass(frozen=True)
class Dedup:
    enabled: bool = True
    clusters: int = 100
    distance: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Genes:
    drop_missing: bool = False


@dataclass(frozen=True)
class Normalize:
    reference: str = "mean"


@dataclass(frozen=True)
class Split:
    clusters: int = 20
    train_per_cluster: int = 4500
    val_per_cluster: int = 700
    seed: int = 0


@dataclass(frozen=True)
class Pca:
    enabled: bool = True
    genes: str = "targets"
    components: int = 1000


@dataclass(frozen=True)
class Evaluate:
    #: Target partitions for the paper's sum-over-partitions figure; 0: the
    #: paper's own (2 for the 9,520 cross-platform targets, 5 for 21,290).
    partitions: int = 0


@dataclass(frozen=True)
class Dask:
    scheduler: str = ""


@dataclass(frozen=True)
class Experiment:
    """An experiment: its raw inputs, where its outputs go, every step's options."""

    name: str
    workdir: str
    inputs: Inputs
    chunk_samples: int = 0
    dedup: Dedup = field(default_factory=Dedup)
    genes: Genes = field(default_factory=Genes)
    normalize: Normalize = field(default_factory=Normalize)
    split: Split = field(default_factory=Split)
    pca: Pca = field(default_factory=Pca)
    dask: Dask = field(default_factory=Dask)
    evaluate: Evaluate = field(default_factory=Evaluate)
    #: ``[train.<model>]`` tables: ``streamgex train`` options per model
    #: (checked by ``training.train.resolve``), for the runs a pipeline trains.
    train: dict = field(default_factory=dict)


def load_config(path, overrides=()):
    """Read and validate a config file into an ``Experiment``; errors name the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise StreamgexError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise StreamgexError(f"{path}: not valid TOML ({exc})") from None
    for override in overrides:
        _apply_override(data, override, path)
    return _build(Experiment, data, path, "")


def _apply_override(data, override, path):
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise StreamgexError(f"--set {override!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *parents, last = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StreamgexError(f"--set {override!r}: {part} is not a section of {path}")
    node[last] = value


def _build(cls, data, path, prefix):
    if not isinstance(data, dict):
        raise StreamgexError(f"{path}: [{prefix.rstrip('.')}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise StreamgexError(
            f"{path}: unknown key {prefix}{unknown[0]}; known keys: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise StreamgexError(f"{path}: missing required key {prefix}{name}")
            continue
        value = data[name]
        kind = spec.type
        if kind is dict:
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise StreamgexError(f"{path}: [{prefix}{name}.<model>] must be tables")
            values[name] = value
            continue
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, path, f"{prefix}{name}.")
            continue
        expected = {str: str, int: int, float: (int, float), bool: bool}[kind]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, expected):
            raise StreamgexError(
                f"{path}: {prefix}{name} must be a {kind.__name__}, got {value!r}"
            )
        values[name] = float(value) if kind is float else value
    return cls(**values)
