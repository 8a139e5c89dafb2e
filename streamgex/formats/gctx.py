"""GCTX (CMap/LINCS HDF5) files, read by row ranges through h5py.

Layout (CMap GCTX 1.0)::

    /0/DATA/0/matrix    (n_samples, n_genes) float   "columns x rows" in CMap terms
    /0/META/ROW/id      (n_genes,)   gene or probe ids (bytes, str or int)
    /0/META/COL/id      (n_samples,) sample ids
    /0/META/ROW/<field> per-gene metadata (``pr_gene_symbol`` -> ``gene_symbol``)

cmapPy does not import under numpy 2, and it would read the whole matrix;
h5py reads hyperslabs of whole samples, so memory is one block of samples.
"""

import h5py
import numpy as np

from ..errors import StreamgexError
from .source import SampleMajorSource, decoded
from .text import check_unique

MATRIX = "/0/DATA/0/matrix"
ROW_IDS = "/0/META/ROW/id"
COL_IDS = "/0/META/COL/id"
COL_META = "/0/META/COL"
ROW_META = "/0/META/ROW"
SYMBOL_FIELDS = ("pr_gene_symbol", "gene_symbol", "symbol")

#: HDF5 chunk cache: one band of HDF5 chunks across all genes, so that reading
#: sample blocks that cut through HDF5 chunks never decompresses a chunk twice.
CACHE_LIMIT = 512 * 2**20


def open_gctx(path):
    """Open a GCTX file and return its sample-major source (close it after use)."""
    if not h5py.is_hdf5(path):
        raise StreamgexError(f"{path}: not an HDF5 file, so not GCTX; check the file or --format")
    cache = _chunk_cache_bytes(path)
    handle = h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=100_003)
    try:
        return _source(path, handle)
    except BaseException:
        handle.close()
        raise


def _chunk_cache_bytes(path):
    with h5py.File(path, "r") as f:
        matrix = f.get(MATRIX)
        if not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2 or matrix.chunks is None:
            return 1 * 2**20
        band = matrix.chunks[0] * matrix.shape[1] * matrix.dtype.itemsize
        return int(min(max(band, 2**20), CACHE_LIMIT))


def _source(path, handle):
    for name in (MATRIX, ROW_IDS, COL_IDS):
        if not isinstance(handle.get(name), h5py.Dataset):
            raise StreamgexError(
                f"{path}: HDF5 file without the GCTX dataset {name}; is this a GCTX file?"
            )
    matrix = handle[MATRIX]
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise StreamgexError(
            f"{path}: HDF5 {MATRIX} must be a 2-D numeric matrix, found shape {matrix.shape} "
            f"of {matrix.dtype}"
        )
    genes = decoded(handle[ROW_IDS][()], strip=True)
    samples = decoded(handle[COL_IDS][()], strip=True)
    if matrix.shape != (len(samples), len(genes)):
        raise StreamgexError(
            f"{path}: HDF5 {MATRIX} has shape {matrix.shape} but {COL_IDS} and {ROW_IDS} "
            f"name {len(samples)} samples and {len(genes)} genes"
        )
    if len(samples) == 0:  # like a table with a header and no data: nothing to ingest
        raise StreamgexError(
            f"{path}: HDF5 {COL_IDS} names no samples; the file holds no profiles to ingest"
        )
    check_unique(samples, what="sample", path=path, where=lambda i: f"HDF5 {COL_IDS}[{i}]")
    coords = {}
    fields = metadata(handle, ROW_META, len(genes))
    for field in SYMBOL_FIELDS:
        if field in fields:
            coords["gene_symbol"] = fields[field]
            break

    def read(start, stop):
        return np.asarray(matrix[start:stop, :], dtype=np.float32)

    return SampleMajorSource(
        format="gctx",
        path=str(path),
        sample_ids=samples,
        gene_ids=genes,
        gene_coords=coords,
        gene_fields=fields,
        sample_fields=metadata(handle, COL_META, len(samples)),
        read=read,
        position=lambda i, j: (
            f"{path}: HDF5 {MATRIX}[{i}, {j}] (sample {samples[i]!r}, gene {genes[j]!r})"
        ),
        gene_position=lambda i: f"HDF5 {ROW_IDS}[{i}]",
        close=handle.close,
    )


def metadata(handle, group, length):
    """``{field: (length,) str}``: the 1-D fields of a GCTX metadata group (``ROW_META``,
    ``COL_META``) of that length, but the ids."""
    meta = handle.get(group)
    fields = {}
    for name in (meta if isinstance(meta, h5py.Group) else {}):
        if name != "id" and isinstance(meta[name], h5py.Dataset) and \
                meta[name].shape == (length,):
            fields[name] = decoded(meta[name][()], strip=True)
    return fields


def create_gctx(handle, *, sample_ids, gene_ids, gene_symbols=None, row_meta=None,
                col_meta=None):
    """Lay out a GCTX 1.0 file in an open ``h5py.File``; returns the empty matrix.

    The matrix is ``(samples, genes) float32`` in ~1 MiB HDF5 chunks (cmapPy's
    default shape), filled by the caller a block of samples at a time.
    ``row_meta`` / ``col_meta``: ``{field: values}`` per gene / per sample
    (strings, or numbers such as CMap's ``pr_is_lm`` flag).
    """
    handle.attrs["version"] = "GCTX1.0"
    samples, genes = len(sample_ids), len(gene_ids)
    matrix = handle.create_dataset(MATRIX, shape=(samples, genes), dtype="float32",
                                   chunks=(max(1, min(256, samples)), max(1, min(1024, genes))))
    handle[ROW_IDS] = np.asarray(gene_ids).astype("S")
    handle[COL_IDS] = np.asarray(sample_ids).astype("S")
    if gene_symbols is not None:
        handle[f"{ROW_META}/pr_gene_symbol"] = np.asarray(gene_symbols).astype("S")
    for group, fields in ((ROW_META, row_meta), (COL_META, col_meta)):
        for name, values in (fields or {}).items():
            values = np.asarray(values)
            handle[f"{group}/{name}"] = values if values.dtype.kind in "iuf" else \
                values.astype(object).astype(str).astype("S")
    return matrix
