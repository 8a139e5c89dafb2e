"""``streamgex report``: the paper's tables and figures from evaluated runs.

Reads each run's ``eval/*.json`` and ``eval/*_genes.csv`` (``evaluate``), its
``log.csv`` and its split's ``summary.json``, and writes ``report.md`` with
tables laid out like the paper's Tables 1-4 (each as CSV too) and PNG figures
like its Figures 1, 3, 4 and 5:

- Table 1 / autoencoder reconstruction error on each dataset;
- Table 2 / GEO test and Table 3 / 1000G: MAE of each model (true mean,
  without the targets that are also landmarks, and the paper's sum over
  partitions, labelled), with the E-MLP's autoencoder floor;
- Table 4: relative improvement and share of genes where one model beats the
  other (paper Figure 4; D-GEX's 99.97% statistic);
- Table 5: per-gene Pearson and Spearman, per-profile Pearson and the share of
  well-inferred genes (r above 0.5 / 0.7 / 0.9) of each model;
- Table 6: how many targets are well inferred on the validation split at each cut-off
  (``trust.REPORTED``: the validation r ``predict`` flags and filters by);
- figures: PCA explained variance, validation error per epoch, gene-wise
  errors of the proposed model vs the reference one (E-MLP vs D-GEX), models
  on GEO test vs 1000G, the distribution of per-gene r of each model.

Which model goes where follows its kind (``models.registry``): the
autoencoder's role puts it in Table 1, every other kind is a predictor in
Tables 2-4, in registry order (least squares first).
"""

import csv
from pathlib import Path

import numpy as np

from .. import digest
from ..atomic import atomic_path, read_json, write_json, write_text
from ..errors import StreamgexError
from ..models import registry
from ..training.run import Run
from .evaluate import read_gene_errors
from .metrics import compare
from .trust import CUTOFF, DATASET, REPORTED, counts

#: Datasets in the order the tables show them; others follow alphabetically.
DATASETS = ("val", "test", "1000g")


def report(runs, out, *, pca=None, title="streamgex report"):
    """Write ``out/report.md``, ``out/table*.csv`` and ``out/fig*.png``; returns the report path.

    ``runs``: run folders, each evaluated at least once; ``pca``: a ``streamgex
    pca`` folder for Figure 1.
    """
    out = Path(out)
    _check_out(out)
    if pca is not None and not (Path(pca) / "explained_variance.csv").exists():
        raise StreamgexError(
            f"{pca}: not a `streamgex pca` folder (no explained_variance.csv), so no Figure 1; "
            f"run `streamgex pca` into it first, or leave the PCA folder out"
        )
    out.mkdir(parents=True, exist_ok=True)
    runs = [Run.open(run) for run in runs]
    results = _load(runs)
    split = _split_summary(runs)
    lines = [f"# {title}", "", *_data_lines(results, split), ""]
    tables = [_table1(results), _table_models(results, "test", "Table 2"),
              _table_models(results, "1000g", "Table 3"), _table4(results),
              _table_correlations(results), _table_trust(results)]
    for number, (caption, header, rows) in enumerate(tables, start=1):
        if not rows:
            continue
        _write_csv(out / f"table{number}.csv", header, rows)
        lines += [f"## {caption}", "", *_markdown(header, rows), ""]
    lines += ["## Figures", ""]
    for name, caption, draw in (
        ("fig1_pca.png", "Figure 1. Explained variance of the target genes' principal components",
         lambda path: _pca_figure(pca, path)),
        ("fig3_validation.png", "Figure 3. Validation error per epoch",
         lambda path: _validation_figure(runs, path)),
        ("fig4_genes.png", "Figure 4. Gene-wise test error, E-MLP vs D-GEX",
         lambda path: _genes_figure(results, path)),
        ("fig5_1000g.png", "Figure 5. Models on GEO test and 1000G",
         lambda path: _datasets_figure(results, path)),
        ("fig6_correlation.png", "Figure 6. Per-gene Pearson r on GEO test, each model",
         lambda path: _correlation_figure(results, path)),
    ):
        if draw(out / name):
            lines += [f"![{caption}]({name})", "", f"*{caption}.*", ""]
    written = write_text(out / "report.md", "\n".join(lines))
    write_json(out / IDENTITY, identity(runs, pca=pca, title=title))  # last: it says done
    return written


