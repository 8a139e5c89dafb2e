"""The preprocessing a run's data went through, re-applied to new profiles.

The pipeline's fitted steps (``preprocess.fitted``: the gene map, the quantile
reference, per-gene mean and std) travel with its stores; ``pipeline_state``
loads them from the split's training store and ``input_transform`` applies
them to the profiles ``predict`` reads.

Input units:

- ``raw``: probe- or gene-level expression as the pipeline's raw input
  (log2 microarray values). Probes are averaged into genes (D-GEX step 2).
  When every gene of the pipeline is present, each profile is quantile-
  normalized onto the saved reference exactly as the pipeline did (step 3),
  then standardized (step 4). When only the landmarks are measured (L1000),
  a whole-profile normalization is impossible; the landmarks are then
  quantile-normalized onto the *landmark reference*: the mean sorted landmark
  sub-profile of the normalized training profiles, i.e. the distribution the
  landmarks had after the pipeline's own normalization.
- ``normalized``: already quantile-normalized like the pipeline's output
  (e.g. ``bgedv2_QNORM.gctx``): standardized only.
- ``standardized``: in the pipeline's z-scores already (a split part): used as is.
"""

from dataclasses import dataclass

import numpy as np

from .. import store
from ..errors import StreamgexError
from ..preprocess.genes import CollapsePlan, collapse
from ..preprocess.quantile import QuantileNormalize, quantile_normalize
from ..preprocess.standardize import EPSILON, Standardize, standardize_block
from ..progress import progress

UNITS = ("raw", "normalized", "standardized")


@dataclass(frozen=True)
class PipelineState:
    """What preprocessing learned, for the genes of a split (landmarks first).

    Attributes
    ----------
    keys, ensembl, symbols : (n_genes,) str
        Gene keys of the genes step, their Ensembl ids and symbols.
    probes : list of tuple of str
        The probes each gene averages.
    is_landmark : (n_genes,) bool
    mean, std : (n_genes,) float64
        Standardization statistics (z = (x - mean) / (std + 1e-3)).
    reference : (n_genes,) float64
        The quantile-normalization reference.
    train : Path or None
        The training store (for the landmark reference).
    landmark_reference_ : (n_landmarks,) float64 or None
        The landmark reference, when known already (an export bundle has no
        training store to compute it from).
    """

    keys: np.ndarray
    ensembl: np.ndarray
    symbols: np.ndarray
    probes: list
    is_landmark: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    reference: np.ndarray
    train: object
    landmark_reference_: np.ndarray = None

    def destandardize(self, z, genes):
        """z-scores of ``genes`` (a mask or indices) back to normalized expression units."""
        return z * (self.std[genes] + EPSILON) + self.mean[genes]


def pipeline_state(split):
    """The ``PipelineState`` of a split folder: the fitted steps its training store carries."""
    train = split / "train"
    ds = store.open_store(train)
    statistics = Standardize.load(train)
    return PipelineState(
        keys=store.strings(ds.gene.values),
        ensembl=store.strings(ds.gene_ensembl.values),
        symbols=store.strings(ds.gene_symbol.values),
        probes=[tuple(p.split(",")) for p in store.strings(ds.gene_probes.values)],
        is_landmark=ds.is_landmark.values.astype(bool),
        mean=statistics.mean_.astype(np.float64),
        std=statistics.std_.astype(np.float64),
        reference=QuantileNormalize.load(train).reference_.astype(np.float64),
        train=train,
    )


