"""A workdir in object storage (``workdir = "s3://bucket/demo"``), worked on through a local
copy that is kept in step with it.

``run`` and ``status`` take the same stages, records and rules as for a local workdir: the
stages work in a local copy, ``cache_folder()/workdirs/<tag>-<name>``, and the copy and the
bucket are synchronised at the edges of a stage's work:

- ``pull`` before anything: when the bucket holds what another machine (or an earlier copy)
  made since this copy was last in step, the copy is made equal to it, file by file, each
  download checked against its SHA-256; when nothing was pushed since, the copy is kept as
  it is (it holds the same, or work of its own not pushed yet: a run killed here resumes
  from its newest checkpoint, as on a local disk).
- ``push`` after every stage ``run`` makes, and after every checkpoint a training writes:
  the files that differ from what the bucket holds are uploaded (many at once), then the
  manifest ``streamgex-workdir.json`` (every file's size and SHA-256, and a version) is
  written last, in one PUT, then the objects the old manifest listed that the copy no
  longer has are deleted.

What this promises where there is no rename: the bucket's workdir is the files its manifest
lists, as the manifest says them; a kill during a push leaves the previous manifest whole
and readable, since an object it lists is copied (by the service) under ``BACKUPS`` before
it is replaced, and a download whose SHA-256 is not the manifest's takes that copy. The
paths a push uploads are listed in ``PENDING`` first, so the next push, from any copy,
removes what a killed one left that no manifest lists. Nothing under the workdir's URL is
deleted that a manifest or ``PENDING`` did not list, or that is not a push's backup.

One writer: ``run`` holds the workdir's lock object (``locks``: a conditional create) for
as long as it works, so the bucket changes under one copy at a time. ``status`` reads
without it; a push it meets halfway shows as a download whose SHA-256 differs, and it says
to run it again.

Stores in the workdir are pushed as their files; an xarray or Zarr user opens
``s3://bucket/demo/stores/geo_std.zarr`` as any Zarr store. The local copy holds the whole
workdir (it is a cache: deleting it costs a download).
"""

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path

from . import atomic, digest, locks, storage
from .errors import StreamgexError
from .progress import progress

log = logging.getLogger(__name__)

#: The object written last by a push: what the bucket's workdir holds.
MANIFEST = "streamgex-workdir.json"
#: The local copy's record: the manifest version it was last in step with, its files' digests.
RECORD = ".streamgex-mirror.json"
#: The workdir's folder of chain stores (``stores_folder``).
STORES = "stores"
#: Where a push keeps, until its manifest is written, what it replaces and what it uploads.
BACKUPS, PENDING = ".streamgex/replaced", ".streamgex/pending.json"
#: Objects uploaded or downloaded in one call (fsspec runs them concurrently).
BATCH = 256

_current = None  # the Mirror ``working`` has attached in this process


def local_copy(url):
    """The local folder that mirrors the workdir at ``url``."""
    tag = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return storage.cache_folder() / "workdirs" / f"{tag}-{storage.name(url)}"


def _kept(relative):
    """Whether a file of the local copy belongs in the manifest: not in the chain of stores
    (``stores_folder``: in the bucket itself), a lock, a half-written (``.partial``) file or
    folder, a digest cache or the copy's own record."""
    parts = relative.split("/")
    return not (parts[0] in (STORES, ".streamgex") or parts[-1] in (RECORD, digest.DIGESTS)
                or parts[-1].endswith(locks.SUFFIX) or any(".partial" in p for p in parts))


