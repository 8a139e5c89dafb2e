"""``streamgex demo``: the pipeline on the built-in simulated data, end to end.

Simulates the ``demo`` preset, then runs ``configs/demo.toml`` through the
preprocessing chain. Each step is skipped when its output is already
complete, so re-running the demo after an interruption goes on where it
stopped.
"""

import csv
from pathlib import Path

from . import store
from .config import load_config
from .errors import StreamgexError
from .preprocess.pipeline import preprocess
from .simulate import OUTPUTS, simulate
from .training.encode import encode
from .training.train import overrides_from_table, train

SEED = 0
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"


def demo(workdir="streamgex-demo", *, quiet=False):
    """Simulate the ``demo`` preset into ``workdir`` and preprocess it; print the split.

    Returns
    -------
    dict of str -> Path
        The chain's outputs (``stores_of``).
    """
    workdir = Path(workdir)
    raw = workdir / "raw"
    if not CONFIG.exists():
        raise StreamgexError(f"{CONFIG}: missing; run the demo from a streamgex checkout")
    if not all((raw / name).exists() for name in OUTPUTS.values()):
        _say(quiet, f"simulating the demo dataset into {raw}")
        simulate("demo", raw, seed=SEED, overwrite=True, quiet=quiet)
    overrides = [f'workdir="{workdir / "work"}"'] + [
        f'inputs.{key}="{raw / OUTPUTS[name]}"'
        for key, name in (("geo", "geo"), ("rnaseq", "rnaseq"), ("landmarks", "map_lm"),
                          ("targets", "map_tg"))
    ]
    config = load_config(CONFIG, overrides)
    paths = preprocess(config, quiet=quiet)
    for part in ("train", "val", "test"):
        _say(quiet, store.summary(paths["split"] / part))
    runs = train_models(config, paths["split"], workdir / "runs", quiet=quiet)
    _say(quiet, "validation MAE (standardized units; E-MLP on autoencoder codes):")
    for name, run in runs.items():
        _say(quiet, f"  {name:12s} {last_validation(run):.4f}   {run}")
    return {**paths, **runs}


def train_models(config, split, runs, *, quiet=False):
    """Train the models of the config's ``[train.<model>]`` tables, the autoencoder first."""
    order = [m for m in ("linear", "autoencoder", "emlp", "dgex") if m in config.train]
    done = {}
    for name in order:
        codes = None
        if name == "emlp":
            encode(done["autoencoder"], split, runs / "codes", quiet=True)
            codes = runs / "codes"
        _say(quiet, f"training {name}")
        done[name] = train(name, split, runs / name, codes=codes, quiet=True,
                           overrides=overrides_from_table(config.train[name]))
    return done


def last_validation(run):
    """The last validation MAE a run logged (parts of a partitioned run averaged)."""
    values = []
    for log in sorted(Path(run).glob("**/log.csv")):
        with open(log, newline="") as f:
            logged = [float(row["val_mae"]) for row in csv.DictReader(f) if row["val_mae"]]
        values.append(logged[-1])
    return sum(values) / len(values)


def _say(quiet, text):
    if not quiet:
        print(text, flush=True)
