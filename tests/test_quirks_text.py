"""Real-world text files as pandas, R and GEO write them (issue 27 items 2, 3 and 8).

Each case is a small file under ``tests/quirks/`` (or written here from one), read to
exactly known values or refused in one line naming the file and the fix. The list of
cases is ``tests/quirks/README.md``.
"""

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from rawfiles import small_matrix, write_gctx, write_series_matrix
from streamgex.cli import main
from streamgex.errors import StreamgexError
from streamgex.formats import detect_format
from streamgex.formats.writers import export_store
from streamgex.ingest import ingest
from streamgex.store import open_store

QUIRKS = Path(__file__).parent / "quirks"
GSE1, GSE2 = QUIRKS / "GSE90001_series_matrix.txt", QUIRKS / "GSE90002_series_matrix.txt"
PROBES = ["1415670_at", "1415671_at", "AFFX-BioB-5_at"]


def strings(values):
    return [str(v) for v in values]


def refused(capsys, *args):
    """Run the CLI; assert a one-line error and return it."""
    assert main(list(map(str, args))) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamgex: error: ") and "\n" not in err, err
    return err


# --- item 3: text tables as pandas and R read them -------------------------------------------

def test_r_write_csv_quoting_reads_as_pandas_reads_it(tmp_path):
    """A quoted sample name with a comma (``"liver, rep1"``), a doubled quote inside one,
    quoted numbers: before, the header split at the comma and ``"1.5"`` was non-numeric."""
    ds = open_store(ingest(QUIRKS / "r_write_csv.csv", tmp_path / "r.zarr"))
    assert strings(ds.sample.values) == ["liver, rep1", 'kidney "K1"', "heart"]
    assert strings(ds.gene.values) == ["ENSG00000141510", "ENSG00000146648"]
    expected = np.array([[1.5, -0.25], [2, 1e-3], [3, 0]], np.float32)
    np.testing.assert_array_equal(ds.expression.values, expected)
    table = pd.read_csv(QUIRKS / "r_write_csv.csv", index_col=0)
    np.testing.assert_array_equal(ds.expression.values, table.to_numpy(np.float32).T)
    assert strings(ds.sample.values) == list(table.columns)


def test_a_badly_quoted_field_is_one_line(tmp_path, capsys):
    (tmp_path / "q.csv").write_text('gene_id,s1,s2\n"ENSG00000141510"x,1,2\n')
    err = refused(capsys, "ingest", tmp_path / "q.csv", "--out", tmp_path / "q.zarr")
    assert "q.csv:2: badly quoted field" in err


def test_a_blank_line_at_the_end_is_ignored_one_inside_is_refused(tmp_path, capsys):
    """pandas and R skip blank lines at the end; before, they were "empty line inside the
    table". One with rows after it is still refused, naming its line."""
    ds = open_store(ingest(QUIRKS / "blank_end.tsv", tmp_path / "b.zarr"))
    np.testing.assert_array_equal(ds.expression.values, np.array([[1, 3], [2, 4]], np.float32))
    inside = tmp_path / "inside.tsv"
    inside.write_text("gene_id\ts1\nENSG00000141510\t1\n\nENSG00000146648\t3\n")
    err = refused(capsys, "ingest", inside, "--out", tmp_path / "i.zarr")
    assert "inside.tsv:3: empty line inside the table; remove it" in err


