"""The Zarr store every stage reads and writes.

A store is a Zarr v3 group that ``xarray.open_zarr`` opens as a Dataset with

- ``expression``: ``(sample, gene) float32``, chunked along ``sample`` only, so
  that one chunk holds whole profiles (what training streams and what every
  per-profile step, such as quantile normalization, needs);
- string coordinates ``sample`` and ``gene``, plus per-gene or per-sample
  coordinates a stage adds (``gene_raw``, ``gene_symbol``, ...);
- group attrs ``streamgex`` (version, step, parameters, progress, ``complete``)
  and ``source`` (path, format, size, sha256 of the raw file).

A stage writes chunks in order and records its progress in the attrs after
each one; Zarr's local store writes every object atomically, so a stage killed
at any point leaves a store that says exactly how far it got. Only ``finish``
sets ``complete`` and consolidates the metadata, and ``open_store`` refuses a
store without it, so a partial store is never mistaken for a finished one.
"""

import json
import logging
import math
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from . import __version__, locks
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


def default_chunk_samples(n_genes):
    """Samples per chunk so that one chunk is about ``CHUNK_BYTES`` of float32.

    A multiple of ``CHUNK_ALIGN`` (64), between 64 and 16,384: 320 for the
    22,268 GEO probes, 768 for the 10,463 cross-platform genes.
    """
    rows = CHUNK_BYTES // (4 * max(int(n_genes), 1))
    return int(min(max(rows // CHUNK_ALIGN * CHUNK_ALIGN, CHUNK_ALIGN), 16384))


def begin(path, *, step, parameters, source, overwrite=False):
    """Create the store a stage writes, reopen its interrupted run, or say it is done.

    Parameters
    ----------
    path : str or Path
        The store to write.
    step : str
        The stage writing it (``"ingest"``, ...).
    parameters : dict
        The options that decide the output.
    source : dict
        Identity of the input (file size and time, input store fingerprint).
    overwrite : bool
        Replace a store at ``path`` that was made by another step, from
        another input or with other parameters (without it, that is an error).

    Returns
    -------
    zarr.Group or None
        Open for writing (``state(group)["progress"]`` says where to go on),
        or None when ``path`` already holds this very output, complete.
    """
    path = Path(path)
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
    if path.exists() or path.is_symlink():
        existing = _read_state(path)
        if existing is None:
            raise StreamgexError(
                f"{path}: exists and is not a streamgex store; streamgex replaces only what it "
                f"made (--overwrite included): choose another --out, or remove it yourself"
            )
        same = existing is not None and _same_run(path, step=step, parameters=parameters,
                                                   source=source)
        if same and existing.get("complete"):
            _consolidated(path)
            log.info("%s: up to date", path)
            return None
        if same:
            done = existing.get("progress") or {}
            if done:
                log.info("resuming %s: %s", path, describe_progress(done))
            return zarr.open_group(path, mode="r+")
        if not overwrite:
            what = "a complete" if existing.get("complete") else "an interrupted"
            raise StreamgexError(
                f"{path}: holds {what} {existing.get('step')} output made from another input "
                f"or with other options; pass --overwrite to replace it"
            )
        remove(path)
    # The attrs go into the group's first metadata write: a kill cannot leave a group that
    # is not recognisably a streamgex store.
    return zarr.open_group(path, mode="w-", zarr_format=3, attributes={
        ATTR: {"version": __version__, "step": step, "complete": False,
               "parameters": parameters, "progress": {}},
        "source": source,
    })


#: Keys of a ``source`` record that name an input file, store or run folder.
INPUT_KEYS = ("path", "store", "run", "encoder")


def check_output(path, source):
    """Refuse an output that is, holds or lies inside one of its inputs (``source``'s paths):
    writing it would destroy what it is made from."""
    out = Path(path).resolve()
    for key in INPUT_KEYS:
        value = (source or {}).get(key)
        if not isinstance(value, str):
            continue
        given = Path(value).resolve()
        if out == given or out in given.parents or given in out.parents:
            raise StreamgexError(f"{path}: is, holds or lies inside its input {value}; choose an "
                                 f"output path apart from the input")


def describe_progress(done):
    """A progress record in words: ``120 chunks already written``."""
    if done.get("phase") == "transpose":
        return f"{done['rows_done']:,} gene rows already transposed"
    if "chunks_done" in done:
        return f"{done['chunks_done']:,} chunks already written"
    return ", ".join(f"{k} {v}" for k, v in done.items())


def _consolidated(path):
    """Make sure a store marked complete has its consolidated metadata: ``finish`` writes the
    flag, then the consolidation, so a kill between the two leaves a complete store whose
    metadata is not consolidated yet. Finishing that is all it lacks."""
    root = Path(path) / "zarr.json"
    if json.loads(root.read_text()).get("consolidated_metadata") is None:
        log.info("%s: consolidating the metadata its interrupted finish did not", path)
        _consolidate(path)


def _consolidate(path):
    with warnings.catch_warnings():
        # zarr-python reads consolidated v3 metadata; other readers ignore it.
        warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(str(path))


def _read_state(path):
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError, NotADirectoryError):
        return None
    return group.attrs.get(ATTR)


def _same_run(path, *, step, parameters, source):
    group = zarr.open_group(path, mode="r")
    st, old_source = dict(group.attrs[ATTR]), dict(group.attrs.get("source", {}))
    return (
        st.get("step") == step
        and st.get("parameters") == parameters
        and all(old_source.get(key) == value for key, value in source.items())
    )


def recorded_source(path, *, step, parameters):
    """The ``source`` attrs of a complete store made by ``step`` with ``parameters``; None
    for anything else."""
    st = _read_state(path)
    if not (st and st.get("complete") and st.get("step") == step
            and st.get("parameters") == parameters):
        return None
    return dict(zarr.open_group(path, mode="r").attrs.get("source", {}))


def update_source(path, fields):
    """Update fields of a complete store's ``source`` attrs (and its consolidated metadata)."""
    with locks.hold(path, what="this store"):
        group = zarr.open_group(path, mode="r+")
        group.attrs["source"] = {**dict(group.attrs.get("source", {})), **fields}
        _consolidate(path)


def matches(path, *, step, parameters, source):
    """Whether ``path`` is a complete store made by ``step`` with these parameters and source."""
    st = _read_state(path)
    return bool(st and st.get("complete")) and _same_run(
        path, step=step, parameters=parameters, source=source
    )


def status(path, identity=None):
    """``("done" | "stale" | "partial" | "to do", detail)`` of the store at ``path``.

    ``identity``: the ``step``, ``parameters`` and ``source`` its step would
    write it with now (the rule ``begin`` skips by); a complete store made
    otherwise is ``stale``. Without it, any complete store is ``done``.
    """
    st = _read_state(path)
    if st is None:
        return "to do", ""
    if st.get("complete"):
        if identity is None or _same_run(path, **identity):
            return "done", ""
        return "stale", "its input or options changed since; `run` redoes it"
    return "partial", describe_progress(st.get("progress", {}))


def state(group):
    """The ``streamgex`` attrs of a store: step, parameters, progress, complete."""
    return dict(group.attrs[ATTR])


def set_progress(group, **progress):
    """Record how far a stage got; call after the data it describes is written."""
    current = state(group)
    current["progress"] = {**current["progress"], **progress}
    group.attrs[ATTR] = current


def define_expression(group, *, samples, genes, coords=None, chunk_samples):
    """Create the ``expression`` array and its coordinates in a new store.

    Parameters
    ----------
    samples, genes : sequence of str
        The ``sample`` and ``gene`` index coordinates, unique.
    coords : dict of str -> (dim, array), optional
        Further coordinates along ``"sample"`` or ``"gene"``.
    chunk_samples : int
        Samples per chunk; chunks always hold whole profiles.

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
        compressors=[COMPRESSOR, Crc32cCodec()],  # a damaged chunk fails its read
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


def write_chunks(group, read, *, desc, chunks_per_read=1):
    """Fill ``expression`` chunk by chunk from ``read(start, stop)``, resuming after
    the chunks the progress attrs record as written.

    Each block is compressed and written on a thread while ``read`` makes the
    next one (at most one write in flight), and recorded as done only once
    written, so a kill never records a chunk that is not on disk.
    ``chunks_per_read``: chunks asked of ``read`` at a time (a model
    predicting them runs larger batches).
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
            pending = (writer.submit(array.__setitem__, slice(start, stop), block), last,
                       stop - start)
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
    """Mark a store complete: drop scratch data, record final attrs, consolidate."""
    if SCRATCH in group:
        del group[SCRATCH]
    path = Path(str(group.store_path.store.root))
    for leftover in path.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
    updates = dict(attrs or {})
    if source:
        updates["source"] = {**dict(group.attrs.get("source", {})), **source}
    current = state(group)
    current["complete"] = True
    current["progress"] = {}
    updates[ATTR] = current
    group.attrs.update(updates)
    _consolidate(path)
    locks.release(path)


def verify(path):
    """Read every chunk of a complete store's ``expression`` back; an error naming each chunk
    that is missing or damaged (stores written since checksums were added fail a read of an
    altered chunk: a CRC-32C per chunk). Returns the number of chunks checked."""
    open_store(path)
    array = zarr.open_group(path, mode="r")[EXPRESSION]
    rows = array.chunks[0]
    count = math.ceil(array.shape[0] / rows) if array.shape[0] else 0
    encode = array.metadata.chunk_key_encoding.encode_chunk_key
    bad = []
    bar = progress(total=count, desc="verify", unit="chunk")
    for k in range(count):
        where = f"chunk {k} (profiles {k * rows:,}-{min((k + 1) * rows, array.shape[0]) - 1:,})"
        if not (Path(path) / EXPRESSION / encode((k, 0))).exists():
            bad.append(f"{where}: missing")
        else:
            try:
                array[k * rows:(k + 1) * rows]
            except Exception as exc:  # checksum, codec or I/O: all mean this chunk is damaged
                bad.append(f"{where}: {type(exc).__name__}: {str(exc)[:80]}")
        bar.update(1)
    bar.close()
    if bad:
        raise StreamgexError(f"{path}: {len(bad)} of {count} chunks damaged: "
                             + "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
                             + ". Re-create the store (its command with --overwrite)")
    return count


def abandon(path):
    """Delete a store this process began and give back its lock (a write that failed on
    bad input: nothing of it is worth resuming)."""
    remove(path)
    locks.release(path)


def remove(path):
    """Delete a store (a folder) or a stray file at its path."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        os.remove(path)


def open_store(path):
    """Open a complete store as an ``xarray.Dataset``; refuse a missing or partial one."""
    path = Path(path)
    st = _read_state(path)
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
    _consolidated(path)
    return xr.open_zarr(path, consolidated=True)


def strings(values):
    """A string coordinate (numpy's StringDType, as zarr 3 returns it) as a ``<U`` array."""
    return np.asarray(values).astype(object).astype(str)


def summary(path):
    """A few lines describing a complete store: shape, chunks, sizes, provenance."""
    ds = open_store(path)
    array = zarr.open_group(path, mode="r")[EXPRESSION]
    raw = array.nbytes
    stored = array.nbytes_stored()
    source = ds.attrs.get("source", {})
    n_samples, n_genes = array.shape
    lines = [
        f"{path}",
        f"  expression  {n_samples:,} samples x {n_genes:,} genes, float32, "
        f"chunks of {array.chunks[0]:,} samples ({array.nchunks:,} chunks)",
        f"  size        {_human(raw)} raw, {_human(stored)} stored "
        f"(compression ratio {raw / max(stored, 1):.2f})",
        f"  coordinates {', '.join(sorted(ds.coords))}",
    ]
    step, origin = ds.attrs[ATTR]["step"], source.get("path") or source.get("store")
    details = ", ".join(filter(None, [source.get("format"), source.get("sha256") and
                                      f"sha256 {source['sha256'][:12]}"]))
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
