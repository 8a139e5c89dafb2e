"""TensorFlow imported without its C++ start-up notes, in the CLI and in ``run``'s training
processes (``isolate``) alike."""

import importlib
import os
import sys


def import_tensorflow():
    """Import TensorFlow with file descriptor 2 silenced.

    Its "oneDNN custom operations are on" notes are written by C++ before its
    logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hold them back.
    Python errors still surface: an exception raised by the import is
    reported after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        importlib.import_module("tensorflow")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