class Mirror:
    """The workdir at ``url`` and its local copy (picklable: a training process of its own
    pushes after its checkpoints)."""

    def __init__(self, url):
        self.url = str(url).rstrip("/")
        self.local = local_copy(self.url)
        self.options = storage.configured()

    def __repr__(self):
        return f"Mirror({self.url!r} at {self.local})"

    def _fs(self):
        storage.configure(self.options)
        return storage.filesystem(self.url)

    def manifest(self):
        """The bucket's manifest, or None when nothing was pushed there yet."""
        fs, key = self._fs()
        fs.invalidate_cache(key)
        try:
            return json.loads(fs.cat_file(f"{key}/{MANIFEST}"))
        except FileNotFoundError:
            return None

    def _record(self):
        try:
            return atomic.read_json(self.local / RECORD)
        except (OSError, ValueError):
            return {}

    def _write_record(self, record):
        atomic.write_json(self.local / RECORD, record)

    def scan(self, record=None):
        """``{relative path: {"size", "sha256", "stat"}}`` of the local copy's files; a file
        whose ``stat_key`` is the record's is not read again."""
        known = (self._record() if record is None else record).get("files", {})
        found = {}
        if not self.local.is_dir():
            return found
        for file in sorted(p for p in self.local.rglob("*") if p.is_file()):
            relative = file.relative_to(self.local).as_posix()
            if not _kept(relative):
                continue
            key = digest.stat_key(file)
            entry = known.get(relative)
            sha = entry["sha256"] if entry and entry.get("stat") == key else \
                digest.sha256_of(file, bar=False)
            found[relative] = {"size": key[0], "sha256": sha, "stat": key}
        return found

    def pull(self):
        """Make the local copy what the bucket holds, unless nothing was pushed since the copy
        was last in step (see the module doc). Returns the number of files downloaded."""
        manifest = self.manifest()
        record = self._record()
        if manifest is None or manifest["version"] == record.get("version"):
            return 0
        now = self.scan(record)
        wanted = manifest["files"]
        fetch = sorted(r for r, e in wanted.items() if now.get(r, {}).get("sha256") != e["sha256"])
        log.info("%s: fetching %d of %d files into this machine's copy, in %s", self.url,
                 len(fetch), len(wanted), self.local.parent)
        fs, key = self._fs()
        fetched = download(fs, key, {r: wanted[r] for r in fetch}, self.local, self.url)
        for relative in sorted(set(now) - set(wanted)):
            (self.local / relative).unlink()
        _remove_empty_folders(self.local)
        files = self.scan({"files": {**record.get("files", {}), **fetched}})  # none hashed again
        self._write_record({"url": self.url, "version": manifest["version"], "files": files})
        return len(fetch)

    def push(self):
        """Upload what the local copy holds and the bucket does not, then the manifest, then
        remove what the old manifest listed that the copy no longer has. Returns the number
        of files uploaded.

        Before an object the manifest lists is replaced, the service copies it to
        ``BACKUPS/<its SHA-256>``, and the paths it uploads or deletes are listed in
        ``PENDING``: a kill before the new manifest leaves the old one readable
        (``download`` takes a replaced file from its backup), and the next push, from any
        copy, puts back or removes whatever of those the manifest it writes does not list
        as they are."""
        fs, key = self._fs()
        manifest = self.manifest()
        record = self._record()
        if manifest is not None and record.get("version") not in (None, manifest["version"]):
            raise StreamgexError(f"{self.url}: another copy pushed to this workdir since this "
                                 f"one ({self.local}) fetched it; run the same command again "
                                 f"(it fetches that work first)")
        now = self.scan(record)
        if not now and manifest is None:
            return 0  # nothing made yet: nothing written to the bucket either
        remote = manifest["files"] if manifest else {}
        send = sorted(r for r, e in now.items() if remote.get(r, {}).get("sha256") != e["sha256"])
        left = _read_json(fs, f"{key}/{PENDING}", [])  # by a push killed before its manifest
        if not send and not left and set(now) == set(remote) and manifest is not None:
            self._write_record({**record, "version": manifest["version"], "files": now})
            return 0
        send = sorted(set(send) | (set(left) & set(now)))  # what it may have replaced
        pending = sorted(set(left) | set(send) | (set(remote) - set(now)))  # all it touches
        fs.pipe_file(f"{key}/{PENDING}", json.dumps(pending).encode())
        for relative in send:
            if relative in remote:
                _back_up(fs, key, relative, remote[relative]["sha256"])
        shown = progress(total=sum(now[r]["size"] for r in send), desc="upload", unit="B",
                         unit_scale=True, hidden=not send)
        for start in range(0, len(send), BATCH):
            batch = send[start:start + BATCH]
            fs.put([str(self.local / r) for r in batch], [f"{key}/{r}" for r in batch])
            shown.update(sum(now[r]["size"] for r in batch))
        shown.close()
        version = uuid.uuid4().hex
        fs.pipe_file(f"{key}/{MANIFEST}", json.dumps(
            {"version": version, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
             "host": socket.gethostname(),
             "files": {r: {"size": e["size"], "sha256": e["sha256"]} for r, e in now.items()}},
            indent=1).encode())
        for relative in sorted((set(remote) | set(pending)) - set(now)):
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{key}/{relative}")
        fs.invalidate_cache(key)
        if fs.exists(f"{key}/{BACKUPS}"):
            fs.rm(f"{key}/{BACKUPS}", recursive=True)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{key}/{PENDING}")
        fs.invalidate_cache(key)
        self._write_record({"url": self.url, "version": version, "files": now})
        log.debug("%s: pushed %d files", self.url, len(send))
        return len(send)


