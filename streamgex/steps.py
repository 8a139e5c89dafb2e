"""The thin Dask + Zarr layer the preprocessing steps run on.

A step's rule is a numpy function of one chunk of profiles (or of summary
statistics) in its own module; this layer opens the input store as a Dask
array, learns what needs a pass over the data with Dask reductions, and writes
the output store in waves of chunks, recording each wave so that a killed step
resumes where it stopped. The same graph runs on Dask's local threads or, with
``scheduler="tcp://..."``, on a ``dask.distributed`` cluster whose workers
share the store's filesystem.
"""

import contextlib
import hashlib
import json
import math
import os

import dask
import dask.array as da
import numpy as np

from . import storage, store
from .errors import StreamgexError
from .progress import progress


@contextlib.contextmanager
def scheduler(address=None):
    """Run the Dask work inside on ``address`` (a distributed scheduler; default
    ``$DASK_SCHEDULER_ADDRESS``) or local threads.

    On connecting, every worker must import this very streamgex version (a worker that
    cannot would leave the step waiting for ever): an error names each one that does not.
    """
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS", "")
    if not address:
        with dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
            yield
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise StreamgexError("--scheduler needs the 'distributed' package") from None
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise StreamgexError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        check_workers(client, address)
        yield


def current_client():
    """The distributed client the work inside ``scheduler`` runs on, or None for threads
    (also when the caller has a client of its own but the work runs on local threads)."""
    if dask.config.get("scheduler", None) == "threads":
        return None
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def threads():
    """Worker threads of the scheduler the work runs on: a cluster's, else this machine's."""
    client = current_client()
    return sum(client.nthreads().values()) if client else (os.cpu_count() or 1)


def check_workers(client, address):
    """An error unless the cluster has workers and each runs this streamgex version."""
    from . import __version__

    found = client.run(worker_version, on_error="return")
    if not found:
        raise StreamgexError(f"the Dask scheduler at {address} has no workers; start some with "
                             f"`dask worker {address}`")
    wrong = {worker: version for worker, version in found.items() if version != __version__}
    if wrong:
        raise StreamgexError(
            f"Dask workers at {address} cannot run streamgex {__version__}: " + "; ".join(
                f"{worker} has {version}" if isinstance(version, str)
                else f"{worker} cannot import it ({type(version).__name__}: {version})"
                for worker, version in sorted(wrong.items()))
            + "; install this streamgex in the workers' environment")


def worker_version():
    """The streamgex version a worker imports (run there by ``check_workers``)."""
    import streamgex

    return streamgex.__version__


#: A raw file's place on disk, or an object's ETag (``ingest`` records them to notice a
#: changed file without reading it): not part of what a store holds, so a store ingested
#: from a bucket has the fingerprint of one ingested from a local copy of the same bytes.
FILE_STAT_KEYS = ("mtime_ns", "ctime_ns", "inode", "etag")


def fingerprint(path):
    """A short hash of a complete store's identity: its step, parameters and the content of
    its source (input fingerprints, a raw file's size and SHA-256; not paths or file times).

    It changes whenever the store is rebuilt from other data or with other
    options, so an output can tell whether its input is still the one it was
    made from; a moved workdir keeps its fingerprints.
    """
    group = store.open_group(path)
    source = _without_stats(store.content(dict(group.attrs.get("source") or {})))
    identity = {store.ATTR: store.content(group.attrs.get(store.ATTR)), "source": source}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_stats(source):
    """A ``source`` record without its files' ``FILE_STAT_KEYS`` (one file's at the top
    level; several files' in each entry of ``files``)."""
    kept = {key: value for key, value in source.items() if key not in FILE_STAT_KEYS}
    if isinstance(kept.get("files"), list):
        kept["files"] = [{key: value for key, value in entry.items()
                          if key not in FILE_STAT_KEYS} for entry in kept["files"]]
    return kept


def source_of(path):
    """The ``source`` attrs of a store made from the store at ``path``."""
    store.open_store(path)  # refuses a missing or partial input
    return {"store": storage.resolved(path), "fingerprint": fingerprint(path)}


def open_input(path):
    """A complete store as ``(dataset, expression as a dask array chunked like the store)``."""
    ds = store.open_store(path)
    array = store.open_group(path)[store.EXPRESSION]
    return ds, da.from_zarr(array)


def coords_along(ds, dim, *, skip=()):
    """The non-index coordinates of ``ds`` along ``dim`` as ``{name: values}``."""
    return {
        name: coord.values
        for name, coord in ds.coords.items()
        if coord.dims == (dim,) and name != dim and name not in skip
    }


def write_rows(group, x, *, desc, wave=None):
    """Compute ``x`` (dask, ``(n_samples, n_genes)``) into ``expression``, wave by wave.

    Each wave is a few chunks computed in parallel and stored by the workers;
    the progress attrs then record it, so a killed step recomputes at most one
    wave.
    """
    array = group[store.EXPRESSION]
    size = array.chunks[0]
    n_samples = array.shape[0]
    if x.chunks[0][0] != size or x.numblocks[1] != 1:
        x = x.rechunk((size, -1))
    n_chunks = math.ceil(n_samples / size) if n_samples else 0
    wave = wave or max(4, 2 * threads())  # a cluster's workers, not this machine's cores
    first = store.state(group)["progress"].get("chunks_done", 0)
    bar = progress(total=n_samples, initial=min(first * size, n_samples), desc=desc,
                   unit="sample")
    for k0 in range(first, n_chunks, wave):
        k1 = min(k0 + wave, n_chunks)
        r0, r1 = k0 * size, min(k1 * size, n_samples)
        da.store(x[r0:r1], array, regions=(slice(r0, r1), slice(None)), lock=False)
        store.set_progress(group, phase="write", chunks_done=k1)
        bar.update(r1 - r0)
    bar.close()


def sample_coords(ds, order=None):
    """``define_expression`` coords for the per-sample coordinates of ``ds``
    (of its samples ``order``, when a step reorders or selects them)."""
    index = slice(None) if order is None else order
    return {name: ("sample", values[index])
            for name, values in coords_along(ds, "sample").items()}


def gene_coords(ds, *, skip=()):
    """``define_expression`` coords for the per-gene coordinates of ``ds``."""
    return {name: ("gene", v) for name, v in coords_along(ds, "gene", skip=skip).items()}


def save_vector(group, name, values, dim):
    """Store a fitted 1-D array (a reference, statistics) inside the output store."""
    values = np.asarray(values)
    array = group.create_array(name, shape=values.shape, dtype=values.dtype,
                               dimension_names=(dim,), overwrite=True)
    array[:] = values
