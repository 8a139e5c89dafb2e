"""``streamgex demo``: the pipeline on the built-in simulated data, end to end.

Simulates the ``demo`` preset, then runs ``configs/demo.toml`` through the
preprocessing chain. Each step is skipped when its output is already
complete, so re-running the demo after an interruption goes on where it
stopped.
"""

from pathlib import Path

from . import store
from .config import load_config
from .errors import StreamgexError
from .preprocess.pipeline import preprocess
from .simulate import OUTPUTS, simulate

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
    paths = preprocess(load_config(CONFIG, overrides), quiet=quiet)
    for key in ("geo", "rnaseq_std"):
        _say(quiet, store.summary(paths[key]))
    for part in ("train", "val", "test"):
        _say(quiet, store.summary(paths["split"] / part))
    return paths


def _say(quiet, text):
    if not quiet:
        print(text, flush=True)
