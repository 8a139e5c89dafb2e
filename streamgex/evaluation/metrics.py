"""Error measures of the paper (section 3.2), as pure numpy on accumulated sums.

The paper and D-GEX score a model by the mean absolute error in standardized
units (z-scores), over every target gene and test profile. Its tables'
"total" errors are *sums* of the per-partition MAEs (2 partitions of 9,520
cross-platform targets, 5 of 21,290 full GEO targets; FACTS.md): both the
true mean and that sum are reported, labelled.
"""

import numpy as np


class AbsoluteErrors:
    """Per-gene sums of absolute errors, accumulated batch by batch (float64).

    Memory is one ``(n_genes,)`` vector whatever the number of profiles.
    """

    def __init__(self, n_genes):
        self.sums = np.zeros(n_genes, dtype=np.float64)
        self.count = 0

    def add(self, predicted, true):
        """Add a batch: ``(n, n_genes)`` predictions and true values."""
        self.sums += np.abs(np.asarray(predicted, np.float64) - true).sum(axis=0)
        self.count += len(true)

    @property
    def per_gene(self):
        """``(n_genes,)`` MAE of each gene over the profiles seen."""
        return self.sums / max(self.count, 1)


def summarize(per_gene, partitions, *, shared=None):
    """The figures reported for one model on one dataset.

    Parameters
    ----------
    per_gene : (n_genes,) float
        MAE of each target gene.
    partitions : list of (start, stop)
        Target ranges the paper sums over.
    shared : (n_genes,) bool, optional
        Targets that are also landmarks (the 445 genes in both maps).

    Returns
    -------
    dict
        ``mae`` (mean over all genes and profiles), ``partition_mae``, the
        paper's ``sum_over_partitions``, and ``mae_without_shared`` when
        ``shared`` is given.
    """
    per_gene = np.asarray(per_gene, dtype=np.float64)
    parts = [float(per_gene[a:b].mean()) for a, b in partitions]
    result = {"mae": float(per_gene.mean()), "partition_mae": parts,
              "sum_over_partitions": float(sum(parts))}
    if shared is not None:
        shared = np.asarray(shared, dtype=bool)
        result["shared_genes"] = int(shared.sum())
        result["mae_without_shared"] = float(per_gene[~shared].mean()) if (~shared).any() else None
    return result


def compare(per_gene_a, per_gene_b):
    """How model A does against model B on the same genes (paper Figure 4; D-GEX's 99.97%).

    Returns
    -------
    dict
        ``relative_improvement``: (MAE_B - MAE_A) / MAE_B, positive when A is
        better; ``share_a_better``: fraction of genes where A's MAE is lower;
        ``genes``: how many were compared.
    """
    a = np.asarray(per_gene_a, dtype=np.float64)
    b = np.asarray(per_gene_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"per-gene errors of different lengths: {a.shape} vs {b.shape}")
    return {"relative_improvement": float((b.mean() - a.mean()) / b.mean()),
            "share_a_better": float((a < b).mean()), "genes": int(a.size)}


#: Per-gene correlation thresholds whose shares are reported: CMap's "well-inferred
#: genes" idea (Subramanian et al. 2017 call a gene well inferred at r > 0.95 of its
#: self-correlation; these are plain r cut-offs, comparable across models).
THRESHOLDS = (0.5, 0.7, 0.9)


def pearson_columns(a, b):
    """Pearson r of each column of ``a`` with the same column of ``b`` (NaN where constant)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / denominator, np.nan)


def pearson_rows(a, b):
    """Pearson r of each row (profile) of ``a`` with the same row of ``b``."""
    return pearson_columns(np.asarray(a).T, np.asarray(b).T)


def spearman_columns(a, b):
    """Spearman rho per column: Pearson r of the columns' ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    return pearson_columns(rankdata(a, axis=0), rankdata(b, axis=0))


def correlation_summary(gene_pearson, gene_spearman, profile_pearson):
    """The correlation figures of one model on one dataset (NaN genes, constant in the data or
    the prediction, are left out and counted).

    Returns
    -------
    dict
        ``gene_pearson_median`` / ``_mean``, ``gene_spearman_median``,
        ``profile_pearson_median`` / ``_mean``, ``share_r_above`` (per
        threshold in ``THRESHOLDS``: the share of all targets whose Pearson r
        exceeds it; an undefined r counts as not above), ``undefined_genes``.
    """
    r = np.asarray(gene_pearson, np.float64)
    rho = np.asarray(gene_spearman, np.float64)
    p = np.asarray(profile_pearson, np.float64)
    defined = ~np.isnan(r)

    def stat(f, x):
        x = x[~np.isnan(x)]
        return float(f(x)) if x.size else None

    return {"gene_pearson_median": stat(np.median, r), "gene_pearson_mean": stat(np.mean, r),
            "gene_spearman_median": stat(np.median, rho),
            "profile_pearson_median": stat(np.median, p), "profile_pearson_mean": stat(np.mean, p),
            "share_r_above": {str(t): float((np.where(defined, r, -np.inf) > t).mean())
                              for t in THRESHOLDS},
            "undefined_genes": int((~defined).sum())}
