"""New profiles to predict from, read in blocks of whole profiles whatever the file.

- a streamgex store: read chunk by chunk;
- GCTX: read straight from the HDF5 matrix by sample ranges (the 1.3M-profile
  L1000 file is never copied);
- GCT, TSV/CSV, GEUVADIS tables (one gene per line): transposed into a scratch
  store by ``ingest`` first, since a text table cannot be read a profile at a
  time; the scratch store is removed when the prediction is complete.
"""

from dataclasses import dataclass
from pathlib import Path

import logging
import numpy as np
import zarr

from .. import store
from ..errors import StreamgexError
from ..formats import SampleMajorSource, open_source
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
    """

    sample_ids: np.ndarray
    gene_ids: np.ndarray
    read: object
    identity: dict
    close: object = lambda: None
    scratch: Path = None


def open_profiles(path, *, scratch):
    """Open ``path`` (store, GCTX, GCT, TSV/CSV, GEUVADIS) as ``Profiles``.

    ``scratch``: where a text table is ingested first.
    """
    path = Path(path)
    if not path.exists():
        raise StreamgexError(f"{path}: no such file or store")
    if path.is_dir():
        return _from_store(path)
    source = open_source(path)
    stat = path.stat()
    identity = {"path": str(path.resolve()), "format": source.format, "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}
    if isinstance(source, SampleMajorSource):
        genes = np.array([strip_version(g) for g in source.gene_ids], dtype=str)
        return Profiles(np.asarray(source.sample_ids, dtype=str), genes, source.read, identity,
                        close=source.close)
    log.info("%s holds one gene per line: converting it to a store first (%s)", path, scratch)
    ingest(path, scratch, overwrite=True)
    profiles = _from_store(scratch)
    profiles.identity, profiles.scratch = identity, Path(scratch)
    return profiles


def _from_store(path):
    from ..steps import fingerprint

    ds = store.open_store(path)
    array = zarr.open_group(path, mode="r")[store.EXPRESSION]
    return Profiles(store.strings(ds.sample.values), store.strings(ds.gene.values),
                    lambda start, stop: array[start:stop],
                    {"store": str(Path(path).resolve()), "fingerprint": fingerprint(path)})
