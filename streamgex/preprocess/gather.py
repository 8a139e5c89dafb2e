"""Out-of-core row gathering: ``out[i] = source[order[i]]`` for any order.

A random permutation of a store bigger than memory cannot read rows one by
one (each read would decode a whole chunk), and Dask's in-memory shuffle holds
pieces of every chunk at once. This is the classic two-pass external shuffle:

1. scatter: read the source chunk by chunk; send each selected row to the
   bucket of its destination (a bucket is a run of output chunks of at most
   ``budget`` bytes), at an offset fixed in advance, into a scratch array;
2. gather: load one bucket at a time, put its rows in order, write its output
   chunks.

Every source chunk is read once and every row is written twice; memory is one
bucket. Each unit of both passes is idempotent and recorded in the output
store's progress, so a killed gather resumes where it stopped.
"""

import math

import numpy as np
from zarr.codecs import BloscCodec

from .. import store
from ..progress import progress

#: Bytes of one bucket; the gather pass holds a bucket and its reordered copy.
BUDGET = 256 * 2**20
SCRATCH_ROWS = 32
SCRATCH_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


def plan_buckets(order, *, chunk_rows, row_bytes, budget=BUDGET):
    """Bucket layout of a gather.

    Returns
    -------
    bucket_rows : int
        Output rows per bucket (a multiple of ``chunk_rows``).
    by_source : (len(order),) int64
        Output positions sorted by their source row: the scatter order.
    """
    per_bucket = max(chunk_rows, (budget // max(row_bytes, 1)) // chunk_rows * chunk_rows)
    return per_bucket, np.argsort(order, kind="stable")


def gather(source, order, group, *, desc="gather", budget=None):
    """Fill ``group``'s ``expression`` with ``source[order]`` (zarr arrays, 2-D).

    ``group`` is an output store begun with ``store.begin`` whose
    ``expression`` is already defined with ``len(order)`` rows. ``budget``
    (bytes, default ``BUDGET``) bounds a bucket, hence the memory.
    """
    out = group[store.EXPRESSION]
    order = np.asarray(order, dtype=np.int64)
    m, n_genes = out.shape
    chunk_rows = out.chunks[0]
    per_bucket, by_source = plan_buckets(order, chunk_rows=chunk_rows, row_bytes=4 * n_genes,
                                         budget=budget or BUDGET)
    n_buckets = math.ceil(m / per_bucket) if m else 0
    source_rows = order[by_source]  # increasing
    bucket_of = by_source // per_bucket
    # Scratch layout: bucket b holds its rows in source order.
    counts = np.bincount(bucket_of, minlength=n_buckets)
    slot = np.empty(m, dtype=np.int64)  # position of each scattered row inside its bucket
    for b in range(n_buckets):
        members = np.flatnonzero(bucket_of == b)
        slot[members] = np.arange(len(members))
    done = store.state(group)["progress"]
    if store.SCRATCH not in group:
        scratch = group.create_group(store.SCRATCH)
        for b in range(n_buckets):
            scratch.create_array(
                f"bucket{b}", shape=(int(counts[b]), n_genes), dtype="float32",
                chunks=(SCRATCH_ROWS, n_genes), compressors=[SCRATCH_COMPRESSOR],
            )
        done = {}
    scratch = group[store.SCRATCH]
    source_chunk = source.chunks[0]
    n_source_chunks = math.ceil(source.shape[0] / source_chunk)
    first = done.get("scattered", 0)
    bounds = np.searchsorted(source_rows, np.arange(n_source_chunks + 1) * source_chunk)
    bar = progress(total=n_source_chunks, initial=first, desc=f"{desc}: scatter", unit="chunk")
    for k in range(first, n_source_chunks):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            block = source[k * source_chunk:min((k + 1) * source_chunk, source.shape[0])]
            rows = block[source_rows[lo:hi] - k * source_chunk]
            for b in np.unique(bucket_of[lo:hi]):
                mine = bucket_of[lo:hi] == b
                positions = slot[lo:hi][mine]  # consecutive: source order within the bucket
                scratch[f"bucket{b}"][positions[0]:positions[-1] + 1] = rows[mine]
        store.set_progress(group, phase="scatter", scattered=k + 1)
        bar.update(1)
    bar.close()
    first = done.get("gathered", 0) if done.get("phase") == "gather" else 0
    bar = progress(total=n_buckets, initial=first, desc=f"{desc}: gather", unit="bucket")
    for b in range(first, n_buckets):
        start, stop = b * per_bucket, min((b + 1) * per_bucket, m)
        rows = scratch[f"bucket{b}"][:]
        block = np.empty((stop - start, n_genes), dtype=np.float32)
        block[by_source[bucket_of == b] - start] = rows
        out[start:stop] = block
        store.set_progress(group, phase="gather", scattered=n_source_chunks, gathered=b + 1)
        bar.update(1)
    bar.close()


def gather_into(source, order, group, *, desc="gather", **expression):
    """Create ``group``'s ``expression`` (``store.define_expression(**expression)``,
    first run only) and fill it with ``source[order]``, resumably."""
    if store.EXPRESSION not in group:
        store.define_expression(group, **expression)
    gather(source, order, group, desc=desc)
