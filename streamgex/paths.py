"""Local paths, and the refusal of a URL where a command takes none yet.

Stores, raw inputs, predictions and bundles may be named by URL (``storage``; the CLI's
``TAKES_URLS``); anywhere else a URL (``s3://bucket/x``, ``memory://``, ``file://``) is
refused with one line: ``pathlib`` would otherwise turn it into a local folder called
``s3:``.
"""

import os
import re
from pathlib import Path

from .errors import StreamgexError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_local(value, where):
    """Refuse ``value`` when it is a URL; ``where`` names the option or config key."""
    text = str(value)
    if URL.match(text):
        scheme = text.split("://", 1)[0]
        raise StreamgexError(f"{where} {text}: URLs ({scheme}://) are not supported yet; give "
                             f"a local path (or mount the storage)")
    return value


def relative(target, folder):
    """``target`` as a path relative to ``folder``, for a record kept in ``folder``: a workdir
    moved as a whole (or copied elsewhere) still finds what its records name."""
    return os.path.relpath(Path(target).absolute(), Path(folder).absolute())


def locate(folder, recorded):
    """A path recorded by ``relative(target, folder)`` (or an absolute one, as older records
    hold) as a path again."""
    return Path(os.path.normpath(Path(folder) / recorded))
