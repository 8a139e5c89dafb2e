"""``streamgex evaluate``: a trained run's errors on a store (paper 3.2, Tables 1-3).

The store is read chunk by chunk in its own order (memory: one chunk plus
the per-gene sums), once per network of the model (D-GEX's partitions one at
a time: 0.78 GiB of weights each at full size, 3.9 for all five), the
predictions kept on disk (``Columns``) and read back by rows; its genes are
matched to the run's by key, so a split part and an external store made by
the same genes step (1000G) both work.
Results go to the run's ``eval/NAME.json`` (figures, dataset shape,
provenance; per-gene and per-profile correlations and the share of
well-inferred genes, ``metrics.correlation_summary``) and
``eval/NAME_genes.csv`` (one row per target gene: MAE, Pearson r, Spearman
rho; ``Run`` names them); they are reused while the model files and the store
are unchanged. A store without profiles, a store whose values are in other
units than the run's training data (its ``units`` attr: a genes store is not
z-scores), or predictions that are not finite (a diverged model), is an
error, never a result.
"""

import csv
import gc
import logging
from pathlib import Path

import numpy as np
import zarr

from .. import digest, locks, steps, storage, store
from ..atomic import atomic_path, read_json, write_json
from ..errors import StreamgexError
from ..paths import relative
from ..models.dgex import partitions as contiguous
from ..progress import progress
from ..training.run import Run
from .columns import Columns
from .metrics import AbsoluteErrors, correlation_summary, pearson_rows, summarize
from .predictor import load_predictor

log = logging.getLogger(__name__)


def paper_partitions(n_targets):
    """The paper's partition count: 2 for the cross-platform 9,520 targets, 5 for 21,290."""
    return 5 if n_targets > 15_000 else 2


def evaluate(run, data, *, name=None, partitions=0, predictor=None):
    """Evaluate ``run``'s best model on the store ``data``; see the module doc.

    Parameters
    ----------
    run : path
        A finished run folder (any kind).
    data : path
        A standardized store with the run's genes, e.g. ``SPLIT/test`` or 1000G's.
    name : str, optional
        Dataset name in the results (default: the store's folder name).
    partitions : int
        Target partitions for the paper's sum-over-partitions figure; 0 picks
        the paper's (``paper_partitions``).
    predictor : Predictor, optional
        ``load_predictor(run)`` already loaded (evaluating one run on several
        stores loads it once); loaded here when needed otherwise.

    Returns
    -------
    dict
        The JSON written (``mae``, ``partition_mae``, ``sum_over_partitions``,
        ``mae_without_shared``, and for an E-MLP ``reconstruction``).
    """
    store.open_store(data)  # refuses a missing or partial store first
    run = Run.open(run)
    with locks.hold(run.path, what="this run folder"):  # not while it trains
        return _evaluate(run, store.as_path(data), name=name, partitions=partitions,
                         predictor=predictor)