def _check_out(out):
    """Refuse to write a report's files among a training run's (its folder holds config.json
    and inputs.json), where they would mix with, and could be mistaken for, the run's."""
    run = Run(out)
    if run.config_file.exists() and run.inputs_file.exists():
        raise StreamgexError(
            f"{out}: is a training run folder; give the report a folder of its own, "
            f"e.g. {out.parent / 'report'}"
        )


#: The file in a report's folder that records what it lays out (``identity``).
IDENTITY = "identity.json"


def identity(runs, *, pca=None, title):
    """What a report lays out, by content: each run's evaluation results (the SHA-256 of each
    ``eval/*.json``, which names its model files and store by content), the PCA summary's,
    the title. Not the runs' folders: a copied workdir's report is the same report."""
    runs = [Run(run) if not isinstance(run, Run) else run for run in runs]
    summary = Path(pca) / "summary.json" if pca else None
    return {"title": title,
            "results": sorted([f"{run.path.name}/{file.name}", digest.sha256(file)]
                              for run in runs for file in run.result_files()),
            "pca": digest.sha256(summary) if summary and summary.exists() else None}


def current(runs, out, *, pca=None, title):
    """Whether the report in ``out`` lays out what ``identity`` gives now."""
    recorded = Path(out) / IDENTITY
    return (Path(out) / "report.md").exists() and recorded.exists() \
        and read_json(recorded) == identity(runs, pca=pca, title=title)


def _predictors(results):
    """Kinds with results that infer targets, in registry order (least squares first)."""
    return [kind for kind in registry.kinds() if kind.infers_targets and kind.name in results]


def headline(runs):
    """The demo's headline: each predictor's MAE on GEO test and 1000G, its ratio to least
    squares' and its median per-gene r on GEO test, as text."""
    results = _load([Run.open(run) for run in runs])
    baseline = next((results[k.name] for k in _predictors(results) if k.role == "baseline"), {})
    rows = [f"{'model':<18} {'GEO test MAE':>13} {'x least sq.':>11} {'gene r':>7} "
            f"{'1000G MAE':>10} {'x least sq.':>11}"]
    for kind in _predictors(results):
        by, cells = results[kind.name], []
        for d in ("test", "1000g"):
            mae = by[d]["mae"] if d in by else None
            base = baseline.get(d, {}).get("mae")
            cells += ["-" if mae is None else f"{mae:.4f}",
                      "-" if mae is None or not base else f"{mae / base:.3f}"]
        r = by.get("test", {}).get("correlation", {}).get("gene_pearson_median")
        rows.append(f"{kind.title:<18} {cells[0]:>13} {cells[1]:>11} {_fmt(r, 3):>7} "
                    f"{cells[2]:>10} {cells[3]:>11}")
    return "\n".join(rows + [_verdict(results, baseline)])


def _verdict(results, baseline):
    """One sentence: which model is best on GEO test, against least squares."""
    scored = [(results[k.name]["test"]["mae"], k) for k in _predictors(results)
              if "test" in results[k.name]]
    if not scored or "test" not in baseline:
        return ""
    mae, best = min(scored, key=lambda pair: pair[0])
    if best.role == "baseline":
        return "On GEO test no network beats least squares here."
    better = [k.title for m, k in scored if k.role != "baseline" and m < baseline["test"]["mae"]]
    return (f"On GEO test {best.title} is best, at {mae / baseline['test']['mae']:.3f}x least "
            f"squares' MAE; {len(better)} of {len(scored) - 1} networks beat least squares.")


def _load(runs):
    """``{kind name: {dataset: result dict with "genes" per-gene errors}}``."""
    results = {}
    for run in runs:
        files = run.result_files()
        if not files:
            raise StreamgexError(f"{run.path}: not evaluated yet; run `streamgex evaluate "
                                 f"{run.path} STORE` first")
        for file in files:
            result = read_json(file)
            result["genes"] = read_gene_errors(run.genes_file(file.stem))
            result["run_folder"] = run
            results.setdefault(result["model"], {})[result["dataset"]] = result
    return results


def _split_summary(runs):
    for run in runs:
        path = run.data / "summary.json"
        if path.exists():
            return read_json(path)
    return None


def _datasets(results):
    found = {d for by in results.values() for d in by}
    return [d for d in DATASETS if d in found] + sorted(found - set(DATASETS))


