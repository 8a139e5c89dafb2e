"""Issue 29.4 and 29.6b: every prediction says how far to trust each target (its validation
r and MAE, a well-inferred flag), ``--only-well-inferred`` writes just those targets, the
report counts them; D-GEX predicts one partition at a time."""

import csv
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import zarr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex import store  # noqa: E402
from streamgex.cli import main  # noqa: E402
from streamgex.evaluation import trust  # noqa: E402
from streamgex.evaluation.evaluate import evaluate, read_gene_errors  # noqa: E402
from streamgex.evaluation.metrics import pearson_columns  # noqa: E402
from streamgex.store import open_store, strings  # noqa: E402
from test_evaluate import LANDMARKS, linear_run, write_store  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    """A linear run on a tiny split with a validation part."""
    rng = np.random.default_rng(2)
    split = tmp_path / "split"
    for part, rows in (("train", 6), ("val", 12), ("test", 5)):
        write_store(split / part, rng.standard_normal((rows, 8)).astype(np.float32))
    coefficients = rng.standard_normal((LANDMARKS + 1, 5))
    return split, linear_run(tmp_path, split, coefficients)


def expected(split, run):
    """Pearson r and MAE of each target on ``split/val``, in numpy."""
    w = np.load(run / "best" / "linear.npy")
    x = open_store(split / "val").expression.values.astype(np.float64)
    predicted = (x[:, :LANDMARKS] @ w[:-1] + w[-1]).astype(np.float32)
    return pearson_columns(predicted, x[:, LANDMARKS:]), \
        np.abs(predicted - x[:, LANDMARKS:]).mean(axis=0)


def test_trust_is_the_val_evaluation_remade_when_the_model_or_the_val_store_changes(tiny):
    split, run = tiny
    found = trust.of_run(run)  # no evaluation yet: made now, on val
    r, mae = expected(split, run)
    np.testing.assert_allclose(found.pearson, r, rtol=1e-5)
    np.testing.assert_allclose(found.mae, mae, rtol=1e-5)
    assert found.profiles == 12 and list(found.genes) == [f"G{i}" for i in range(3, 8)]

    # an evaluation by `run` with its config's partition count is current: not redone
    evaluate(run, split / "val", name="val", partitions=2)
    saved = (run / "eval" / "val.json").stat().st_mtime_ns
    trust.of_run(run)
    assert (run / "eval" / "val.json").stat().st_mtime_ns == saved

    weights = run / "best" / "linear.npy"  # retrained: other content
    np.save(weights, np.load(weights) * 2 + 0.5)
    r, mae = expected(split, run)
    again = trust.of_run(run)
    np.testing.assert_allclose(again.mae, mae, rtol=1e-5)
    assert not np.allclose(again.mae, found.mae)

    rng = np.random.default_rng(3)  # the val store rebuilt from other data
    shutil.rmtree(split / "val")
    write_store(split / "val", rng.standard_normal((9, 8)).astype(np.float32))
    group = zarr.open_group(split / "val", mode="a")  # as a split of another seed
    group.attrs[store.ATTR] = {**group.attrs[store.ATTR], "parameters": {"seed": 3}}
    zarr.consolidate_metadata(split / "val")
    r, mae = expected(split, run)
    rebuilt = trust.of_run(run)
    assert rebuilt.profiles == 9
    np.testing.assert_allclose(rebuilt.pearson, r, rtol=1e-5)
    np.testing.assert_allclose(rebuilt.mae, mae, rtol=1e-5)


@pytest.fixture(scope="module")
def demo(demo_experiment):
    workdir = demo_experiment[0]
    return {"workdir": workdir, "runs": workdir / "work" / "runs",
            "split": workdir / "work" / "split"}


def val_figures(run):
    genes = read_gene_errors(run / "eval" / "val_genes.csv")
    return genes["gene"], genes["pearson"].astype(float), genes["mae"].astype(float)


