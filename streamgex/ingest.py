"""``streamgex ingest``: one raw expression file -> one chunked Zarr store.

Paper section 2.1 describes the two inputs (the GEO Affymetrix compendium and
the 1000G RNA-Seq table); this stage only changes their container, never a
value: the store holds the source's float32 numbers in the source's sample and
gene order (samples become rows, so text tables are transposed).

Memory is bounded by one chunk, not by the file:

- a GCTX matrix is read one chunk of samples at a time (an HDF5 hyperslab);
- a gene-major text table is transposed out of core in two passes: blocks of
  gene rows go to a scratch array inside the store, chunked in narrow sample
  stripes, then each chunk of samples is read back across all genes.

Every chunk written is recorded in the store's attrs, so an ingest killed at
any point resumes where it stopped when re-run with the same command.
"""

import logging
import re
import threading
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec

from . import storage, store
from .digest import file_stat, same_file, sha256_of
from .errors import StreamgexError
from .formats import SampleMajorSource, open_source
from .formats.tables import unquote
from .formats.text import check_unique, gene_rows
from .progress import progress

log = logging.getLogger(__name__)

#: How a cell that is NaN, +-Inf or a missing token ("NA", "") is treated:
#: None rejects the file; "nan" stores NaN; "zero" stores 0.
MISSING_POLICIES = ("nan", "zero")

#: Values per block of gene rows in the first pass of a text transpose
#: (32 MiB of float32; the text of those rows takes about as much again).
BLOCK_VALUES = 8 * 2**20

#: Sample stripe of the transpose scratch array: a divisor of every default
#: chunk size, so the second pass reads each scratch chunk exactly once.
SCRATCH_COLUMNS = store.CHUNK_ALIGN
SCRATCH_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")

ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]+\d+)\.\d+$")


def strip_version(gene_id):
    """``ENSG00000152931.6`` -> ``ENSG00000152931``; other ids unchanged.

    Any Ensembl-style prefix counts: the real D-GEX maps hold pseudoautosomal
    ids such as ``ENSGR0000124334``.
    """
    match = ENSEMBL_VERSION.match(gene_id)
    return match.group(1) if match else gene_id


def ingest(
    source,
    out,
    *,
    format="auto",
    samples_as=None,
    chunk_samples=None,
    allow_missing=None,
    overwrite=False,
    block_values=BLOCK_VALUES,
):
    """Convert a GCTX, GCT, GEUVADIS or TSV/CSV file into a Zarr store.

    Parameters
    ----------
    source : str or Path
        The raw file (text formats may be gzip-compressed), or its URL (``s3://...``,
        ``https://...``: read from a local copy, ``storage.fetch``).
    out : str or Path
        The store to write, or its URL (``s3://bucket/geo.zarr``). An interrupted ingest of the same source with the
        same options is resumed; anything else already there is an error
        unless ``overwrite``.
    format : {"auto", "gctx", "gct", "geuvadis", "tsv"}
        ``"auto"`` detects it from the content.
    samples_as : {None, "rows", "columns"}
        A TSV/CSV table's orientation where its ids cannot tell
        (``formats.tables.orientation``).
    chunk_samples : int, optional
        Samples per chunk; default ``store.default_chunk_samples`` (about
        32 MiB per chunk).
    allow_missing : {None, "nan", "zero"}
        What to store for NaN, +-Inf and missing-value cells; None rejects
        them.
    overwrite : bool
        Replace an existing store.
    block_values : int
        Values per gene-row block when transposing a text table.

    Returns
    -------
    Path
        The complete store.
    """
    if allow_missing not in (None, *MISSING_POLICIES):
        raise StreamgexError(
            f"--allow-missing must be one of {', '.join(MISSING_POLICIES)}, got {allow_missing!r}"
        )
    if chunk_samples is not None and chunk_samples < 1:
        raise StreamgexError(f"--chunk-samples must be a positive integer, got {chunk_samples}")
    out = storage.local_or_url(out) if isinstance(out, str) else Path(out)
    local = _local(source)
    src = open_source(local, format, samples_as=samples_as)
    checksum = _Checksum(local)
    try:
        identity_now = _identity(source, src, chunk_samples, allow_missing)
        recognise(out, identity_now)
        group = store.begin(out, **identity_now, overwrite=overwrite)
        if group is None:
            return out
        try:
            if isinstance(src, SampleMajorSource):
                _ingest_samples(group, src, chunk_samples, allow_missing)
            else:
                _ingest_table(group, src, chunk_samples, allow_missing, block_values)
            store.finish(group, source={"sha256": checksum.result()})
        except StreamgexError:
            store.abandon(out)
            raise
    finally:
        checksum.cancel()
        if isinstance(src, SampleMajorSource):
            src.close()
    return out


