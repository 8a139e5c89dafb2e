"""How far to trust each predicted target: its Pearson r and MAE on the run's validation split.

CMap marks the genes it infers well as BING, "best inferred genes" (the ``pr_is_bing``
row field of LINCS's GSE92742 ``gene_info``; the clue.io gene space), from how well each
was inferred on held-out profiles (Subramanian et al. 2017, Cell 171:1437). streamgex does
the same for every run: a target is *well inferred* when its Pearson r between predicted
and measured values on the validation split exceeds a cut-off, ``CUTOFF`` (0.3) unless
``predict --well-inferred-r`` says otherwise. CMap judged its genes on held-out
profiles too, but the sources at hand (clueR's ``clue_check_bing`` and ``gene_space``
docs, GSE92742's ``gene_info``) give its flag, not a plain r cut-off: 0.3 is this
project's documented default, not a number taken from CMap.

The figures are the run's evaluation on ``val`` (``eval/val.json`` and
``eval/val_genes.csv``, ``evaluate``): one pass over the validation store a chunk at a
time, per-gene sums and per-gene blocks on disk, made once per trained model and known
by the model files' SHA-256 and the store's content, so a retrained model or a changed
validation store makes them again. They are made where they already were: the ``run``
pipeline's ``evaluate NAME`` stage evaluates every model on ``val`` before the report,
so no stage is added and ``status`` and ``run`` still ask one question of it;
``export`` and ``predict`` of a run not evaluated on ``val`` (or since retrained)
evaluate it first by that same rule, and ``export`` copies the figures into the bundle
(``trust.npz``), so a bundle's predictions carry them with no workdir.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, read_json
from ..errors import StreamgexError
from ..training.run import Run

log = logging.getLogger(__name__)

#: The default validation Pearson r above which a target counts as well inferred.
CUTOFF = 0.3

#: The cut-offs the report counts well-inferred targets at (the default first).
REPORTED = (CUTOFF, 0.5, 0.7, 0.9)

#: The evaluation the figures come from: the run's split's validation part.
DATASET = "val"


@dataclass(frozen=True)
class Trust:
    """Per-target validation figures of one model, in model order.

    Attributes
    ----------
    genes : (n_targets,) str
        Target gene keys.
    pearson : (n_targets,) float64
        Pearson r of predicted with measured z-scores on the validation profiles; NaN
        where a gene or its prediction is constant there.
    mae : (n_targets,) float64
        Mean absolute error, z-scores.
    profiles : int
        Validation profiles the figures are over.
    """

    genes: np.ndarray
    pearson: np.ndarray
    mae: np.ndarray
    profiles: int

    def well_inferred(self, cutoff=CUTOFF):
        """``(n_targets,) bool``: r above ``cutoff`` (an undefined r is not)."""
        return np.where(np.isnan(self.pearson), -np.inf, self.pearson) > cutoff

    def coords(self, cutoff=CUTOFF, keep=slice(None)):
        """The output store's gene coordinates of the targets ``keep``."""
        return {"gene_val_pearson": ("gene", self.pearson[keep].astype(np.float32)),
                "gene_val_mae": ("gene", self.mae[keep].astype(np.float32)),
                "gene_is_well_inferred": ("gene", self.well_inferred(cutoff)[keep])}

    def save(self, path):
        """Write as ``.npz`` (``genes``, ``pearson``, ``mae``, ``profiles``), atomically."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(f, genes=self.genes.astype(str), pearson=self.pearson, mae=self.mae,
                     profiles=self.profiles)

    @classmethod
    def load(cls, path):
        with np.load(path) as saved:
            return cls(saved["genes"], saved["pearson"], saved["mae"], int(saved["profiles"]))


def check_cutoff(cutoff):
    """A cut-off is a correlation: between -1 and 1."""
    if not -1 <= cutoff <= 1:
        raise StreamgexError(f"--well-inferred-r {cutoff}: a Pearson r cut-off lies between "
                             f"-1 and 1 (default {CUTOFF})")


def of_run(run, *, predictor=None):
    """The ``Trust`` of a finished run's model: its current evaluation on its split's
    ``val`` store, made first when there is none (``predictor``: the model already loaded,
    so that it is not loaded twice). None when the split has no validation profiles."""
    from .. import store
    from .evaluate import evaluate, read_gene_errors

    run = Run.open(run)
    val = run.data / DATASET
    if current(run) is None:
        if not Path(val).exists() or store.open_store(val).sizes["sample"] == 0:
            log.warning("%s: no validation profiles; its predictions carry no per-gene "
                        "trust", run.path)
            return None
        log.info("%s: evaluating it on %s for its per-gene trust", run.path, val)
        evaluate(run, val, name=DATASET, predictor=predictor)
    result = read_json(run.result_file(DATASET))
    genes = read_gene_errors(run.genes_file(DATASET))
    return Trust(genes["gene"].astype(str), genes["pearson"].astype(np.float64),
                 genes["mae"].astype(np.float64), int(result["profiles"]))


def current(run):
    """The run's saved ``val`` evaluation if it is still its models' on its ``val`` store,
    else None. Its target-partition count (a summary figure only) is the one it was made
    with, so a ``run`` config's ``[evaluate] partitions`` is never redone by ``predict``."""
    from .evaluate import current_result

    run = Run(run) if not isinstance(run, Run) else run
    path = run.result_file(DATASET)
    if not path.exists():
        return None
    partitions = read_json(path).get("identity", {}).get("partitions", 0)
    return current_result(run, run.data / DATASET, name=DATASET, partitions=partitions)


def counts(pearson, cutoffs=REPORTED):
    """``{cutoff: targets with r above it}`` (NaN counts as not above)."""
    r = np.where(np.isnan(pearson), -np.inf, np.asarray(pearson, np.float64))
    return {c: int((r > c).sum()) for c in cutoffs}
