"""predict reproduces the evaluation's predictions and re-applies the pipeline's normalization."""

import json
import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex.cli import main  # noqa: E402
from streamgex.evaluation.predictor import load_predictor  # noqa: E402
from streamgex.formats.gctx import COL_IDS, MATRIX, ROW_IDS, create_gctx, open_gctx  # noqa: E402
from streamgex.inference.transform import input_transform, landmark_reference  # noqa: E402
from streamgex.inference.transform import pipeline_state  # noqa: E402
from streamgex.preprocess.standardize import EPSILON  # noqa: E402
from streamgex.store import open_store, strings  # noqa: E402


@pytest.fixture(scope="module")
def demo(demo_experiment):
    workdir = demo_experiment[0]
    runs = workdir / "work" / "runs"
    test = open_store(workdir / "work" / "split" / "test")
    return {"workdir": workdir, "runs": runs, "test": test,
            "split": workdir / "work" / "split", "raw": workdir / "raw" / "geo.gctx"}


def by_sample(path, samples):
    ds = open_store(path)
    index = {s: i for i, s in enumerate(strings(ds.sample.values))}
    return ds.expression.values[[index[s] for s in samples]]


@pytest.mark.parametrize("model", ["emlp", "dgex"])
def test_predict_on_the_test_split_reproduces_the_evaluation(demo, tmp_path, model):
    run = demo["runs"] / model
    out = tmp_path / "pred.zarr"
    assert main(["predict", str(run), str(demo["split"] / "test"), "--out", str(out),
                 "--units", "standardized", "--quiet"]) == 0
    test = demo["test"]
    landmarks = test.is_landmark.values.astype(bool)
    predicted = open_store(out).expression.values
    expected = load_predictor(run).predict(test.expression.values[:, landmarks])
    np.testing.assert_array_equal(predicted, expected)
    mae = np.abs(predicted.astype(np.float64) - test.expression.values[:, ~landmarks]).mean()
    evaluated = json.loads((run / "eval" / "test.json").read_text())
    assert mae == pytest.approx(evaluated["mae"], rel=1e-6)
    assert list(strings(open_store(out).gene.values)) == list(strings(test.gene.values[~landmarks]))


def test_raw_gctx_profiles_get_the_pipelines_normalization(demo, tmp_path):
    run = demo["runs"] / "emlp"
    out, gctx = tmp_path / "raw.zarr", tmp_path / "raw.gctx"
    assert main(["predict", str(run), str(demo["raw"]), "--out", str(out), "--gctx", str(gctx),
                 "--quiet"]) == 0
    test = demo["test"]
    samples = strings(test.sample.values)
    landmarks = test.is_landmark.values.astype(bool)
    from_raw = by_sample(out, samples)
    from_split = load_predictor(run).predict(test.expression.values[:, landmarks])
    # raw probes -> genes -> quantile normalization -> standardization, as the pipeline did
    np.testing.assert_allclose(from_raw, from_split, atol=1e-5)
    assert open_store(out).attrs["predict"]["normalization"] == (
        "quantile-normalized over whole profiles")
    source = open_gctx(gctx)
    try:
        written = open_store(out)
        np.testing.assert_array_equal(source.read(0, written.sizes["sample"]),
                                      written.expression.values)
        assert list(source.gene_ids) == list(strings(open_store(out).gene.values))
    finally:
        source.close()


def test_expression_output_undoes_the_standardization(demo, tmp_path):
    run = demo["runs"] / "linear"
    z, expression = tmp_path / "z.zarr", tmp_path / "x.zarr"
    for out, extra in ((z, []), (expression, ["--expression"])):
        assert main(["predict", str(run), str(demo["split"] / "test"), "--out", str(out),
                     "--units", "standardized", "--quiet", *extra]) == 0
    state = pipeline_state(demo["split"])
    targets = ~state.is_landmark
    np.testing.assert_allclose(
        open_store(expression).expression.values,
        open_store(z).expression.values * (state.std[targets] + EPSILON) + state.mean[targets],
        rtol=1e-5)


