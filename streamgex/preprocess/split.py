"""``streamgex split``: cluster the profiles, then train / validation / test (paper 2.4).

"The dataset is initially divided into 20 clusters. From each cluster, a
maximum of 4500 expression profiles are written onto train and 700 onto
validation. The remnants of each cluster, if any, are added to test."

Features: the landmark genes (``is_landmark``; all genes for a store without
it). They are what every model sees as input, they carry the tissue structure
the targets follow, and at ~1,000 columns instead of ~10-22k they make the
streaming k-means an order of magnitude cheaper than clustering whole
profiles, with no extra PCA pass. Inside a cluster, profiles are taken in a
seeded random order, so a cluster's train share is not its oldest series.

Each part is written pre-shuffled (a seeded permutation, gathered out of
core) so training streams contiguous chunks. Outputs: ``DIR/train``,
``DIR/val``, ``DIR/test`` stores with the original ``sample`` ids and a
``cluster`` coordinate, ``DIR/plan`` (the labels, so a resumed split does not
cluster again), and ``DIR/summary.json`` / ``DIR/clusters.csv``.
"""

import logging
from pathlib import Path

import numpy as np

from .. import locks, steps, store
from ..atomic import write_json, write_text
from ..errors import StreamgexError
from .fitted import carry_fitted
from .gather import gather_into
from .kmeans import fit_kmeans, predict_labels

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")


def assign_parts(labels, *, train_per_cluster, val_per_cluster, seed):
    """Per profile 0 (train), 1 (val) or 2 (test): per cluster, in a seeded random order,
    the first ``train_per_cluster`` to train, the next ``val_per_cluster`` to val."""
    rng = np.random.default_rng([seed, 1])
    parts = np.full(len(labels), 2, dtype=np.int8)
    for cluster in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cluster))
        parts[members[:train_per_cluster]] = 0
        parts[members[train_per_cluster:train_per_cluster + val_per_cluster]] = 1
    return parts


def check_parts(parts, parameters):
    """An error naming the options when a part would be empty: no model can be trained,
    selected or tested on it (the paper's caps take every profile of a small dataset)."""
    counts = np.bincount(parts, minlength=len(PARTS))
    empty = [part for part, count in zip(PARTS, counts) if count == 0]
    if empty:
        p = parameters
        raise StreamgexError(
            f"split: the {' and '.join(empty)} part{'s' if len(empty) > 1 else ''} would be "
            f"empty: {p['clusters']} clusters with train_per_cluster={p['train_per_cluster']} "
            f"and val_per_cluster={p['val_per_cluster']} over {len(parts):,} profiles give "
            f"train {counts[0]:,}, val {counts[1]:,}, test {counts[2]:,}; lower "
            f"train_per_cluster / val_per_cluster (the test part is what clusters hold beyond "
            f"both)")


def part_order(parts, part, seed):
    """Source rows of one part in their pre-shuffled order."""
    return np.random.default_rng([seed, 2, part]).permutation(np.flatnonzero(parts == part))


def identity(source, *, clusters=20, train_per_cluster=4500, val_per_cluster=700, seed=0):
    """``{part: the step, parameters and source its store records}`` for a split of ``source``."""
    origin = steps.source_of(source)
    parameters = {"clusters": clusters, "train_per_cluster": train_per_cluster,
                  "val_per_cluster": val_per_cluster, "seed": seed}
    return {part: {"step": "split", "parameters": {**parameters, "part": part}, "source": origin}
            for part in PARTS}


def split(source, out, *, clusters=20, train_per_cluster=4500, val_per_cluster=700, seed=0,
          overwrite=False, scheduler=None):
    """Split ``source`` into pre-shuffled train / val / test stores in the folder ``out``.

    Returns
    -------
    dict of str -> Path
        ``train``, ``val``, ``test`` stores and the ``summary`` JSON.
    """
    with locks.hold(out, what="this split"):
        return _split(source, Path(out), clusters=clusters, train_per_cluster=train_per_cluster,
                      val_per_cluster=val_per_cluster, seed=seed, overwrite=overwrite,
                      scheduler=scheduler)


