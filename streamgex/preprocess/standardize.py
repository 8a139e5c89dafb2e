"""``streamgex standardize``: per-gene ``(x - mean) / (std + 1e-3)``.

D-GEX step 4 (FACTS.md). The statistics come from this store or from another
(``stats_from``: 1000G is standardized with GEO's statistics); they are saved
as the output's ``gene_mean`` and ``gene_std`` coordinates, so ``predict``
can re-apply them. ``std`` is the population standard deviation (``ddof=0``),
accumulated in float64.
"""

import dask
import numpy as np

from .. import steps
from ..errors import StreamgexError
from .fitted import FittedStep, run_step

EPSILON = 1e-3


def standardize_block(block, mean, std):
    """``(n, g) float32`` -> ``(block - mean) / (std + 1e-3)`` as float32."""
    return ((block - mean) / (std + EPSILON)).astype(np.float32)


def learn_stats(x):
    """Per-gene mean and population std of a dask array, as float64 numpy arrays."""
    x64 = x.astype(np.float64)
    return dask.compute(x64.mean(axis=0), x64.std(axis=0))


def stats_of(path, genes):
    """Statistics for ``genes`` from a store: its saved ones if standardized, else learned."""
    ds, x = steps.open_input(path)
    index = {str(g): i for i, g in enumerate(ds.gene.values)}
    missing = [g for g in genes if str(g) not in index]
    if missing:
        raise StreamgexError(
            f"{path}: lacks {len(missing)} genes of the store to standardize (first: "
            f"{', '.join(map(str, missing[:5]))}); both stores need the same genes step"
        )
    if "gene_mean" in ds.coords and "gene_std" in ds.coords:
        mean, std = ds.gene_mean.values, ds.gene_std.values
    else:
        mean, std = learn_stats(x)
    order = np.array([index[str(g)] for g in genes])
    return mean[order], std[order]


class Standardize(FittedStep):
    """The fitted step: per-gene ``mean_`` and ``std_`` ``(n_genes,) float64``, learned
    here or taken from the store ``stats_from`` (matched by gene key)."""

    name = "standardize"
    units = "z-score"
    state = ("mean_", "std_")

    def __init__(self, stats_from=None):
        self.stats_from = stats_from

    def parameters(self):
        return {"stats_from": steps.source_of(self.stats_from) if self.stats_from else None,
                "epsilon": EPSILON}

    @classmethod
    def from_parameters(cls, parameters):
        return cls()

    def fit(self, ds, x):
        if self.stats_from:
            self.mean_, self.std_ = stats_of(self.stats_from, ds.gene.values)
        else:
            self.mean_, self.std_ = learn_stats(x)
        return self

    def layout(self, ds):
        return {"samples": ds.sample.values, "genes": ds.gene.values,
                "coords": {**steps.sample_coords(ds),
                           **steps.gene_coords(ds, skip=("gene_mean", "gene_std")),
                           "gene_mean": ("gene", self.mean_), "gene_std": ("gene", self.std_)}}

    def transform(self, block):
        return standardize_block(block, self.mean_, self.std_)


def standardize(source, out, *, stats_from=None, overwrite=False, scheduler=None):
    """Standardize every gene of ``source``; see the module doc.

    Returns
    -------
    Path
        The output store, with ``gene_mean`` and ``gene_std`` ``(n_genes,) float64``
        (and the fitted step under ``fitted/standardize``).
    """
    return run_step(Standardize(stats_from), source, out, overwrite=overwrite,
                    scheduler=scheduler)
