"""Progress bars that show on a terminal and stay silent in scripts and logs."""

import sys

from tqdm import tqdm


def progress(*, total, desc, unit, quiet=False, initial=0, unit_scale=False):
    """A tqdm bar on stderr, disabled when ``quiet`` or stderr is not a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        unit_scale=unit_scale,
        disable=quiet or not sys.stderr.isatty(),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