def _read_json(fs, path, missing):
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return missing


def _back_up(fs, key, relative, sha):
    """Copy (within the service) the object about to be replaced to ``BACKUPS/<sha>``, unless
    a killed push did already: that backup holds what the manifest says, the object may
    not any more."""
    backup = f"{key}/{BACKUPS}/{sha}"
    if fs.exists(backup):
        return
    with contextlib.suppress(FileNotFoundError):
        fs.copy(f"{key}/{relative}", backup)


def download(fs, key, files, into, url):
    """Download ``files`` (``{relative path: manifest entry}``) of the workdir at ``key`` into
    the folder ``into``, each checked against its SHA-256 (a file a killed push replaced:
    from its backup) and put in place whole. Returns ``scan``'s entries of the files."""
    names, fetched = sorted(files), {}
    shown = progress(total=sum(files[r]["size"] for r in names), desc="download", unit="B",
                     unit_scale=True, hidden=not names)
    for start in range(0, len(names), BATCH):
        batch = names[start:start + BATCH]
        temporary = [into / f"{r}.partial" for r in batch]
        for path in temporary:
            path.parent.mkdir(parents=True, exist_ok=True)
        fs.get([f"{key}/{r}" for r in batch], [str(p) for p in temporary])
        shown.update(sum(files[r]["size"] for r in batch))
        for relative, path in zip(batch, temporary):
            sha = files[relative]["sha256"]
            if digest.sha256_of(path, bar=False) != sha:
                with contextlib.suppress(FileNotFoundError):
                    fs.get_file(f"{key}/{BACKUPS}/{sha}", str(path))
            if digest.sha256_of(path, bar=False) != sha:
                path.unlink()
                raise StreamgexError(f"{url}/{relative}: changed while it was read (another "
                                     f"machine is pushing to this workdir); run the same "
                                     f"command again")
            os.replace(path, into / relative)
            stat = digest.stat_key(into / relative)
            fetched[relative] = {"size": stat[0], "sha256": sha, "stat": stat}
    shown.close()
    return fetched


def _remove_empty_folders(root):
    for folder in sorted((p for p in Path(root).rglob("*") if p.is_dir()),
                         key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def current():
    """The ``Mirror`` this process works through (``working``), or None."""
    return _current


def push_current(*_, every=0.0):
    """Push the workdir this process works through, if any: after a stage; after a checkpoint
    when ``every`` seconds have passed since the last push (a run's ``checkpoint_minutes``:
    a full-size E-MLP's checkpoint is 2.1 GB, and an epoch on a GPU takes seconds)."""
    if _current is not None and time.monotonic() - _current.pushed_at >= every:
        _current.push()
        _current.pushed_at = time.monotonic()


@contextlib.contextmanager
def attached(mirror):
    """Within: ``push_current`` pushes ``mirror`` (a training process of its own, which got
    the ``Mirror`` from ``current()`` in its parent)."""
    global _current
    before, _current = _current, mirror
    if mirror is not None:
        mirror.pushed_at = time.monotonic()
    try:
        yield mirror
    finally:
        _current = before


def here(workdir):
    """Where a workdir's files are on this machine: the folder itself, or for a URL its
    local copy."""
    return local_copy(workdir) if storage.is_url(str(workdir)) else Path(workdir)


def stores_folder(workdir):
    """Where a workdir's chain of stores is: in the folder, or for a URL in the bucket
    itself, written there by the steps (Dask workers need only the URL, no shared disk),
    never copied locally nor listed in the manifest."""
    return storage.join(str(workdir), STORES) if storage.is_url(str(workdir)) \
        else Path(workdir) / STORES


class AsGiven(logging.Filter):
    """Shows the local copy's folder as the workdir's URL in every message a handler writes
    (a training process's messages come through its parent's handlers: ``isolate``)."""

    def __init__(self, url):
        super().__init__()
        self.url, self.local = url.rstrip("/"), str(local_copy(url))

    def filter(self, record):
        message = record.getMessage()
        if self.local in message:
            record.msg, record.args = message.replace(self.local, self.url), ()
        return True


@contextlib.contextmanager
def shown_as_given(url):
    """Within: ``AsGiven`` on the handlers of the ``streamgex`` logger and the root logger."""
    shown = AsGiven(url)
    handlers = logging.getLogger("streamgex").handlers + logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(shown)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(shown)


@contextlib.contextmanager
def working(config):
    """For a workdir in a bucket: the workdir's lock held (one writer), its local copy
    fetched, and pushed after every stage (``push_current``) and when the work ends, however
    it ends. Nothing for a local workdir."""
    if not storage.is_url(config.workdir):
        yield config
        return
    url = storage.probe(storage.check_writable(config.workdir, "workdir ="), "workdir =")
    mirror = Mirror(url)
    with locks.hold(url, what="this experiment's workdir"), \
            locks.hold(mirror.local, what="this workdir's local copy"), attached(mirror), \
            shown_as_given(url):
        mirror.pull()
        try:
            yield config
        finally:
            try:
                mirror.push()
            except Exception as exc:  # the work's own error (if any) is what the user needs
                if not (storage.is_service_error(exc) or isinstance(exc, OSError)):
                    raise
                log.warning("%s: could not push the last work (%s); the next `run` pushes it",
                            url, exc)


@contextlib.contextmanager
def viewing(config):
    """For ``status`` of a workdir in a bucket: its local copy fetched first, unless a ``run``
    on this machine works in that copy now (then the copy is ahead of the bucket, and read as
    it is). Nothing for a local workdir."""
    if not storage.is_url(config.workdir):
        yield config
        return
    url = storage.probe(storage.check(config.workdir, "workdir ="), "workdir =")
    mirror = Mirror(url)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locks.hold(mirror.local, what="this workdir's local copy"))
        except StreamgexError:  # a run here works in the copy: read it as it is
            yield config
            return
        mirror.pull()
        yield config