def _data_lines(results, split):
    lines = []
    if split:
        t = split["totals"]
        lines.append(f"GEO after de-duplication: {split['profiles']:,} profiles x "
                     f"{split['genes']:,} genes, split into {t['train']:,} training, "
                     f"{t['val']:,} validation and {t['test']:,} test profiles "
                     f"({split['parameters']['clusters']} clusters).")
    for dataset in _datasets(results):
        any_result = next(by[dataset] for by in results.values() if dataset in by)
        lines.append(f"- `{dataset}`: {any_result['profiles']:,} profiles x "
                     f"{any_result['targets']:,} targets ({any_result['store']})")
    lines += ["", "Errors are mean absolute errors in standardized units (z-scores) over all "
              "targets and profiles. The paper's tables give the *sum* of per-partition MAEs "
              "instead; that figure is shown beside, labelled."]
    return lines


def _table1(results):
    coders = [k for k in registry.kinds() if not k.infers_targets and k.name in results]
    if not coders:
        return ("Table 1", [], [])
    datasets = [d for d in _datasets(results) if any(d in results[k.name] for k in coders)]
    rows = []
    for kind in coders:
        by = results[kind.name]
        run = next(iter(by.values()))["run_folder"]
        rows.append([kind.describe(run.options)]
                    + [f"{by[d]['mae']:.4f}" if d in by else "-" for d in datasets])
    return ("Table 1. Autoencoder reconstruction error (MAE)", ["hidden layers", *datasets], rows)


def _table_models(results, dataset, number):
    rows = []
    partitions = None
    for kind in _predictors(results):
        result = results[kind.name].get(dataset)
        if result is None:
            continue
        partitions = result["partitions"]
        rows.append([kind.title, f"{result['mae']:.4f}", _fmt(result.get("mae_without_shared")),
                     f"{result['sum_over_partitions']:.4f}",
                     " / ".join(f"{p:.4f}" for p in result["partition_mae"])])
        if "reconstruction" in result:
            floor = result["reconstruction"]
            rows.append([f"({kind.title}'s autoencoder floor)", f"{floor['mae']:.4f}",
                         _fmt(floor.get("mae_without_shared")),
                         f"{floor['sum_over_partitions']:.4f}",
                         " / ".join(f"{p:.4f}" for p in floor["partition_mae"])])
    name = "GEO test set" if dataset == "test" else "1000G (RNA-Seq)"
    header = ["model", "MAE", "MAE without targets that are landmarks",
              f"sum over {partitions} partitions (paper's convention)", "per partition"]
    return (f"{number}. {name}", header, rows)


def _table4(results):
    rows = []
    kinds = _predictors(results)[::-1]  # each model against every one before it in the registry
    pairs = [(a, b) for i, a in enumerate(kinds) for b in kinds[i + 1:]]
    for dataset in _datasets(results):
        for a, b in pairs:
            ra, rb = results[a.name].get(dataset), results[b.name].get(dataset)
            if ra is None or rb is None:
                continue
            c = compare(ra["genes"]["mae"].astype(float), rb["genes"]["mae"].astype(float))
            rows.append([f"{a.title} vs {b.title}", dataset,
                         f"{100 * c['relative_improvement']:.2f}%",
                         f"{100 * c['share_a_better']:.2f}%", f"{c['genes']:,}"])
    header = ["comparison", "dataset", "relative improvement (MAE)",
              "genes where the first is better", "genes"]
    return ("Table 4. Relative improvement and gene-wise comparison", header, rows)


def _table_correlations(results):
    rows = []
    for dataset in [d for d in _datasets(results) if d != "val"]:
        for kind in _predictors(results):
            c = results[kind.name].get(dataset, {}).get("correlation")
            if not c:
                continue
            rows.append([kind.title, dataset, _fmt(c["gene_pearson_median"], 3),
                         _fmt(c["gene_spearman_median"], 3), _fmt(c["profile_pearson_median"], 3),
                         *(f"{100 * v:.1f}%" for v in c["share_r_above"].values())])
    thresholds = next((list(c["share_r_above"]) for by in results.values() for r in by.values()
                       if (c := r.get("correlation"))), [])
    header = ["model", "dataset", "per-gene r (median)", "per-gene Spearman (median)",
              "per-profile r (median)", *(f"genes with r > {t}" for t in thresholds)]
    return ("Table 5. Correlation of inferred with measured values", header, rows)


def _table_trust(results):
    rows = []
    for kind in _predictors(results):
        genes = results[kind.name].get(DATASET, {}).get("genes", {})
        if "pearson" not in genes:
            continue
        r = genes["pearson"].astype(float)
        rows.append([kind.title, f"{len(r):,}", *(f"{n:,} ({100 * n / max(len(r), 1):.1f}%)"
                                                   for n in counts(r).values())])
    header = ["model", "targets", *(f"validation r > {c}" + (" (predict's default)"
                                                              if c == CUTOFF else "")
                                    for c in REPORTED)]
    return ("Table 6. Well-inferred targets: how many pass each validation r cut-off",
            header, rows)


