"""``streamgex pca``: how many components hold the targets' variance (paper Figure 1).

The paper motivates compressing the targets by their PCA: on real GEO data
about 500 components hold ~99% of the variance. This computes the explained-
variance curve out of core with Dask's randomized SVD
(``dask.array.linalg.svd_compressed``, tall-and-skinny QR over sample chunks)
on the centred genes, divides each component's variance ``s_i^2 / n`` by the
exact total variance (the sum of per-gene variances, population form), and
writes ``explained_variance.csv``, ``explained_variance.png`` and
``summary.json`` (components reaching 90/95/99%) into the output folder.
"""

import logging
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from .. import steps
from ..atomic import atomic_path, read_json, write_json, write_text
from ..errors import StreamgexError

log = logging.getLogger(__name__)

GENES = ("targets", "landmarks", "all")
LEVELS = (0.90, 0.95, 0.99)
DEFAULT_COMPONENTS = 1000


def explained_variance(x, *, components, seed=0):
    """Explained-variance ratios of the first ``components`` components of dask ``x``."""
    x64 = x.astype(np.float64)
    mean, var = dask.compute(x64.mean(axis=0), x64.var(axis=0))
    # float64: in float32 the power iterations lose the small components (5% off
    # at 2 iterations, far worse at 4, on a 300 x 30 test matrix).
    _, s, _ = da.linalg.svd_compressed(x64 - mean, k=components, n_power_iter=2, seed=seed)
    s = s.compute().astype(np.float64)
    return (s**2 / x.shape[0]) / var.sum()


def components_for(ratios, level):
    """Components needed for a cumulative ratio of ``level``, or None beyond those computed."""
    reached = np.flatnonzero(np.cumsum(ratios) >= level)
    return int(reached[0]) + 1 if len(reached) else None


def _input(source, genes, components):
    """``(x, k, origin)``: the genes' Dask array, the components to compute, the source."""
    if genes not in GENES:
        raise StreamgexError(f"--genes must be one of {', '.join(GENES)}")
    ds, x = steps.open_input(source)
    if genes != "all":
        if "is_landmark" not in ds.coords:
            raise StreamgexError(f"{source}: no is_landmark coordinate; run `streamgex genes` "
                                 f"first or pass --genes all")
        mask = ds.is_landmark.values == (genes == "landmarks")
        x = x[:, np.flatnonzero(mask)]
    k = min(components or DEFAULT_COMPONENTS, x.shape[0] - 1, x.shape[1] - 1)
    if k < 1:
        raise StreamgexError(f"{source}: too few profiles or genes for a PCA")
    return x, k, steps.source_of(source)


def current(source, out, *, genes="targets", components=None, seed=0):
    """The saved summary in ``out`` if it was made from this source with these options, else None."""
    if not (Path(out) / "summary.json").exists():
        return None
    _, k, origin = _input(source, genes, components)
    return _current(out, source=origin, genes=genes, components=k, seed=seed)


def _current(out, **identity):
    previous = Path(out) / "summary.json"
    if not previous.exists():
        return None
    old = read_json(previous)
    return old if all(old.get(key) == value for key, value in identity.items()) else None


def pca(source, out, *, genes="targets", components=None, seed=0, scheduler=None):
    """Write the explained-variance curve of ``source``'s ``genes`` into the folder ``out``.

    Returns
    -------
    dict
        The summary: components computed, and components for 90/95/99%.
    """
    x, k, origin = _input(source, genes, components)
    out = Path(out)
    old = _current(out, source=origin, genes=genes, components=k, seed=seed)
    if old is not None:
        log.info("%s: up to date", out)
        return old
    out.mkdir(parents=True, exist_ok=True)
    with steps.scheduler(scheduler):
        ratios = explained_variance(x, components=k, seed=seed)
    summary = {
        "source": origin, "genes": genes, "shape": list(x.shape), "seed": seed,
        "components": k, "explained": float(ratios.sum()),
        **{f"components_{round(level * 100)}": components_for(ratios, level) for level in LEVELS},
    }
    cumulative = np.cumsum(ratios)
    lines = ["component,explained_variance_ratio,cumulative"]
    lines += [f"{i + 1},{r:.8g},{c:.8g}" for i, (r, c) in enumerate(zip(ratios, cumulative))]
    write_text(out / "explained_variance.csv", "\n".join(lines) + "\n")
    _plot(out / "explained_variance.png", cumulative, summary)
    write_json(out / "summary.json", summary)
    return summary


def format_summary(summary):
    levels = ", ".join(
        f"{round(level * 100)}%: {summary[f'components_{round(level * 100)}'] or '>' + str(summary['components'])}"
        for level in LEVELS
    )
    return (f"PCA of {summary['shape'][1]:,} {summary['genes']} over {summary['shape'][0]:,} "
            f"profiles: components for {levels}")


def _plot(path, cumulative, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(np.arange(1, len(cumulative) + 1), cumulative * 100, color="tab:blue")
    for level in LEVELS:
        n = summary[f"components_{round(level * 100)}"]
        ax.axhline(level * 100, color="grey", linewidth=0.6, linestyle="--")
        if n:
            ax.annotate(f"{n} for {round(level * 100)}%", (n, level * 100),
                        textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlabel("number of principal components")
    ax.set_ylabel("cumulative explained variance (%)")
    ax.set_title(f"PCA of the {summary['genes']} ({summary['shape'][1]:,} genes, "
                 f"{summary['shape'][0]:,} profiles)", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
