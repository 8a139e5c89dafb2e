"""Readers for the raw expression formats, and detection of which one a file is.

To add a format: write a module whose ``open_*`` returns a
``GeneMajorSource`` (text, one gene per line) or a ``SampleMajorSource``
(one sample per row, read by ranges), then register it in ``OPENERS`` and
teach ``detect_format`` its signature.
"""

import os

from ..errors import StreamgexError
from .gct import open_gct
from .gctx import open_gctx
from .geo import is_series_matrix, open_series_matrix
from .adata import is_anndata, is_anndata_zarr, open_anndata_zarr, open_h5ad
from .source import GeneMajorSource, SampleMajorSource
from .tables import is_geuvadis_header, open_geuvadis, open_table
from .text import first_line

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

OPENERS = {
    "gctx": open_gctx,
    "h5ad": open_h5ad,
    "anndata-zarr": open_anndata_zarr,
    "gct": open_gct,
    "series-matrix": open_series_matrix,
    "geuvadis": open_geuvadis,
    "tsv": open_table,
}
FORMATS = ("auto", *OPENERS)
HDF5_FORMATS = ("gctx", "h5ad")
FOLDER_FORMATS = ("anndata-zarr",)

__all__ = ["FORMATS", "GeneMajorSource", "SampleMajorSource", "detect_format", "is_anndata_zarr",
           "open_source"]


def detect_format(path):
    """Name the format of ``path`` from its content, not its file name.

    A folder -> ``anndata-zarr`` when it is an AnnData-Zarr store; HDF5
    signature -> ``h5ad`` with AnnData's X, obs and var, else ``gctx``; (after
    gunzip) first line ``#1.2``/``#1.3`` -> ``gct``; ``!Series_...`` -> ``series-matrix``
    (GEO); a header starting ``TargetID Gene_Symbol Chr Coord`` -> ``geuvadis``; any other
    delimited header -> ``tsv``.
    """
    if not os.path.exists(path):
        raise StreamgexError(f"{path}: no such file")
    if os.path.isdir(path):
        if is_anndata_zarr(path):
            return "anndata-zarr"
        raise StreamgexError(f"{path}: is a folder, expected an expression file or an "
                             f"AnnData-Zarr store")
    if os.path.getsize(path) == 0:
        raise StreamgexError(f"{path}: empty file")
    with open(path, "rb") as f:
        if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
            import h5py

            try:
                with h5py.File(path, "r") as handle:
                    return "h5ad" if is_anndata(handle) else "gctx"
            except OSError:
                return "gctx"  # its reader says what is wrong with it
    line = first_line(path)
    if line is None or not line.strip():
        raise StreamgexError(f"{path}: empty file" if line is None else f"{path}:1: empty first line")
    if line.split("\t")[0].strip() in ("#1.2", "#1.3"):
        return "gct"
    if is_series_matrix(line):
        return "series-matrix"
    if is_geuvadis_header(line):
        return "geuvadis"
    return "tsv"


def open_source(path, format="auto", *, samples_as=None):
    """Open ``path`` as a source of the given format (``"auto"``: detected).

    ``samples_as`` (``"rows"``/``"columns"``): a TSV/CSV table's orientation, when
    its ids cannot tell (``tables.orientation``); other formats fix theirs.
    """
    path = str(path)
    detected = detect_format(path)
    chosen = detected if format == "auto" else format
    if chosen not in OPENERS:
        raise StreamgexError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if ((chosen in HDF5_FORMATS) != (detected in HDF5_FORMATS)
            or (chosen in FOLDER_FORMATS) != (detected in FOLDER_FORMATS)):
        raise StreamgexError(
            f"{path}: --format {chosen} given but the file looks like {detected}; "
            f"use --format auto or the right format"
        )
    if chosen == "tsv":
        return open_table(path, samples_as)
    if samples_as is not None:
        raise StreamgexError(f"{path}: --samples-as applies to TSV/CSV tables; a {chosen} "
                             f"file fixes its own orientation")
    return OPENERS[chosen](path)
