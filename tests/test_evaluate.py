"""Evaluation equals a numpy computation on a tiny known case; the report lays it out."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex import store  # noqa: E402
from streamgex.cli import main  # noqa: E402
from streamgex.evaluation.evaluate import evaluate, read_gene_errors  # noqa: E402
from streamgex.evaluation.metrics import compare, summarize  # noqa: E402
from streamgex.models import registry  # noqa: E402
from streamgex.training.run import Run  # noqa: E402

LANDMARKS, TARGETS = 3, 5
#: Target 0 is the same Ensembl gene as landmark 1 (as the real maps' 445 genes).
ENSEMBL = ["E_L0", "E_L1", "E_L2", "E_L1", "E_T1", "E_T2", "E_T3", "E_T4"]


def write_store(path, values, *, step="split", chunk=4, units="z-score"):
    keys = [f"G{i}" for i in range(LANDMARKS + TARGETS)]
    group = store.begin(path, step=step, parameters={}, source={})
    store.start_writing(
        group, samples=[f"S{i}" for i in range(len(values))], genes=keys, chunk_samples=chunk,
        coords={"is_landmark": ("gene", np.arange(len(keys)) < LANDMARKS),
                "gene_ensembl": ("gene", np.array(ENSEMBL, dtype=object)),
                "gene_symbol": ("gene", np.array([f"SYM{i}" for i in range(len(keys))],
                                                 dtype=object))})
    store.write_chunks(group, lambda a, b: values[a:b], desc="")
    store.finish(group, attrs={"units": units})
    return path


def linear_run(tmp_path, split, coefficients):
    """A finished linear run folder holding the given coefficients."""
    kind = registry.get("linear")
    run = Run.create(tmp_path / "run", kind, kind.Options(), data=split)
    run.best_dir.mkdir()
    np.save(run.best(kind.FILE), coefficients)
    run.mark_done()
    return run.path


@pytest.fixture
def known_case(tmp_path):
    rng = np.random.default_rng(1)
    split = tmp_path / "split"
    for part, rows in (("train", 6), ("test", 10)):
        write_store(split / part, rng.standard_normal((rows, 8)).astype(np.float32))
    coefficients = rng.standard_normal((LANDMARKS + 1, TARGETS))
    return split, linear_run(tmp_path, split, coefficients), coefficients


def test_evaluate_equals_numpy_with_partition_sum_and_shared_genes(known_case):
    split, run, w = known_case
    x = store.open_store(split / "test").expression.values.astype(np.float64)
    predicted = (x[:, :LANDMARKS] @ w[:-1] + w[-1]).astype(np.float32)
    per_gene = np.abs(predicted - x[:, LANDMARKS:]).mean(axis=0)

    result = evaluate(run, split / "test", partitions=2)

    assert result["profiles"] == 10 and result["targets"] == TARGETS
    assert result["mae"] == pytest.approx(per_gene.mean(), rel=1e-6)
    # partitions of 5 targets: [0, 2) and [2, 5) (np.linspace rounding), summed as the paper does
    parts = [per_gene[:2].mean(), per_gene[2:].mean()]
    assert result["partition_mae"] == pytest.approx(parts, rel=1e-6)
    assert result["sum_over_partitions"] == pytest.approx(sum(parts), rel=1e-6)
    assert result["sum_over_partitions"] != pytest.approx(result["mae"])
    assert result["shared_genes"] == 1
    assert result["mae_without_shared"] == pytest.approx(per_gene[1:].mean(), rel=1e-6)
    genes = read_gene_errors(run / "eval" / "test_genes.csv")
    assert list(genes["gene"]) == ["G3", "G4", "G5", "G6", "G7"]
    assert list(genes["shared_with_landmark"]) == ["1", "0", "0", "0", "0"]
    np.testing.assert_allclose(genes["mae"].astype(float), per_gene, rtol=1e-5)


def test_an_empty_store_or_a_diverged_model_is_an_error_not_a_result(known_case, tmp_path,
                                                                     capsys):
    split, run, w = known_case
    write_store(tmp_path / "empty.zarr", np.zeros((0, 8), np.float32))
    assert main(["evaluate", str(run), str(tmp_path / "empty.zarr"), "--quiet"]) == 1
    assert "holds no profiles" in capsys.readouterr().err
    np.save(run / "best" / "linear.npy", np.full_like(w, np.nan))
    assert main(["evaluate", str(run), str(split / "test"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "not finite (NaN or Inf) for 5 of 5 targets" in err and "diverged" in err
    assert not (run / "eval" / "test.json").exists()


def test_correlations_equal_numpy_and_scipy(known_case, monkeypatch):
    from scipy.stats import spearmanr

    from streamgex.evaluation import columns

    monkeypatch.setattr(columns, "BUDGET", 10 * 24 * 2)  # gene blocks of 2: several blocks
    split, run, w = known_case
    x = store.open_store(split / "test").expression.values.astype(np.float64)
    predicted = (x[:, :LANDMARKS] @ w[:-1] + w[-1]).astype(np.float32).astype(np.float64)
    true = x[:, LANDMARKS:]
    pearson = [np.corrcoef(predicted[:, j], true[:, j])[0, 1] for j in range(TARGETS)]
    spearman = [spearmanr(predicted[:, j], true[:, j])[0] for j in range(TARGETS)]
    profile = [np.corrcoef(predicted[i], true[i])[0, 1] for i in range(len(true))]

    c = evaluate(run, split / "test")["correlation"]

    assert c["gene_pearson_median"] == pytest.approx(np.median(pearson), rel=1e-5)
    assert c["gene_spearman_median"] == pytest.approx(np.median(spearman), rel=1e-5)
    assert c["profile_pearson_median"] == pytest.approx(np.median(profile), rel=1e-5)
    assert c["share_r_above"] == {str(t): pytest.approx(np.mean(np.array(pearson) > t))
                                  for t in (0.5, 0.7, 0.9)}
    genes = read_gene_errors(run / "eval" / "test_genes.csv")
    np.testing.assert_allclose(genes["pearson"].astype(float), pearson, rtol=1e-4)
    np.testing.assert_allclose(genes["spearman"].astype(float), spearman, rtol=1e-4)
    assert not list((run / "eval").glob("columns.partial.*")), "the spilled columns are removed"


def test_evaluation_is_reused_until_the_model_changes(known_case, caplog):
    split, run, w = known_case
    first = evaluate(run, split / "test")
    caplog.set_level("INFO", logger="streamgex")
    assert evaluate(run, split / "test")["mae"] == first["mae"]
    assert "up to date" in caplog.text
    np.save(run / "best" / "linear.npy", w * 2)
    assert evaluate(run, split / "test")["mae"] != first["mae"]


def test_evaluate_names_the_genes_a_store_lacks(known_case, tmp_path, capsys):
    split, run, _ = known_case
    other = tmp_path / "other.zarr"
    group = store.begin(other, step="genes", parameters={}, source={})
    store.start_writing(group, samples=["a"], genes=["G0", "G1", "X"], chunk_samples=1)
    store.write_chunks(group, lambda a, b: np.zeros((1, 3), np.float32), desc="")
    store.finish(group, attrs={"units": "z-score"})
    assert main(["evaluate", str(run), str(other)]) == 1
    err = capsys.readouterr().err
    assert "lacks 1 of the model's 3 input genes (first: G2)" in err


def test_evaluate_refuses_a_store_in_other_units_than_the_training_data(known_case, tmp_path,
                                                                        capsys):
    """Issue 27.6: a genes store (values as in the source file) evaluated as if it held
    z-scores: MAE 10.79, exit 0. Refused in one line naming the store and the fix."""
    split, run, _ = known_case
    values = store.open_store(split / "test").expression.values * 3 + 8
    genes = write_store(tmp_path / "1000g_genes.zarr", values, step="genes",
                        units=store.RAW_UNITS)
    assert main(["evaluate", str(run), str(genes), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{genes}: holds values 'as in the source file', but run was trained on " \
           f"'z-score' ones" in err and "streamgex standardize" in err
    assert not (run / "eval" / "1000g_genes.json").exists()


def test_compare_gives_relative_improvement_and_share_of_genes():
    a, b = np.array([1.0, 2.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0, 2.0])
    c = compare(a, b)
    assert c["relative_improvement"] == pytest.approx((2.0 - 1.75) / 2.0)
    assert c["share_a_better"] == pytest.approx(0.5)  # genes 0 and 3; a tie is not "better"
    summary = summarize(a, [(0, 1), (1, 4)], shared=np.array([True, False, False, False]))
    assert summary["sum_over_partitions"] == pytest.approx(1.0 + 2.0)
    assert summary["mae_without_shared"] == pytest.approx(2.0)


def test_report_has_the_papers_tables_and_figures(demo_experiment):
    workdir = demo_experiment[0]
    report = workdir / "work" / "report" / "report.md"
    text = report.read_text()
    test_profiles = json.loads((workdir / "work" / "split" / "summary.json").read_text())[
        "totals"]["test"]
    for caption in ("Table 1. Autoencoder reconstruction", "Table 2. GEO test set",
                    "Table 3. 1000G", "Table 4. Relative improvement",
                    "Table 5. Correlation", "sum over 2 partitions (paper's convention)",
                    f"{test_profiles:,} test profiles"):
        assert caption in text, caption
    for name in ("fig1_pca.png", "fig3_validation.png", "fig4_genes.png", "fig5_1000g.png",
                 "fig6_correlation.png"):
        png = report.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"]({name})" in text
    table2 = (report.parent / "table2.csv").read_text().splitlines()
    # linear, D-GEX, E-MLP, fine-tuned E-MLP, and each E-MLP's autoencoder floor
    assert table2[1].startswith("Linear regression,") and len(table2) == 7
    tested = json.loads((workdir / "work" / "runs" / "emlp" / "eval" / "test.json").read_text())
    assert f"{tested['mae']:.4f}" in text
    autoencoder = json.loads((workdir / "work" / "runs" / "autoencoder" / "eval" / "test.json")
                             .read_text())
    # the E-MLP's floor is its own autoencoder's round trip on the same profiles
    assert tested["reconstruction"]["mae"] == pytest.approx(autoencoder["mae"], rel=1e-5)


def test_a_dataset_name_cannot_write_outside_eval(known_case, tmp_path, capsys):
    """Issue 11.15: `evaluate --name ../../x` wrote its results outside the run's eval/."""
    split, run, _ = known_case
    for name in ("../../x", "sub/x", ".hidden"):
        assert main(["evaluate", str(run), str(split / "test"), "--name", name, "--quiet"]) == 1
        assert "a dataset name is a plain name" in capsys.readouterr().err
    assert not list(tmp_path.rglob("x.json")) and not (run.parent / "x.json").exists()


def test_report_refuses_a_missing_pca_folder_and_a_run_folder_as_out(known_case, tmp_path,
                                                                      capsys):
    """Issue 27.7: a missing --pca folder gave a report without Figure 1; --out into a run
    folder mixed the report's files with the run's."""
    split, run, _ = known_case
    assert main(["evaluate", str(run), str(split / "test"), "--quiet"]) == 0
    capsys.readouterr()
    for extra, named in ((["--out", str(tmp_path / "report"), "--pca", str(tmp_path / "nopca")],
                          tmp_path / "nopca"),
                         (["--out", str(run)], run)):
        assert main(["report", str(run), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("streamgex: error: ") and "\n" not in err, err
        assert str(named) in err, err
    assert not (tmp_path / "report").exists() and not (run / "report.md").exists()
