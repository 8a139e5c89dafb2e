"""genes, normalize and standardize equal straightforward in-memory numpy, ties and 1000G included."""

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import xarray as xr

from rawfiles import small_matrix, write_gctx, write_table
from streamgex.cli import main
from streamgex.errors import StreamgexError
from streamgex.ingest import ingest
from streamgex.preprocess.genes import genes
from streamgex.preprocess.quantile import normalize
from streamgex.preprocess.standardize import standardize

from streamgex.resources import MAPS as REFERENCE


def make_store(tmp_path, name, values, samples, genes_, chunk=16):
    write_gctx(tmp_path / f"{name}.gctx", values, samples, genes_)
    return ingest(tmp_path / f"{name}.gctx", tmp_path / f"{name}.zarr", chunk_samples=chunk)


def expression(path):
    return xr.open_zarr(path).expression.values


# --- plain numpy versions of each rule, written independently of the package ---

def numpy_quantile(x, reference):
    out = np.empty_like(x)
    for r, row in enumerate(x):
        order = np.argsort(row, kind="stable")
        values = np.empty(len(row))
        sorted_row = row[order]
        i = 0
        while i < len(row):
            j = i
            while j + 1 < len(row) and sorted_row[j + 1] == sorted_row[i]:
                j += 1
            values[i:j + 1] = reference[i:j + 1].mean()
            i = j + 1
        out[r, order] = values
    return out


def numpy_standardize(x, mean=None, std=None):
    x64 = x.astype(np.float64)
    mean = x64.mean(0) if mean is None else mean
    std = x64.std(0) if std is None else std
    return ((x - mean) / (std + 1e-3)).astype(np.float32), mean, std


def test_genes_by_probe_averages_probes_landmarks_first(tmp_path):
    values, samples, probes = small_matrix(40, 12, seed=1)
    (tmp_path / "lm.txt").write_text("A\tENSG00000000001\t200009_at\nB\tENSG00000000002\t200000_at\n")
    (tmp_path / "tg.txt").write_text(
        "C\tENSG00000000003.5\t200003_at,200006_at,200012_at\nA\tENSG00000000001\t200015_at\n"
    )
    source = make_store(tmp_path, "p", values, samples, probes)
    genes(source, tmp_path / "g.zarr", landmarks=tmp_path / "lm.txt", targets=tmp_path / "tg.txt")
    ds = xr.open_zarr(tmp_path / "g.zarr")
    expected = np.stack([values[:, 3], values[:, 0], values[:, [1, 2, 4]].mean(1), values[:, 5]], 1)
    np.testing.assert_allclose(ds.expression.values, expected, rtol=1e-6)
    assert list(ds.gene.values) == ["ENSG00000000001_200009_at", "ENSG00000000002",
                                    "ENSG00000000003", "ENSG00000000001_200015_at"]
    assert list(ds.is_landmark.values) == [True, True, False, False]
    assert list(ds.gene_probes.values)[2] == "200003_at,200006_at,200012_at"
    assert list(ds.sample.values) == samples


@pytest.fixture(scope="module")
def real_maps():
    lm, tg = REFERENCE / "dgex_map_lm.txt", REFERENCE / "dgex_map_tg.txt"
    assert lm.exists() and tg.exists(), f"the real D-GEX maps are expected in {REFERENCE}"
    return lm, tg


