"""``streamgex genes``: select the mapped genes and average probes into genes.

D-GEX (FACTS.md, preprocessing step 2): a gene's value is the mean of its
probes. ``by="probe"`` matches map column 3 against an Affymetrix store's
probe ids; ``by="ensembl"`` matches map column 2 against an RNA-Seq store's
(version-stripped) Ensembl ids. Output genes: landmarks, then targets, each in
map order, with coordinates ``is_landmark``, ``gene_symbol``,
``gene_ensembl`` and ``gene_probes``.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import digest, steps
from ..errors import StreamgexError
from .fitted import FittedStep, run_step
from .maps import read_map, row_keys

BY = ("probe", "ensembl")


@dataclass(frozen=True)
class CollapsePlan:
    """Which input columns make each output gene.

    ``columns`` lists input columns gene after gene; gene ``i`` averages
    ``columns[starts[i]:starts[i] + counts[i]]``.
    """

    columns: np.ndarray
    starts: np.ndarray
    counts: np.ndarray


def collapse(block, plan):
    """``(n, n_in) -> (n, n_out) float32``: each output gene the mean of its columns."""
    gathered = block[:, plan.columns].astype(np.float64)
    sums = np.add.reduceat(gathered, plan.starts, axis=1)
    return (sums / plan.counts).astype(np.float32)


def plan_collapse(rows, store_ids, *, by):
    """Match map rows to store columns; returns ``(plan, kept_rows, missing_rows)``.

    A row matches when every one of its ids is in the store.
    """
    index = {gene: i for i, gene in enumerate(store_ids)}
    columns, counts, kept, missing = [], [], [], []
    for row in rows:
        ids = row.probes if by == "probe" else (row.ensembl,)
        found = [index.get(i) for i in ids]
        if None in found:
            missing.append(row)
            continue
        kept.append(row)
        columns.extend(found)
        counts.append(len(found))
    counts = np.array(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    plan = CollapsePlan(np.array(columns, dtype=np.int64), starts, counts)
    return plan, kept, missing


def map_record(path):
    """A map file as a step records it: its place (``path``: a location, not compared) and
    its content (``sha256``)."""
    try:
        return {"path": str(Path(path).resolve()), "sha256": digest.sha256(path)}
    except FileNotFoundError:
        raise StreamgexError(f"{path}: no such gene map") from None


def map_path(record):
    """The map file a recorded ``map_record`` (or a bare path, as stores made before maps
    were known by content record) names."""
    return record["path"] if isinstance(record, dict) else record


class SelectGenes(FittedStep):
    """The fitted step: which input columns average into each mapped gene (``plan_``),
    learned by matching the maps' probes or Ensembl ids to the store's gene ids."""

    name = "genes"
    state = ("columns_", "starts_", "counts_")

    def __init__(self, landmarks, targets, by="probe", drop_missing=False):
        if by not in BY:
            raise StreamgexError(f"--by must be one of {', '.join(BY)}, got {by!r}")
        self.landmarks, self.targets = landmarks, targets
        self.by, self.drop_missing = by, drop_missing

    def parameters(self):
        """The maps by content (``map_record``: a map given by another path is the same map,
        an edited one another), the matching rule, the rows left out."""
        return {"landmarks": map_record(self.landmarks), "targets": map_record(self.targets),
                "by": self.by, "drop_missing": self.drop_missing, "dropped": len(self.missing_)}

    @classmethod
    def from_parameters(cls, parameters):
        return cls(*(map_path(parameters[role]) for role in ("landmarks", "targets")),
                   by=parameters["by"], drop_missing=parameters["drop_missing"])

    def prepare(self, ds, source):
        """Match the map rows to the store's genes (no pass over the data needed)."""
        rows = (read_map(self.landmarks, is_landmark=True)
                + read_map(self.targets, is_landmark=False))
        plan, self.kept_, self.missing_ = plan_collapse(rows, [str(g) for g in ds.gene.values],
                                                        by=self.by)
        if self.missing_ and not self.drop_missing:
            column = "probe (column 3)" if self.by == "probe" else "Ensembl id (column 2)"
            first = ", ".join((",".join(r.probes) if self.by == "probe" else r.ensembl)
                              for r in self.missing_[:5])
            raise StreamgexError(
                f"{source}: {len(self.missing_)} of {len(rows)} map rows have a {column} not in "
                f"the store (first: {first}); is --by {self.by} right for this store? pass "
                f"--drop-missing to leave them out")
        if not any(r.is_landmark for r in self.kept_) or all(r.is_landmark for r in self.kept_):
            raise StreamgexError(f"{source}: no landmark or no target row matched the maps")
        self.columns_, self.starts_, self.counts_ = plan.columns, plan.starts, plan.counts

    def layout(self, ds):
        kept = self.kept_
        return {"samples": ds.sample.values, "genes": np.array(row_keys(kept), dtype=object),
                "coords": {
                    **steps.sample_coords(ds),
                    "is_landmark": ("gene", np.array([r.is_landmark for r in kept])),
                    "gene_symbol": ("gene", np.array([r.symbol for r in kept], dtype=object)),
                    "gene_ensembl": ("gene", np.array([r.ensembl for r in kept], dtype=object)),
                    "gene_probes": ("gene", np.array([",".join(r.probes) for r in kept],
                                                     dtype=object)),
                }}

    def output_width(self, ds):
        return len(self.counts_)

    def transform(self, block):
        return collapse(block, CollapsePlan(self.columns_, self.starts_, self.counts_))


def genes(source, out, *, landmarks, targets, by="probe", drop_missing=False, overwrite=False,
          scheduler=None):
    """Write a store of the mapped genes of ``source`` (probe means), landmarks first.

    Parameters
    ----------
    source, out : path
        Input store (from ingest) and output store.
    landmarks, targets : path
        D-GEX map files.
    by : {"probe", "ensembl"}
        Map column matched against the store's gene ids.
    drop_missing : bool
        Drop map rows the store lacks instead of failing.

    Returns
    -------
    Path
        The output store: ``(n_samples, n_landmarks + n_targets) float32`` (and the
        fitted step under ``fitted/genes``).
    """
    return run_step(SelectGenes(landmarks, targets, by=by, drop_missing=drop_missing), source,
                    out, overwrite=overwrite, scheduler=scheduler)
