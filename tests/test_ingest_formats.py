"""Every input format round-trips: the store holds the source's ids and float32 values."""

import gzip

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rawfiles import (
    small_matrix,
    write_gct12,
    write_gct13,
    write_gctx,
    write_table,
)
from streamgex.cli import main
from streamgex.formats import detect_format
from streamgex.errors import StreamgexError
from streamgex.ingest import ingest
from streamgex.store import default_chunk_samples, open_store


def assert_store(path, values, samples, genes):
    ds = xr.open_zarr(path)  # plain xarray, as a user would
    assert ds.expression.dims == ("sample", "gene")
    assert ds.expression.dtype == np.float32
    np.testing.assert_array_equal(ds.expression.values, values)
    assert list(ds.sample.values) == list(samples)
    assert list(ds.gene.values) == list(genes)
    return ds


@pytest.mark.parametrize("chunk", [None, 7])
def test_gctx_round_trip(tmp_path, chunk):
    values, samples, genes = small_matrix(50, 30)
    symbols = [f"SYM{j}" for j in range(30)]
    write_gctx(tmp_path / "x.gctx", values, samples, genes, symbols=symbols, chunks=(8, 16))
    ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=chunk)
    ds = assert_store(tmp_path / "x.zarr", values, samples, genes)
    assert list(ds.gene_symbol.values) == symbols
    assert ds.expression.encoding["chunks"][0] == (chunk or 50)
    assert ds.attrs["source"]["format"] == "gctx"
    assert len(ds.attrs["source"]["sha256"]) == 64


def test_simulated_gctx_round_trip(tmp_path, demo_raw):
    ingest(demo_raw["geo"], tmp_path / "geo.zarr", chunk_samples=512)
    with h5py.File(demo_raw["geo"]) as f:
        values = f["0/DATA/0/matrix"][()]
        samples = [s.decode() for s in f["0/META/COL/id"][()]]
        genes = [s.decode() for s in f["0/META/ROW/id"][()]]
    ds = assert_store(tmp_path / "geo.zarr", values, samples, genes)
    assert ds.expression.encoding["chunks"] == (512, len(genes))


def test_gct12_round_trip_keeps_description(tmp_path):
    values, samples, genes = small_matrix(9, 11, seed=1)
    write_gct12(tmp_path / "x.gct", values, samples, genes, descriptions=[f"d{j}" for j in range(11)])
    ingest(tmp_path / "x.gct", tmp_path / "x.zarr")
    ds = assert_store(tmp_path / "x.zarr", values, samples, genes)
    assert list(ds.gene_description.values) == [f"d{j}" for j in range(11)]


@pytest.mark.parametrize("gz", [False, True])
def test_gct13_round_trip_with_metadata_and_small_blocks(tmp_path, gz):
    values, samples, genes = small_matrix(130, 23, seed=2)
    symbols = [f"S{j}" for j in range(23)]
    write_gct13(tmp_path / "x.gct", values, samples, genes, symbols, gz=gz)
    # 130 samples x 3 rows per transpose block, 64-sample chunks: every path of the transpose.
    ingest(tmp_path / "x.gct", tmp_path / "x.zarr", chunk_samples=64, block_values=3 * 130)
    ds = assert_store(tmp_path / "x.zarr", values, samples, genes)
    assert list(ds.gene_symbol.values) == symbols
    assert ds.attrs["source"]["format"] == "gct"


def test_geuvadis_round_trip_strips_ensembl_versions(tmp_path, demo_raw):
    ingest(demo_raw["rnaseq"], tmp_path / "g.zarr", chunk_samples=64, block_values=1000)
    table = pd.read_csv(demo_raw["rnaseq"], sep="\t", dtype={"Chr": str})
    values = table.iloc[:, 4:].to_numpy(np.float32).T
    stripped = [g.split(".")[0] for g in table.TargetID]
    ds = assert_store(tmp_path / "g.zarr", values, list(table.columns[4:]), stripped)
    assert list(ds.gene_raw.values) == list(table.TargetID)
    assert list(ds.gene_symbol.values) == list(table.Gene_Symbol)
    assert list(ds.gene_chr.values) == list(table.Chr)
    assert ds.attrs["source"]["format"] == "geuvadis"
    assert (ds.expression.values == 0).any(), "RPKM zeros must survive"


