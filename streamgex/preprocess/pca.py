"""``streamgex pca``: how many components hold the targets' variance (paper Figure 1).

The paper motivates compressing the targets by their PCA: on real GEO data
about 500 components hold ~99% of the variance. This computes the explained-
variance curve out of core by randomized subspace iteration on the genes' side
(Halko, Martinsson & Tropp 2011, Algorithm 4.3 applied to ``X^T X``): a
``genes x (k + 10)`` basis ``Q`` is multiplied by the centred genes' Gram
matrix pass after pass (``X^T (X Q)``, summed over chunks of profiles and
orthonormalized), and the components' variances are the eigenvalues of the
small ``Q^T X^T X Q``, summed in one more pass. Memory is a chunk and a few
``genes x (k + 10)`` matrices (0.2 GB each at 21,290 genes and 1,000
components), whatever the profile count: Dask's ``svd_compressed`` keeps
``profiles x (k + 10)`` sketches and, in one graph, every chunk it reads again
(3.18 GiB at 2,500 profiles, 6.63 at 10,000; ``tools/bench_pca.py``). Each
variance ``s_i^2 / n`` is divided by the exact total variance (the sum of
per-gene variances, population form); ``explained_variance.csv``,
``explained_variance.png`` and ``summary.json`` (components reaching
90/95/99%) go into the output folder.
"""

import logging
from pathlib import Path

import dask
import numpy as np

from .. import steps, store
from ..atomic import atomic_path, read_json, write_json, write_text
from ..errors import StreamgexError
from ..progress import progress

log = logging.getLogger(__name__)

GENES = ("targets", "landmarks", "all")
LEVELS = (0.90, 0.95, 0.99)
DEFAULT_COMPONENTS = 1000


#: Extra basis columns beyond the components asked (Halko et al.'s oversampling).
OVERSAMPLES = 10
#: Products of the basis with ``X^T X`` before the last pass: as accurate as Dask's
#: ``svd_compressed`` with two power iterations, which the curves were first made with.
PASSES = 3
#: Identity of the algorithm in ``summary.json``: a curve made otherwise is redone.
METHOD = f"gene-side subspace iteration, {PASSES} passes, {OVERSAMPLES} oversamples"


def explained_variance(x, *, components, seed=0):
    """Explained-variance ratios of the first ``components`` components of dask ``x``
    (profiles x genes); see the module doc."""
    n, genes = x.shape
    # float64: in float32 the iterations lose the small components (5% off at 2 power
    # iterations, far worse at 4, on a 300 x 30 test matrix).
    x64 = x.rechunk({1: -1}).astype(np.float64)
    mean, var = dask.compute(x64.mean(axis=0), x64.var(axis=0))
    if not var.sum() > 0:  # every gene constant (or NaN): no curve to draw, not a NaN one
        raise StreamgexError(f"the {genes:,} genes have no variance over the {n:,} profiles "
                             f"(each gene constant, or NaN values): there is nothing to explain")
    centred = x64 - mean
    q = np.random.default_rng(seed).standard_normal((genes, min(components + OVERSAMPLES, genes)))
    bar = progress(total=(PASSES + 1) * n, desc="pca", unit="profile")
    for _ in range(PASSES):
        q, _ = np.linalg.qr(_sum_over_rows(centred, _gram_times, q, bar))
    variances = np.linalg.eigvalsh(_sum_over_rows(centred, _projected_gram, q, bar))
    bar.close()
    s2 = np.clip(variances[::-1][:components], 0, None)
    return (s2 / n) / var.sum()


def _gram_times(block, q):
    return block.T @ (block @ q)


def _projected_gram(block, q):
    z = block @ q
    return z.T @ z


def _add_all(parts):
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def _sum_over_rows(x, product, q, bar):
    """``sum(product(block, q))`` over the row blocks of dask ``x``, a wave of blocks (one
    per worker thread) at a time: the partial sums in memory are one per block of a wave."""
    blocks = x.to_delayed().ravel()
    client = steps.current_client()
    wave = max(2, steps.threads())
    if client:  # sent to each worker once, not with every wave's tasks
        q = client.scatter(q, broadcast=True)
    total = None
    for start in range(0, len(blocks), wave):
        parts = [dask.delayed(product)(block, q) for block in blocks[start:start + wave]]
        (part,) = dask.compute(dask.delayed(_add_all)(parts))
        total = part if total is None else np.add(total, part, out=total)
        bar.update(sum(x.chunks[0][start:start + wave]))
    return total


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
    return _current(out, source=origin, genes=genes, components=k, seed=seed, method=METHOD)


def _current(out, **identity):
    previous = Path(out) / "summary.json"
    if not previous.exists():
        return None
    old = read_json(previous)
    same = all(store.content(old.get(key)) == store.content(value)
               for key, value in identity.items())
    return old if same else None


def pca(source, out, *, genes="targets", components=None, seed=0, scheduler=None):
    """Write the explained-variance curve of ``source``'s ``genes`` into the folder ``out``.

    Returns
    -------
    dict
        The summary: components computed, and components for 90/95/99%.
    """
    x, k, origin = _input(source, genes, components)
    out = Path(out)
    old = _current(out, source=origin, genes=genes, components=k, seed=seed, method=METHOD)
    if old is not None:
        log.info("%s: up to date", out)
        return old
    out.mkdir(parents=True, exist_ok=True)
    with steps.scheduler(scheduler):
        try:
            ratios = explained_variance(x, components=k, seed=seed)
        except StreamgexError as exc:
            raise StreamgexError(f"{source}: {exc}") from None
    summary = {
        "source": origin, "genes": genes, "shape": list(x.shape), "seed": seed,
        "method": METHOD, "components": k, "explained": float(ratios.sum()),
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
