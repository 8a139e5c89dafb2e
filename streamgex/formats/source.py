"""The two shapes a raw expression file comes in, as ingest sees them."""

from dataclasses import dataclass, field

import numpy as np

from .text import TableLayout


def decoded(values, *, strip=False):
    """Stored strings as an object array of ``str``: HDF5's bytes decoded as UTF-8, numpy 2
    strings (zarr 3) and numbers written out; ``strip``: without surrounding blanks (GCTX's
    fixed-width ids)."""
    values = np.asarray(values)
    if values.dtype.kind not in "SOTU":
        return values.astype(str).astype(object)
    text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]
    return np.array([t.strip() for t in text] if strip else text, dtype=object)


@dataclass(frozen=True)
class GeneMajorSource:
    """A text table with one gene per line (GCT, GEUVADIS, TSV/CSV).

    Attributes
    ----------
    format : str
        Format name recorded in the store.
    layout : TableLayout
        Where the ids and numbers are.
    meta_names : list of str or None
        For each leading field of a row, the gene coordinate it becomes
        (None: dropped); the first field is always the gene id.
    nonnegative : bool
        Values are RPKM-like and must not be negative.
    sample_fields : dict of str -> sequence of str
        Per-sample fields of the header (a series matrix's ``sample_title``, ...,
        GCT 1.3's column metadata), stored by ingest as sample coordinates.
    platform : str or None
        The array platform every sample was measured on (GEO's ``GPL570``), where the
        file says: files of several platforms never go into one store.
    """

    format: str
    layout: TableLayout
    meta_names: list
    nonnegative: bool = False
    sample_fields: dict = field(default_factory=dict)
    platform: str = None

    @property
    def path(self):
        return self.layout.path

    @property
    def sample_ids(self):
        return self.layout.sample_ids


@dataclass
class SampleMajorSource:
    """A matrix stored one sample per row, read by row ranges (GCTX).

    Attributes
    ----------
    format, path : str
    sample_ids, gene_ids : numpy.ndarray of str
    gene_coords : dict of str -> numpy.ndarray
        Per-gene coordinates besides the id (``gene_symbol``, ...), kept by ingest.
    gene_fields : dict of str -> numpy.ndarray of str
        Every per-gene field of the file's row metadata under its own name
        (``pr_gene_symbol``, ``pr_gene_id``, ...): what ``predict --genes-by``
        can match by.
    sample_fields : dict of str -> numpy.ndarray of str
        Every per-sample field of the file's column metadata (``cell_id``,
        ``pert_iname``, ...): what ``predict`` carries to its output.
    read : callable
        ``read(start, stop) -> (stop - start, n_genes) float32``.
    position : callable
        ``position(sample_index, gene_index) -> str``: the file and the cell.
    gene_position : callable
        ``gene_position(gene_index) -> str``: where a gene id is in the file.
    close : callable
    """

    format: str
    path: str
    sample_ids: np.ndarray
    gene_ids: np.ndarray
    read: object
    position: object
    gene_position: object
    close: object = lambda: None
    gene_coords: dict = field(default_factory=dict)
    gene_fields: dict = field(default_factory=dict)
    sample_fields: dict = field(default_factory=dict)
