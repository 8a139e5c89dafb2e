"""What a file holds, as a SHA-256: the identity every record of an input file or a model
file uses, never its path or times.

Hashing a large file costs a read of it (a full-size autoencoder's files are ~3 GB), so a
digest is remembered under the file's ``stat_key``: size, modification and change times,
inode. A file rewritten, replaced, moved in by ``cp -p`` or touched back (``touch -r``)
changes its change time or inode, which no user command can set back, so a remembered
digest is never taken for other content. It is remembered in this process, and, for the
files of a folder streamgex made (a run's ``best/``), in that folder's ``DIGESTS`` file,
so ``status`` after a copy of a workdir hashes each model file once, not on every call.
"""

import hashlib
import json
import os
from pathlib import Path

from .atomic import write_json
from .progress import progress

#: The file beside a run's model files that remembers their digests by ``stat_key``.
DIGESTS = ".sha256.json"

_remembered = {}


def source_files(path):
    """A file, or a folder's files (an AnnData-Zarr store) in a fixed order."""
    path = Path(path)
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file())
    return [path]


def file_stat(path):
    """Size, modification and change times, inode of a file; of a folder's files: their
    total size and newest times (the folder's own inode)."""
    stats = [os.stat(f) for f in source_files(path)]
    return {"size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
            "ctime_ns": max((s.st_ctime_ns for s in stats), default=0),
            "inode": os.stat(path).st_ino}


def stat_key(path):
    """``file_stat`` as a list: what a remembered digest is valid for."""
    stat = file_stat(path)
    return [stat["size"], stat["mtime_ns"], stat["ctime_ns"], stat["inode"]]


def sha256_of(path, *, stop=None, bar=True):
    """The SHA-256 of a file (of a folder: of its files' relative names and contents in
    order), read in 8 MiB pieces with a progress bar; None when ``stop`` is set first."""
    root, digest = Path(path), hashlib.sha256()
    files = source_files(root)
    shown = progress(total=sum(f.stat().st_size for f in files), desc="sha256", unit="B",
                     unit_scale=True, hidden=not bar)
    for file in files:
        if root.is_dir():
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while piece := f.read(8 * 2**20):
                if stop is not None and stop.is_set():
                    return None
                digest.update(piece)
                shown.update(len(piece))
    shown.close()
    return digest.hexdigest()


def sha256(path, *, remember=False):
    """The SHA-256 of the file ``path``, hashed only when no digest is remembered for its
    current ``stat_key`` (see the module doc). ``remember``: also keep it in the folder's
    ``DIGESTS`` file (for folders streamgex made; a failed write only costs a later hash)."""
    path = Path(path).absolute()
    key = stat_key(path)
    found = _remembered.get(path)
    if found and found[0] == key:
        return found[1]
    kept = _read_kept(path.parent) if remember else {}
    entry = kept.get(path.name)
    if entry and entry[0] == key:
        digest = entry[1]
    else:
        digest = sha256_of(path)
        if remember:
            _keep(path.parent, {**kept, path.name: [key, digest]})
    _remembered[path] = (key, digest)
    return digest


def same_file(recorded, path):
    """Whether ``path`` holds what ``recorded`` (a record with ``size`` and ``sha256``, and
    optionally the ``file_stat`` fields when it was made) describes: equal ``file_stat``
    fields need no read; the same size with other fields is decided by the SHA-256."""
    now = file_stat(path)
    if all(recorded.get(k) == v for k, v in now.items()):
        return True
    return ("sha256" in recorded and recorded.get("size") == now["size"]
            and sha256_of(path) == recorded["sha256"])


def _read_kept(folder):
    try:
        kept = json.loads((folder / DIGESTS).read_text())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _keep(folder, kept):
    try:
        write_json(folder / DIGESTS, kept)
    except OSError:
        pass
