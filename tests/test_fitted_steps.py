"""Preprocessing steps are fitted objects: their state travels with the stores, loads by name,
and re-applies to other data; predict needs the split alone, not the preprocessing stores."""

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex.cli import main  # noqa: E402
from streamgex.errors import StreamgexError  # noqa: E402
from streamgex.preprocess.genes import SelectGenes  # noqa: E402
from streamgex.preprocess.quantile import QuantileNormalize  # noqa: E402
from streamgex.preprocess.standardize import Standardize  # noqa: E402
from streamgex.store import open_store, strings  # noqa: E402


@pytest.fixture(scope="module")
def work(demo_experiment):
    return demo_experiment[0] / "work"


def test_each_fitted_step_loads_from_a_split_part_and_equals_its_store(work):
    stores, train = work / "stores", work / "split" / "train"
    normalizer = QuantileNormalize.load(train)
    np.testing.assert_array_equal(normalizer.reference_,
                                  open_store(stores / "geo_norm.zarr").reference.values)
    assert normalizer.reference == "mean"
    statistics = Standardize.load(train)
    std_store = open_store(stores / "geo_std.zarr")
    np.testing.assert_array_equal(statistics.mean_, std_store.gene_mean.values)
    np.testing.assert_array_equal(statistics.std_, std_store.gene_std.values)
    assert SelectGenes.load(train).by == "probe"


def test_fitted_steps_reapply_to_other_data_exactly_as_the_chain_did(work):
    stores = work / "stores"
    raw = open_store(stores / "geo_dedup.zarr").expression.values[:50]
    genes = SelectGenes.load(stores / "geo_std.zarr").transform(raw)
    np.testing.assert_allclose(genes, open_store(stores / "geo_genes.zarr").expression.values[:50],
                               rtol=1e-6)
    normalized = QuantileNormalize.load(stores / "geo_std.zarr").transform(genes)
    np.testing.assert_allclose(normalized,
                               open_store(stores / "geo_norm.zarr").expression.values[:50],
                               rtol=1e-6)
    z = Standardize.load(stores / "geo_std.zarr").transform(normalized)
    np.testing.assert_allclose(z, open_store(stores / "geo_std.zarr").expression.values[:50],
                               rtol=1e-5, atol=1e-5)
    # 1000G went through GEO's fitted reference and statistics
    rnaseq = stores / "1000g_std.zarr"
    np.testing.assert_array_equal(Standardize.load(rnaseq).mean_,
                                  Standardize.load(stores / "geo_std.zarr").mean_)


def test_a_store_without_the_step_says_so(work):
    with pytest.raises(StreamgexError, match="holds no fitted standardize step"):
        Standardize.load(work / "stores" / "geo_norm.zarr")


def test_predict_needs_only_the_split_not_the_preprocessing_stores(work, demo_experiment,
                                                                    tmp_path):
    split = tmp_path / "split"
    shutil.copytree(work / "split", split)
    assert main(["train", "linear", "--data", str(split), "--run-dir", str(tmp_path / "run"),
                 "--quiet"]) == 0
    raw = demo_experiment[0] / "raw" / "geo.gctx"
    out = tmp_path / "alone.zarr"
    assert main(["predict", str(tmp_path / "run"), str(raw), "--out", str(out), "--quiet"]) == 0
    reference = tmp_path / "reference.zarr"
    assert main(["predict", str(work / "runs" / "linear"), str(raw), "--out", str(reference),
                 "--quiet"]) == 0
    a, b = open_store(out), open_store(reference)
    assert a.attrs["predict"]["normalization"] == "quantile-normalized over whole profiles"
    assert strings(a.sample.values).tolist() == strings(b.sample.values).tolist()
    np.testing.assert_allclose(a.expression.values, b.expression.values, atol=1e-4)
