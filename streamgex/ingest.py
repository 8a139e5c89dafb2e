"""``streamgex ingest``: one raw expression file (or several of one format and platform,
``formats.several``) -> one chunked Zarr store.

Paper section 2.1 describes the two inputs (the GEO Affymetrix compendium and
the 1000G RNA-Seq table); this stage only changes their container, never a
value: the store holds the source's float32 numbers in the source's sample and
gene order (samples become rows, so text tables are transposed).

Memory is bounded by one chunk, not by the file:

- a GCTX matrix is read one chunk of samples at a time (an HDF5 hyperslab);
- a gene-major text table is transposed out of core in two passes: blocks of
  gene rows go to a scratch array inside the store, chunked in narrow sample
  stripes, then each chunk of samples is read back across all genes (several
  files: each fills its own columns of the scratch array, one after the other).

Every chunk written is recorded in the store's attrs (and, while transposing,
the file and gene row reached), so an ingest killed at any point resumes where
it stopped when re-run with the same command.
"""

import logging
import math
import re
import threading
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec

from . import storage, store
from .digest import file_stat, same_file, sha256_of
from .errors import StreamgexError
from .formats import SampleMajorSource, open_source
from .formats.several import check_together, concatenated
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

ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]+\d+)(\.\d+)?$", re.IGNORECASE)


def strip_version(gene_id):
    """``ENSG00000152931.6`` -> ``ENSG00000152931``; ``ensg00000152931`` (as some R
    pipelines write them) -> ``ENSG00000152931``; other ids unchanged.

    Any Ensembl-style prefix counts: the real D-GEX maps hold pseudoautosomal
    ids such as ``ENSGR0000124334``.
    """
    match = ENSEMBL_VERSION.match(gene_id)
    return match.group(1).upper() if match else gene_id


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
    """Convert a GCTX, GCT, GEO series-matrix, GEUVADIS or TSV/CSV file (or several of
    one format) into a Zarr store.

    Parameters
    ----------
    source : str or Path, or a list of them
        The raw file (text formats may be gzip-compressed), or its URL (``s3://...``,
        ``https://...``: read from a local copy, ``storage.fetch``). Several files: one
        store of their samples in order (``formats.several``: one format and platform, the
        same genes, no sample twice), as a GEO compendium is built from series.
    out : str or Path
        The store to write, or its URL (``s3://bucket/geo.zarr``). An interrupted
        ingest of the same source with the same options is resumed; anything else
        already there is an error unless ``overwrite``.
    format : {"auto", "gctx", "h5ad", "anndata-zarr", "gct", "series-matrix", "geuvadis", "tsv"}
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
    paths = _paths(source)
    local = [_local(path) for path in paths]  # a URL: its local copy
    srcs = _open(local, format, samples_as)
    checksum = _Checksum(local)
    try:
        identity_now = _identity(paths, srcs, chunk_samples, allow_missing)
        recognise(out, identity_now)
        group = store.begin(out, **identity_now, overwrite=overwrite)
        if group is None:
            return out
        try:
            if isinstance(srcs[0], SampleMajorSource):
                _ingest_samples(group, concatenated(srcs), chunk_samples, allow_missing)
            else:
                _ingest_table(group, srcs, chunk_samples, allow_missing, block_values)
            store.finish(group, source=_with_digests(identity_now["source"], checksum.result()))
        except StreamgexError:
            store.abandon(out)
            raise
    finally:
        checksum.cancel()
        _close(srcs)
    return out


def _paths(source):
    """``source`` as a list of paths (one file or several)."""
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    if not paths:
        raise StreamgexError("ingest needs at least one source file")
    return paths


def _open(paths, format, samples_as):
    srcs = []
    try:
        for path in paths:
            srcs.append(open_source(path, format, samples_as=samples_as))
        check_together(srcs)
    except BaseException:
        _close(srcs)
        raise
    return srcs


def _close(srcs):
    for src in srcs:
        if isinstance(src, SampleMajorSource):
            src.close()


def identity(source, *, format="auto", samples_as=None, chunk_samples=None, allow_missing=None,
             out=None):
    """The step, parameters and source an ingest of ``source`` records (``store.begin``).

    ``out``: the store it would write. When that store was made from files of the same
    content that have moved, been copied or touched since, its record is given back
    (``recognise``: the question ``ingest`` asks before it skips), so ``status`` finds it
    up to date exactly when ``run`` does."""
    paths = _paths(source)
    srcs = _open([_local(path) for path in paths], format, samples_as)
    try:
        found = _identity(paths, srcs, chunk_samples, allow_missing)
    finally:
        _close(srcs)
    recorded = recognise(out, found) if out is not None else None
    return {**found, "source": {**found["source"], **recorded}} if recorded else found


def _identity(paths, srcs, chunk_samples, allow_missing):
    # Size and modification time alone miss a file replaced by `cp -p` or `touch -r`; the
    # inode and the change time (which no user command can set back) catch those.
    files = [_file_record(path) for path in paths]
    recorded = {"format": srcs[0].format}
    if srcs[0].format == "tsv":  # the same table read the other way round is another store
        recorded["samples_as"] = "rows" if isinstance(srcs[0], SampleMajorSource) else "columns"
    # One file keeps the record every store made before several were possible has; several
    # are recorded in order, so the same files in another order are another store.
    recorded = {**files[0], **recorded} if len(files) == 1 else {**recorded, "files": files}
    return {"step": "ingest",
            "parameters": {"chunk_samples": chunk_samples, "allow_missing": allow_missing},
            "source": recorded}


def _file_record(path):
    """Where one input file is and what says it changed: a local file's times and inode
    (``digest.file_stat``), or an object's size and ETag (``storage.stat``)."""
    if storage.is_url(str(path)):
        return {"path": str(path), **storage.stat(str(path))}
    return {"path": str(Path(path).resolve()), **file_stat(path)}


