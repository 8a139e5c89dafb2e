"""``isolate.call``: a function in a fresh process, as if it ran here (``run`` trains each model
that way, for TensorFlow's allocator)."""

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from streamgex import isolate
from streamgex.errors import StreamgexError
from streamgex.training.memory import parse_size


def test_the_result_comes_back_from_another_process_with_its_environment():
    assert isolate.call(os.getenv, "STREAMGEX_ISOLATE_TEST", environ={
        "STREAMGEX_ISOLATE_TEST": "set there"}) == "set there"
    assert isolate.call(os.getpid) != os.getpid()
    assert "STREAMGEX_ISOLATE_TEST" not in os.environ


def test_an_error_and_the_log_records_come_back_as_if_raised_and_logged_here(caplog):
    with pytest.raises(StreamgexError, match="memory budget 'lots'"):
        isolate.call(parse_size, "lots")
    with pytest.raises(FileNotFoundError):
        isolate.call(os.stat, "/no/such/file")
    with caplog.at_level(logging.INFO, logger="streamgex"):
        isolate.call(logging.getLogger("streamgex.child").info, "from the %s", "child")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("streamgex.child",
                                                                  "from the child")]


def test_a_child_killed_by_a_signal_is_one_error_naming_it():
    outcome = {}

    def call():
        try:
            isolate.call(time.sleep, 120, what="sleeping")
        except StreamgexError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=call)
    thread.start()
    child = _child_of(psutil.Process())
    child.kill()
    thread.join(30)
    assert "sleeping: its process was killed by SIGKILL" in outcome["error"]


def test_the_child_dies_with_its_parent():
    """A killed ``run`` must not leave a trainer behind, still holding its run folder."""
    code = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"from streamgex import isolate\nfrom test_isolate import say_then_sleep\n"
            f"isolate.call(say_then_sleep)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = _child_of(psutil.Process(parent.pid))
        assert parent.stdout.readline() == "started\n"  # past its start-up: in the function
        parent.kill()
        parent.wait()
        child.wait(timeout=10)  # psutil.TimeoutExpired if it outlived its parent
    finally:
        parent.kill()


def say_then_sleep():
    print("started", flush=True)
    time.sleep(120)


def _child_of(process, timeout=60):
    """The first child process of ``process`` that ``isolate.call`` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in process.children():
            try:
                if any("isolate import _child" in part for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no spawned child of pid {process.pid}")
