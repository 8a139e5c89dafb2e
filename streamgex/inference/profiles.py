"""New profiles to predict from, read in blocks of whole profiles whatever the file.

- a streamgex store: read chunk by chunk;
- GCTX: read straight from the HDF5 matrix by sample ranges (the 1.3M-profile
  L1000 file is never copied);
- GCT, TSV/CSV, GEUVADIS tables (one gene per line): transposed into a scratch
  store by ``ingest`` first, since a text table cannot be read a profile at a
  time; the scratch store is removed when the prediction is complete.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import storage, store
from ..digest import file_stat
from ..errors import StreamgexError
from ..formats import SampleMajorSource, detect_format, is_anndata_zarr, open_source
from ..ingest import ingest, strip_version

log = logging.getLogger(__name__)


@dataclass
class Profiles:
    """Profiles as blocks: ``read(start, stop) -> (stop - start, n_genes) float32``.

    Attributes
    ----------
    sample_ids, gene_ids : numpy.ndarray of str
        Gene ids with Ensembl versions stripped, as ingest stores them.
    identity : dict
        What the input is (path, size, mtime or store fingerprint).
    gene_fields : dict of str -> numpy.ndarray of str
        Per-gene fields the rows can also be matched by (``geneids``): a GCTX's
        row metadata, a store's gene coordinates.
    sample_fields : dict of str -> numpy.ndarray of str
        Per-sample fields (a GCTX's column metadata, a store's sample
        coordinates), carried to the predictions.
    """

    sample_ids: np.ndarray
    gene_ids: np.ndarray
    read: object
    identity: dict
    close: object = lambda: None
    scratch: Path = None
    gene_fields: dict = field(default_factory=dict)
    sample_fields: dict = field(default_factory=dict)


def open_profiles(path, *, scratch, samples_as=None):
    """Open ``path`` (store, GCTX, GCT, TSV/CSV, GEUVADIS) as ``Profiles``.

    ``scratch``: where a text table is ingested first; ``samples_as``: a TSV/CSV
    table's orientation where its ids cannot tell.
    """
    if storage.is_url(str(path)):  # a store read in place, a file through a local copy
        if storage.place(str(path)).has("zarr.json"):
            return _from_store(str(path))
        profiles = open_profiles(storage.fetch(str(path)), scratch=scratch,
                                 samples_as=samples_as)
        profiles.identity = source_identity(str(path), profiles.identity["format"])
        return profiles
    path = Path(path)
    if not path.exists():
        raise StreamgexError(f"{path}: no such file or store")
    if path.is_dir() and not is_anndata_zarr(path):
        return _from_store(path)
    source = open_source(path, samples_as=samples_as)
    identity = source_identity(path, source.format)
    if isinstance(source, SampleMajorSource):
        genes = np.array([strip_version(g) for g in source.gene_ids], dtype=str)
        return Profiles(np.asarray(source.sample_ids, dtype=str), genes, source.read, identity,
                        close=source.close, gene_fields=source.gene_fields,
                        sample_fields=source.sample_fields)
    log.info("%s holds one gene per line: converting it to a store first (%s)", path, scratch)
    # missing cells kept as NaN: predict refuses only those of genes the model uses
    ingest(path, scratch, samples_as=samples_as, allow_missing="nan", overwrite=True)
    profiles = _from_store(scratch)
    profiles.identity, profiles.scratch = identity, Path(scratch)
    return profiles


def source_identity(path, format=None):
    """What an input is, as ``Profiles.identity`` records it: a store's content fingerprint;
    a file's (or an AnnData-Zarr folder's) path, format, size and time (its format read
    from its content when not given)."""
    from ..steps import fingerprint

    if storage.is_url(str(path)):
        if storage.place(str(path)).has("zarr.json"):
            store.open_store(str(path))
            return {"store": str(path), "fingerprint": fingerprint(str(path))}
        return {"path": str(path), "format": format or detect_format(str(storage.fetch(path))),
                **storage.stat(str(path))}
    path = Path(path)
    if not path.exists():
        raise StreamgexError(f"{path}: no such file or store")
    if path.is_dir() and not is_anndata_zarr(path):
        store.open_store(path)  # refuses a missing or partial store
        return {"store": str(path.resolve()), "fingerprint": fingerprint(path)}
    stat = file_stat(path)
    return {"path": str(path.resolve()), "format": format or detect_format(str(path)),
            "size": stat["size"], "mtime_ns": stat["mtime_ns"]}


def _from_store(path):
    ds = store.open_store(path)
    array = store.open_group(path)[store.EXPRESSION]
    from ..steps import coords_along

    def fields(dim):
        return {name: store.strings(values) for name, values in coords_along(ds, dim).items()}

    return Profiles(store.strings(ds.sample.values), store.strings(ds.gene.values),
                    lambda start, stop: array[start:stop], source_identity(path),
                    gene_fields=fields("gene"), sample_fields=fields("sample"))
