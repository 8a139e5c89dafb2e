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
        disable=hidden or not shows_bars(),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )


def shows_bars():
    """Whether bars show here: stderr is a terminal and the ``streamgex`` logger has a console
    handler showing INFO (not ``--quiet``), or a handler that says so for a parent process
    (``isolate``: ``shows_bars = True``)."""
    return sys.stderr.isatty() and any(
        getattr(h, "shows_bars", False) or (type(h) is logging.StreamHandler
                                            and h.level <= logging.INFO)
        for h in logging.getLogger("streamgex").handlers)
