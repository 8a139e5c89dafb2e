"""``streamgex genes``: select the mapped genes and average probes into genes.

D-GEX (FACTS.md, preprocessing step 2): a gene's value is the mean of its
probes. ``by="probe"`` matches map column 3 against an Affymetrix store's
probe ids; ``by="ensembl"`` matches map column 2 against an RNA-Seq store's
(version-stripped) Ensembl ids. Output genes: landmarks, then targets, each in
map order, with coordinates ``is_landmark``, ``gene_symbol``,
``gene_ensembl`` and ``gene_probes``.
"""

from dataclasses import dataclass

import numpy as np

from .. import steps, store
from ..errors import StreamgexError
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
        The output store: ``(n_samples, n_landmarks + n_targets) float32``.
    """
    if by not in BY:
        raise StreamgexError(f"--by must be one of {', '.join(BY)}, got {by!r}")
    ds, x = steps.open_input(source)
    rows = read_map(landmarks, is_landmark=True) + read_map(targets, is_landmark=False)
    plan, kept, missing = plan_collapse(rows, [str(g) for g in ds.gene.values], by=by)
    if missing and not drop_missing:
        column = "probe (column 3)" if by == "probe" else "Ensembl id (column 2)"
        first = ", ".join(
            (",".join(r.probes) if by == "probe" else r.ensembl) for r in missing[:5]
        )
        raise StreamgexError(
            f"{source}: {len(missing)} of {len(rows)} map rows have a {column} not in the store "
            f"(first: {first}); is --by {by} right for this store? pass --drop-missing to "
            f"leave them out"
        )
    if not any(r.is_landmark for r in kept) or all(r.is_landmark for r in kept):
        raise StreamgexError(f"{source}: no landmark or no target row matched the maps")
    parameters = {
        "landmarks": str(landmarks), "targets": str(targets), "by": by,
        "drop_missing": drop_missing, "dropped": len(missing),
    }
    group = store.begin(out, step="genes", parameters=parameters,
                        source=steps.source_of(source), overwrite=overwrite)
    if group is None:
        return out
    with steps.scheduler(scheduler):
        if "chunks_done" not in store.state(group)["progress"]:
            keys = row_keys(kept)
            store.start_writing(
                group,
                samples=ds.sample.values,
                genes=np.array(keys, dtype=object),
                coords={
                    **steps.sample_coords(ds),
                    "is_landmark": ("gene", np.array([r.is_landmark for r in kept])),
                    "gene_symbol": ("gene", np.array([r.symbol for r in kept], dtype=object)),
                    "gene_ensembl": ("gene", np.array([r.ensembl for r in kept], dtype=object)),
                    "gene_probes": ("gene", np.array([",".join(r.probes) for r in kept],
                                                     dtype=object)),
                },
                chunk_samples=x.chunks[0][0],
            )
        n_out = len(plan.counts)
        y = x.map_blocks(collapse, plan, chunks=(x.chunks[0], (n_out,)), dtype=np.float32)
        steps.write_rows(group, y, desc="genes")
    store.finish(group)
    return out