def test_genes_on_the_real_dgex_maps_by_probe_and_by_ensembl(tmp_path, real_maps):
    lm, tg = real_maps
    rows = [line.split("\t") for path in (lm, tg) for line in path.read_text().splitlines()]
    probes = [p for r in rows for p in r[2].split(",")]
    assert len(probes) == 16_687
    rng = np.random.default_rng(0)
    values = rng.uniform(4, 15, size=(5, len(probes) + 3)).astype(np.float32)
    store_probes = probes + ["1_at", "2_at", "3_at"]
    source = make_store(tmp_path, "geo", values, [f"S{i}" for i in range(5)], store_probes)
    genes(source, tmp_path / "geo_genes.zarr", landmarks=lm, targets=tg)
    ds = xr.open_zarr(tmp_path / "geo_genes.zarr")
    assert ds.sizes == {"sample": 5, "gene": 943 + 9520}
    assert int(ds.is_landmark.sum()) == 943 and bool(ds.is_landmark[:943].all())
    column = {p: i for i, p in enumerate(store_probes)}
    for k in (0, 942, 943, 5000, 10462):
        cols = [column[p] for p in rows[k][2].split(",")]
        np.testing.assert_allclose(ds.expression.values[:, k], values[:, cols].mean(1), rtol=1e-6)
    assert len(set(ds.gene.values)) == 10_463
    assert sum("_" in str(g) for g in ds.gene.values) == 2 * 445, "shared genes get probe keys"

    ensembl = sorted({r[1] for r in rows})
    rnaseq = rng.uniform(0, 50, size=(4, len(ensembl))).astype(np.float32)
    versioned = [f"{e}.7" for e in ensembl]
    write_table(tmp_path / "rna.tsv", rnaseq, [f"NA{i}" for i in range(4)], versioned)
    ingest(tmp_path / "rna.tsv", tmp_path / "rna.zarr")
    genes(tmp_path / "rna.zarr", tmp_path / "rna_genes.zarr", landmarks=lm, targets=tg,
          by="ensembl")
    rna = xr.open_zarr(tmp_path / "rna_genes.zarr")
    assert list(rna.gene.values) == list(ds.gene.values), "same genes on both platforms"
    shared = [g for g in rna.gene.values if "_" in str(g)]
    by_ensembl = rna.expression.values
    index = {e: i for i, e in enumerate(ensembl)}
    np.testing.assert_array_equal(by_ensembl, rnaseq[:, [index[e] for e in rna.gene_ensembl.values]])
    assert len(shared) == 890