def landmark_only_gctx(path, raw, state, rows):
    """A GCTX holding only the landmark probes of the first ``rows`` raw profiles."""
    source = open_gctx(raw)
    try:
        probes = [p for g in np.flatnonzero(state.is_landmark) for p in state.probes[g]]
        index = {p: i for i, p in enumerate(source.gene_ids)}
        values = source.read(0, rows)[:, [index[p] for p in probes]]
        with h5py.File(path, "w") as f:
            matrix = create_gctx(f, sample_ids=source.sample_ids[:rows], gene_ids=probes)
            matrix[:] = values
    finally:
        source.close()
    return probes


def l1000_style_gctx(path, raw, state, rows):
    """An L1000-style GCTX of the first ``rows`` raw profiles: one row per landmark gene keyed
    by an Entrez-like id with ``pr_gene_symbol``, ``cell_id`` column metadata; returns the
    same values keyed by Ensembl id as ``(values, ensembl ids, sample ids)``."""
    source = open_gctx(raw)
    try:
        index = {p: i for i, p in enumerate(source.gene_ids)}
        profiles, samples = source.read(0, rows), source.sample_ids[:rows]
    finally:
        source.close()
    landmarks = np.flatnonzero(state.is_landmark)
    values = np.stack([profiles[:, [index[p] for p in state.probes[g]]].mean(axis=1)
                       for g in landmarks], axis=1)
    with h5py.File(path, "w") as f:
        create_gctx(f, sample_ids=samples, gene_ids=[str(5000 + g) for g in landmarks],
                    row_meta={"pr_gene_symbol": [str(state.symbols[g]) for g in landmarks]},
                    col_meta={"cell_id": [f"cell{i % 3}" for i in range(rows)]})[:] = values
    return values, [str(state.ensembl[g]) for g in landmarks], samples


def test_landmark_only_profiles_are_normalized_onto_the_landmark_reference(demo, tmp_path):
    state = pipeline_state(demo["split"])
    path = tmp_path / "l1000.gctx"
    probes = landmark_only_gctx(path, demo["raw"], state, rows=50)
    norm = input_transform(state, probes, "raw")
    assert norm.how == "landmarks quantile-normalized onto the landmark reference"
    source = open_gctx(path)
    raw = source.read(0, 50)
    source.close()
    z = norm.apply(raw)
    landmarks = np.flatnonzero(state.is_landmark)
    normalized = state.destandardize(z.astype(np.float64), landmarks)
    reference = landmark_reference(state)
    # a profile without ties now has exactly the landmark reference as its distribution
    # (tied values, here the simulator's clipping at 4 and 15, share the mean of their ranks)
    untied = np.array([len(np.unique(row)) == len(row) for row in raw])
    assert 10 < untied.sum() < 50
    np.testing.assert_allclose(np.sort(normalized[untied], axis=1),
                               np.tile(reference, (untied.sum(), 1)), atol=1e-4)
    np.testing.assert_allclose(normalized.mean(axis=1), reference.mean(), atol=1e-4)

    out = tmp_path / "l1000.zarr"
    assert main(["predict", str(demo["runs"] / "emlp"), str(path), "--out", str(out),
                 "--quiet"]) == 0
    assert open_store(out).expression.shape == (50, int((~state.is_landmark).sum()))


def test_missing_landmarks_are_listed_and_an_autoencoder_is_refused(demo, tmp_path, capsys):
    state = pipeline_state(demo["split"])
    path = tmp_path / "short.gctx"
    probes = landmark_only_gctx(path, demo["raw"], state, rows=5)
    with h5py.File(path, "r+") as f:
        ids = f[ROW_IDS][:]
        ids[:2] = [b"NOT_A_PROBE_1", b"NOT_A_PROBE_2"]
        del f[ROW_IDS]
        f[ROW_IDS] = ids
        assert f[MATRIX].shape[0] == len(f[COL_IDS])
    assert main(["predict", str(demo["runs"] / "emlp"), str(path), "--out",
                 str(tmp_path / "o.zarr")]) == 1
    err = capsys.readouterr().err
    assert "lacks 2 of the 100 landmark genes" in err and probes[0] in err
    assert main(["predict", str(demo["runs"] / "autoencoder"), str(path), "--out",
                 str(tmp_path / "o.zarr")]) == 1
    assert "an autoencoder predicts nothing" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["emlp/best/emlp.keras", "autoencoder/best/decoder.keras",
                                   "dgex/best/dgex_part1.keras"])