def test_predictions_carry_each_targets_trust_into_the_store_gctx_and_anndata(demo, tmp_path):
    import anndata

    run = demo["runs"] / "emlp"
    out, gctx, h5ad = tmp_path / "p.zarr", tmp_path / "p.gctx", tmp_path / "p.h5ad"
    genes, r, mae = val_figures(run)
    cutoff = float(np.round(np.median(r), 3))  # the demo's E-MLP passes 0.3 on every gene
    assert main(["predict", str(run), str(demo["split"] / "test"), "--out", str(out),
                 "--units", "standardized", "--gctx", str(gctx), "--well-inferred-r",
                 str(cutoff), "--quiet"]) == 0
    well = r > cutoff
    assert 0 < well.sum() < len(well)
    ds = open_store(out)
    assert list(strings(ds.gene.values)) == list(genes)
    np.testing.assert_allclose(ds.gene_val_pearson.values, r, rtol=1e-5)
    np.testing.assert_allclose(ds.gene_val_mae.values, mae, rtol=1e-5)
    np.testing.assert_array_equal(ds.gene_is_well_inferred.values, well)
    with h5py.File(gctx) as f:  # CMap's BING flag and the figures it rests on
        row = f["/0/META/ROW"]
        np.testing.assert_array_equal(row["pr_is_bing"][()], well.astype(np.int32))
        np.testing.assert_allclose(row["pr_val_r"][()], r, rtol=1e-5)
        np.testing.assert_allclose(row["pr_val_mae"][()], mae, rtol=1e-5)
    assert main(["export-store", str(out), "--out", str(h5ad), "--quiet"]) == 0
    var = anndata.read_h5ad(h5ad).var
    np.testing.assert_allclose(var["gene_val_pearson"], r, rtol=1e-5)
    np.testing.assert_array_equal(var["gene_is_well_inferred"].astype(bool), well)