def test_annotation_columns_are_gene_fields_not_samples(tmp_path):
    """``Gene Symbol`` and ``Gene Title`` after the ids, ``ENTREZ_GENE_ID`` after the samples
    (GEO2R, GPL and GDS tables): before, ``Gene Title`` was a sample with a non-numeric value
    'discoidin ...'. Now they are gene coordinates and only GSM1, GSM2 are samples."""
    ds = open_store(ingest(QUIRKS / "annotated.tsv", tmp_path / "a.zarr"))
    assert strings(ds.sample.values) == ["GSM1", "GSM2"]
    assert strings(ds.gene.values) == ["1007_s_at", "1053_at"]
    np.testing.assert_array_equal(ds.expression.values,
                                  np.array([[9.5, 6.5], [8.25, 7.75]], np.float32))
    assert strings(ds.gene_symbol.values) == ["DDR1", "RFC2"]
    assert strings(ds.gene_title.values)[1] == "replication factor C subunit 2"
    assert strings(ds.gene_entrez_gene_id.values) == ["780", "5982"]

    gds = open_store(ingest(QUIRKS / "gds_identifier.txt", tmp_path / "g.zarr"))
    assert strings(gds.sample.values) == ["GSM11815", "GSM11832"]
    np.testing.assert_array_equal(gds.expression.values,
                                  np.array([[4254.0, 17996.2], [5991.0, 41678.8]], np.float32))
    assert strings(gds.gene_symbol.values) == ["PRPF8", "CAPN2"]  # GDS's IDENTIFIER
    assert strings(gds.gene_id.values) == ["10594", "824"]
    assert strings(gds.gene_chromosome_annotation.values)[0] == \
        "Chromosome 17, NC_000017.11 (1650629..1684867, complement)"
    assert strings(gds.gene_go_function.values) == ["RNA binding", "calcium ion binding"]


def test_lower_case_ensembl_ids_are_matched(tmp_path):
    """``ensg00000141510.16``: before, its version was kept and it matched no map row (and
    did not count as a gene id for the orientation). Now the store's gene is the Ensembl id
    as maps write it; ``gene_raw`` keeps the file's text."""
    from streamgex.preprocess.genes import genes

    ds = open_store(ingest(QUIRKS / "lowercase_ensembl.tsv", tmp_path / "l.zarr"))
    assert strings(ds.gene.values) == ["ENSG00000141510", "ENSG00000146648"]
    assert strings(ds.gene_raw.values) == ["ensg00000141510.16", "ensg00000146648.18"]
    (tmp_path / "lm.txt").write_text("TP53\tENSG00000141510\t201746_at\n")
    (tmp_path / "tg.txt").write_text("EGFR\tENSG00000146648\t201983_s_at\n")
    out = genes(tmp_path / "l.zarr", tmp_path / "genes.zarr", landmarks=tmp_path / "lm.txt",
                targets=tmp_path / "tg.txt", by="ensembl")
    np.testing.assert_array_equal(open_store(out).expression.values,
                                  np.array([[1, 3], [2, 4]], np.float32))
    # the other orientation: lower-case Ensembl ids across the header are genes too
    (tmp_path / "rows.csv").write_text(",ensg00000141510,ensg00000146648\ncell_a,1,2\n")
    rows = open_store(ingest(tmp_path / "rows.csv", tmp_path / "rows.zarr"))
    assert strings(rows.sample.values) == ["cell_a"]


def test_export_store_csv_quotes_ids_and_reads_back(tmp_path):
    """A sample ``liver, rep1`` was written bare: pandas shifted every value one column
    and streamgex could not read its own file back. Now ids that need quotes get them."""
    ingest(QUIRKS / "r_write_csv.csv", tmp_path / "r.zarr")
    for suffix, sep in ((".csv", ","), (".tsv", "\t")):
        out = export_store(tmp_path / "r.zarr", tmp_path / f"r{suffix}")
        table = pd.read_csv(out, sep=sep, index_col=0)
        assert list(table.index) == ["liver, rep1", 'kidney "K1"', "heart"]
        source = open_store(tmp_path / "r.zarr")
        np.testing.assert_array_equal(table.to_numpy(np.float32), source.expression.values)
        back = open_store(ingest(out, tmp_path / f"back{suffix}.zarr"))
        assert strings(back.sample.values) == strings(source.sample.values)
        np.testing.assert_array_equal(back.expression.values, source.expression.values)


# --- item 2: GEO series matrices ----------------------------------------------------------------