def _split(source, out, *, clusters, train_per_cluster, val_per_cluster, seed, overwrite,
           scheduler):
    ds, x = steps.open_input(source)
    parameters = {"clusters": clusters, "train_per_cluster": train_per_cluster,
                  "val_per_cluster": val_per_cluster, "seed": seed}
    identities = identity(source, **parameters)
    origin = identities["train"]["source"]
    paths = {part: out / part for part in PARTS}
    result = {**paths, "summary": out / "summary.json"}
    if result["summary"].exists() and all(
        store.matches(p, **identities[part]) for part, p in paths.items()
    ):
        log.info("%s: up to date", out)
        return result
    for part, path in paths.items():  # before clustering: a refusal costs nothing
        if not overwrite and store.status(path, identities[part])[0] == "stale":
            raise StreamgexError(f"{path}: holds the {part} part of another split (other input "
                                 f"or options); pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    with steps.scheduler(scheduler):
        labels = _plan(out / "plan", x, ds, parameters, origin)
    parts = assign_parts(labels, train_per_cluster=train_per_cluster,
                         val_per_cluster=val_per_cluster, seed=seed)
    check_parts(parts, parameters)
    source_array = store.open_group(source)[store.EXPRESSION]
    for index, part in enumerate(PARTS):
        if store.matches(paths[part], **identities[part]):
            continue
        order = part_order(parts, index, seed)
        # Only a part made otherwise is replaced; a finished or half-written part of this very
        # split, and its k-means plan, are kept and resumed.
        group = store.begin(paths[part], **identities[part], overwrite=overwrite)
        if store.EXPRESSION not in group:
            carry_fitted(source, group)  # each part carries the chain's fitted steps
        gather_into(
            source_array, order, group, desc=part,
            samples=ds.sample.values[order], genes=ds.gene.values,
            coords={**steps.sample_coords(ds, order), "cluster": ("sample", labels[order]),
                    **steps.gene_coords(ds)},
            chunk_samples=source_array.chunks[0], compressors=store.STREAMED,
        )
        store.finish(group)
    _write_summary(out, _summary(labels, parts, parameters, ds))
    return result


def _plan(path, x, ds, parameters, origin):
    """Cluster labels of every profile, computed once and kept in ``DIR/plan``."""
    if store.matches(path, step="split-plan", parameters=parameters, source=origin):
        return store.open_group(path)["cluster"][:]
    if path.exists():
        store.remove(path)
    columns = np.flatnonzero(ds.is_landmark.values) if "is_landmark" in ds.coords else None
    model = fit_kmeans(x, n_clusters=parameters["clusters"], seed=parameters["seed"],
                       columns=columns, desc="clustering")
    labels = predict_labels(model, x, columns=columns)
    group = store.begin(path, step="split-plan", parameters=parameters, source=origin)
    steps.save_vector(group, "cluster", labels, "sample")
    store.finish(group, attrs={"features": "landmarks" if columns is not None else "all genes"})
    return labels


def _summary(labels, parts, parameters, ds):
    rows = []
    for cluster in np.unique(labels):
        mine = parts[labels == cluster]
        rows.append({"cluster": int(cluster), "size": int(len(mine)),
                     **{part: int((mine == i).sum()) for i, part in enumerate(PARTS)}})
    totals = {part: int((parts == i).sum()) for i, part in enumerate(PARTS)}
    return {"parameters": parameters, "profiles": int(len(labels)),
            "genes": int(ds.sizes["gene"]),
            "features": "landmarks" if "is_landmark" in ds.coords else "all genes",
            "totals": totals, "clusters": rows}


def _write_summary(out, summary):
    write_json(out / "summary.json", summary)
    lines = ["cluster,size,train,val,test"]
    lines += [f"{r['cluster']},{r['size']},{r['train']},{r['val']},{r['test']}"
              for r in summary["clusters"]]
    write_text(out / "clusters.csv", "\n".join(lines) + "\n")


def format_summary(summary):
    """The split counts as a few lines of text."""
    t = summary["totals"]
    return (f"split {summary['profiles']:,} profiles into {len(summary['clusters'])} clusters "
            f"({summary['features']}): train {t['train']:,}, val {t['val']:,}, test {t['test']:,}")