def test_genes_reports_unmatched_rows_or_drops_them(tmp_path, capsys):
    values, samples, probes = small_matrix(8, 5)
    (tmp_path / "lm.txt").write_text("A\tENSG01\t200000_at\nB\tENSG02\t999_at\n")
    (tmp_path / "tg.txt").write_text("C\tENSG03\t200003_at,998_at\nD\tENSG04\t200006_at\n")
    source = make_store(tmp_path, "p", values, samples, probes)
    args = ["genes", str(source), "--landmarks", str(tmp_path / "lm.txt"), "--targets",
            str(tmp_path / "tg.txt"), "--out", str(tmp_path / "g.zarr")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 of 4 map rows have a probe (column 3) not in the store" in err and "999_at" in err
    assert main(args + ["--drop-missing", "--quiet"]) == 0
    assert list(xr.open_zarr(tmp_path / "g.zarr").gene.values) == ["ENSG01", "ENSG04"]


@pytest.mark.parametrize("decimals", [None, 1])
def test_mean_quantile_normalization_equals_numpy_with_ties(tmp_path, decimals):
    values, samples, names = small_matrix(70, 25, seed=2)
    if decimals:
        values = np.round(values, decimals)  # plenty of ties inside each profile
        values[3, :] = 7.0  # a profile that is one big tie
    source = make_store(tmp_path, "x", values, samples, names)
    normalize(source, tmp_path / "n.zarr")
    reference = np.sort(values, axis=1).astype(np.float64).mean(0)
    expected = numpy_quantile(values, reference).astype(np.float32)
    np.testing.assert_allclose(expression(tmp_path / "n.zarr"), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xr.open_zarr(tmp_path / "n.zarr").reference.values, reference)


def test_normal_reference_and_a_reference_of_another_length(tmp_path):
    values, samples, names = small_matrix(30, 40, seed=3)
    source = make_store(tmp_path, "x", values, samples, names)
    normalize(source, tmp_path / "z.zarr", reference="normal")
    normal = np.array([NormalDist().inv_cdf((i + 0.5) / 40) for i in range(40)])
    np.testing.assert_allclose(expression(tmp_path / "z.zarr"), numpy_quantile(values, normal),
                               rtol=1e-6, atol=1e-6)

    short, s2, n2 = small_matrix(20, 10, seed=4)
    other = make_store(tmp_path, "short", short, s2, n2)
    normalize(source, tmp_path / "r.zarr", reference_from=other)
    ref10 = np.sort(short, 1).astype(np.float64).mean(0)
    ref40 = np.interp((np.arange(40) + 0.5) / 40, (np.arange(10) + 0.5) / 10, ref10)
    np.testing.assert_allclose(expression(tmp_path / "r.zarr"), numpy_quantile(values, ref40),
                               rtol=1e-6, atol=1e-6)


def test_standardize_equals_numpy_and_saves_its_statistics(tmp_path):
    values, samples, names = small_matrix(90, 17, seed=5)
    source = make_store(tmp_path, "x", values, samples, names)
    standardize(source, tmp_path / "s.zarr")
    expected, mean, std = numpy_standardize(values)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    np.testing.assert_allclose(ds.expression.values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.gene_mean.values, mean, rtol=1e-12)
    np.testing.assert_allclose(ds.gene_std.values, std, rtol=1e-12)


def test_cross_platform_chain_maps_1000g_onto_geo_reference_and_statistics(tmp_path, demo_raw):
    for key in ("geo", "rnaseq"):
        ingest(demo_raw[key], tmp_path / f"{key}.zarr", chunk_samples=256)
    maps = {"landmarks": demo_raw["map_lm"], "targets": demo_raw["map_tg"]}
    genes(tmp_path / "geo.zarr", tmp_path / "geo_g.zarr", **maps)
    genes(tmp_path / "rnaseq.zarr", tmp_path / "rna_g.zarr", by="ensembl", **maps)
    normalize(tmp_path / "geo_g.zarr", tmp_path / "geo_n.zarr")
    normalize(tmp_path / "rna_g.zarr", tmp_path / "rna_n.zarr", reference_from=tmp_path / "geo_n.zarr")
    standardize(tmp_path / "geo_n.zarr", tmp_path / "geo_s.zarr")
    standardize(tmp_path / "rna_n.zarr", tmp_path / "rna_s.zarr", stats_from=tmp_path / "geo_s.zarr")

    geo, rna = expression(tmp_path / "geo_g.zarr"), expression(tmp_path / "rna_g.zarr")
    reference = np.sort(geo, 1).astype(np.float64).mean(0)
    geo_n = numpy_quantile(geo, reference).astype(np.float32)
    rna_n = numpy_quantile(rna, reference).astype(np.float32)
    geo_s, mean, std = numpy_standardize(geo_n)
    rna_s, _, _ = numpy_standardize(rna_n, mean, std)
    np.testing.assert_allclose(expression(tmp_path / "rna_n.zarr"), rna_n, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(expression(tmp_path / "geo_s.zarr"), geo_s, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(expression(tmp_path / "rna_s.zarr"), rna_s, rtol=1e-4, atol=1e-4)


def test_steps_refuse_partial_input_and_record_provenance(tmp_path):
    values, samples, names = small_matrix(10, 4)
    source = make_store(tmp_path, "x", values, samples, names)
    normalize(source, tmp_path / "n.zarr")
    attrs = xr.open_zarr(tmp_path / "n.zarr").attrs
    assert attrs["streamgex"]["step"] == "normalize"
    assert attrs["streamgex"]["parameters"] == {"reference": "mean", "reference_from": None}
    assert attrs["source"]["store"] == str(Path(source).resolve())
    assert len(attrs["source"]["fingerprint"]) == 16
    import zarr
    group = zarr.open_group(source, mode="r+")
    state = dict(group.attrs["streamgex"])
    group.attrs["streamgex"] = {**state, "complete": False}
    with pytest.raises(StreamgexError, match="incomplete store"):
        standardize(source, tmp_path / "s.zarr")


def test_values_near_the_float32_limit_pass_without_overflow_warnings(tmp_path):
    """Issue 11.15: overflow RuntimeWarnings reached the terminal. Values near float32's
    largest (3e38, where a float32 sum or square overflows) go through normalize and
    standardize with every RuntimeWarning an error, and come out finite."""
    import warnings

    values = np.full((6, 3), 3e38, dtype=np.float32)
    values[:, 1] = [-3e38, 5, 3e38, 1, -2e38, 0]
    values[:, 2] = np.arange(6)
    source = make_store(tmp_path, "big", values, [f"s{i}" for i in range(6)],
                        [f"ENSG{j:011d}" for j in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for out in (normalize(source, tmp_path / "n.zarr", reference="mean"),
                    standardize(source, tmp_path / "s.zarr")):
            assert np.isfinite(xr.open_zarr(out).expression.values).all(), out
