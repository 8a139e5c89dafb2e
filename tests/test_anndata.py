"""AnnData both ways (issue 12.4): a store written as .h5ad opens in anndata with its ids,
coordinates and provenance; .h5ad files (dense or CSR) ingest a block of cells at a time;
a store exported as CSV or GCTX comes back through ingest unchanged."""

import json

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from rawfiles import write_gctx
from streamgex.cli import main
from streamgex.ingest import ingest
from streamgex.store import open_store, strings


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(5)
    values = rng.uniform(0, 10, size=(37, 6)).astype(np.float32)
    genes = [f"ENSG{j:011d}" for j in range(6)]
    samples = [f"GSM{i}" for i in range(37)]
    write_gctx(tmp_path / "x.gctx", values, samples, genes, symbols=[f"G{j}" for j in range(6)])
    out = ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=8)
    return out, values, samples, genes


def test_a_store_exported_as_h5ad_opens_in_anndata_and_ingests_back(source, tmp_path):
    store, values, samples, genes = source
    assert main(["export-store", str(store), "--out", str(tmp_path / "x.h5ad"), "--quiet"]) == 0
    adata = anndata.read_h5ad(tmp_path / "x.h5ad", backed="r")
    assert list(adata.obs_names) == samples and list(adata.var_names) == genes
    assert list(adata.var["gene_symbol"]) == [f"G{j}" for j in range(6)]
    np.testing.assert_array_equal(adata.X[:], values)
    provenance = json.loads(adata.uns["streamgex"])
    assert provenance["streamgex"]["step"] == "ingest" and provenance["units"]
    back = open_store(ingest(tmp_path / "x.h5ad", tmp_path / "back.zarr"))
    np.testing.assert_array_equal(back.expression.values, values)
    assert list(strings(back.gene_symbol.values)) == [f"G{j}" for j in range(6)]
    assert main(["export-store", str(store), "--out", str(tmp_path / "x.h5ad")]) == 1  # exists


def sparse_cells(seed, cells, genes, zeros):
    """``(dense values, AnnData with them as CSR)``: ``zeros`` the share of zero cells."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.uniform(size=(cells, genes)) < zeros, 0,
                     rng.uniform(1, 5, size=(cells, genes))).astype(np.float32)
    adata = anndata.AnnData(X=scipy.sparse.csr_matrix(dense))
    adata.obs_names = [f"cell{i}" for i in range(cells)]
    adata.var_names = [f"ENSG{j:011d}" for j in range(genes)]
    return dense, adata


def test_a_sparse_h5ad_is_read_by_rows(tmp_path):
    dense, adata = sparse_cells(6, 50, 9, zeros=0.7)
    adata.obs["batch"] = ["a", "b"] * 25
    adata.write_h5ad(tmp_path / "sparse.h5ad")
    with h5py.File(tmp_path / "sparse.h5ad") as f:
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
    store = open_store(ingest(tmp_path / "sparse.h5ad", tmp_path / "s.zarr", chunk_samples=16))
    np.testing.assert_array_equal(store.expression.values, dense)
    assert list(strings(store.sample.values)) == list(adata.obs_names)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".gctx"])
def test_csv_tsv_and_gctx_exports_ingest_back_unchanged(source, tmp_path, suffix):
    store, values, samples, genes = source
    out = tmp_path / f"exported{suffix}"
    assert main(["export-store", str(store), "--out", str(out), "--quiet"]) == 0
    back = open_store(ingest(out, tmp_path / "back.zarr"))
    np.testing.assert_array_equal(back.expression.values, values)
    assert list(strings(back.sample.values)) == samples
    assert list(strings(back.gene.values)) == genes


def test_a_store_exported_as_anndata_zarr_opens_in_anndata_and_ingests_and_predicts_back(
        source, tmp_path):
    """Issue 12.4: `anndata.read_zarr` on a store failed; AnnData-Zarr could be neither
    written nor read. Now export-store writes it (X chunk by chunk), anndata reads it, and
    ingest and predict's reader take it back a block of cells at a time."""
    from streamgex.inference.profiles import open_profiles

    store, values, samples, genes = source
    out = tmp_path / "cells.zarr"
    assert main(["export-store", str(store), "--out", str(out), "--quiet"]) == 0
    adata = anndata.read_zarr(out)
    assert list(adata.obs_names) == samples and list(adata.var_names) == genes
    assert list(adata.var["gene_symbol"]) == [f"G{j}" for j in range(6)]
    np.testing.assert_array_equal(adata.X, values)
    assert json.loads(adata.uns["streamgex"])["streamgex"]["step"] == "ingest"
    back = open_store(ingest(out, tmp_path / "back.zarr", chunk_samples=8))
    np.testing.assert_array_equal(back.expression.values, values)
    assert back.attrs["source"]["format"] == "anndata-zarr"
    profiles = open_profiles(out, scratch=tmp_path / "scratch")
    np.testing.assert_array_equal(profiles.read(5, 12), values[5:12])
    assert profiles.gene_fields["gene_symbol"].tolist() == [f"G{j}" for j in range(6)]
    # a re-export replaces its own folder; a folder export-store did not write is refused
    assert main(["export-store", str(store), "--out", str(out), "--overwrite", "--quiet"]) == 0
    (tmp_path / "mine.zarr").mkdir()
    (tmp_path / "mine.zarr" / "keep.txt").write_text("mine")
    assert main(["export-store", str(store), "--out", str(tmp_path / "mine.zarr"),
                 "--overwrite"]) == 1
    assert (tmp_path / "mine.zarr" / "keep.txt").read_text() == "mine"


def test_a_sparse_anndata_zarr_in_zarr_format_3_with_categorical_obs_is_ingested(tmp_path):
    dense, adata = sparse_cells(7, 40, 8, zeros=0.6)
    adata.obs["batch"] = pd.Categorical(["a", "b"] * 20)
    with anndata.settings.override(zarr_write_format=3):  # Zarr 3's string arrays read too
        adata.write_zarr(tmp_path / "cells.zarr")
    assert main(["ingest", str(tmp_path / "cells.zarr"), "--out", str(tmp_path / "s.zarr"),
                 "--chunk-samples", "16", "--quiet"]) == 0
    ingested = open_store(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ingested.expression.values, dense)
    assert list(strings(ingested.sample.values)) == list(adata.obs_names)