def test_a_utf8_bom_is_not_part_of_the_header(tmp_path, demo_raw):
    """Issue 11.9: a GEUVADIS table saved with a BOM (Excel, some editors) was read as a
    generic table with Chr and Coord as samples; a map with one misread its first symbol."""
    from streamgex.preprocess.maps import read_map

    bom = tmp_path / "bom.txt.gz"
    text = gzip.decompress(demo_raw["rnaseq"].read_bytes())
    bom.write_bytes(gzip.compress(b"\xef\xbb\xbf" + text))
    assert detect_format(bom) == "geuvadis"
    ingest(bom, tmp_path / "bom.zarr", chunk_samples=64)
    ingest(demo_raw["rnaseq"], tmp_path / "plain.zarr", chunk_samples=64)
    a, b = open_store(tmp_path / "bom.zarr"), open_store(tmp_path / "plain.zarr")
    assert list(a.sample.values) == list(b.sample.values)
    np.testing.assert_array_equal(a.expression.values, b.expression.values)
    lm = tmp_path / "map_bom.txt"
    lm.write_bytes(b"\xef\xbb\xbf" + demo_raw["map_lm"].read_bytes())
    assert read_map(lm, is_landmark=True) == read_map(demo_raw["map_lm"], is_landmark=True)


@pytest.mark.parametrize("delimiter,gz", [("\t", False), (",", True)])
def test_generic_table_round_trip(tmp_path, delimiter, gz):
    values, samples, genes = small_matrix(12, 40, seed=3, low=-3, high=3)
    symbols = [f"G{j}" for j in range(40)]
    write_table(tmp_path / "x.txt", values, samples, genes, delimiter, symbols=symbols, gz=gz)
    ingest(tmp_path / "x.txt", tmp_path / "x.zarr")
    ds = assert_store(tmp_path / "x.zarr", values, samples, genes)
    assert list(ds.gene_symbol.values) == symbols
    assert ds.attrs["source"]["format"] == "tsv"


def test_csv_with_quoted_ids_and_windows_line_ends(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b'"","s1","s2"\r\n"ENSG00000000003.14",1.5,2\r\n"g2",-0.25,1e-3\r\n')
    ingest(path, tmp_path / "r.zarr")
    expected = np.array([[1.5, -0.25], [2.0, 1e-3]], dtype=np.float32)
    ds = assert_store(tmp_path / "r.zarr", expected, ["s1", "s2"], ["ENSG00000000003", "g2"])
    assert list(ds.gene_raw.values) == ["ENSG00000000003.14", "g2"]


def test_missing_values_kept_or_zeroed_when_allowed(tmp_path):
    values, samples, genes = small_matrix(4, 5, seed=4)
    values[1, 2], values[3, 0] = np.nan, np.inf
    write_table(tmp_path / "m.tsv", values, samples, genes)
    with open(tmp_path / "m.tsv") as f:
        lines = f.read().replace("NaN", "NA")
    (tmp_path / "m.tsv").write_text(lines)
    ingest(tmp_path / "m.tsv", tmp_path / "nan.zarr", allow_missing="nan")
    ingest(tmp_path / "m.tsv", tmp_path / "zero.zarr", allow_missing="zero")
    kept = open_store(tmp_path / "nan.zarr").expression.values
    zeroed = open_store(tmp_path / "zero.zarr").expression.values
    mask = np.zeros_like(values, dtype=bool)
    mask[1, 2] = mask[3, 0] = True
    assert np.isnan(kept[mask]).all() and (zeroed[mask] == 0).all()
    np.testing.assert_array_equal(kept[~mask], values[~mask])
    np.testing.assert_array_equal(zeroed[~mask], values[~mask])


def test_format_detected_from_content_not_name(tmp_path, demo_raw):
    values, samples, genes = small_matrix(3, 4)
    write_gct12(tmp_path / "a.dat", values, samples, genes)
    write_gctx(tmp_path / "b.dat", values, samples, genes)
    write_table(tmp_path / "c.dat", values, samples, genes, delimiter=",")
    write_gct13(tmp_path / "d.gz", values, samples, genes, genes, gz=True)
    assert detect_format(tmp_path / "a.dat") == "gct"
    assert detect_format(tmp_path / "b.dat") == "gctx"
    assert detect_format(tmp_path / "c.dat") == "tsv"
    assert detect_format(tmp_path / "d.gz") == "gct"
    assert detect_format(demo_raw["rnaseq"]) == "geuvadis"
    assert detect_format(demo_raw["geo"]) == "gctx"


def test_default_chunk_is_about_32_mib():
    assert default_chunk_samples(22_268) == 320
    assert default_chunk_samples(10_463) == 768
    assert default_chunk_samples(978) == 8576
    assert default_chunk_samples(10) == 16384
    assert default_chunk_samples(10_000_000) == 64


