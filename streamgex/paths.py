"""Paths streamgex reads and writes are local (or mounted) filesystem paths.

Until object storage is supported, a URL given where a path belongs
(``s3://bucket/x.zarr``, ``memory://``, ``file://``) is refused with one line:
``pathlib`` would otherwise turn it into a local folder called ``s3:``.
"""

import re

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