def test_a_series_matrix_ingests_with_its_sample_characteristics(tmp_path):
    """Before: "ragged row with 13 fields, expected 2" (read as a table from line 1). Now the
    table between the markers is the matrix and each ``!Sample_*`` line a sample coordinate,
    carried by later steps as every sample coordinate is."""
    from streamgex.preprocess.quantile import normalize

    assert detect_format(GSE1) == "series-matrix"
    ds = open_store(ingest(GSE1, tmp_path / "geo.zarr"))
    assert strings(ds.sample.values) == ["GSM2000001", "GSM2000002", "GSM2000003"]
    assert strings(ds.gene.values) == PROBES
    np.testing.assert_array_equal(ds.expression.values, np.array(
        [[7.25, 10.0, 5.5], [8.5, 9.75, 5.25], [6.125, 11.5, 5.0]], np.float32))
    assert strings(ds.sample_title.values) == ["liver, rep1", "liver, rep2", 'kidney "K1"']
    assert strings(ds.sample_geo_accession.values) == strings(ds.sample.values)
    assert strings(ds.sample_characteristics_ch1.values) == ["tissue: liver"] * 2 + [
        "tissue: kidney"]
    assert strings(ds.sample_characteristics_ch1_1.values) == ["age: 8 weeks", "age: 9 weeks",
                                                               "age: 8 weeks"]
    assert ds.attrs["source"]["format"] == "series-matrix"
    later = open_store(normalize(tmp_path / "geo.zarr", tmp_path / "qn.zarr", reference="normal"))
    assert strings(later.sample_characteristics_ch1.values) == strings(
        ds.sample_characteristics_ch1.values)


def test_a_gzipped_series_matrix_with_null_cells(tmp_path, capsys):
    """GEO writes missing cells as ``null`` or nothing: the ingest's missing-value policy."""
    path = tmp_path / "GSE3_series_matrix.txt.gz"
    values = np.array([[1.5, np.nan], [2.5, 3.5]], np.float32)
    write_series_matrix(path, values, ["GSM1", "GSM2"], ["a_at", "b_at"], series="GSE3",
                        platform="GPL570")
    err = refused(capsys, "ingest", path, "--out", tmp_path / "x.zarr")
    assert "GSE3_series_matrix.txt.gz:" in err and "--allow-missing" in err
    ds = open_store(ingest(path, tmp_path / "x.zarr", allow_missing="nan"))
    np.testing.assert_array_equal(ds.expression.values, values)


