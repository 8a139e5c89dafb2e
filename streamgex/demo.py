"""``streamgex demo``: the pipeline on the built-in simulated data, end to end.

Each step is skipped when its output is already complete, so re-running the
demo after an interruption goes on where it stopped.
"""

from pathlib import Path

from . import store
from .errors import StreamgexError
from .ingest import ingest
from .simulate import OUTPUTS, simulate

SEED = 0


def demo(workdir="streamgex-demo", *, quiet=False):
    """Simulate the ``demo`` preset into ``workdir`` and ingest it; print the stores.

    Returns
    -------
    dict of str -> Path
        The stores written: ``geo`` and ``rnaseq``.
    """
    workdir = Path(workdir)
    raw = workdir / "raw"
    if not all((raw / name).exists() for name in OUTPUTS.values()):
        _say(quiet, f"simulating the demo dataset into {raw}")
        simulate("demo", raw, seed=SEED, overwrite=True, quiet=quiet)
    stores = {}
    for key, name in (("geo", "geo.zarr"), ("rnaseq", "1000g.zarr")):
        out = workdir / "stores" / name
        if not _complete(out):
            _say(quiet, f"ingesting {raw / OUTPUTS[key]} -> {out}")
            ingest(raw / OUTPUTS[key], out, quiet=quiet)
        stores[key] = out
        _say(quiet, store.summary(out))
    return stores


def _complete(path):
    try:
        store.open_store(path)
    except StreamgexError:
        return False
    return True


def _say(quiet, text):
    if not quiet:
        print(text, flush=True)
