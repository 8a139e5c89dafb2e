"""The Zarr store every stage reads and writes.

A store is a Zarr v3 group that ``xarray.open_zarr`` opens as a Dataset with

- ``expression``: ``(sample, gene) float32``, chunked along ``sample`` only, so
  that one chunk holds whole profiles (what training streams and what every
  per-profile step, such as quantile normalization, needs);
- string coordinates ``sample`` and ``gene``, plus per-gene or per-sample
  coordinates a stage adds (``gene_raw``, ``gene_symbol``, ...);
- group attrs ``streamgex`` (version, step, parameters, progress, ``complete``)
  and ``source`` (path, format, size, sha256 of the raw file; of several files, ``files``
  and their ``sha256`` in order).

A stage builds its store under a temporary name beside the final one
(``geo.partial.zarr`` for ``geo.zarr``: ``building(path)``), writes chunks in
order and records its progress in the attrs after each one; Zarr's local store
writes every object atomically, so a stage killed at any point leaves a
partial store that says exactly how far it got, and a re-run continues it.
Only ``finish`` sets ``complete``, consolidates the metadata and renames the
store into place, so nothing under the final name (``open_store``, a plain
``xarray.open_zarr``) is ever a partial store.

A store named by URL (``s3://bucket/geo.zarr``: ``storage.Remote``) has no rename: it is
built under its final URL, and the root ``zarr.json`` with ``complete`` set, the object
``finish`` writes last, is what makes it count; ``open_store`` and ``status`` refuse it
until then. ``--overwrite`` there deletes the old store's own objects first (its
``zarr.json`` and its arrays', never other objects under the prefix), so the old store
does not stay readable while the new one is built.
"""

import json
import logging
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from . import __version__, atomic, locks, storage
from .errors import StreamgexError
from .progress import progress

log = logging.getLogger(__name__)

EXPRESSION = "expression"
SCRATCH = "scratch"
ATTR = "streamgex"

#: Uncompressed bytes aimed at per chunk. A chunk is the unit of I/O and of
#: shuffling in training: the stream interleaves a few chunks and shuffles
#: inside a buffer, so its memory is a small multiple of this, whatever the
#: store size; 32 MiB keeps per-chunk costs (a file open, a decompressor call,
#: a dask task) far below the time spent on the chunk's numbers.
CHUNK_BYTES = 32 * 2**20
CHUNK_ALIGN = 64

#: LZ4 inside Blosc with bit-shuffling: expression values share their exponent
#: bits, which bit-shuffling lines up for the compressor. On simulated GEO values
#: and on z-scores LZ4 compresses as well as zstd level 3 (1.27x and 1.10x) and
#: writes 1.2-2.3x faster (``predict``'s output stream spent 11% of its time in
#: zstd), decoding a little faster too.
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
#: The codecs of stores the training streams read every epoch (the split's parts): none
#: but the checksum. Their z-scores compress 1.11x with the codec above, whose decode then
#: holds a stream to ~6-8k full profiles/s on 2 cores; uncompressed it delivers ~17-18k
#: (``tools/bench_stream.py``), what a GPU needs, for 11% more disk.
STREAMED = (Crc32cCodec(),)


