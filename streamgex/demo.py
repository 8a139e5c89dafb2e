"""``streamgex demo``: the whole experiment on the built-in simulated data.

Simulates the ``demo`` preset, then runs ``configs/demo.toml`` end to end
(``experiment.run_experiment``: preprocess, train the four models, evaluate,
report) and prints the report's path and headline table. Every stage is
skipped when its output is complete, so re-running the demo after an
interruption goes on where it stopped.
"""

import logging
from pathlib import Path

from .config import load_config
from .errors import StreamgexError
from .experiment import run_experiment
from .simulate import OUTPUTS, simulate

log = logging.getLogger(__name__)

SEED = 0
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"


def demo_config(workdir):
    """``configs/demo.toml`` with its paths under ``workdir``."""
    raw = Path(workdir) / "raw"
    if not CONFIG.exists():
        raise StreamgexError(f"{CONFIG}: missing; run the demo from a streamgex checkout")
    overrides = [f'workdir="{Path(workdir) / "work"}"'] + [
        f'inputs.{key}="{raw / OUTPUTS[name]}"'
        for key, name in (("geo", "geo"), ("rnaseq", "rnaseq"), ("landmarks", "map_lm"),
                          ("targets", "map_tg"))
    ]
    return load_config(CONFIG, overrides)


def demo(workdir="streamgex-demo"):
    """Simulate the ``demo`` preset into ``workdir/raw`` and run the experiment on it.

    Returns
    -------
    Path
        The report (``workdir/work/report/report.md``).
    """
    raw = Path(workdir) / "raw"
    config = demo_config(workdir)
    if not all((raw / name).exists() for name in OUTPUTS.values()):
        log.info("simulating the demo dataset into %s", raw)
        simulate("demo", raw, seed=SEED, overwrite=True)
    return run_experiment(config)