def _correlation_figure(results, path):
    kinds = [k for k in _predictors(results) if "pearson" in results[k.name].get("test", {})
             .get("genes", {})]
    if not kinds:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in kinds:
        r = results[kind.name]["test"]["genes"]["pearson"].astype(float)
        r = np.sort(r[~np.isnan(r)])
        ax.plot(r, 1 - np.arange(len(r)) / max(len(r), 1), label=kind.title)
    for t in (0.5, 0.7, 0.9):
        ax.axvline(t, color="grey", lw=0.6, ls=":")
    return _save(fig, ax, path, x="per-gene Pearson r on GEO test",
                 y="share of target genes with at least this r",
                 title="Well-inferred genes (higher is better)")


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def _markdown(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def _write_csv(path, header, rows):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pca_figure(pca, path):
    table = Path(pca) / "explained_variance.csv" if pca else None
    if table is None or not table.exists():
        return False
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    component = np.array([int(r["component"]) for r in rows])
    cumulative = np.array([float(r["cumulative"]) for r in rows])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(component, 100 * cumulative, color="tab:blue")
    lines = ["components needed:"]
    for level in (90, 95, 99):
        k = int(np.searchsorted(100 * cumulative, level) + 1)
        ax.axhline(level, color="grey", lw=0.6, ls=":")
        ax.plot([k], [level], "o", color="tab:red", ms=4)
        lines.append(f"{level}% of variance: {k:,}")
    ax.text(0.97, 0.05, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom",
            fontsize=8, bbox={"facecolor": "white", "edgecolor": "grey"})
    return _save(fig, ax, path, x="number of principal components",
                 y="cumulative explained variance (%)", title="PCA of the target genes",
                 legend=False)


def _validation_figure(runs, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for run in runs:
        kind = run.kind
        logs = run.log_files()
        for i, log in enumerate(logs):
            with open(log, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("val_mae")]
            if not rows:
                continue
            label = kind.title + (f" part {i + 1}" if len(logs) > 1 else "") + kind.curve_label
            epochs = [int(r["epoch"]) for r in rows]
            values = [float(r["val_mae"]) for r in rows]
            if not kind.iterative:
                ax.axhline(values[-1], color="black", ls="--", lw=1, label=label)
            else:
                ax.plot(epochs, values, marker="o", ms=3, label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    return _save(fig, ax, path, x="epoch", y="validation MAE (z-scores)",
                 title="Validation error during training")


def _genes_figure(results, path):
    by_role = {}
    for kind in _predictors(results):
        if "test" in results[kind.name]:
            by_role.setdefault(kind.role, kind)
    proposed, reference = by_role.get("proposed"), by_role.get("reference")
    if proposed is None or reference is None:
        return False
    x = results[reference.name]["test"]["genes"]["mae"].astype(float)
    y = results[proposed.name]["test"]["genes"]["mae"].astype(float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, s=4, alpha=0.5, color="tab:blue", linewidths=0)
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([low, high], [low, high], color="tab:red", lw=1, label="equal error")
    ax.set_aspect("equal")
    return _save(fig, ax, path, x=f"{reference.title} MAE per gene",
                 y=f"{proposed.title} MAE per gene",
                 title=f"{proposed.title} better on {100 * (y < x).mean():.1f}% of {len(x):,} genes")


def _datasets_figure(results, path):
    datasets = [d for d in ("test", "1000g") if any(d in by for by in results.values())]
    kinds = _predictors(results)
    if len(datasets) < 2 or not kinds:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        by = results[kind.name]
        values = [by[d]["mae"] if d in by else np.nan for d in datasets]
        bars = ax.bar(np.arange(len(datasets)) + i * width, values, width, label=kind.title)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(datasets)) + width * (len(kinds) - 1) / 2,
                  ["GEO test" if d == "test" else "1000G" for d in datasets])
    return _save(fig, ax, path, x="", y="MAE (z-scores)",
                 title="Error on GEO test (microarray) and 1000G (RNA-Seq)")


def _save(fig, ax, path, *, x, y, title, legend=True):
    """Label, lay out and write a figure as PNG; True (it was drawn)."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    _pyplot().close(fig)
    return True