def _evaluate(run, data, *, name, partitions, predictor):
    ds = store.open_store(data)
    name = name or storage.name(data).removesuffix(".zarr")
    check_name(name)
    check_units(run, data)
    found = current_result(run, data, name=name, partitions=partitions)
    if found is not None:
        log.info("%s: up to date", run.result_file(name))
        return {**found, "run": str(run.path.resolve()), "store": storage.resolved(data)}

    predictor = predictor or load_predictor(run)
    n_targets = len(predictor.targets)
    count = partitions or paper_partitions(n_targets)
    keys = store.strings(ds.gene.values)
    inputs = columns_of(keys, predictor.inputs, data, "input")
    targets = columns_of(keys, predictor.targets, data, "target")
    shared = shared_targets(predictor.data / "train")
    errors = AbsoluteErrors(n_targets)
    rebuilt = AbsoluteErrors(n_targets) if predictor.reconstruct else None
    array = store.open_group(data)[store.EXPRESSION]
    rows, size = array.shape[0], array.chunks[0]
    if rows == 0:
        raise StreamgexError(f"{data}: holds no profiles; there is nothing to evaluate on")
    profile_r = []
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    pieces = predictor.in_pieces()
    with Columns(run.eval_dir, rows, n_targets, size) as columns:
        bar = progress(total=rows * (len(pieces) + 1), unit="profile",
                       desc=f"evaluate {predictor.kind.name} on {name}")
        for k, (first, _, load) in enumerate(pieces):  # one piece's network in memory
            predict = load()
            for start in range(0, rows, size):
                block = array[start:start + size]
                columns.write(start, predicted=predict(block[:, inputs]), column=first,
                              true=block[:, targets] if k == 0 else None)
                bar.update(len(block))
            del predict
            gc.collect()  # Keras's reference cycles would keep the network until later
        for start in range(0, rows, size):
            predicted, y = columns.read_rows(start, start + size)
            errors.add(predicted, y)
            profile_r.append(pearson_rows(predicted, y))
            if rebuilt is not None:
                rebuilt.add(predictor.reconstruct(y), y)
            bar.update(len(y))
        bar.close()
        broken = int((~np.isfinite(errors.per_gene)).sum())
        if broken:
            raise StreamgexError(f"{run.path}: its predictions on {data} are not finite (NaN "
                                 f"or Inf) for {broken:,} of {n_targets:,} targets: the model "
                                 f"diverged; retrain it (`streamgex train ... --restart`)")
        gene_r, gene_rho = columns.per_gene()

    ranges = contiguous(n_targets, count)
    result = {"model": predictor.kind.name, "run": str(run.path.resolve()), "dataset": name,
              "store": storage.resolved(data), "profiles": rows, "targets": n_targets,
              "inputs": len(predictor.inputs), "partitions": count,
              **summarize(errors.per_gene, ranges, shared=shared),
              "correlation": correlation_summary(gene_r, gene_rho, np.concatenate(profile_r))}
    if rebuilt is not None:
        result["reconstruction"] = summarize(rebuilt.per_gene, ranges, shared=shared)
    result["identity"] = _identity(run, data, partitions)
    _write_genes(run.genes_file(name), ds, targets, shared, errors, rebuilt, gene_r, gene_rho)
    write_json(run.result_file(name), result)  # last: its presence means the CSV is complete
    return result


def check_name(name):
    """A dataset name must be a plain file name (it names files in the run's ``eval/``)."""
    if not name or Path(name).name != name or name.startswith("."):
        raise StreamgexError(f"--name {name!r}: a dataset name is a plain name such as test or "
                             f"1000g, without folders")


def check_units(run, data):
    """Refuse a store whose values are in other units than the run's training data (the
    stores' ``units`` attrs): errors of z-score predictions against raw or normalized
    values mean nothing (a genes store gave MAE 10.79). Stores made before streamgex
    recorded units are not checked."""
    try:
        trained = zarr.open_group(run.data / "train", mode="r").attrs.get("units")
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError):
        return  # no training data to compare with: loading the model says what is wrong
    given = store.open_group(data).attrs.get("units")
    if trained is None or given is None or given == trained:
        return
    raise StreamgexError(
        f"{data}: holds values {given!r}, but {run.path.name} was trained on {trained!r} ones; "
        f"evaluate on a store preprocessed as its training data was (for 1000G: `streamgex "
        f"normalize` with --reference-from GEO's normalized store, then `streamgex standardize` "
        f"with --stats-from GEO's standardized store; streamgex/preprocess/README.md)")


def current_result(run, data, *, name, partitions=0):
    """The saved result of this evaluation if the models and the store are unchanged, else None.

    The same rule ``evaluate`` skips by and ``status`` reports by.
    """
    run = Run(run) if not isinstance(run, Run) else run
    path = run.result_file(name)
    if not path.exists() or not storage.place(str(data)).exists():
        return None
    try:
        identity = _identity(run, data, partitions)
    except (StreamgexError, FileNotFoundError, KeyError):
        return None
    result = read_json(path)
    return result if result.get("identity") == identity else None


#: Bumped when an evaluation gains figures, so results saved without them are redone.
METRICS = 2


def _identity(run, data, partitions):
    return {"metrics": METRICS,
            "fingerprint": steps.fingerprint(data),
            "partitions": partitions,
            "models": models_identity(run)}


