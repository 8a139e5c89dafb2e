"""One writer per store, run folder and workdir (issue 11.5): a second writer gets one line
naming the holder; a lock whose process died is taken over."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rawfiles import small_matrix, write_gctx
from streamgex import locks
from streamgex.cli import main
from streamgex.errors import StreamgexError
from streamgex.store import open_store


def holder(path):
    """A process holding ``path``'s lock until killed."""
    code = (f"import time; from streamgex import locks; locks.acquire({str(path)!r}); "
            f"print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_writer_is_refused_until_the_holder_dies(tmp_path, capsys):
    values, samples, genes = small_matrix(30, 5)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = tmp_path / "x.zarr"
    proc = holder(out)
    try:
        assert main(["ingest", str(tmp_path / "x.gctx"), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert f"another streamgex process is writing this store: pid {proc.pid}" in err, err
        assert err.count("\n") == 1 and not out.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert locks.lock_file(out).exists()  # a SIGKILL leaves it behind ...
    assert main(["ingest", str(tmp_path / "x.gctx"), "--out", str(out), "--quiet"]) == 0
    assert open_store(out).sizes["sample"] == 30  # ... and the next writer takes it over
    assert not locks.lock_file(out).exists()  # released when the store is finished


def test_locks_are_reentrant_and_an_empty_or_foreign_lock_is_judged(tmp_path, monkeypatch):
    path = tmp_path / "thing"
    with locks.hold(path):
        with locks.hold(path):
            assert locks.lock_file(path).exists()
        assert locks.lock_file(path).exists()
    assert not locks.lock_file(path).exists()
    locks.lock_file(path).write_text("")  # a kill while the lock was written ...
    old = time.time() - 60
    os.utime(locks.lock_file(path), (old, old))
    with locks.hold(path):  # ... long ago: taken over
        pass
    locks.lock_file(path).write_text('{"pid": 1, "host": "elsewhere", "since": "x", '
                                     '"command": "streamgex run c.toml"}')
    with pytest.raises(StreamgexError, match="pid 1 on elsewhere"):
        locks.acquire(path)  # another host's process cannot be checked: never taken over


def test_two_runs_on_one_workdir(tmp_path, demo_raw, capsys):
    """Two `run`s on one workdir crashed each other and duplicated epochs in log.csv: the
    second is refused before it touches anything, and status still reads."""
    from test_experiment import LINEAR_ONLY

    config = tmp_path / "tiny.toml"
    config.write_text(LINEAR_ONLY.format(work=tmp_path / "work", raw=demo_raw))
    proc = holder(tmp_path / "work")  # what `run` takes first
    try:
        assert main(["run", str(config), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert (f"another streamgex process is writing this experiment's workdir: pid "
                f"{proc.pid}") in err, err
        assert not (tmp_path / "work").exists()
        assert main(["status", str(config)]) == 3  # reading needs no lock; all to do
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