def identity(source, *, format="auto", samples_as=None, chunk_samples=None, allow_missing=None,
             out=None):
    """The step, parameters and source an ingest of ``source`` records (``store.begin``).

    ``out``: the store it would write. When that store was made from a file of the same
    content that has moved, been copied or touched since, its record is given back
    (``recognise``: the question ``ingest`` asks before it skips), so ``status`` finds it
    up to date exactly when ``run`` does."""
    src = open_source(_local(source), format, samples_as=samples_as)
    try:
        found = _identity(source, src, chunk_samples, allow_missing)
    finally:
        if isinstance(src, SampleMajorSource):
            src.close()
    recorded = recognise(out, found) if out is not None else None
    return {**found, "source": {**found["source"], **recorded}} if recorded else found


def _identity(source, src, chunk_samples, allow_missing):
    # Size and modification time alone miss a file replaced by `cp -p` or `touch -r`; the
    # inode and the change time (which no user command can set back) catch those.
    recorded = ({"path": str(source), "format": src.format, **storage.stat(str(source))}
                if storage.is_url(str(source)) else
                {"path": str(Path(source).resolve()), "format": src.format, **file_stat(source)})
    if src.format == "tsv":  # the same table read the other way round is another store
        recorded["samples_as"] = "rows" if isinstance(src, SampleMajorSource) else "columns"
    return {"step": "ingest",
            "parameters": {"chunk_samples": chunk_samples, "allow_missing": allow_missing},
            "source": recorded}


def _local(source):
    """``source``, or a local copy of it when it is a URL."""
    return storage.fetch(storage.check(str(source))) if storage.is_url(str(source)) else source


#: The fields of an ingest's record that say where its file is, not what it holds (an
#: object's ETag included: a copy of the same bytes can have another).
PLACE = ("path", "mtime_ns", "ctime_ns", "inode", "etag")


def recognise(out, identity):
    """When ``out`` is a complete store ingested with these options from a file of this
    content whose place, times or inode changed since (``digest.same_file``: the SHA-256
    decides), record the file's new place in ``out`` (so the next call needs no hash; a
    store locked by a running command keeps its old record) and return the place fields
    ``out`` records now; else None."""
    recorded = store.recorded_source(out, step=identity["step"],
                                     parameters=identity["parameters"])
    now = identity["source"]
    if (recorded is None or all(recorded.get(k) == v for k, v in now.items())
            or any(recorded.get(k) != now.get(k) for k in ("format", "samples_as"))
            or not _same_content(recorded, now)):
        return None
    log.info("%s: its place, times or inode changed since %s was made; comparing its "
             "content: the same",
             now["path"], out)
    try:
        store.update_source(out, {k: now[k] for k in PLACE if k in now})
        return {k: now[k] for k in PLACE if k in now}
    except (StreamgexError, OSError):
        return {k: recorded[k] for k in PLACE if k in recorded}


def _same_content(recorded, now):
    """``digest.same_file`` for a file, or for a URL the same size and SHA-256 (of its
    local copy)."""
    if not storage.is_url(now["path"]):
        return same_file(recorded, now["path"])
    return ("sha256" in recorded and recorded.get("size") == now["size"]
            and sha256_of(_local(now["path"]), bar=False) == recorded["sha256"])


def _ingest_samples(group, src, chunk_samples, allow_missing):
    done = store.state(group)["progress"]
    if "chunks_done" not in done:
        genes = np.array([strip_version(g) for g in src.gene_ids], dtype=object)
        check_unique(genes, what="gene", path=src.path, where=src.gene_position)
        _define(
            group,
            samples=src.sample_ids,
            genes=genes,
            coords={"gene_raw": src.gene_ids, **src.gene_coords},
            chunk_samples=chunk_samples,
        )

    def read(start, stop):
        return _check_values(
            src.read(start, stop),
            position=lambda i, j: src.position(start + i, j),
            allow_missing=allow_missing,
            nonnegative=False,
        )

    store.write_chunks(group, read, desc="writing samples")


def _ingest_table(group, src, chunk_samples, allow_missing, block_values):
    done = store.state(group)["progress"]
    if done.get("phase") != "write":
        genes, raw, coords = _transpose_rows(group, src, allow_missing, block_values)
        _define(
            group,
            samples=src.sample_ids,
            genes=genes,
            coords={"gene_raw": raw, **coords},
            chunk_samples=chunk_samples,
        )

    def read(start, stop):
        # Opened here, not before: a kill inside ``store.finish`` after it dropped the
        # scratch array leaves every chunk written and no scratch, and a re-run reads none.
        return np.ascontiguousarray(group[store.SCRATCH][:, start:stop].T)

    store.write_chunks(group, read, desc="writing samples")