def default_chunk_samples(n_genes):
    """Samples per chunk so that one chunk is about ``CHUNK_BYTES`` of float32.

    A multiple of ``CHUNK_ALIGN`` (64), between 64 and 16,384: 320 for the
    22,268 GEO probes, 768 for the 10,463 cross-platform genes.
    """
    rows = CHUNK_BYTES // (4 * max(int(n_genes), 1))
    return int(min(max(rows // CHUNK_ALIGN * CHUNK_ALIGN, CHUNK_ALIGN), 16384))


def building(path):
    """Where the store ``path`` is built until ``finish`` renames it into place (a URL: the
    store itself; see the module doc)."""
    path = _p(path)
    return path if storage.is_url(path) else atomic.partial_path(path)


def location(group):
    """The folder (or URL) of an open store (while it is being written: its ``building``
    name)."""
    where = group.store_path.store
    if hasattr(where, "fs"):  # an FsspecStore
        return where.fs.unstrip_protocol(where.path).rstrip("/")
    return Path(str(where.root))


def _p(path):
    """A store's path as a ``Path``, or its URL as a string."""
    return storage.local_or_url(str(path)) if isinstance(path, str) else Path(path)


def _zarr(path, *, read_only=False):
    """What ``zarr.open_group`` and ``xarray.open_zarr`` take for the store at ``path``."""
    return storage.place(path).zarr(read_only=read_only)


def open_group(path, mode="r"):
    """The Zarr group of the store at ``path`` (a path or URL), for reading (``"r"``) or
    writing (``"r+"``): what every module opens a store's arrays with."""
    return zarr.open_group(_zarr(path, read_only=mode == "r"), mode=mode)


def as_path(path):
    """An output or input named by the user: a ``Path``, or a URL kept as a string."""
    return _p(path)


def begin(path, *, step, parameters, source, overwrite=False):
    """Create the store a stage writes, reopen its interrupted run, or say it is done.

    Parameters
    ----------
    path : str or Path
        The store to write (its final name; it is built at ``building(path)``).
    step : str
        The stage writing it (``"ingest"``, ...).
    parameters : dict
        The options that decide the output.
    source : dict
        Identity of the input (file size and time, input store fingerprint).
    overwrite : bool
        Replace a store at ``path`` that was made by another step, from
        another input or with other parameters (without it, that is an error).
        The old store stays in place, complete, until the new one replaces it.

    Returns
    -------
    zarr.Group or None
        Open for writing (``state(group)["progress"]`` says where to go on),
        or None when ``path`` already holds this very output, complete.
    """
    path = _p(path)
    if storage.is_url(path):
        storage.check_writable(path, "--out")
    check_output(path, source)
    locks.acquire(path, what="this store")
    try:
        group = _begin(path, step=step, parameters=parameters, source=source,
                       overwrite=overwrite)
    except BaseException:
        locks.release(path)
        raise
    if group is None:
        locks.release(path)
    return group


def _begin(path, *, step, parameters, source, overwrite):
    identity = {"step": step, "parameters": parameters, "source": source}
    tmp = building(path)
    if _exists(path):
        existing = _read_state(path)
        if existing is None:
            raise StreamgexError(
                f"{path}: exists and is not a streamgex store; streamgex replaces only what it "
                f"made (--overwrite included): choose another --out, or remove it yourself"
            )
        same = _same_run(path, **identity)
        damage = same and existing.get("complete") and _damage(path)
        if damage:
            log.warning("%s: %s; building it again", path, damage)
            _remove_store(path)
        elif same and existing.get("complete"):
            _consolidated(path)
            if tmp != path:
                atomic.remove(tmp)  # a rebuild of other options, interrupted and then undone
            log.info("%s: up to date", path)
            return None
        elif existing.get("complete") and not overwrite:
            raise StreamgexError(
                f"{path}: holds a complete {existing.get('step')} output made from another "
                f"input or with other options; pass --overwrite to replace it")
        elif not existing.get("complete") and not _exists(tmp):
            os.replace(path, tmp)  # written in place by an older streamgex: go on under tmp
    if _exists(tmp) and _read_state(tmp) is None and _cut_creation(tmp):
        log.info("%s: left by a kill while it was created; starting it again", tmp)
        atomic.remove(tmp)
    if _exists(tmp):
        existing = _read_state(tmp)
        if existing is None:
            raise StreamgexError(f"{tmp}: exists and is not a streamgex store; remove it "
                                 f"yourself to build {path}")
        if _same_run(tmp, **identity):
            if existing.get("complete"):  # killed between finishing and renaming
                _publish(tmp, path)
                log.info("%s: up to date", path)
                return None
            done = existing.get("progress") or {}
            if done:
                log.info("resuming %s: %s", path, describe_progress(done))
            return open_group(tmp, mode="r+")
        if not overwrite:
            raise StreamgexError(
                f"{path}: its partial build {storage.name(tmp)} holds an interrupted "
                f"{existing.get('step')} output made from another input or with other options; "
                f"pass --overwrite to replace it")
        _remove_store(tmp)
    # The attrs go into the group's first metadata write: a kill cannot leave a group that
    # is not recognisably a streamgex store. Under a URL, objects of others that an
    # --overwrite kept may share the prefix, which Zarr's "w-" refuses; the lock and the
    # checks above already make sure no group is there.
    mode = "a" if storage.is_url(tmp) else "w-"
    return zarr.open_group(_zarr(tmp), mode=mode, zarr_format=3, attributes={
        ATTR: {"version": __version__, "step": step, "complete": False,
               "parameters": parameters, "progress": {}},
        "source": source,
    })


def _cut_creation(tmp):
    """Whether the partial folder ``tmp`` holds nothing but, at most, a ``zarr.json`` cut
    short: what a kill inside the group's creation (a folder, then its metadata file)
    leaves. Anything else there is not taken as streamgex's. (An object store writes
    ``zarr.json`` in one PUT: never cut short there.)"""
    return not storage.is_url(tmp) and tmp.is_dir() and not tmp.is_symlink() and all(
        entry.name == "zarr.json" and entry.is_file() for entry in tmp.iterdir())


def _exists(path):
    return storage.place(path).exists()


def _publish(tmp, path):
    """Rename the finished store ``tmp`` to ``path``, replacing what is there (a URL is
    built in place: nothing to rename)."""
    if tmp != path:
        atomic.replace_folder(tmp, path)


def _remove_store(path):
    """Delete the store at ``path``: a local folder whole; at a URL only what streamgex wrote
    there (the group's ``zarr.json`` and its members' objects), first marked incomplete so
    that a kill halfway never leaves a store that counts as complete."""
    where = storage.place(path)
    if not where.remote:
        atomic.remove(path)
        return
    if _read_state(path) is None:
        return
    group = open_group(path, mode="r+")
    group.attrs[ATTR] = {**state(group), "complete": False}
    for member in list(group.keys()):
        storage.place(storage.join(path, member)).remove_tree()
    storage.place(storage.join(path, "zarr.json")).delete()


#: Keys of a ``source`` record that name an input file, store or run folder.
INPUT_KEYS = ("path", "store", "run", "encoder")

#: Keys of a ``source`` record that say where an input is, not what it holds. Identities
#: compare, and fingerprints hash, the content fields beside them (input fingerprints, a
#: file's size and SHA-256), so a moved workdir or input is the same input.
LOCATION_KEYS = (*INPUT_KEYS, "relative")


def content(record):
    """A ``source`` or ``parameters`` record without its locations (``LOCATION_KEYS``, at any
    depth: a step's parameters can hold another store's ``source_of``)."""
    if isinstance(record, dict):
        return {k: content(v) for k, v in record.items() if k not in LOCATION_KEYS}
    if isinstance(record, list):
        return [content(v) for v in record]
    return record


def check_output(path, source):
    """Refuse an output that is, holds or lies inside one of its inputs (``source``'s paths):
    writing it would destroy what it is made from."""
    def parts(where):
        where = str(where)
        return (where.rstrip("/").split("/") if storage.is_url(where)
                else Path(where).resolve().parts)

    out = parts(path)
    records = [source or {}, *(source or {}).get("files", [])]  # several files: each one
    for value in (record.get(key) for record in records for key in INPUT_KEYS):
        if not isinstance(value, str):
            continue
        given = parts(value)
        if out[:len(given)] == given or given[:len(out)] == out:
            raise StreamgexError(f"{path}: is, holds or lies inside its input {value}; choose an "
                                 f"output path apart from the input")


def describe_progress(done):
    """A progress record in words: ``120 chunks already written``."""
    if done.get("phase") == "transpose":
        return f"{done['rows_done']:,} gene rows already transposed" + (
            f" in file {done['file'] + 1}" if done.get("file") else "")
    if "chunks_done" in done:
        return f"{done['chunks_done']:,} chunks already written"
    return ", ".join(f"{k} {v}" for k, v in done.items())


def _consolidated(path):
    """Make sure a store marked complete has its consolidated metadata: ``finish`` writes the
    flag, then the consolidation, so a kill between the two leaves a complete store whose
    metadata is not consolidated yet. Finishing that is all it lacks."""
    if json.loads(storage.place(path).read("zarr.json")).get("consolidated_metadata") is None:
        log.info("%s: consolidating the metadata its interrupted finish did not", path)
        _consolidate(path)


def _consolidate(path):
    with warnings.catch_warnings():
        # zarr-python reads consolidated v3 metadata; other readers ignore it.
        warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(_zarr(path))


def _read_state(path):
    try:
        group = open_group(path)
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError, NotADirectoryError):
        return None
    return group.attrs.get(ATTR)


def _same_run(path, *, step, parameters, source):
    group = open_group(path)
    st, old_source = dict(group.attrs[ATTR]), dict(group.attrs.get("source", {}))
    return (
        st.get("step") == step
        and content(st.get("parameters")) == content(parameters)
        and all(content(old_source.get(key)) == content(value) for key, value in source.items()
                if key not in LOCATION_KEYS)
    )


def recorded_source(path, *, step, parameters):
    """The ``source`` attrs of a complete store made by ``step`` with ``parameters``; None
    for anything else."""
    st = _read_state(path)
    if not (st and st.get("complete") and st.get("step") == step
            and content(st.get("parameters")) == content(parameters)):
        return None
    return dict(open_group(path).attrs.get("source", {}))


def update_source(path, fields):
    """Update fields of a complete store's ``source`` attrs (and its consolidated metadata)."""
    with locks.hold(path, what="this store"):
        group = open_group(path, mode="r+")
        group.attrs["source"] = {**dict(group.attrs.get("source", {})), **fields}
        _consolidate(path)


def matches(path, *, step, parameters, source):
    """Whether ``path`` is a complete store made by ``step`` with these parameters and source."""
    st = _read_state(path)
    return bool(st and st.get("complete")) and _same_run(
        path, step=step, parameters=parameters, source=source
    ) and not _damage(path)


def status(path, identity=None):
    """``("done" | "stale" | "partial" | "to do", detail)`` of the store at ``path``.

    ``identity``: the ``step``, ``parameters`` and ``source`` its step would
    write it with now (the rule ``begin`` skips by); a complete store made
    otherwise is ``stale``. Without it, any complete store is ``done``.
    """
    path = _p(path)
    st, building_state = _read_state(path), _read_state(building(path))
    if st and st.get("complete") and (identity is None or _same_run(path, **identity)):
        damage = _damage(path)
        return ("stale", f"{damage}; its command builds it again") if damage else ("done", "")
    candidates = ((building(path), building_state), (path, st))
    for candidate, state_ in candidates[1:] if building(path) == path else candidates:
        if state_ is not None and not state_.get("complete") and (
                identity is None or _same_run(candidate, **identity)):
            return "partial", describe_progress(state_.get("progress", {}))
    if st and st.get("complete"):
        return "stale", "its input or options changed since; `run` redoes it"
    if building_state is not None or st is not None:
        return "partial", "of other options; `run` replaces it"
    return "to do", ""


def state(group):
    """The ``streamgex`` attrs of a store: step, parameters, progress, complete."""
    return dict(group.attrs[ATTR])


def set_progress(group, **progress):
    """Record how far a stage got; call after the data it describes is written."""
    current = state(group)
    current["progress"] = {**current["progress"], **progress}
    group.attrs[ATTR] = current


def define_expression(group, *, samples, genes, coords=None, chunk_samples, compressors=None):
    """Create the ``expression`` array and its coordinates in a new store.

    Parameters
    ----------
    samples, genes : sequence of str
        The ``sample`` and ``gene`` index coordinates, unique.
    coords : dict of str -> (dim, array), optional
        Further coordinates along ``"sample"`` or ``"gene"``.
    chunk_samples : int
        Samples per chunk; chunks always hold whole profiles.
    compressors : sequence of codecs, optional
        Default: ``COMPRESSOR`` and a CRC-32C checksum; ``STREAMED`` for stores
        the training streams read.

    Returns
    -------
    expression : zarr.Array
        ``(n_samples, n_genes) float32``, NaN where not yet written.
    """
    extra = dict(coords or {})
    _write_coordinate(group, "sample", "sample", samples)
    _write_coordinate(group, "gene", "gene", genes)
    for name, (dim, values) in extra.items():
        _write_coordinate(group, name, dim, values)
    shape = (len(samples), len(genes))
    attributes = {"coordinates": " ".join(extra)} if extra else {}
    return group.create_array(
        EXPRESSION,
        shape=shape,
        chunks=(max(1, min(chunk_samples, shape[0])), max(1, shape[1])),
        dtype="float32",
        fill_value=np.nan,
        # the checksum: a damaged chunk fails its read
        compressors=list(compressors or (COMPRESSOR, Crc32cCodec())),
        dimension_names=("sample", "gene"),
        attributes=attributes,
        overwrite=True,
    )


def start_writing(group, **expression):
    """``define_expression(group, **expression)``, then record that chunk 0 is next.

    Stages that fill ``expression`` chunk by chunk in order start with this;
    ``state(group)["progress"]`` has ``chunks_done`` from then on.
    """
    array = define_expression(group, **expression)
    set_progress(group, phase="write", chunks_done=0)
    return array


def write_chunks(group, read, *, desc, chunks_per_read=1, genes=slice(None)):
    """Fill ``expression`` chunk by chunk from ``read(start, stop)``, resuming after
    the chunks the progress attrs record as written.

    Each block is compressed and written on a thread while ``read`` makes the
    next one (at most one write in flight), and recorded as done only once
    written, so a kill never records a chunk that is not on disk.
    ``chunks_per_read``: chunks asked of ``read`` at a time (a model
    predicting them runs larger batches). ``genes``: the columns ``read``'s
    blocks hold, a slice (a pass of ``predict`` that fills one model piece's
    genes; each chunk is then read back and rewritten with them).
    """
    array = group[EXPRESSION]
    n_samples, size = array.shape[0], array.chunks[0]
    first = state(group)["progress"].get("chunks_done", 0)
    n_chunks = math.ceil(n_samples / size) if n_samples else 0
    bar = progress(total=n_samples, initial=min(first * size, n_samples), desc=desc,
                   unit="sample")
    pending = None

    def settle():
        future, last, rows = pending
        future.result()
        set_progress(group, phase="write", chunks_done=last)
        bar.update(rows)

    with ThreadPoolExecutor(max_workers=1) as writer:
        for k in range(first, n_chunks, chunks_per_read):
            last = min(k + chunks_per_read, n_chunks)
            start, stop = k * size, min(last * size, n_samples)
            block = read(start, stop)
            if pending is not None:
                settle()
            write = writer.submit(array.__setitem__, (slice(start, stop), genes), block)
            pending = (write, last, stop - start)
        if pending is not None:
            settle()
    bar.close()


def _write_coordinate(group, name, dim, values):
    values = np.asarray(values)
    if values.dtype.kind in "USO":
        array = group.create_array(
            name, shape=values.shape, dtype=str, dimension_names=(dim,), overwrite=True
        )
        values = values.astype(object)
    else:
        array = group.create_array(
            name, shape=values.shape, dtype=values.dtype, dimension_names=(dim,), overwrite=True
        )
    if values.size:
        array[:] = values


def finish(group, *, source=None, attrs=None):
    """Mark a store complete: drop scratch data, record final attrs, consolidate, and
    rename it into place (replacing the old store of an ``overwrite``)."""
    if SCRATCH in group:
        del group[SCRATCH]
    tmp = location(group)
    if not storage.is_url(tmp):
        for leftover in tmp.rglob("*.partial"):
            leftover.unlink(missing_ok=True)
    updates = dict(attrs or {})
    if source:
        updates["source"] = {**dict(group.attrs.get("source", {})), **source}
    if "units" not in updates:
        updates["units"] = _input_units(group)
    current = state(group)
    current["complete"] = True
    current["progress"] = {}
    updates[ATTR] = current
    group.attrs.update(updates)
    _consolidate(tmp)
    path = tmp if storage.is_url(tmp) else atomic.final_path(tmp)
    _publish(tmp, path)
    locks.release(path)
    return path


def missing_chunks(path):
    """Indices of the ``expression`` chunks of the store at ``path`` that have no file (a
    chunk never written reads as NaN in Zarr, so a lost one would pass unnoticed)."""
    array = open_group(path)[EXPRESSION]
    encode = array.metadata.chunk_key_encoding.encode_chunk_key
    present = storage.place(path).keys(EXPRESSION)  # one listing, not a request per chunk
    return [k for k in range(_chunk_count(array)) if encode((k, 0)) not in present]


def _chunk_count(array):
    """Chunks along ``sample`` of an expression array (whole profiles per chunk)."""
    return math.ceil(array.shape[0] / array.chunks[0]) if array.shape[0] else 0


def _damage(path):
    """What is wrong with a complete store's chunks, in words, or None: chunks ``verify``
    found damaged, or chunk files gone."""
    recorded = _read_state(path).get("damaged")
    if recorded:
        return f"{len(recorded)} chunks found damaged by `info --verify` ({_chunk_list(recorded)})"
    if EXPRESSION not in open_group(path):
        return None
    missing = missing_chunks(path)
    return missing and f"{len(missing)} chunk files missing ({_chunk_list(missing)})"


def _chunk_list(chunks):
    return ", ".join(map(str, chunks[:5])) + (", ..." if len(chunks) > 5 else "")


#: ``units`` of a store made from a raw file (ingest): the file's own values.
RAW_UNITS = "as in the source file"


def _input_units(group):
    """The ``units`` a store inherits: its input store's, or ``RAW_UNITS`` from a file."""
    origin = dict(group.attrs.get("source", {})).get("store")
    if origin is None:
        return RAW_UNITS
    try:
        return open_group(origin).attrs.get("units", RAW_UNITS)
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return RAW_UNITS


def verify(path):
    """Read every chunk of a complete store's ``expression`` back; an error naming each chunk
    that is missing or damaged (stores written since checksums were added fail a read of an
    altered chunk: a CRC-32C per chunk). A damaged store is recorded as such, so it is no
    longer opened and re-running the command that made it builds it again. Returns the number
    of chunks checked."""
    path = _p(path)
    if _complete_state(path).get("damaged") is not None:
        open_store(path)  # says it is damaged
    array = open_group(path)[EXPRESSION]
    rows = array.chunks[0]
    count = _chunk_count(array)
    missing = set(missing_chunks(path))
    bad, details = [], []
    bar = progress(total=count, desc="verify", unit="chunk")
    for k in range(count):
        where = f"chunk {k} (profiles {k * rows:,}-{min((k + 1) * rows, array.shape[0]) - 1:,})"
        if k in missing:
            bad.append(k)
            details.append(f"{where}: missing")
        else:
            try:
                array[k * rows:(k + 1) * rows]
            except Exception as exc:  # checksum, codec or I/O: all mean this chunk is damaged
                bad.append(k)
                details.append(f"{where}: {type(exc).__name__}: {str(exc)[:80]}")
        bar.update(1)
    bar.close()
    if bad:
        with locks.hold(path, what="this store"):
            group = open_group(path, mode="r+")
            group.attrs[ATTR] = {**state(group), "damaged": bad}
            _consolidate(path)
        raise StreamgexError(f"{path}: {len(bad)} of {count} chunks damaged: "
                             + "; ".join(details[:5]) + ("; ..." if len(bad) > 5 else "")
                             + ". Re-run the command that made it: it builds the store again")
    return count


def abandon(path):
    """Delete the partial store this process began at ``path`` and give back its lock (a
    write that failed on bad input: nothing of it is worth resuming)."""
    _remove_store(building(path))
    locks.release(path)


def remove(path):
    """Delete a store and its partial rebuild, if any."""
    path = _p(path)
    _remove_store(path)
    if building(path) != path:
        _remove_store(building(path))


def open_store(path):
    """Open a complete store as an ``xarray.Dataset``; refuse a missing, partial or damaged
    one."""
    path = _p(path)
    st = _complete_state(path)
    damage = _damage(path)
    if damage:
        raise StreamgexError(f"{path}: damaged store: {damage}; re-run the `streamgex "
                             f"{st.get('step')}` command that made it: it builds it again")
    _consolidated(path)
    return xr.open_zarr(_zarr(path, read_only=True), consolidated=True)


def _complete_state(path):
    """The ``streamgex`` attrs of the complete store at ``path``; an error saying what to run
    for a missing or partial one."""
    st = _read_state(path)
    pending = _read_state(building(path)) if st is None else None
    if pending is not None:
        raise StreamgexError(
            f"{path}: incomplete store (its {pending.get('step')} run stopped at "
            f"{pending.get('progress', {})}, in {storage.name(building(path))}); re-run the same "
            f"`streamgex {pending.get('step')}` command to finish it")
    if st is None:
        raise StreamgexError(
            f"{path}: not a streamgex store (no Zarr group with streamgex attrs); "
            f"create it with `streamgex ingest`"
        )
    if not st.get("complete"):
        done = st.get("progress", {})
        raise StreamgexError(
            f"{path}: incomplete store (its {st.get('step')} run stopped at {done}); "
            f"re-run the same `streamgex {st.get('step')}` command to finish it"
        )
    return st


def strings(values):
    """A string coordinate (numpy's StringDType, as zarr 3 returns it) as a ``<U`` array."""
    return np.asarray(values).astype(object).astype(str)


def describe(path):
    """A complete store's shape, chunks, sizes, coordinates and provenance as a dict (what
    ``info --json`` prints)."""
    ds = open_store(path)
    array = open_group(path)[EXPRESSION]
    state_ = ds.attrs[ATTR]
    return {"store": str(path), "samples": int(array.shape[0]), "genes": int(array.shape[1]),
            "dtype": str(array.dtype), "chunk_samples": int(array.chunks[0]),
            "chunks": int(array.nchunks), "bytes": int(array.nbytes),
            "bytes_stored": int(array.nbytes_stored()), "coordinates": sorted(ds.coords),
            "step": state_["step"], "parameters": state_.get("parameters", {}),
            "units": ds.attrs.get("units", RAW_UNITS),
            "version": state_.get("version"), "source": dict(ds.attrs.get("source", {}))}


def summary(path):
    """A few lines describing a complete store: shape, chunks, sizes, provenance."""
    d = describe(path)
    raw, stored, source = d["bytes"], d["bytes_stored"], d["source"]
    lines = [
        f"{path}",
        f"  expression  {d['samples']:,} samples x {d['genes']:,} genes, float32, "
        f"chunks of {d['chunk_samples']:,} samples ({d['chunks']:,} chunks)",
        f"  size        {_human(raw)} raw, {_human(stored)} stored "
        f"(compression ratio {raw / max(stored, 1):.2f})",
        f"  values      {d['units']}",
        f"  coordinates {', '.join(d['coordinates'])}",
    ]
    files = source.get("files") or []
    step = d["step"]
    origin = source.get("path") or source.get("store") or (
        files and f"{files[0]['path']} and {len(files) - 1} more")
    digests = source.get("sha256") or []
    digests = [digests] if isinstance(digests, str) else digests  # several files: a list
    details = ", ".join(filter(None, [source.get("format"), digests and
                                      "sha256 " + " ".join(d[:12] for d in digests if d)]))
    if step == "ingest" and origin:
        lines.append(f"  source      {origin}" + (f" ({details})" if details else ""))
    elif origin:
        lines.append(f"  made by     {step} from {origin}")
    return "\n".join(lines)


def _human(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
