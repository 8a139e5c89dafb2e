"""Progress bars that show on a terminal and stay silent in scripts, logs and ``--quiet``."""

import logging
import sys

from tqdm import tqdm


def progress(*, total, desc, unit, initial=0, unit_scale=False, hidden=False):
    """A tqdm bar on stderr, shown only when stderr is a terminal and the ``streamgex``
    logger shows INFO messages (the CLI's default; ``--quiet`` turns both off), and not
    ``hidden`` (work on a background thread)."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        unit_scale=unit_scale,
        disable=hidden or not (sys.stderr.isatty() and _console_shows_info()),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )


def _console_shows_info():
    """Whether the ``streamgex`` logger has a console handler showing INFO (not ``--quiet``)."""
    return any(type(h) is logging.StreamHandler and h.level <= logging.INFO
               for h in logging.getLogger("streamgex").handlers)