def _transpose_rows(group, src, allow_missing, block_values):
    """First pass: gene rows -> the scratch array; returns gene ids and coords."""
    layout = src.layout
    n_samples = len(layout.sample_ids)
    # Bounded twice: the block in memory (rows x samples) and one scratch chunk
    # (rows x SCRATCH_COLUMNS) for tables with few samples.
    block_rows = max(1, block_values // max(n_samples, SCRATCH_COLUMNS))
    done = store.state(group)["progress"]
    rows_done = done.get("rows_done", 0)
    if store.SCRATCH not in group:
        group.create_array(
            store.SCRATCH,
            shape=(0, n_samples),
            chunks=(block_rows, min(SCRATCH_COLUMNS, n_samples)),
            dtype="float32",
            compressors=[SCRATCH_COMPRESSOR],
            dimension_names=("gene", "sample"),
        )
        rows_done = 0
    scratch = group[store.SCRATCH]
    raw, lines = [], []
    meta_columns = {name: [] for name in src.meta_names if name is not None}
    seen = {}
    bar = progress(total=layout.declared_rows, desc="reading genes", unit="gene")
    for block in gene_rows(layout, block_rows=block_rows, parse_from=rows_done):
        start = len(raw)
        for line, fields in zip(block.lines, block.meta):
            gene_raw = unquote(fields[0].strip())
            gene = strip_version(gene_raw)
            if not gene:
                raise StreamgexError(f"{layout.path}:{line}:1: empty gene id")
            if gene in seen:
                raise StreamgexError(
                    f"{layout.path}:{line}:1: duplicate gene id {gene!r} (first at line "
                    f"{seen[gene]}); ids must be unique"
                )
            seen[gene] = line
            raw.append(gene_raw)
            lines.append(line)
            for name, value in zip(src.meta_names, fields):
                if name is not None:
                    meta_columns[name].append(unquote(value.strip()))
        if block.values is not None:
            values = _check_values(
                block.values,
                position=lambda i, j, b=block: f"{layout.path}:{b.lines[i]}:{layout.n_meta + 1 + j}",
                allow_missing=allow_missing,
                nonnegative=src.nonnegative,
            )
            stop = start + len(block.lines)
            scratch.resize((stop, n_samples))
            scratch[start:stop] = values
            store.set_progress(group, phase="transpose", rows_done=stop)
        bar.update(len(block.lines))
    bar.close()
    if not raw:
        raise StreamgexError(f"{layout.path}: the table has a header but no gene rows")
    genes = np.array([strip_version(g) for g in raw], dtype=object)
    return genes, np.array(raw, dtype=object), {
        name: np.array(values, dtype=object) for name, values in meta_columns.items()
    }


def _define(group, *, samples, genes, coords, chunk_samples):
    """Create ``expression`` once the genes are known, and start counting chunks."""
    store.start_writing(
        group,
        samples=samples,
        genes=genes,
        coords={name: ("gene", values) for name, values in coords.items()},
        chunk_samples=chunk_samples or store.default_chunk_samples(len(genes)),
    )


def _check_values(block, *, position, allow_missing, nonnegative):
    """Apply the missing-value policy and the sign rule to a block of values."""
    bad = ~np.isfinite(block)
    if bad.any():
        if allow_missing is None:
            i, j = np.argwhere(bad)[0]
            raise StreamgexError(
                f"{position(i, j)}: missing or non-finite value ({block[i, j]}); fix the "
                f"file or pass --allow-missing nan|zero to store such cells as NaN or 0"
            )
        block[bad] = np.nan if allow_missing == "nan" else 0.0
    if nonnegative:
        negative = block < 0
        if negative.any():
            i, j = np.argwhere(negative)[0]
            raise StreamgexError(
                f"{position(i, j)}: negative RPKM value {block[i, j]}; RPKM cannot be "
                f"negative: is the table already log-transformed?"
            )
    return block


class _Checksum:
    """SHA-256 of a file, computed on a background thread while ingest runs."""

    def __init__(self, path):
        self._stop = threading.Event()
        self._digest = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path):
        self._digest = sha256_of(path, stop=self._stop, bar=False)

    def result(self):
        self._thread.join()
        return self._digest

    def cancel(self):
        self._stop.set()