def models_identity(run):
    """The run's model files and their SHA-256s, as an evaluation records them: a result whose
    record differs was made by another model (a copied or moved run folder has the same)."""
    return {relative(f, run.path): digest.sha256(f, remember=True)
            for f in run.kind.model_files(run)}


def current_results(run):
    """The run's saved evaluations made by its current models (``{dataset: result}``); those of
    a model since retrained are left out."""
    models = models_identity(run)
    found = {}
    for path in run.result_files():
        result = read_json(path)
        if result.get("identity", {}).get("models") == models:
            found[path.stem] = result
    return found


def columns_of(keys, wanted, path, what):
    """Positions of the gene keys ``wanted`` in ``keys``; an error lists the missing ones."""
    index = {k: i for i, k in enumerate(keys)}
    missing = [k for k in wanted if k not in index]
    if missing:
        raise StreamgexError(
            f"{path}: lacks {len(missing)} of the model's {len(wanted)} {what} genes (first: "
            f"{', '.join(missing[:5])}); it must come from the same genes step as the training data"
        )
    return np.array([index[k] for k in wanted], dtype=np.int64)


def shared_targets(split_store):
    """``(n_targets,) bool``: targets whose Ensembl id is also a landmark's (FACTS.md: 445)."""
    ds = store.open_store(split_store)
    mask = ds.is_landmark.values.astype(bool)
    if "gene_ensembl" not in ds.coords:
        return np.zeros(int((~mask).sum()), dtype=bool)
    ensembl = store.strings(ds.gene_ensembl.values)
    return np.isin(ensembl[~mask], ensembl[mask])


def read_gene_errors(path):
    """A ``*_genes.csv`` as ``{column: numpy array}``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise StreamgexError(f"{path}: no genes")
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


def compare_runs(a, b):
    """One line comparing two evaluations of the same dataset, gene by gene."""
    from ..models import registry
    from .metrics import compare

    c = compare(*(read_gene_errors(Run(r["run"]).genes_file(r["dataset"]))["mae"].astype(float)
                  for r in (a, b)))
    return (f"{registry.get(a['model']).title} vs {registry.get(b['model']).title}: relative "
            f"improvement {100 * c['relative_improvement']:.2f}%, better on "
            f"{100 * c['share_a_better']:.2f}% of {c['genes']:,} genes")


def format_result(result):
    """One or two lines for the terminal."""
    text = (f"{result['model']} on {result['dataset']} ({result['profiles']:,} profiles x "
            f"{result['targets']:,} targets): MAE {result['mae']:.4f}; sum over "
            f"{result['partitions']} partitions (paper's convention) "
            f"{result['sum_over_partitions']:.4f}")
    c = result.get("correlation")
    if c and c["gene_pearson_median"] is not None:
        shares = ", ".join(f"{100 * v:.0f}% > {k}" for k, v in c["share_r_above"].items())
        text += (f"\n  per-gene r: median {c['gene_pearson_median']:.3f} (Spearman "
                 f"{c['gene_spearman_median']:.3f}), {shares}; per-profile r: median "
                 f"{c['profile_pearson_median']:.3f}")
    if "reconstruction" in result:
        text += f"\n  its autoencoder's reconstruction MAE {result['reconstruction']['mae']:.4f}"
    return text


def _write_genes(path, ds, targets, shared, errors, rebuilt, pearson, spearman):
    symbols = (store.strings(ds.gene_symbol.values[targets]) if "gene_symbol" in ds.coords
               else [""] * len(targets))
    genes = store.strings(ds.gene.values[targets])  # once: .values per row took a minute
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["gene", "symbol", "shared_with_landmark", "mae", "pearson", "spearman"]
                        + (["reconstruction_mae"] if rebuilt else []))
        for i in range(len(targets)):
            row = [genes[i], symbols[i], int(shared[i]), f"{errors.per_gene[i]:.6g}",
                   f"{pearson[i]:.6g}", f"{spearman[i]:.6g}"]
            if rebuilt:
                row.append(f"{rebuilt.per_gene[i]:.6g}")
            writer.writerow(row)