def test_cli_prints_summary_and_quiet_prints_nothing(tmp_path, capsys, demo_raw):
    assert main(["ingest", str(demo_raw["rnaseq"]), "--out", str(tmp_path / "a.zarr")]) == 0
    out = capsys.readouterr().out
    assert "120 samples x 700 genes" in out and "compression ratio" in out
    assert main(["ingest", str(demo_raw["rnaseq"]), "--out", str(tmp_path / "b.zarr"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["info", str(tmp_path / "b.zarr")]) == 0
    assert "geuvadis" in capsys.readouterr().out


def test_gzip_detection_reads_magic_bytes(tmp_path):
    values, samples, genes = small_matrix(3, 4)
    write_table(tmp_path / "plain.tsv.gz", values, samples, genes)  # misleading name, not gzip
    ingest(tmp_path / "plain.tsv.gz", tmp_path / "p.zarr")
    assert_store(tmp_path / "p.zarr", values, samples, genes)
    with gzip.open(tmp_path / "real.tsv", "wt") as f:
        f.write("id\ts1\ng1\t1.0\n")
    ingest(tmp_path / "real.tsv", tmp_path / "r.zarr")
    assert_store(tmp_path / "r.zarr", np.array([[1.0]], np.float32), ["s1"], ["g1"])


def test_a_samples_by_genes_table_is_ingested_the_right_way_round(tmp_path):
    """Issue 12.3: a samples-by-genes CSV (what `AnnData.to_df().to_csv()` writes) was
    ingested transposed without a word. Gene ids in the header and none in the first column
    make its orientation certain: it is read a profile per line, and equals the same matrix
    written gene per row."""
    from streamgex.store import open_store

    rng = np.random.default_rng(3)
    values = rng.uniform(0, 10, size=(7, 5)).astype(np.float32)
    genes = [f"ENSG{j:011d}.2" for j in range(5)]
    samples = [f"cell_{i}" for i in range(7)]
    (tmp_path / "by_sample.csv").write_text(
        "," + ",".join(f'"{g}"' for g in genes) + "\n" + "".join(
            f'"{s}",' + ",".join(repr(float(v)) for v in row) + "\n"
            for s, row in zip(samples, values)))
    (tmp_path / "by_gene.tsv").write_text(
        "gene\t" + "\t".join(samples) + "\n" + "".join(
            f"{g}\t" + "\t".join(repr(float(v)) for v in values[:, j]) + "\n"
            for j, g in enumerate(genes)))
    a = open_store(ingest(tmp_path / "by_sample.csv", tmp_path / "a.zarr", chunk_samples=3))
    b = open_store(ingest(tmp_path / "by_gene.tsv", tmp_path / "b.zarr", chunk_samples=3))
    np.testing.assert_array_equal(a.expression.values, values)
    np.testing.assert_array_equal(a.expression.values, b.expression.values)
    assert list(a.sample.values) == samples and list(a.gene.values) == list(b.gene.values)

    (tmp_path / "bad.csv").write_text(",ENSG00000000001,ENSG00000000002\ncell_0,1,x\n")
    with pytest.raises(StreamgexError, match=r"bad.csv:2:3: non-numeric value 'x'"):
        ingest(tmp_path / "bad.csv", tmp_path / "bad.zarr")


def test_a_table_that_cannot_tell_its_orientation_asks_for_samples_as(tmp_path, capsys):
    """Issue 12.3: symbols against sample names under an empty corner were read gene per
    row without a word, a silent transpose when they were samples per row. Now such a table
    is an error naming --samples-as, and either value reads it that way round."""
    path = tmp_path / "t.csv"
    path.write_text(",TP53,EGFR,MYC\ncell_a,1,2,3\ncell_b,4,5,6\n")
    out = tmp_path / "t.zarr"
    assert main(["ingest", str(path), "--out", str(out)]) == 1
    assert "--samples-as columns" in capsys.readouterr().err and not out.exists()
    assert main(["ingest", str(path), "--out", str(out), "--samples-as", "rows", "--quiet"]) == 0
    assert_store(out, np.array([[1, 2, 3], [4, 5, 6]], np.float32), ["cell_a", "cell_b"],
                 ["TP53", "EGFR", "MYC"])
    # the other way round is another store: the re-run with the other orientation rebuilds it
    assert main(["ingest", str(path), "--out", str(out), "--samples-as", "columns",
                 "--overwrite", "--quiet"]) == 0
    assert_store(out, np.array([[1, 4], [2, 5], [3, 6]], np.float32), ["TP53", "EGFR", "MYC"],
                 ["cell_a", "cell_b"])
    # a first header field that names the sample column makes it certain
    path.write_text("cell_id,TP53,EGFR\ncell_a,1,2\n")
    assert main(["ingest", str(path), "--out", str(tmp_path / "c.zarr"), "--quiet"]) == 0
    assert list(open_store(tmp_path / "c.zarr").gene.values) == ["TP53", "EGFR"]
    write_gct12(tmp_path / "x.gct", *small_matrix(2, 3))
    with pytest.raises(StreamgexError, match="--samples-as applies to TSV/CSV"):
        ingest(tmp_path / "x.gct", tmp_path / "x.zarr", samples_as="rows")
