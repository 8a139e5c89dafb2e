"""TensorFlow imported without its C++ start-up notes, in the CLI and in ``run``'s training
processes (``isolate``) alike, or one line saying how to install it."""

import importlib
import os
import sys

from .errors import StreamgexError

#: What to run where neither TensorFlow extra is installed (pyproject.toml: cpu, gpu).
INSTALL_TENSORFLOW = ("TensorFlow is not installed: pip install 'streamgex[cpu]' "
                      "(or 'streamgex[gpu]' for an NVIDIA GPU)")


def import_tensorflow():
    """Import TensorFlow with file descriptor 2 silenced.

    Its "oneDNN custom operations are on" notes are written by C++ before its
    logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hold them back.
    Python errors still surface: an exception raised by the import is
    reported after stderr is restored. TensorFlow itself missing (streamgex
    installed without its cpu or gpu extra) is a ``StreamgexError`` naming both.
    """
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        importlib.import_module("tensorflow")
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":  # a broken install, not a missing one: its own message
            raise
        raise StreamgexError(INSTALL_TENSORFLOW) from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
