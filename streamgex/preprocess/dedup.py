"""``streamgex dedup``: D-GEX's de-duplication of near-identical profiles.

D-GEX (FACTS.md, preprocessing step 1): MiniBatchKMeans with K=100 over the
profiles; inside each cluster, taking profiles in their store order, drop a
profile whose Euclidean distance to an earlier *kept* profile is below 1.0.

Out of core: the k-means streams (``kmeans.py``); the profiles are then
gathered cluster by cluster into a scratch copy (``gather.py``), and each
cluster is scanned in blocks of ``BLOCK`` profiles, each block compared with
the kept profiles of the blocks before it, re-read block by block, so memory
is two blocks even for a cluster larger than RAM. Distances are computed in
float64 on profiles centred on their cluster's centre, so the threshold test
is exact to far below any distance that matters.

The output keeps the surviving profiles in their original order, plus
``input_cluster`` and ``input_kept`` over the ``input_sample`` dimension (the
labels and the decision for every input profile).
"""

import numpy as np

from .. import steps, storage, store
from ..progress import progress
from .gather import gather_into
from .kmeans import fit_kmeans, predict_labels

BLOCK = 1024


def greedy_keep(block, close_to_kept):
    """Greedy rule inside one block: ``(n, n)`` closeness -> kept flags.

    ``close_to_kept`` marks rows already within the distance of a kept row of
    an earlier block; ``block[i, j]`` marks rows ``i`` and ``j`` within the
    distance of each other.
    """
    dropped = close_to_kept.copy()
    for i in range(len(dropped)):
        if not dropped[i]:
            dropped[i + 1:] |= block[i, i + 1:]
    return ~dropped


def _sq_distances(a, b):
    a2 = np.einsum("ij,ij->i", a, a)
    b2 = np.einsum("ij,ij->i", b, b)
    return a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)


def scan_cluster(rows, start, stop, centre, distance):
    """Kept flags for the profiles ``rows[start:stop]`` (one cluster, in order)."""
    limit = distance**2
    kept = np.zeros(stop - start, dtype=bool)
    for b0 in range(start, stop, BLOCK):
        b1 = min(b0 + BLOCK, stop)
        block = rows[b0:b1].astype(np.float64) - centre
        near_kept = np.zeros(b1 - b0, dtype=bool)
        for p0 in range(start, b0, BLOCK):
            earlier = kept[p0 - start:min(p0 + BLOCK, b0) - start]
            if earlier.any():
                previous = rows[p0:p0 + len(earlier)].astype(np.float64)[earlier] - centre
                near_kept |= (_sq_distances(block, previous) < limit).any(axis=1)
        kept[b0 - start:b1 - start] = greedy_keep(_sq_distances(block, block) < limit, near_kept)
    return kept


def identity(source, *, clusters=100, distance=1.0, seed=0):
    """The step, parameters and source a dedup of ``source`` records (``store.begin``)."""
    return {"step": "dedup", "parameters": {"clusters": clusters, "distance": distance,
                                            "seed": seed},
            "source": steps.source_of(source)}


def dedup(source, out, *, clusters=100, distance=1.0, seed=0, overwrite=False, scheduler=None):
    """Drop near-duplicate profiles of ``source`` (D-GEX's rule); see the module doc.

    Returns
    -------
    Path
        The output store; ``attrs["dedup"]["dropped"]`` counts the dropped profiles.
    """
    ds, x = steps.open_input(source)
    with steps.scheduler(scheduler):  # connected before any output exists
        group = store.begin(out, **identity(source, clusters=clusters, distance=distance,
                                            seed=seed), overwrite=overwrite)
        if group is None:
            return out
        if "input_cluster" not in group:
            model = fit_kmeans(x, n_clusters=clusters, seed=seed, desc="dedup k-means")
            labels = predict_labels(model, x)
    n = x.shape[0]
    if "input_cluster" not in group:
        steps.save_vector(group, "centre", model.cluster_centers_.ravel(), "centre_value")
        steps.save_vector(group, "input_cluster", labels, "input_sample")
    labels = group["input_cluster"][:]
    centres = group["centre"][:].reshape(clusters, -1)
    source_array = store.open_group(source)[store.EXPRESSION]
    by_cluster = np.argsort(labels, kind="stable")
    kept = _scan(group, source_array, labels, by_cluster, centres, distance)
    order = np.flatnonzero(kept)
    gather_into(
        source_array, order, group, desc="dedup",
        samples=ds.sample.values[order], genes=ds.gene.values,
        coords={**steps.sample_coords(ds, order), **steps.gene_coords(ds)},
        chunk_samples=source_array.chunks[0],
    )
    dropped = int(n - len(order))
    store.finish(group, attrs={"dedup": {"dropped": dropped, "kept": int(len(order))}})
    return out


def _scan(group, source_array, labels, by_cluster, centres, distance):
    """Kept flags of every input profile, scanning a cluster-sorted scratch copy."""
    if "input_kept" in group:
        return group["input_kept"][:]
    sorted_path = storage.join(store.location(group), "sorted")
    if not store.matches(sorted_path, step="dedup-sort", parameters={}, source={}):
        sorted_group = store.begin(sorted_path, step="dedup-sort", parameters={}, source={})
        gather_into(source_array, by_cluster, sorted_group, desc="dedup sort",
                    samples=np.arange(len(labels)).astype(str),
                    genes=np.arange(source_array.shape[1]).astype(str),
                    chunk_samples=source_array.chunks[0])
        store.finish(sorted_group)
    rows = store.open_group(sorted_path)[store.EXPRESSION]
    counts = np.bincount(labels, minlength=len(centres))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    kept_sorted = np.zeros(len(labels), dtype=bool)
    bar = progress(total=len(labels), desc="dedup scan", unit="profile")
    for cluster in range(len(centres)):
        start, stop = bounds[cluster], bounds[cluster + 1]
        if stop > start:
            kept_sorted[start:stop] = scan_cluster(rows, start, stop, centres[cluster], distance)
        bar.update(stop - start)
    bar.close()
    kept = np.empty_like(kept_sorted)
    kept[by_cluster] = kept_sorted
    steps.save_vector(group, "input_kept", kept, "input_sample")
    store.remove(sorted_path)
    return kept
