"""One writer per store, run folder and workdir.

A writer holds ``PATH.lock`` beside what it writes: a small JSON file (pid,
host, command, start time) created in one step (a hard link, or ``O_EXCL``), so
of two processes starting together exactly one gets it. Another process that wants to write the
same path gets one line naming the holder. A lock whose process is gone (killed,
the machine rebooted) is taken over: on this host by checking the pid, and a
lock from another host (a shared filesystem) only by removing it by hand, since
its process cannot be checked from here.

A store named by URL (object storage, ``storage.Remote``) has its lock object at
``URL.lock``, created by a conditional PUT (``If-None-Match: *``): the service creates it
only when no object is there, so of two writers starting together exactly one gets it,
from any machine. It promises what the local lock does: a holder on this host that is gone
is taken over; one on another host stays until removed by hand (a lease that expires
would let a slow but live writer be overtaken). A service without conditional writes
(``memory://``, some S3 clones) checks then creates: one writer per machine only.

Locks are re-entrant within a process (``run`` holds its workdir, then each
stage its own output), and every lock a process still holds is released when it
exits normally.
"""

import atexit
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from . import storage
from .errors import StreamgexError

SUFFIX = ".lock"

_held = {}  # lock file -> how many times this process has taken it


def lock_file(path):
    """The lock file of ``path``: ``PATH.lock`` beside it (a URL: ``URL.lock``)."""
    return storage.with_suffix_name(str(path) if storage.is_url(str(path)) else path, SUFFIX)


def acquire(path, *, what="it"):
    """Take the lock of ``path`` for this process; an error naming the holder when a live
    process has it. ``what`` says what is being written, for that message."""
    file = lock_file(path)
    if file in _held:
        _held[file] += 1
        return file
    if not storage.is_url(file):
        file.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            _create(file, record)
        except FileExistsError:
            holder = _read(file)
            if holder is not None and _alive(holder, file):
                who = (f"pid {holder['pid']} on {holder['host']} since {holder['since']} "
                       f"(`{holder['command']}`)" if holder else "a process starting now")
                raise StreamgexError(
                    f"{path}: another streamgex process is writing {what}: {who}; wait for it "
                    f"to finish, or remove {file} if that process is gone") from None
            _remove(file)  # its process is gone: take it over
            continue
        _held[file] = 1
        return file
    raise StreamgexError(f"{file}: could not take this lock; is another process racing for it?")


def _create(file, record):
    """Create ``file`` holding ``record`` or raise FileExistsError, in one step: the record is
    written beside it and hard-linked into place, so no reader sees an empty lock. Where the
    filesystem has no hard links, ``O_EXCL`` creation and then the write. A URL: a
    conditional create (see the module doc)."""
    if storage.is_url(file):
        storage.place(file).create(json.dumps(record).encode())
        return
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    try:
        os.link(tmp, file)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)


def release(path):
    """Give back one hold of ``path``'s lock; the file goes with the last."""
    file = lock_file(path)
    if file not in _held:
        return
    _held[file] -= 1
    if _held[file] == 0:
        del _held[file]
        _remove(file)


@contextlib.contextmanager
def hold(path, *, what="it"):
    """``acquire`` for the duration of a ``with`` block."""
    acquire(path, what=what)
    try:
        yield
    finally:
        release(path)


def _read(file):
    """A lock file's record; None when it vanished or is not readable (a kill while it was
    written leaves an empty file: treated as a dead holder)."""
    try:
        record = json.loads(storage.place(file).read_all())
        return record if {"pid", "host", "since", "command"} <= record.keys() else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _alive(holder, file):
    if not holder:  # unreadable: a kill while it was written, or being written this instant
        with contextlib.suppress(FileNotFoundError):
            return time.time() - Path(file).stat().st_mtime < 5
        return False
    if holder["host"] != socket.gethostname():
        return True  # cannot be checked from here
    if holder["pid"] == os.getpid():
        return False  # a lock this process left in an earlier life (a reused pid)
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _remove(file):
    storage.place(file).delete()


@atexit.register
def _release_all():
    for file in list(_held):
        with contextlib.suppress(OSError):
            _remove(file)
    _held.clear()
