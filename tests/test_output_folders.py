"""Every command that writes creates the folders its output lies in.

Issue 29.6: ``streamgex export RUN --out bundles/emlp`` failed with "No such
file or directory: bundles/emlp.partial" while ``bundles/`` did not exist. Each
command here writes under ``new/deeper/``, which nothing has made yet.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex import store  # noqa: E402
from streamgex.cli import main  # noqa: E402
from streamgex.formats.gctx import open_gctx  # noqa: E402
from streamgex.inference.bundle import is_bundle  # noqa: E402
from streamgex.ingest import ingest  # noqa: E402
from streamgex.preprocess.genes import genes  # noqa: E402
from streamgex.preprocess.quantile import normalize  # noqa: E402
from streamgex.preprocess.split import PARTS, split  # noqa: E402
from streamgex.preprocess.standardize import standardize  # noqa: E402
from streamgex.training.run import Run  # noqa: E402


def run_cli(*args):
    assert main([*map(str, args), "--quiet"]) == 0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_raw):
    """The demo's GEO profiles as raw file, then through the preprocessing chain to a split."""
    tmp = tmp_path_factory.mktemp("inputs")
    ingest(demo_raw["geo"], tmp / "geo.zarr", chunk_samples=128)
    genes(tmp / "geo.zarr", tmp / "genes.zarr", landmarks=demo_raw["map_lm"],
          targets=demo_raw["map_tg"])
    normalize(tmp / "genes.zarr", tmp / "norm.zarr")
    standardize(tmp / "norm.zarr", tmp / "std.zarr")
    split(tmp / "std.zarr", tmp / "split", train_per_cluster=100, val_per_cluster=20)
    return {**demo_raw, "geo.zarr": tmp / "geo.zarr", "genes": tmp / "genes.zarr",
            "std": tmp / "std.zarr", "split": tmp / "split"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, inputs):
    """A linear run and a one-epoch autoencoder, each trained into a folder not made yet."""
    new = tmp_path_factory.mktemp("runs") / "new" / "deeper"
    run_cli("train", "linear", "--data", inputs["split"], "--run-dir", new / "linear")
    run_cli("train", "autoencoder", "--data", inputs["split"], "--run-dir", new / "ae",
            "--set", "hidden=16,4,16", "--set", "tied=true", "--set", "max_epochs=1",
            "--set", "batch=100")
    return {"linear": new / "linear", "autoencoder": new / "ae"}


#: A store command's arguments but ``--out``, from the ``inputs`` fixture.
STORE_COMMANDS = {
    "ingest": lambda i: ["ingest", i["geo"]],
    "genes": lambda i: ["genes", i["geo.zarr"], "--landmarks", i["map_lm"],
                        "--targets", i["map_tg"]],
    "dedup": lambda i: ["dedup", i["genes"], "--clusters", 4],
    "normalize": lambda i: ["normalize", i["genes"], "--reference", "mean"],
    "standardize": lambda i: ["standardize", i["genes"]],
}


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_store_step_creates_the_folders_of_its_output(inputs, tmp_path, command):
    out = tmp_path / "new" / "deeper" / "out.zarr"
    run_cli(*STORE_COMMANDS[command](inputs), "--out", out)
    assert store.status(out) == ("done", "")


def test_split_and_pca_create_the_folders_of_their_output(inputs, tmp_path):
    out = tmp_path / "new" / "deeper"
    run_cli("split", inputs["std"], "--out", out / "split", "--clusters", 4,
            "--train-per-cluster", 100, "--val-per-cluster", 20)
    assert all(store.status(out / "split" / part) == ("done", "") for part in PARTS)
    assert (out / "split" / "summary.json").is_file()
    run_cli("pca", inputs["std"], "--out", out / "pca", "--components", 5)
    assert {p.name for p in (out / "pca").iterdir()} == {
        "summary.json", "explained_variance.csv", "explained_variance.png"}


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr", ".gctx", ".csv"])
def test_export_store_creates_the_folders_of_its_file(inputs, tmp_path, suffix):
    out = tmp_path / "new" / "deeper" / f"val{suffix}"
    run_cli("export-store", inputs["split"] / "val", "--out", out)
    assert out.exists() and not list(out.parent.glob("*.partial*"))


def test_simulate_creates_the_folders_of_its_files(tmp_path):
    out = tmp_path / "new" / "deeper"
    run_cli("simulate", "--out", out, "--samples", 50)
    assert {p.name for p in out.iterdir()} == {
        "geo.gctx", "1000g.txt.gz", "map_lm.txt", "map_tg.txt"}


def test_train_creates_the_folders_of_its_run(runs):
    assert all(Run(path).is_done() for path in runs.values())


def test_encode_creates_the_folders_of_its_codes(inputs, runs, tmp_path):
    out = tmp_path / "new" / "deeper" / "codes"
    run_cli("encode", runs["autoencoder"], "--data", inputs["split"], "--out", out)
    assert all(store.status(out / part) == ("done", "") for part in PARTS)


def test_predict_creates_the_folders_of_its_store_and_gctx(inputs, runs, tmp_path):
    out, gctx = tmp_path / "new" / "a" / "pred.zarr", tmp_path / "new" / "b" / "pred.gctx"
    run_cli("predict", runs["linear"], inputs["split"] / "test", "--out", out, "--gctx", gctx,
            "--units", "standardized")
    assert store.status(out) == ("done", "")
    source = open_gctx(gctx)
    try:
        assert len(source.sample_ids) == store.open_store(out).sizes["sample"]
    finally:
        source.close()


def test_export_creates_the_folders_of_its_bundle(runs, tmp_path):
    out = tmp_path / "bundles" / "new" / "linear"
    run_cli("export", runs["linear"], "--out", out)
    assert is_bundle(out)


def test_evaluate_and_report_create_the_folders_of_their_results(inputs, runs, tmp_path):
    run_cli("evaluate", runs["linear"], inputs["split"] / "test")
    assert (runs["linear"] / "eval" / "test.json").is_file()
    out = tmp_path / "new" / "deeper" / "report"
    run_cli("report", runs["linear"], "--out", out)
    assert (out / "report.md").is_file()