def match_genes(state, gene_ids, wanted):
    """How to make the genes ``wanted`` (indices into ``state.keys``) from input columns.

    A gene is found by its key, then its Ensembl id, then as the mean of all
    its probes. Returns ``(plan, missing)``: a ``CollapsePlan`` and the
    indices of ``wanted`` genes the input lacks.
    """
    index = {g: i for i, g in enumerate(gene_ids)}
    columns, counts, missing = [], [], []
    for gene in wanted:
        for ids in ((state.keys[gene],), (state.ensembl[gene],), state.probes[gene]):
            found = [index.get(i) for i in ids]
            if ids and None not in found:
                columns.extend(found)
                counts.append(len(found))
                break
        else:
            missing.append(gene)
    counts = np.array(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return CollapsePlan(np.array(columns, dtype=np.int64), starts, counts), missing


@dataclass(frozen=True)
class Normalization:
    """How new profiles become the model's input, and why (what ``predict`` reports).

    Attributes
    ----------
    apply : callable
        ``apply(block) -> (n, n_landmarks) float32`` z-scores, ``block`` the input's
        ``(n, n_input_genes)`` values.
    how : str
        Which normalization, in words (the output's ``predict.normalization`` attr).
    why : str
        Why that one: the units given, or which genes the input has.
    columns : (k,) int
        The input columns ``apply`` reads: a missing value elsewhere changes nothing.
    landmark_columns : (m,) int
        Those that measure a landmark.
    """

    apply: object
    how: str
    why: str
    columns: np.ndarray
    landmark_columns: np.ndarray


def input_transform(state, gene_ids, units):
    """The ``Normalization`` of input rows ``gene_ids`` in ``units`` (see the module doc)."""
    if units not in UNITS:
        raise StreamgexError(f"--units must be one of {', '.join(UNITS)}, got {units!r}")
    landmarks = np.flatnonzero(state.is_landmark)
    plan, missing = match_genes(state, gene_ids, landmarks)
    measured = np.unique(plan.columns)
    check_unique_rows(gene_ids, measured)
    if units == "raw":
        whole, absent = match_genes(state, gene_ids, np.arange(len(state.keys)))
        if not absent:
            check_unique_rows(gene_ids, whole.columns)
            return Normalization(_full_profile(state, whole, landmarks),
                                 "quantile-normalized over whole profiles",
                                 f"the input has all {len(state.keys):,} genes of the model's "
                                 f"pipeline, so each profile is normalized as in preprocessing",
                                 np.unique(whole.columns), measured)
    if missing:
        names = ", ".join(f"{state.keys[g]} (probes {','.join(state.probes[g])})"
                          for g in missing[:10])
        raise StreamgexError(f"the input lacks {len(missing)} of the {len(landmarks)} landmark "
                             f"genes the model needs: {names}{' ...' if len(missing) > 10 else ''}")
    mean, std = state.mean[landmarks], state.std[landmarks]
    if units == "standardized":
        return Normalization(lambda block: collapse(block, plan), "used as given (standardized)",
                             "--units standardized: the input holds the pipeline's z-scores",
                             measured, measured)
    if units == "normalized":
        return Normalization(lambda block: standardize_block(collapse(block, plan), mean, std),
                             "standardized with the pipeline's statistics",
                             "--units normalized: the input is quantile-normalized already",
                             measured, measured)
    reference = landmark_reference(state)
    lacking = ", ".join(str(state.keys[g]) for g in absent[:3]) + (", ..." if len(absent) > 3
                                                                  else "")
    return Normalization(
        lambda block: standardize_block(quantile_normalize(collapse(block, plan), reference),
                                        mean, std),
        "landmarks quantile-normalized onto the landmark reference",
        f"the input lacks {len(absent):,} of the {len(state.keys):,} genes of the model's "
        f"pipeline ({lacking}), so whole profiles cannot be normalized; its landmarks can",
        measured, measured)


def check_unique_rows(gene_ids, columns):
    """An error naming an id that the rows ``columns`` have and another input row has too:
    ``match_genes`` would silently read the last such row; an id the model does not read
    may repeat."""
    used = {gene_ids[c] for c in columns}
    first = {}
    for row, gene in enumerate(gene_ids):
        if gene in used and first.setdefault(gene, row) != row:
            raise StreamgexError(f"the input has the id {gene!r} on gene rows {first[gene] + 1} "
                                 f"and {row + 1}, and the model reads it; keep one of them")


def _full_profile(state, plan, landmarks):
    def transform(block):
        genes = quantile_normalize(collapse(block, plan), state.reference)
        return standardize_block(genes[:, landmarks], state.mean[landmarks], state.std[landmarks])
    return transform


def landmark_reference(state):
    """``(n_landmarks,) float64``: mean sorted landmark sub-profile of the training profiles,
    in normalized (not standardized) units; one pass over the training store."""
    if state.landmark_reference_ is not None:
        return state.landmark_reference_
    landmarks = np.flatnonzero(state.is_landmark)
    array = store.open_group(state.train)[store.EXPRESSION]
    total, count = np.zeros(len(landmarks)), 0
    bar = progress(total=array.shape[0], desc="landmark reference", unit="sample")
    for start in range(0, array.shape[0], array.chunks[0]):
        block = state.destandardize(array[start:start + array.chunks[0]][:, landmarks].astype(
            np.float64), landmarks)
        total += np.sort(block, axis=1).sum(axis=0)
        count += len(block)
        bar.update(len(block))
    bar.close()
    return total / count
