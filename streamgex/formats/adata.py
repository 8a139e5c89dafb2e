"""AnnData on disk (scanpy's format), read a block of cells at a time: ``.h5ad`` files
with h5py, AnnData-Zarr stores (``AnnData.write_zarr``, a folder) with zarr.

Both share anndata's on-disk spec, and h5py's and zarr's groups and arrays the
same reading calls, so one reader serves both. Layout: ``/X`` the ``(n_obs, n_var)`` matrix, dense or
CSR (``data``, ``indices``, ``indptr``; a CSC matrix cannot be read by rows and
is refused); ``/obs`` and ``/var`` dataframes whose ``_index`` attribute names
the index column (samples and genes). Rows are samples, so the file is read
like a GCTX: ``read(start, stop)`` takes rows ``start..stop`` only, never the
whole matrix. ``var`` columns are the gene fields ``predict --genes-by`` can
match by (``gene_symbols``, ``gene_ids``, ...); ``obs`` columns travel to
``predict``'s output.
"""

import h5py
import numpy as np
import zarr

from ..errors import StreamgexError
from .source import SampleMajorSource, decoded
from .text import check_unique

SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "feature_name")


GROUPS = (h5py.Group, zarr.Group)
ARRAYS = (h5py.Dataset, zarr.Array)


def is_anndata(handle):
    """Whether an open HDF5 file or Zarr group is laid out as AnnData."""
    return "X" in handle and isinstance(handle.get("obs"), GROUPS) and \
        isinstance(handle.get("var"), GROUPS)


def is_anndata_zarr(path):
    """Whether the folder ``path`` is an AnnData-Zarr store (and not a streamgex store)."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return False
    return group.attrs.get("encoding-type") == "anndata" or is_anndata(group)


def open_h5ad(path):
    """Open an ``.h5ad`` file as a ``SampleMajorSource``."""
    handle = h5py.File(path, "r")
    try:
        return _source(path, handle, "h5ad")
    except BaseException:
        handle.close()
        raise


def open_anndata_zarr(path):
    """Open an AnnData-Zarr folder as a ``SampleMajorSource``."""
    return _source(path, zarr.open_group(str(path), mode="r"), "anndata-zarr")


def _source(path, handle, format):
    if not is_anndata(handle):
        raise StreamgexError(f"{path}: without AnnData's X, obs and var; is this an "
                             f"{'.h5ad file' if format == 'h5ad' else 'AnnData-Zarr store'}?")
    samples, genes = _index(path, handle["obs"]), _index(path, handle["var"])
    check_unique(samples, what="sample", path=path, where=lambda i: f"obs row {i}")
    x = handle["X"]
    encoding = x.attrs.get("encoding-type", "array")
    shape = (len(samples), len(genes))
    if isinstance(x, ARRAYS):
        if x.shape != shape:
            raise StreamgexError(f"{path}: X has shape {x.shape} but obs and var name "
                                 f"{shape[0]} samples and {shape[1]} genes")

        def read(start, stop):
            return np.asarray(x[start:stop], dtype=np.float32)
    elif encoding == "csr_matrix":
        data, indices, indptr = x["data"], x["indices"], x["indptr"]

        def read(start, stop):
            lo, hi = int(indptr[start]), int(indptr[stop])
            block = np.zeros((stop - start, shape[1]), dtype=np.float32)
            rows = np.repeat(np.arange(stop - start), np.diff(indptr[start:stop + 1]))
            block[rows, indices[lo:hi]] = data[lo:hi]
            return block
    else:
        raise StreamgexError(f"{path}: X is stored as {encoding}; streamgex reads dense or CSR "
                             f"(cells as rows) matrices: convert it with "
                             f"`adata.X = adata.X.tocsr()` and write it again")
    fields = _columns(handle["var"], len(genes))
    coords = {}
    for name in SYMBOL_COLUMNS:
        if name in fields:
            coords["gene_symbol"] = fields[name]
            break
    return SampleMajorSource(
        format=format, path=str(path), sample_ids=samples, gene_ids=genes, read=read,
        position=lambda i, j: f"{path}: X[{i}, {j}] (sample {samples[i]!r}, gene {genes[j]!r})",
        gene_position=lambda i: f"var row {i}", close=getattr(handle, "close", lambda: None),
        gene_coords=coords,
        gene_fields=fields, sample_fields=_columns(handle["obs"], len(samples)))


def _index(path, frame):
    name = frame.attrs.get("_index", "_index")
    if name not in frame:
        raise StreamgexError(f"{path}: {frame.name} has no index column {name!r}")
    return decoded(frame[name][...])


def _columns(frame, length):
    """The 1-D string or number columns of an AnnData dataframe (categoricals decoded)."""
    out = {}
    index = frame.attrs.get("_index", "_index")
    for name in frame:
        column = frame[name]
        if name == index:
            continue
        if isinstance(column, GROUPS) and column.attrs.get("encoding-type") == "categorical":
            categories, codes = decoded(column["categories"][...]), column["codes"][...]
            values = np.where(codes >= 0, categories[np.clip(codes, 0, None)], "")
        elif isinstance(column, ARRAYS) and column.shape == (length,):
            values = decoded(column[...])
        else:
            continue
        out[name] = np.asarray(values, dtype=object)
    return out