def test_two_series_into_one_store_and_the_order_is_part_of_its_identity(tmp_path, capsys):
    """``streamgex ingest A B --out geo.zarr``: the samples of A then B, with their
    characteristics (a field B lacks is empty there); the same files in the other order
    are another store."""
    out = tmp_path / "geo.zarr"
    assert main(["ingest", str(GSE1), str(GSE2), "--out", str(out)]) == 0
    assert f"source      {GSE1.resolve()} and 1 more (series-matrix, sha256 " in \
        capsys.readouterr().out
    ds = open_store(out)
    assert strings(ds.sample.values) == ["GSM2000001", "GSM2000002", "GSM2000003", "GSM2000004"]
    np.testing.assert_array_equal(ds.expression.values[3], [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(ds.expression.values[:3],
                                  open_store(ingest(GSE1, tmp_path / "one.zarr")).expression)
    assert strings(ds.sample_characteristics_ch1.values)[3] == "tissue: heart"
    assert strings(ds.sample_characteristics_ch1_1.values)[3] == ""
    files = ds.attrs["source"]["files"]
    assert [f["path"] for f in files] == [str(GSE1.resolve()), str(GSE2.resolve())]
    assert len(ds.attrs["source"]["sha256"]) == 2
    assert main(["ingest", str(GSE1), str(GSE2), "--out", str(out)]) == 0
    assert "up to date" in capsys.readouterr().err
    err = refused(capsys, "ingest", GSE2, GSE1, "--out", out)
    assert "made from another input" in err


def test_moved_series_are_recognised_by_content(tmp_path, capsys):
    """The identity of several files is their content, in order: copied elsewhere (new
    inodes and times), the store is up to date, not ingested again."""
    a, b = shutil.copy(GSE1, tmp_path / "a.txt"), shutil.copy(GSE2, tmp_path / "b.txt")
    out = tmp_path / "geo.zarr"
    ingest([a, b], out)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(a, moved / "a.txt")
    shutil.move(b, moved / "b.txt")
    shutil.copy(moved / "a.txt", a)  # a new inode at the old place
    written = (out / "expression" / "c" / "0" / "0").stat().st_mtime_ns
    assert main(["ingest", str(a), str(moved / "b.txt"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "comparing their content: the same" in err and "up to date" in err, err
    assert (out / "expression" / "c" / "0" / "0").stat().st_mtime_ns == written


def test_series_that_cannot_share_a_store_are_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "x.zarr"
    err = refused(capsys, "ingest", GSE1, GSE1, "--out", out)
    assert "duplicate sample id 'GSM2000001'" in err and "GSE90001_series_matrix.txt" in err

    other = tmp_path / "GSE5_series_matrix.txt"
    write_series_matrix(other, np.ones((1, 3), np.float32), ["GSM9"], PROBES, series="GSE5",
                        platform="GPL570", gz=False)
    err = refused(capsys, "ingest", GSE1, other, "--out", out)
    assert f"{other}: platform GPL570 but" in err and "GPL1261" in err

    reordered = tmp_path / "GSE6_series_matrix.txt"
    write_series_matrix(reordered, np.ones((1, 3), np.float32), ["GSM9"], PROBES[::-1],
                        series="GSE6", platform="GPL1261", gz=False)
    err = refused(capsys, "ingest", GSE1, reordered, "--out", out)
    assert f"{reordered}:" in err and "same genes in the same order" in err

    err = refused(capsys, "ingest", GSE1, QUIRKS / "blank_end.tsv", "--out", out)
    assert "ingest files of one format together" in err
    assert not out.exists()
    copy = shutil.copy(GSE2, tmp_path / "GSE90002_series_matrix.txt")
    err = refused(capsys, "ingest", GSE1, copy, "--out", copy)  # an input after the first
    assert "is, holds or lies inside its input" in err and copy.read_text() == GSE2.read_text()


def test_a_series_matrix_cut_short_is_refused(tmp_path, capsys):
    cut = tmp_path / "GSE7_series_matrix.txt"
    cut.write_text("".join(GSE1.read_text().splitlines(keepends=True)[:-2]))
    err = refused(capsys, "ingest", cut, "--out", tmp_path / "x.zarr")
    assert f"{cut}: ends without its !series_matrix_table_end line" in err
    edited = tmp_path / "GSE8_series_matrix.txt"
    edited.write_text(GSE1.read_text().replace('"ID_REF"\t"GSM2000001"\t"GSM2000002"',
                                               '"ID_REF"\t"GSM2000002"\t"GSM2000001"'))
    err = refused(capsys, "ingest", edited, "--out", tmp_path / "x.zarr")
    assert "not the !Sample_geo_accession samples" in err


def test_simulated_geo_as_two_series_equals_its_gctx(tmp_path, demo_raw):
    """The simulator's GEO profiles written as two gzip series matrices (the simulator's
    writer) ingest to the same store as the GCTX they came from."""
    with h5py.File(demo_raw["geo"]) as f:
        values = f["0/DATA/0/matrix"][:300]
        samples = [s.decode() for s in f["0/META/COL/id"][:300]]
        probes = [s.decode() for s in f["0/META/ROW/id"][()]]
    parts = [tmp_path / "GSE1-GPL570_series_matrix.txt.gz",
             tmp_path / "GSE2-GPL570_series_matrix.txt.gz"]
    write_series_matrix(parts[0], values[:170], samples[:170], probes, series="GSE1",
                        platform="GPL570", characteristics=[("batch", [0] * 170)])
    write_series_matrix(parts[1], values[170:], samples[170:], probes, series="GSE2",
                        platform="GPL570")
    ds = open_store(ingest(parts, tmp_path / "geo.zarr", chunk_samples=64, block_values=5000))
    np.testing.assert_array_equal(ds.expression.values, values)
    assert strings(ds.sample.values) == samples and strings(ds.gene.values) == probes
    assert strings(ds.sample_characteristics_ch1.values) == ["batch: 0"] * 170 + [""] * 130


def test_an_interrupted_ingest_of_several_series_resumes_in_the_second(tmp_path, monkeypatch,
                                                                      caplog):
    """Killed in the second file's rows, the re-run parses neither the first file nor the
    second's rows already stored, and ends with the store an uninterrupted run makes."""
    import streamgex.ingest as module

    values, samples, probes = small_matrix(40, 90, seed=5)
    parts = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for k, (path, rows) in enumerate(zip(parts, (slice(0, 25), slice(25, 40)))):
        write_series_matrix(path, values[rows], samples[rows], probes, series=f"GSE{k}",
                            platform="GPL570", gz=False)
    real, parsed = module.gene_rows, []

    def interrupted(layout, *, block_rows, parse_from=0):
        parsed.append((Path(layout.path).name, parse_from))
        for n, block in enumerate(real(layout, block_rows=block_rows, parse_from=parse_from)):
            if layout.path.endswith("b.txt") and n == 3 and len(parsed) == 2:
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr(module, "gene_rows", interrupted)
    options = {"chunk_samples": 8, "block_values": 64 * 10}  # blocks of 10 gene rows
    with pytest.raises(KeyboardInterrupt):
        ingest(parts, tmp_path / "x.zarr", **options)
    with caplog.at_level(logging.INFO, logger="streamgex"):
        ds = open_store(ingest(parts, tmp_path / "x.zarr", **options))
    assert "30 gene rows already transposed in file 2" in caplog.text
    assert parsed[-2:] == [("a.txt", float("inf")), ("b.txt", 30)]
    np.testing.assert_array_equal(ds.expression.values, values)


def test_several_gctx_files_into_one_store(tmp_path, capsys):
    """The same works for any one format that ingests a profile at a time (GCTX here):
    a chunk that spans two files is read from both."""
    values, samples, genes = small_matrix(30, 7, seed=6)
    write_gctx(tmp_path / "a.gctx", values[:11], samples[:11], genes)
    write_gctx(tmp_path / "b.gctx", values[11:], samples[11:], genes)
    ds = open_store(ingest([tmp_path / "a.gctx", tmp_path / "b.gctx"], tmp_path / "x.zarr",
                           chunk_samples=8))
    np.testing.assert_array_equal(ds.expression.values, values)
    assert strings(ds.sample.values) == samples
    write_gctx(tmp_path / "c.gctx", values[:3], ["X1", "X2", "X3"], genes[::-1])
    err = refused(capsys, "ingest", tmp_path / "a.gctx", tmp_path / "c.gctx", "--out",
                  tmp_path / "y.zarr")
    assert f"{tmp_path / 'c.gctx'}: its genes differ" in err and "same order" in err


def test_a_gpl_annotation_table_given_as_a_map_says_what_it_lacks(tmp_path, capsys):
    """A GEO platform table (``#`` notes, ``ID``, ``Gene Symbol``, ``ENTREZ_GENE_ID``) maps
    probes to genes but not roles or Ensembl ids, so it is not a map (tests/quirks/README.md);
    given as one, the error says so instead of only counting its fields."""
    gpl = tmp_path / "GPL570-55999.txt"
    gpl.write_text("#ID = Affymetrix Probe Set ID\n#Gene Symbol = gene symbol\n"
                   "ID\tGene Symbol\tENTREZ_GENE_ID\n"
                   "1007_s_at\tDDR1 /// MIR4640\t780 /// 100616237\n")
    ingest(QUIRKS / "annotated.tsv", tmp_path / "a.zarr")
    err = refused(capsys, "genes", tmp_path / "a.zarr", "--out", tmp_path / "g.zarr",
                  "--landmarks", gpl, "--targets", gpl)
    assert f"{gpl}:1: a map row is" in err and "GEO platform (GPL) annotation table" in err

