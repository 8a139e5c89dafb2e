"""``streamgex normalize``: per-profile quantile normalization onto a reference.

Each profile's values are replaced, rank by rank, by a reference distribution
(FACTS.md, D-GEX step 3; paper section 2.1):

- ``mean`` (D-GEX): the reference is the mean over profiles of the sorted
  profile vectors, learned from this store or from another
  (``reference_from``: how 1000G is put onto GEO's reference);
- ``normal`` (the paper's text): standard normal quantiles
  ``Phi^-1((i + 0.5) / n)``.

Ties: values equal within a profile share one value, the mean of the
reference over the ranks they occupy (so ties are treated symmetrically and
the profile's mean is preserved).

A reference of another length (``reference_from`` a store with other genes):
it is read as a quantile function, the value at rank ``i`` of ``m`` sitting at
probability ``(i + 0.5) / m``, and linearly interpolated at ``(j + 0.5) / n``
for rank ``j`` of ``n`` (constant beyond its end points).

The fitted step (``QuantileNormalize``) is saved with the output store and
carried forward by later steps, so ``predict`` loads it to normalize new
profiles; the reference is also the store's ``reference`` (dimension ``rank``).
"""

from statistics import NormalDist

import numpy as np

from .. import steps
from ..errors import StreamgexError
from .fitted import FittedStep, run_step

REFERENCES = ("mean", "normal")


def normal_reference(n):
    """Standard normal quantiles at ``(i + 0.5) / n``, ``(n,) float64``."""
    inv = NormalDist().inv_cdf
    return np.array([inv((i + 0.5) / n) for i in range(n)])


def resample_reference(reference, n):
    """A reference of ``m`` values as one of ``n`` (quantile-function interpolation)."""
    reference = np.asarray(reference, dtype=np.float64)
    m = len(reference)
    if m == n:
        return reference
    return np.interp((np.arange(n) + 0.5) / n, (np.arange(m) + 0.5) / m, reference)


def sorted_rows(block):
    """Each profile's values in increasing order, ``float64`` (for the mean reference)."""
    return np.sort(block, axis=1).astype(np.float64)


#: Rows normalized at a time: the rank bookkeeping takes ~40 bytes per value,
#: so whole 32 MiB chunks at once would need ~400 MB of temporaries each.
ROWS = 32


def quantile_normalize(block, reference):
    """Replace each row's values by ``reference`` at their ranks; ties share the mean.

    Parameters
    ----------
    block : (n_samples, n_genes) float32
    reference : (n_genes,) float64, increasing

    Returns
    -------
    (n_samples, n_genes) float32
    """
    out = np.empty(block.shape, dtype=np.float32)
    cumulative = np.concatenate([[0.0], np.cumsum(reference, dtype=np.float64)])
    for start in range(0, len(block), ROWS):
        out[start:start + ROWS] = _normalize_rows(block[start:start + ROWS], cumulative)
    return out


def _normalize_rows(block, cumulative):
    n = block.shape[1]
    order = np.argsort(block, axis=1, kind="stable")
    ordered = np.take_along_axis(block, order, axis=1)
    positions = np.arange(n)
    starts_group = np.ones(ordered.shape, dtype=bool)
    starts_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends_group = np.ones(ordered.shape, dtype=bool)
    ends_group[:, :-1] = starts_group[:, 1:]
    first = np.maximum.accumulate(np.where(starts_group, positions, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_group, positions, n - 1)[:, ::-1], axis=1)[:, ::-1]
    values = (cumulative[last + 1] - cumulative[first]) / (last + 1 - first)
    out = np.empty_like(block, dtype=np.float32)
    np.put_along_axis(out, order, values.astype(np.float32), axis=1)
    return out


def _checked_normalize(block, reference, name):
    if np.isnan(block).any():
        raise StreamgexError(
            f"{name}: a profile holds NaN; quantile normalization needs complete profiles "
            f"(ingest without --allow-missing nan, or impute first)"
        )
    return quantile_normalize(block, reference)


def learn_mean_reference(x):
    """The D-GEX reference of a dask array ``x``: mean of the sorted rows, float64."""
    return x.map_blocks(sorted_rows, dtype=np.float64).mean(axis=0)


def reference_of(path):
    """A store's saved reference if it is a normalize output, else its learned mean reference."""
    ds, x = steps.open_input(path)
    if "reference" in ds:
        return ds.reference.values.astype(np.float64)
    return learn_mean_reference(x).compute()


class QuantileNormalize(FittedStep):
    """The fitted step: ``reference_`` ``(n_genes,) float64``, learned (``mean``), the
    normal quantiles (``normal``), or another store's resampled (``reference_from``)."""

    name = "normalize"
    units = "quantile-normalized"
    state = ("reference_",)

    def __init__(self, reference="mean", reference_from=None):
        if reference not in REFERENCES:
            raise StreamgexError(f"--reference must be one of {', '.join(REFERENCES)}")
        if reference_from and reference != "mean":
            raise StreamgexError("--reference-from only applies to --reference mean")
        self.reference, self.reference_from = reference, reference_from

    def parameters(self):
        return {"reference": self.reference, "reference_from":
                steps.source_of(self.reference_from) if self.reference_from else None}

    @classmethod
    def from_parameters(cls, parameters):
        return cls(reference=parameters["reference"])

    def fit(self, ds, x):
        n_genes = x.shape[1]
        if self.reference == "normal":
            self.reference_ = normal_reference(n_genes)
        elif self.reference_from:
            self.reference_ = resample_reference(reference_of(self.reference_from), n_genes)
        else:
            self.reference_ = learn_mean_reference(x).compute()
        return self

    def save(self, group):
        super().save(group)
        steps.save_vector(group, "reference", self.reference_, "rank")  # for readers of the store

    def prepare(self, ds, source):
        self.where = str(source)

    def transform(self, block):
        return _checked_normalize(block, self.reference_, getattr(self, "where", "the input"))


def normalize(source, out, *, reference="mean", reference_from=None, overwrite=False,
              scheduler=None):
    """Quantile-normalize every profile of ``source`` onto a reference; see the module doc.

    Returns
    -------
    Path
        The output store: ``(n_samples, n_genes) float32``, plus ``reference``
        ``(n_genes,) float64`` (and the fitted step under ``fitted/normalize``).
    """
    return run_step(QuantileNormalize(reference, reference_from), source, out,
                    overwrite=overwrite, scheduler=scheduler)