def test_only_well_inferred_writes_exactly_the_passing_targets_from_a_run_or_its_bundle(
        demo, tmp_path):
    run = demo["runs"] / "linear"
    genes, r, _ = val_figures(run)
    cutoff = float(np.round(np.median(r), 3))
    passing = r > cutoff
    test = str(demo["split"] / "test")
    every, only = tmp_path / "every.zarr", tmp_path / "only.zarr"
    common = ["--units", "standardized", "--well-inferred-r", str(cutoff), "--quiet"]
    assert main(["predict", str(run), test, "--out", str(every), *common]) == 0
    assert main(["predict", str(run), test, "--out", str(only), "--only-well-inferred",
                 *common]) == 0
    kept = open_store(only)
    assert list(strings(kept.gene.values)) == list(genes[passing])
    assert kept.gene_is_well_inferred.values.all()
    np.testing.assert_array_equal(kept.expression.values,
                                  open_store(every).expression.values[:, passing])
    np.testing.assert_array_equal(open_store(every).gene_is_well_inferred.values, passing)

    bundle, from_bundle = tmp_path / "bundle", tmp_path / "bundle.zarr"
    assert main(["export", str(run), "--out", str(bundle), "--quiet"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["trust"]["well_inferred"]["0.3"] == int((r > 0.3).sum())
    assert main(["predict", str(bundle), test, "--out", str(from_bundle),
                 "--only-well-inferred", *common]) == 0
    assert list(strings(open_store(from_bundle).gene.values)) == list(genes[passing])
    np.testing.assert_allclose(open_store(from_bundle).expression.values,
                               kept.expression.values, atol=1e-5)

    (bundle / trust_file()).unlink()  # a bundle exported before trust: an error, one line
    manifest["files"].pop(trust_file())
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert main(["predict", str(bundle), test, "--out", str(tmp_path / "x.zarr"),
                 "--only-well-inferred", *common]) == 1
    assert main(["predict", str(run), test, "--out", str(tmp_path / "y.zarr"),
                 "--only-well-inferred", "--units", "standardized",
                 "--well-inferred-r", "1", "--quiet"]) == 1


def trust_file():
    from streamgex.inference.bundle import TRUST

    return TRUST


def test_the_report_counts_the_well_inferred_targets_at_each_cutoff(demo):
    report = demo["workdir"] / "work" / "report"
    assert "Table 6. Well-inferred targets" in (report / "report.md").read_text()
    with open(report / "table6.csv", newline="") as f:
        rows = {row[0]: row for row in csv.reader(f)}
    for name, title in (("dgex", "D-GEX"), ("linear", "Linear regression")):
        _, r, _ = val_figures(demo["runs"] / name)
        assert rows[title][1] == f"{len(r):,}"
        for cell, cutoff in zip(rows[title][2:], trust.REPORTED):
            assert cell.startswith(f"{int((r > cutoff).sum()):,} ("), (name, cutoff, cell)


def two_partition_dgex(split, folder):
    """A finished D-GEX run of two small partitions on ``split``, random weights (never
    evaluated: predict evaluates it on val first, for its trust)."""
    from streamgex.models import registry
    from streamgex.models.dgex import build_dgex, partitions
    from streamgex.training.run import Run

    ds = open_store(split / "train")
    landmarks = int(ds.is_landmark.values.sum())
    targets = int((~ds.is_landmark.values).sum())
    dgex = registry.get("dgex")
    run = Run.create(folder, dgex, dgex.Options(partitions=2), data=split)
    run.best_dir.mkdir()
    for index, (start, stop) in enumerate(partitions(targets, 2)):
        registry.save_keras(build_dgex(landmarks, stop - start, (32,), seed=index),
                            run.best(dgex.file(index)))
        run.network_dir(index).mkdir(exist_ok=True)
        run.mark_done(index)
    return run.path


def test_dgex_predicts_one_partition_at_a_time_and_resumes_after_the_pass_it_finished(
        demo, tmp_path, monkeypatch):
    """6b: predict held every D-GEX partition at once (6.04 GiB at full size); now each
    partition is loaded, run over the input and freed before the next, and a prediction
    killed between two passes resumes without the first partition."""
    import weakref

    from streamgex.evaluation import predictor as predictor_module
    from streamgex.evaluation.predictor import load_predictor
    from streamgex.inference import passes

    run = two_partition_dgex(demo["split"], tmp_path / "dgex")
    test = demo["split"] / "test"
    alive, most, loaded = weakref.WeakSet(), [0], []
    original = predictor_module.load_keras

    def counted(path):
        import gc

        gc.collect()
        model = original(path)
        alive.add(model)
        loaded.append(path.name)
        most[0] = max(most[0], len(alive))
        return model

    monkeypatch.setattr(predictor_module, "load_keras", counted)
    writes = passes.store.write_chunks

    class Killed(Exception):
        pass

    def killed_in_second_pass(group, read, **kwargs):
        if kwargs["genes"].start > 0:
            raise Killed
        return writes(group, read, **kwargs)

    out = tmp_path / "p.zarr"
    monkeypatch.setattr(passes.store, "write_chunks", killed_in_second_pass)
    with pytest.raises(Killed):
        main(["predict", str(run), str(test), "--out", str(out), "--units", "standardized",
              "--quiet"])
    monkeypatch.setattr(passes.store, "write_chunks", writes)
    del loaded[:]
    assert main(["predict", str(run), str(test), "--out", str(out), "--units",
                 "standardized", "--quiet"]) == 0
    assert loaded == ["dgex_part2.keras"]  # the first pass was done: only the second ran
    assert most[0] == 1
    monkeypatch.setattr(predictor_module, "load_keras", original)
    x = open_store(test)
    expected_z = load_predictor(run).predict(
        x.expression.values[:, x.is_landmark.values.astype(bool)])
    np.testing.assert_allclose(open_store(out).expression.values, expected_z, atol=1e-6)
    assert (run / "eval" / "val.json").exists()  # its trust: evaluated on val first