def _local(source):
    """``source``, or a local copy of it when it is a URL."""
    return storage.fetch(storage.check(str(source))) if storage.is_url(str(source)) else source


def _with_digests(source, digests):
    """The ``source`` field ``finish`` adds: the file's SHA-256, or the files' in order."""
    return {"sha256": digests if "files" in source else digests[0]}


#: The fields of an ingest's record that say where its file is, not what it holds (an
#: object's ETag included: a copy of the same bytes can have another).
PLACE = ("path", "mtime_ns", "ctime_ns", "inode", "etag")


def recognise(out, identity):
    """When ``out`` is a complete store ingested with these options from files of this
    content whose place, times or inode changed since (``digest.same_file``: the SHA-256
    decides), record the files' new places in ``out`` (so the next call needs no hash; a
    store locked by a running command keeps its old record) and return the place fields
    ``out`` records now; else None."""
    recorded = store.recorded_source(out, step=identity["step"],
                                     parameters=identity["parameters"])
    now = identity["source"]
    if recorded is None or any(recorded.get(k) != now.get(k) for k in ("format", "samples_as")):
        return None
    before, after = _files(recorded), _files(now)
    if (len(before) != len(after)
            or all(all(b.get(k) == v for k, v in a.items()) for b, a in zip(before, after))
            or not all(_same_content(b, a) for b, a in zip(before, after))):
        return None
    its = "its" if len(after) == 1 else "their"
    log.info("%s: %s place, times or inode changed since %s was made; comparing %s "
             "content: the same", ", ".join(a["path"] for a in after), its, out, its)
    moved = _places(now, after)
    try:
        store.update_source(out, moved)
        return moved
    except (StreamgexError, OSError):
        return _places(recorded, before)


def _files(record):
    """The per-file records of an ingest's ``source``, each with its ``sha256`` where the
    record has them (one file: the record itself)."""
    if "files" not in record:
        return [record]
    digests = record.get("sha256") or [None] * len(record["files"])
    return [{**f, **({"sha256": d} if d else {})} for f, d in zip(record["files"], digests)]


def _places(record, files):
    """The place fields of ``record``'s files, in its own shape (top level or ``files``)."""
    if "files" not in record:
        return {k: files[0][k] for k in PLACE if k in files[0]}
    return {"files": [{**kept, **{p: f[p] for p in PLACE if p in f}}
                      for kept, f in zip(record["files"], files)]}


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


def _ingest_table(group, srcs, chunk_samples, allow_missing, block_values):
    done = store.state(group)["progress"]
    if done.get("phase") != "write":
        genes, raw, coords = _transpose_rows(group, srcs, allow_missing, block_values)
        _define(
            group,
            samples=[s for src in srcs for s in src.sample_ids],
            genes=genes,
            coords={"gene_raw": raw, **coords},
            sample_coords=_sample_fields(srcs),
            chunk_samples=chunk_samples,
        )

    def read(start, stop):
        # Opened here, not before: a kill inside ``store.finish`` after it dropped the
        # scratch array leaves every chunk written and no scratch, and a re-run reads none.
        return np.ascontiguousarray(group[store.SCRATCH][:, start:stop].T)

    store.write_chunks(group, read, desc="writing samples")


def _sample_fields(srcs):
    """The sources' per-sample fields end to end; a field one file lacks is empty there."""
    names = list(dict.fromkeys(name for src in srcs for name in src.sample_fields))
    return {name: np.concatenate([
        np.asarray(src.sample_fields.get(name, [""] * len(src.sample_ids)), dtype=object)
        for src in srcs]) for name in names}


