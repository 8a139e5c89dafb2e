"""Run one function in a fresh Python process of its own, as if it ran here.

``streamgex run`` trains each model this way (``experiment``), for
TensorFlow's CPU memory. Training runs fastest from TensorFlow's best-fit
arena (BFC): malloc maps every kernel gradient afresh each step (the full
E-MLP 89 against 112 samples/s on an AVX2 CPU; 253-260 against 331-344 on an
AVX-512 one). But an arena keeps a process's peak for good and grows at each
stage whose tensors do not fit its free blocks: one ``run`` process with it
reached 8.1 GiB at full width. A training process of its own gets the arena
and gives all of it back when it ends; the stages between (encode, evaluate)
run in the parent with malloc.

The child is a fresh interpreter (``python -c``: nothing of the parent's
TensorFlow state, and unlike ``multiprocessing``'s spawn it never re-runs the
caller's main script, so a script calling ``run_experiment`` at its top level
works), started with ``environ`` in its environment, this process's
``sys.path``, and the function and its arguments pickled through its stdin
(unpickled there after the environment is set, so before TensorFlow is
imported); its messages come back through a pipe. It dies with its parent on
Linux (a killed ``run`` leaves no trainer behind holding its run folder),
hands its log records to the parent's loggers (and shows progress bars where
the parent would), and its outcome comes back: the return value; a
``StreamgexError``, ``OSError`` or Ctrl-C raised here as the same kind of
exception; anything else (a bug, its traceback printed by the child) as a
``RuntimeError``; a child killed by a signal (the kernel's out-of-memory
killer) as a ``StreamgexError`` saying so.
"""

import logging
import os
import pickle
import signal
import subprocess
import sys

from . import progress
from .errors import StreamgexError

#: Seconds a child gets to stop after Ctrl-C reached this process, before it is sent its own.
GRACE_SECONDS = 3
CHILD = "from streamgex.isolate import _child; _child()"


def call(function, *args, environ=None, what=None):
    """``function(*args)`` in a fresh process with ``environ`` added to this one's; returns
    its result. ``what`` names the work in errors (default: the function's name)."""
    what = what or function.__name__
    payload = pickle.dumps((sys.path, logging.getLogger("streamgex").getEffectiveLevel(),
                            progress.shows_bars(), pickle.dumps((function, args))))
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(write_end), str(os.getpid())],
                                 stdin=subprocess.PIPE, pass_fds=(write_end,),
                                 env={**os.environ, **(environ or {})})
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as messages:
        try:
            try:
                child.stdin.write(payload)
                child.stdin.close()
            except BrokenPipeError:  # it died at once; its exit code says how
                pass
            outcome = _outcome(messages)
        except KeyboardInterrupt:
            _stop(child)
            raise
    code = child.wait()
    if outcome is None:
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -code == 9 else ""
            raise StreamgexError(f"{what}: its process was killed by {name}{hint}; re-run "
                                 f"the same command to resume")
        raise RuntimeError(f"{what}: its process failed (exit code {code}); see above")
    kind, value = outcome
    if kind == "ok":
        return value
    if kind == "streamgex":
        raise StreamgexError(value)
    if kind == "os":
        raise OSError(*value)
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise RuntimeError(f"{what}: {value}; its traceback is above")


def _outcome(messages):
    """Hand the child's log records to this process's loggers until its outcome comes;
    None when it ended without one (killed, or ``os._exit``)."""
    while True:
        try:
            kind, value = pickle.load(messages)
        except (EOFError, pickle.UnpicklingError):
            return None
        if kind != "log":
            return kind, value
        logging.getLogger(value.name).handle(value)


def _stop(child):
    """After Ctrl-C here: the child had the same one from the terminal; give it a moment to
    stop, then send it its own, then end it."""
    for stop, seconds in ((None, GRACE_SECONDS), (signal.SIGINT, 10 * GRACE_SECONDS),
                          (signal.SIGKILL, None)):
        if stop is not None:
            child.send_signal(stop)
        try:
            child.wait(seconds)
            return
        except subprocess.TimeoutExpired:
            continue


def _child():
    """The child's side (``CHILD``): read the call from stdin, make it, send the outcome."""
    _die_with(int(sys.argv[2]))
    messages = os.fdopen(int(sys.argv[1]), "wb")
    path, level, bars, call = pickle.loads(sys.stdin.buffer.read())
    sys.path[:] = path
    handler = _ToParent(messages, bars)
    logger = logging.getLogger("streamgex")
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        function, args = pickle.loads(call)
        outcome = ("ok", function(*args))
    except StreamgexError as exc:
        outcome = ("streamgex", str(exc))
    except OSError as exc:
        outcome = ("os", (exc.errno, exc.strerror, exc.filename) if exc.errno else (str(exc),))
    except KeyboardInterrupt:
        outcome = ("interrupt", None)
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        outcome = ("bug", f"{type(exc).__name__}: {exc}")
    try:
        message = pickle.dumps(outcome)
    except Exception as exc:
        message = pickle.dumps(("bug", f"its result cannot come back: {exc}"))
    with handler.lock:  # not in the middle of a record another thread is sending
        messages.write(message)
        messages.close()


class _ToParent(logging.Handler):
    """Send each record to the parent, whose loggers handle it as their own (its console,
    its log file, a test's capture). ``shows_bars``: whether the parent shows progress bars
    (``progress.shows_bars``), so the child does too, on the same terminal."""

    def __init__(self, messages, shows_bars):
        super().__init__()
        self.messages, self.shows_bars = messages, shows_bars

    def emit(self, record):
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            pickle.dump(("log", record), self.messages)
            self.messages.flush()
        except Exception:
            self.handleError(record)


def _die_with(parent):
    """Have the kernel kill this process when its parent dies (Linux), and stop now if it
    already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