def workdir_of(url):
    """``(workdir URL, manifest)`` of the workdir in a bucket that ``url`` is in (the nearest
    prefix above it holding a ``MANIFEST``), or None."""
    parts = str(url).rstrip("/").split("/")
    for end in range(len(parts), 3, -1):  # "s3:", "", bucket: a workdir is at least a bucket
        prefix = "/".join(parts[:end])
        fs, key = storage.filesystem(prefix)
        try:
            return prefix, json.loads(fs.cat_file(f"{key}/{MANIFEST}"))
        except FileNotFoundError:
            continue
    return None


def view(url):
    """A local, read-only copy of the folder at ``url`` inside a workdir in a bucket (a run
    folder, for ``export`` and ``predict``): the workdir's files as its manifest lists them
    (its chain of stores is not among them: ``stores_folder``), fetched once per manifest
    version into ``cache_folder()/views/<tag>-<name>/<version>`` and reused after (the two
    newest versions kept). The path of the folder in it; an error in one line when ``url``
    is in no workdir streamgex pushed."""
    found = workdir_of(url)
    if found is None:
        raise StreamgexError(f"{url}: neither an export bundle nor a folder of a workdir "
                             f"streamgex ran in a bucket (no {MANIFEST} above it)")
    workdir, manifest = found
    inside = str(url).rstrip("/")[len(workdir):].strip("/")
    views = local_copy(workdir).parent.parent / "views" / local_copy(workdir).name
    root = views / manifest["version"]
    if not root.is_dir():
        wanted = sorted(manifest["files"])
        fs, key = storage.filesystem(workdir)
        with atomic.atomic_path(root) as tmp:
            download(fs, key, {r: manifest["files"][r] for r in wanted}, tmp, workdir)
        older = sorted((p for p in views.iterdir() if p != root and not atomic.is_partial(p)),
                       key=lambda p: p.stat().st_mtime)
        for old in older[:-1]:  # the newest two kept: a command may still read the one before
            atomic.remove(old)
    if inside and not (root / inside).exists():
        raise StreamgexError(f"{url}: not in the workdir {workdir} (its manifest lists "
                             f"nothing under {inside})")
    return root / inside


def as_given(text, config):
    """``text`` with the local copy's folder written as the workdir's URL (what ``status``
    and ``run`` print for a workdir in a bucket)."""
    if not storage.is_url(config.workdir):
        return text
    return str(text).replace(str(local_copy(config.workdir)), config.workdir.rstrip("/"))