def _transpose_rows(group, srcs, allow_missing, block_values):
    """First pass: each file's gene rows -> its columns of the scratch array; returns the
    gene ids and coords (of the first file; the others must list the same genes)."""
    widths = [len(src.layout.sample_ids) for src in srcs]
    n_samples = sum(widths)
    # Bounded twice: the block in memory (rows x samples) and one scratch chunk
    # (rows x SCRATCH_COLUMNS) for tables with few samples.
    block_rows = max(1, block_values // max(max(widths), SCRATCH_COLUMNS))
    done = store.state(group)["progress"]
    file_done, rows_done = done.get("file", 0), done.get("rows_done", 0)
    if store.SCRATCH not in group:
        group.create_array(
            store.SCRATCH,
            shape=(0, n_samples),
            chunks=(block_rows, min(SCRATCH_COLUMNS, n_samples)),
            dtype="float32",
            compressors=[SCRATCH_COMPRESSOR],
            dimension_names=("gene", "sample"),
        )
        file_done = rows_done = 0
    scratch = group[store.SCRATCH]
    first = _Genes(srcs[0])
    offset = 0
    for k, src in enumerate(srcs):
        layout = src.layout
        parse_from = math.inf if k < file_done else rows_done if k == file_done else 0
        rows = 0
        bar = progress(total=layout.declared_rows or (len(first.raw) if k else None),
                       desc="reading genes", unit="gene")
        for block in gene_rows(layout, block_rows=block_rows, parse_from=parse_from):
            start = rows
            for line, fields in zip(block.lines, block.meta):
                if k == 0:
                    first.add(line, fields)
                else:
                    first.check(src, rows, line, fields[0].strip())
                rows += 1
            if block.values is not None:
                values = _check_values(
                    block.values,
                    position=lambda i, j, b=block: f"{layout.path}:{b.lines[i]}:{layout.n_meta + 1 + j}",
                    allow_missing=allow_missing,
                    nonnegative=src.nonnegative,
                )
                if k == 0:
                    scratch.resize((rows, n_samples))
                scratch[start:rows, offset:offset + widths[k]] = values
                store.set_progress(group, phase="transpose", file=k, rows_done=rows)
            bar.update(len(block.lines))
        bar.close()
        if k == 0 and not rows:
            raise StreamgexError(f"{layout.path}: the table has a header but no gene rows")
        if rows != len(first.raw):
            raise StreamgexError(
                f"{layout.path}: {rows} gene rows but {srcs[0].path} has {len(first.raw)}; "
                f"files ingested into one store must list the same genes in the same order")
        offset += widths[k]
    return first.result()


class _Genes:
    """The gene rows of the first file: ids (unique), their lines, their annotations."""

    def __init__(self, src):
        self.src, self.raw, self.ids, self.lines = src, [], [], []
        self.meta = {name: [] for name in src.meta_names if name is not None}
        self.seen = {}

    def add(self, line, fields):
        path = self.src.path
        gene_raw = fields[0].strip()
        gene = strip_version(gene_raw)
        if not gene:
            raise StreamgexError(f"{path}:{line}:1: empty gene id")
        if gene in self.seen:
            raise StreamgexError(
                f"{path}:{line}:1: duplicate gene id {gene!r} (first at line "
                f"{self.seen[gene]}); ids must be unique"
            )
        self.seen[gene] = line
        self.raw.append(gene_raw)
        self.ids.append(gene)
        self.lines.append(line)
        for name, value in zip(self.src.meta_names, fields):
            if name is not None:
                self.meta[name].append(value.strip())

    def check(self, src, row, line, gene_raw):
        """An error unless row ``row`` of another file is the same gene as here."""
        if row >= len(self.ids) or strip_version(gene_raw) != self.ids[row]:
            here = (f"{self.src.path} has {self.raw[row]!r} (line {self.lines[row]})"
                    if row < len(self.ids) else f"{self.src.path} has {len(self.ids)} rows")
            raise StreamgexError(
                f"{src.path}:{line}: gene {gene_raw!r} where {here}; files ingested into one "
                f"store must list the same genes in the same order (same platform)")

    def result(self):
        return (np.array(self.ids, dtype=object), np.array(self.raw, dtype=object),
                {name: np.array(values, dtype=object) for name, values in self.meta.items()})


def _define(group, *, samples, genes, coords, chunk_samples, sample_coords=None):
    """Create ``expression`` once the genes are known, and start counting chunks."""
    store.start_writing(
        group,
        samples=samples,
        genes=genes,
        coords={**{name: ("gene", values) for name, values in coords.items()},
                **{name: ("sample", np.asarray(values, dtype=object))
                   for name, values in (sample_coords or {}).items()}},
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
    """SHA-256 of each file, in order, computed on a background thread while ingest runs."""

    def __init__(self, paths):
        self._stop = threading.Event()
        self._digest = None
        self._thread = threading.Thread(target=self._run, args=(paths,), daemon=True)
        self._thread.start()

    def _run(self, paths):
        self._digest = [sha256_of(path, stop=self._stop, bar=False) for path in paths]

    def result(self):
        self._thread.join()
        return self._digest

    def cancel(self):
        self._stop.set()