def test_models_load_with_exactly_the_saved_weights(demo, model):
    import keras

    from streamgex.evaluation.predictor import load_keras as _load

    path = demo["runs"] / model
    expected = keras.saving.load_model(path, compile=False).get_weights()
    loaded = _load(path).get_weights()
    assert len(loaded) == len(expected) > 0
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)
    assert not list(path.parent.glob(".weights-*"))  # the extracted file is cleaned up


def test_normalized_input_is_only_standardized(demo, tmp_path):
    run = demo["runs"] / "linear"
    out = tmp_path / "norm.zarr"
    normalized = demo["workdir"] / "work" / "stores" / "geo_norm.zarr"
    assert main(["predict", str(run), str(normalized), "--out", str(out), "--units", "normalized",
                 "--quiet"]) == 0
    test = demo["test"]
    landmarks = test.is_landmark.values.astype(bool)
    expected = load_predictor(run).predict(test.expression.values[:, landmarks])
    np.testing.assert_allclose(by_sample(out, strings(test.sample.values)), expected, atol=1e-5)
    assert open_store(out).attrs["predict"]["normalization"] == (
        "standardized with the pipeline's statistics")


def test_predict_never_destroys_its_input_or_an_existing_file(demo, tmp_path, capsys):
    """Issue 11.2 and 11.3: ``--out`` equal to the input store is refused even with
    --overwrite; an existing --gctx file is replaced only with --overwrite."""
    import shutil

    run = str(demo["runs"] / "linear")
    source = tmp_path / "in.zarr"
    shutil.copytree(demo["split"] / "test", source)
    assert main(["predict", run, str(source), "--out", str(source), "--overwrite"]) == 1
    assert "is, holds or lies inside its input" in capsys.readouterr().err
    assert open_store(source).sizes["sample"] == demo["test"].sizes["sample"]
    gctx = tmp_path / "mine.gctx"
    gctx.write_bytes(b"not yours")
    out = ["--out", str(tmp_path / "o.zarr"), "--gctx", str(gctx), "--units", "standardized"]
    assert main(["predict", run, str(source), *out]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert gctx.read_bytes() == b"not yours" and not (tmp_path / "o.zarr").exists()
    assert main(["predict", run, str(source), *out, "--overwrite", "--quiet"]) == 0
    assert h5py.is_hdf5(gctx)


def test_a_text_input_is_not_converted_again_when_the_output_is_up_to_date(demo, tmp_path,
                                                                          capsys):
    """Issue 11.15: predict on a text table re-ingested it although its output was done."""
    from rawfiles import write_table

    test = demo["test"]
    landmarks = test.is_landmark.values.astype(bool)
    table = tmp_path / "in.tsv"
    write_table(table, test.expression.values[:50, landmarks], strings(test.sample.values[:50]),
                strings(test.gene.values[landmarks]))
    args = ["predict", str(demo["runs"] / "linear"), str(table), "--out",
            str(tmp_path / "o.zarr"), "--units", "standardized"]
    assert main(args) == 0
    assert "converting it to a store first" in capsys.readouterr().err
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "up to date" in err and "converting" not in err, err


def test_rows_keyed_by_gene_symbol_or_a_named_field_predict_as_rows_keyed_by_id(
        demo, tmp_path, capsys):
    """Issue 12.2: a GCTX keyed by gene symbols (or by other ids, with pr_gene_symbol row
    metadata) failed with "lacks 100 of the 100 landmark genes". Now rows match by symbol or
    by a named field, with the same predictions as rows keyed by Ensembl id; an ambiguous
    symbol is an error naming it."""
    state = pipeline_state(demo["split"])
    landmarks = np.flatnonzero(state.is_landmark)
    source = open_gctx(demo["raw"])
    try:
        index = {p: i for i, p in enumerate(source.gene_ids)}
        raw = source.read(0, 30)
        samples = source.sample_ids[:30]
    finally:
        source.close()
    genes = np.stack([raw[:, [index[p] for p in state.probes[g]]].mean(axis=1)
                      for g in landmarks], axis=1)
    symbols = [str(state.symbols[g]) for g in landmarks]

    def gctx(name, ids, fields=None, values=genes):
        path = tmp_path / f"{name}.gctx"
        with h5py.File(path, "w") as f:
            create_gctx(f, sample_ids=samples, gene_ids=ids)[:] = values
            for field, column in (fields or {}).items():
                f[f"/0/META/ROW/{field}"] = np.asarray(column).astype("S")
        return path

    def predicted(path, *options):
        out = tmp_path / f"{path.stem}{'_'.join(options).replace('-', '')}.zarr"
        code = main(["predict", str(demo["runs"] / "emlp"), str(path), "--out", str(out),
                     *options])
        return code, (open_store(out).expression.values if code == 0 else None)

    _, by_id = predicted(gctx("ensembl", [str(state.ensembl[g]) for g in landmarks]))
    capsys.readouterr()
    code, by_symbol = predicted(gctx("symbols", symbols))
    assert code == 0 and "100 of the model's 100 landmark genes found by gene symbol" in \
        capsys.readouterr().err
    np.testing.assert_array_equal(by_symbol, by_id)

    # Issue 12.3: symbols across and sample names down, under an empty corner (pandas'
    # to_csv of AnnData.to_df()), tell no orientation: an error names --samples-as; either
    # orientation given predicts as the GCTX keyed by id
    def cell(v):
        return repr(float(v))

    by_rows, by_columns = tmp_path / "rows.csv", tmp_path / "columns.csv"
    by_rows.write_text("," + ",".join(symbols) + "\n" + "".join(
        f"{s}," + ",".join(map(cell, row)) + "\n" for s, row in zip(samples, genes)))
    by_columns.write_text("," + ",".join(samples) + "\n" + "".join(
        f"{g}," + ",".join(map(cell, genes[:, j])) + "\n" for j, g in enumerate(symbols)))
    capsys.readouterr()
    code, _ = predicted(by_rows)
    assert code == 1 and "--samples-as rows" in capsys.readouterr().err
    for path, orientation in ((by_rows, "rows"), (by_columns, "columns")):
        code, found = predicted(path, "--samples-as", orientation)
        assert code == 0, capsys.readouterr().err
        np.testing.assert_allclose(found, by_id, rtol=1e-6, atol=1e-6)
    entrez = gctx("entrez", [f"{1000 + i}" for i in range(len(landmarks))],
                  {"pr_gene_symbol": symbols, "pr_gene_id": [str(state.ensembl[g])
                                                             for g in landmarks],
                   "pr_ensembl_id": [str(state.ensembl[g]) for g in landmarks]})
    for options in ([], ["--genes-by", "symbol"], ["--genes-by", "pr_gene_id"],
                    ["--genes-by", "ensembl"]):
        code, found = predicted(entrez, *options)
        assert code == 0, capsys.readouterr().err
        np.testing.assert_array_equal(found, by_id)
    code, _ = predicted(entrez, "--genes-by", "id")  # the Entrez-like ids match nothing
    assert code == 1 and "lacks 100 of the 100 landmark genes" in capsys.readouterr().err
    code, _ = predicted(entrez, "--genes-by", "pr_gene_title")
    assert code == 1 and "it has pr_ensembl_id, pr_gene_id, pr_gene_symbol" in capsys.readouterr().err

    # CMap-style output (issue 12.5): row metadata with a landmark flag, the input's column
    # metadata carried over
    cells = [f"cell{i % 3}" for i in range(len(samples))]
    with h5py.File(entrez, "a") as f:
        f["/0/META/COL/cell_id"] = np.array(cells, dtype="S")
    out, copy = tmp_path / "cmap.zarr", tmp_path / "cmap.gctx"
    assert main(["predict", str(demo["runs"] / "emlp"), str(entrez), "--out", str(out),
                 "--gctx", str(copy), "--quiet"]) == 0
    targets = ~state.is_landmark
    shared = np.isin(state.ensembl[targets], state.ensembl[state.is_landmark])
    with h5py.File(copy) as f:
        assert [c.decode() for c in f["/0/META/COL/cell_id"][()]] == cells
        np.testing.assert_array_equal(f["/0/META/ROW/pr_is_lm"][()], shared.astype(int))
        assert f["/0/META/ROW/pr_is_inferred"][()].all() and 0 < shared.sum() < len(shared)
        assert [g.decode() for g in f["/0/META/ROW/pr_ensembl_id"][()]] == \
            [str(e) for e in state.ensembl[targets]]
        np.testing.assert_array_equal(f["/0/DATA/0/matrix"][()], by_id)

    twice = gctx("twice", symbols + [symbols[0]], values=np.c_[genes, genes[:, :1]])
    code, _ = predicted(twice)
    err = capsys.readouterr().err
    assert code == 1 and "1 gene symbols are ambiguous" in err and symbols[0] in err, err


@pytest.mark.parametrize("model", ["emlp", "dgex", "linear"])
def test_an_exported_bundle_predicts_as_the_run_with_the_workdir_gone(demo, tmp_path, model):
    """Issue 12.1: a copied run failed ("split/train: not a streamgex store"). Export a run of
    a copy of the workdir, delete the copy, move the bundle: predict from it equals predict
    from the run, for whole raw profiles and landmark-only input."""
    import shutil

    import keras

    work = tmp_path / "work"
    shutil.copytree(demo["workdir"] / "work", work,
                    ignore=shutil.ignore_patterns("stores", "pca", "report"))
    assert main(["export", str(work / "runs" / model), "--out", str(tmp_path / "b"),
                 "--format", "savedmodel", "--format", "onnx", "--quiet"]) == 0
    if model == "linear":  # a model changed since its evaluation: its old metrics stay out
        weights = work / "runs" / "linear" / "best" / "linear.npy"
        np.save(weights, np.load(weights) + 1e-3)  # other content: a touch alone is no change
        assert main(["export", str(work / "runs" / model), "--out", str(tmp_path / "b2"),
                     "--quiet"]) == 0
        # only the evaluation on val export made anew for the targets' trust
        assert list(json.loads((tmp_path / "b2" / "manifest.json").read_text())["metrics"]) \
            == ["val"]
    shutil.rmtree(work)
    bundle = tmp_path / "elsewhere" / "bundle"
    bundle.parent.mkdir()
    shutil.move(tmp_path / "b", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"] == model and manifest["metrics"]["test"]["mae"] > 0
    assert manifest["training_data"]["data"]["train"]

    state = pipeline_state(demo["split"])
    landmark_only = tmp_path / "l1000.gctx"
    landmark_only_gctx(landmark_only, demo["raw"], state, rows=40)
    for source in (demo["raw"], landmark_only):
        a, b = tmp_path / f"{source.stem}_run.zarr", tmp_path / f"{source.stem}_bundle.zarr"
        assert main(["predict", str(demo["runs"] / model), str(source), "--out", str(a),
                     "--quiet"]) == 0
        assert main(["predict", str(bundle), str(source), "--out", str(b), "--quiet"]) == 0
        np.testing.assert_allclose(open_store(b).expression.values,
                                   open_store(a).expression.values, atol=1e-5)
        assert list(open_store(b).gene.values) == list(open_store(a).gene.values)
    if model == "dgex":  # the README's sequence: an L1000-style GCTX keyed by symbols
        import anndata

        l1000, out, gctx = tmp_path / "l1000.gctx", tmp_path / "p.zarr", tmp_path / "p.gctx"
        values, ensembl, samples = l1000_style_gctx(l1000, demo["raw"], state, rows=20)
        by_id = tmp_path / "by_id.gctx"
        with h5py.File(by_id, "w") as f:
            create_gctx(f, sample_ids=samples, gene_ids=ensembl)[:] = values
        assert main(["predict", str(demo["runs"] / model), str(by_id), "--out",
                     str(tmp_path / "by_id.zarr"), "--quiet"]) == 0
        assert main(["predict", str(bundle), str(l1000), "--out", str(out), "--gctx",
                     str(gctx), "--genes-by", "symbol", "--quiet"]) == 0
        assert main(["export-store", str(out), "--out", str(tmp_path / "p.h5ad"),
                     "--quiet"]) == 0
        expected = open_store(tmp_path / "by_id.zarr").expression.values
        adata = anndata.read_h5ad(tmp_path / "p.h5ad")
        np.testing.assert_allclose(adata.X, expected, atol=1e-5)
        assert list(adata.obs["cell_id"]) == [f"cell{i % 3}" for i in range(20)]
        assert list(adata.var["gene_symbol"]) == [str(g) for g in
                                                  state.symbols[~state.is_landmark]]
        with h5py.File(gctx) as f:  # cmapPy's layout: ids, row and column metadata
            np.testing.assert_allclose(f["/0/DATA/0/matrix"][()], expected, atol=1e-5)
            assert {"pr_gene_symbol", "pr_is_lm", "pr_is_inferred"} <= set(f["/0/META/ROW"])
            assert [c.decode() for c in f["/0/META/COL/cell_id"][()]][:3] == \
                ["cell0", "cell1", "cell2"]
    if model != "linear":  # the network alone opens with plain Keras
        import importlib

        importlib.import_module("streamgex.models.layers")  # custom layers, if any
        network = keras.models.load_model(bundle / "network.keras")
        assert network.output_shape[-1] == int((~state.is_landmark).sum())
    # the SavedModel serves the same network: landmark z-scores -> target z-scores
    import tensorflow as tf

    from streamgex.inference.bundle import load

    predictor, _ = load(bundle)
    z = np.random.default_rng(0).normal(size=(9, int(state.is_landmark.sum()))).astype("float32")
    servable = tf.saved_model.load(str(bundle / "savedmodel"))  # kept: it owns the variables
    served = servable.serve(tf.constant(z)).numpy()
    np.testing.assert_allclose(served, predictor.predict(z), atol=1e-4)
    import onnxruntime

    onnx = onnxruntime.InferenceSession(str(bundle / "network.onnx"))
    np.testing.assert_allclose(onnx.run(["targets"], {"landmarks": z})[0],
                               predictor.predict(z), atol=1e-4)
    (bundle / "pipeline.npz").write_bytes(b"altered")
    assert main(["predict", str(bundle), str(landmark_only), "--out",
                 str(tmp_path / "again.zarr")]) == 1


def test_an_up_to_date_prediction_loads_no_model_and_follows_a_moved_bundle(demo, tmp_path,
                                                                            capsys, monkeypatch):
    """An up-to-date predict loaded the whole model first (7-9 s for the full E-MLP +
    decoder), and its identity held the model folder's path: a moved bundle predicted again.
    Now the identity is the model's content (a bundle's SHA-256s; a run's data and model file
    times), read without loading it; a changed model is predicted again."""
    import shutil

    from streamgex.inference import predict as predict_module

    work = tmp_path / "work"
    shutil.copytree(demo["workdir"] / "work", work,
                    ignore=shutil.ignore_patterns("stores", "pca", "report"))
    run = work / "runs" / "linear"
    assert main(["export", str(run), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    out = tmp_path / "o.zarr"
    for model in (run, tmp_path / "b"):
        assert main(["predict", str(model), str(demo["raw"]), "--out", str(out),
                     "--overwrite", "--quiet"]) == 0
    expected = open_store(out).expression.values

    def refuse(*args, **kwargs):
        raise AssertionError("an up-to-date prediction loaded its model")

    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "b", moved)
    with monkeypatch.context() as patch:
        patch.setattr(predict_module.bundle, "load", refuse)
        patch.setattr(predict_module, "load_predictor", refuse)
        assert main(["predict", str(moved), str(demo["raw"]), "--out", str(out)]) == 0
        assert "up to date" in capsys.readouterr().err
        # the run holds the same model but is not the bundle: predicted again, with its load
        with pytest.raises(AssertionError, match="loaded its model"):
            main(["predict", str(run), str(demo["raw"]), "--out", str(out), "--overwrite",
                  "--quiet"])
    os.utime(run / "best" / "linear.npy", ns=(1, 1))  # as if retrained
    assert main(["predict", str(run), str(demo["raw"]), "--out", str(out), "--overwrite"]) == 0
    assert "up to date" not in capsys.readouterr().err
    np.testing.assert_allclose(open_store(out).expression.values, expected, atol=1e-5)
