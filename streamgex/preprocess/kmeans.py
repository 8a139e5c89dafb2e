"""Streaming k-means over the profiles of a store (scikit-learn's MiniBatchKMeans).

D-GEX de-duplicated with MiniBatchKMeans; its ``partial_fit`` is a real
out-of-core k-means: it sees one block of profiles at a time, so memory is a
block whatever the profile count. Blocks are read through Dask (on the
cluster when one is given) and only the selected columns reach this process.
"""

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from ..errors import StreamgexError
from ..progress import progress

BATCH = 1024


def _batches(x, columns):
    """Blocks of ``x[:, columns]`` of about ``BATCH`` rows, as float32 numpy."""
    selected = x[:, columns] if columns is not None else x
    step = max(BATCH // x.chunks[0][0], 1) * x.chunks[0][0]
    for start in range(0, x.shape[0], step):
        yield selected[start:start + step].compute()


def fit_kmeans(x, *, n_clusters, seed, columns=None, epochs=2, desc="k-means"):
    """Fit MiniBatchKMeans on the rows of a dask array, streaming ``epochs`` passes.

    The first batch (at least ``min(BATCH, n)`` rows) initialises the centres
    with k-means++, so ``n_clusters`` may not exceed it.
    """
    if not 1 <= n_clusters <= min(BATCH, x.shape[0]):
        raise StreamgexError(
            f"cannot make {n_clusters} clusters of {x.shape[0]} profiles "
            f"(at most {min(BATCH, x.shape[0])})"
        )
    model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3,
                            batch_size=BATCH)
    bar = progress(total=epochs * x.shape[0], desc=desc, unit="profile")
    for _ in range(epochs):
        for block in _batches(x, columns):
            model.partial_fit(block)
            bar.update(len(block))
    bar.close()
    return model


def predict_labels(model, x, *, columns=None):
    """Cluster label of every row of a dask array, ``(n,) int32``."""
    return np.concatenate([model.predict(b).astype(np.int32) for b in _batches(x, columns)])
