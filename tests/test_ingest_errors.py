"""Bad input: a one-line error naming the file and the position, non-zero exit, no store left."""

import gzip

import h5py
import numpy as np
import pytest

from rawfiles import small_matrix, write_gct12, write_gctx, write_geuvadis, write_table
from streamgex.cli import main


def run_ingest(capsys, source, out, *extra):
    status = main(["ingest", str(source), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    return status, err


def assert_rejected(capsys, tmp_path, source, *fragments, extra=()):
    out = tmp_path / "out.zarr"
    status, err = run_ingest(capsys, source, out, *extra)
    assert status == 1
    assert err.startswith("streamgex: error: ") and "\n" not in err, err
    assert str(source) in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists(), "a rejected ingest must not leave a store behind"
    return err


def test_empty_file(tmp_path, capsys):
    (tmp_path / "e.txt").write_text("")
    assert_rejected(capsys, tmp_path, tmp_path / "e.txt", "empty file")


def test_missing_file(tmp_path, capsys):
    assert_rejected(capsys, tmp_path, tmp_path / "nope.gctx", "no such file")


def test_truncated_gzip(tmp_path, capsys):
    values, samples, genes = small_matrix(30, 400)
    write_geuvadis(tmp_path / "g.txt.gz", values, samples, [f"ENSG{j:011d}.1" for j in range(400)],
                   genes)
    data = (tmp_path / "g.txt.gz").read_bytes()
    (tmp_path / "t.txt.gz").write_bytes(data[: len(data) // 2])
    assert_rejected(capsys, tmp_path, tmp_path / "t.txt.gz", "truncated gzip stream after line")


def test_hdf5_without_gctx_datasets(tmp_path, capsys):
    with h5py.File(tmp_path / "x.gctx", "w") as f:
        f["0/DATA/0/matrix"] = np.zeros((2, 3), np.float32)
    assert_rejected(capsys, tmp_path, tmp_path / "x.gctx", "/0/META/ROW/id")


def test_gctx_without_samples(tmp_path, capsys):
    _, _, genes = small_matrix(0, 5)
    write_gctx(tmp_path / "x.gctx", np.zeros((0, 5), np.float32), [], genes, chunks=None)
    assert_rejected(capsys, tmp_path, tmp_path / "x.gctx", "names no samples")


def test_gctx_ids_disagree_with_matrix(tmp_path, capsys):
    values, samples, genes = small_matrix(4, 5)
    write_gctx(tmp_path / "x.gctx", values, samples[:3], genes)
    assert_rejected(capsys, tmp_path, tmp_path / "x.gctx", "/0/DATA/0/matrix has shape (4, 5)")


def test_ragged_row(tmp_path, capsys):
    values, samples, genes = small_matrix(3, 6)
    write_table(tmp_path / "r.tsv", values, samples, genes)
    lines = (tmp_path / "r.tsv").read_text().splitlines()
    lines[4] += "\t1.0"
    (tmp_path / "r.tsv").write_text("\n".join(lines) + "\n")
    assert_rejected(capsys, tmp_path, tmp_path / "r.tsv", "r.tsv:5:", "ragged row with 5 fields")


def test_non_numeric_cell(tmp_path, capsys):
    values, samples, genes = small_matrix(3, 6)
    write_gct12(tmp_path / "n.gct", values, samples, genes)
    lines = (tmp_path / "n.gct").read_text().splitlines()
    cells = lines[6].split("\t")
    cells[3] = "abc"
    lines[6] = "\t".join(cells)
    (tmp_path / "n.gct").write_text("\n".join(lines) + "\n")
    assert_rejected(capsys, tmp_path, tmp_path / "n.gct", "n.gct:7:4:", "non-numeric value 'abc'")


@pytest.mark.parametrize("bad,token", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_text_cell_rejected_without_allow_missing(tmp_path, capsys, bad, token):
    values, samples, genes = small_matrix(3, 6)
    values[2, 4] = bad  # sample 3 -> column 4, gene 5 -> line 6
    write_table(tmp_path / "x.tsv", values, samples, genes)
    assert_rejected(capsys, tmp_path, tmp_path / "x.tsv", "x.tsv:6:4:", "--allow-missing")


def test_missing_token_rejected_without_allow_missing(tmp_path, capsys):
    (tmp_path / "x.tsv").write_text("id\ts1\ts2\ng1\t1\tNA\n")
    assert_rejected(capsys, tmp_path, tmp_path / "x.tsv", "x.tsv:2:3:", "missing")


def test_non_finite_gctx_cell(tmp_path, capsys):
    values, samples, genes = small_matrix(20, 6)
    values[13, 2] = np.nan
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    assert_rejected(
        capsys, tmp_path, tmp_path / "x.gctx", "HDF5 /0/DATA/0/matrix[13, 2]",
        extra=("--chunk-samples", "5"),
    )


def test_negative_rpkm(tmp_path, capsys):
    values, samples, genes = small_matrix(5, 8, low=0, high=50)
    values[3, 6] = -0.5
    write_geuvadis(tmp_path / "g.txt.gz", values, samples, [f"ENSG{j:011d}.2" for j in range(8)], genes)
    assert_rejected(capsys, tmp_path, tmp_path / "g.txt.gz", "g.txt.gz:8:8:", "negative RPKM")


def test_duplicate_sample_ids(tmp_path, capsys):
    values, samples, genes = small_matrix(4, 3)
    samples[3] = samples[1]
    write_table(tmp_path / "d.tsv", values, samples, genes)
    assert_rejected(capsys, tmp_path, tmp_path / "d.tsv", "duplicate sample id", "column 5")
    write_gctx(tmp_path / "d.gctx", values, samples, genes)
    assert_rejected(capsys, tmp_path, tmp_path / "d.gctx", "duplicate sample id", "/0/META/COL/id[3]")


@pytest.mark.parametrize("bad,word", [(" ", "empty"), ("GSM2 ", "padded with spaces")])
def test_empty_or_padded_sample_ids(tmp_path, capsys, bad, word):
    """Issue 11.15: such ids were accepted (and never matched a map or another file)."""
    (tmp_path / "x.tsv").write_text(f"id\tGSM1\t{bad}\ng1\t1\t2\n")
    assert_rejected(capsys, tmp_path, tmp_path / "x.tsv", f"sample id {bad!r} at line 1, "
                    f"column 3 is {word}")


def test_underscore_digits_are_not_a_number(tmp_path, capsys):
    """Issue 11.15: "1_000" was read as 1000 (Python's and numpy's literal syntax)."""
    (tmp_path / "x.tsv").write_text("id\tGSM1\tGSM2\ng1\t1\t1_000\n")
    assert_rejected(capsys, tmp_path, tmp_path / "x.tsv", "x.tsv:2:3:", "non-numeric value '1_000'")


def test_duplicate_gene_ids_including_after_version_strip(tmp_path, capsys):
    values, samples, genes = small_matrix(2, 4)
    genes = ["ENSG00000000001.1", "ENSG00000000002.1", "ENSG00000000001.7", "x"]
    write_geuvadis(tmp_path / "d.txt", values, samples, genes, ["a", "b", "c", "d"], gz=False)
    assert_rejected(capsys, tmp_path, tmp_path / "d.txt", "d.txt:4:1:", "duplicate gene id 'ENSG00000000001'",
                    "first at line 2")
    write_gctx(tmp_path / "d.gctx", np.ones((2, 4), np.float32), samples, ["a", "b", "a", "c"])
    assert_rejected(capsys, tmp_path, tmp_path / "d.gctx", "/0/META/ROW/id[2]")


@pytest.mark.parametrize("declared,fragment", [
    ("7\t3", "declares 7 gene rows but the table has 6"),
    ("5\t3", ":9: more gene rows than the 5"),
    ("6\t4", "names 3 samples but line 2 declares 4"),
    ("six\t3", ":2: GCT 1.2 dimensions line"),
])
def test_gct_header_disagrees_with_body(tmp_path, capsys, declared, fragment):
    values, samples, genes = small_matrix(3, 6)
    write_gct12(tmp_path / "h.gct", values, samples, genes)
    lines = (tmp_path / "h.gct").read_text().splitlines()
    lines[1] = declared
    (tmp_path / "h.gct").write_text("\n".join(lines) + "\n")
    assert_rejected(capsys, tmp_path, tmp_path / "h.gct", fragment)


def test_wrong_explicit_format(tmp_path, capsys):
    values, samples, genes = small_matrix(3, 4)
    write_table(tmp_path / "t.tsv", values, samples, genes)
    assert_rejected(capsys, tmp_path, tmp_path / "t.tsv", "looks like tsv", extra=("--format", "gctx"))


def test_existing_store_is_up_to_date_or_needs_overwrite(tmp_path, capsys):
    values, samples, genes = small_matrix(3, 4)
    write_table(tmp_path / "t.tsv", values, samples, genes)
    out = tmp_path / "t.zarr"
    assert run_ingest(capsys, tmp_path / "t.tsv", out)[0] == 0
    before = (out / "zarr.json").stat().st_mtime_ns
    status, err = run_ingest(capsys, tmp_path / "t.tsv", out)
    assert status == 0 and "up to date" in err, "the same command twice does nothing"
    assert (out / "zarr.json").stat().st_mtime_ns == before
    values[0, 0] = 1.0
    write_table(tmp_path / "t.tsv", values, samples, genes)
    status, err = run_ingest(capsys, tmp_path / "t.tsv", out)
    assert status == 1 and "made from another input or with other options" in err
    assert "--overwrite" in err
    assert (out / "zarr.json").stat().st_mtime_ns == before, "the existing store is left alone"
    assert run_ingest(capsys, tmp_path / "t.tsv", out, "--overwrite")[0] == 0
    from streamgex.store import open_store
    assert open_store(out).expression.values[0, 0] == 1.0


def test_folder_that_is_not_a_store_is_not_replaced(tmp_path, capsys):
    values, samples, genes = small_matrix(3, 4)
    write_table(tmp_path / "t.tsv", values, samples, genes)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    status, err = run_ingest(capsys, tmp_path / "t.tsv", tmp_path / "mine")
    assert status == 1 and "is not a streamgex store" in err
    # issue 11.2: --overwrite replaces only a store streamgex made, never a folder of the user's
    status, err = run_ingest(capsys, tmp_path / "t.tsv", tmp_path / "mine", "--overwrite")
    assert status == 1 and "replaces only what it made" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_output_that_holds_its_input_is_refused(tmp_path, capsys):
    """Issue 11.2: `ingest data/x.tsv --out data --overwrite` removed the source."""
    values, samples, genes = small_matrix(3, 4)
    (tmp_path / "data").mkdir()
    write_table(tmp_path / "data" / "t.tsv", values, samples, genes)
    for out in (tmp_path / "data", tmp_path / "data" / "t.tsv", tmp_path):
        status, err = run_ingest(capsys, tmp_path / "data" / "t.tsv", out, "--overwrite")
        assert status == 1 and "is, holds or lies inside its input" in err, err
    assert (tmp_path / "data" / "t.tsv").exists()


def test_corrupt_gzip(tmp_path, capsys):
    payload = gzip.compress(b"id\ts1\n" + b"".join(b"g%d\t1.0\n" % i for i in range(5000)))
    broken = bytearray(payload)
    broken[len(broken) // 2] ^= 0xFF
    (tmp_path / "c.tsv.gz").write_bytes(bytes(broken))
    assert_rejected(capsys, tmp_path, tmp_path / "c.tsv.gz", "gzip")


@pytest.mark.parametrize("url", ["s3://bucket/x.zarr", "memory://x"])
def test_a_url_is_refused_not_made_a_local_folder(tmp_path, capsys, monkeypatch, url):
    """Issue 11.12: `--out s3://b/x.zarr` exited 0 and wrote ./s3:/b/x.zarr. Ingest, the
    store steps and predict take URLs now (tests/test_remote.py); split does not yet, and
    still refuses one."""
    values, samples, genes = small_matrix(3, 4)
    write_table(tmp_path / "t.tsv", values, samples, genes)
    monkeypatch.chdir(tmp_path)
    status = main(["split", "t.zarr", "--out", url])
    err = capsys.readouterr().err
    assert status == 1 and "URLs" in err and "not supported yet" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv"]


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """Issue 11.15: Ctrl-C while TensorFlow was being imported printed a traceback. The import
    is held open here (it takes 1-10 s for real), so the interrupt surely lands in it."""
    import signal
    import subprocess
    import sys

    args = ["evaluate", str(tmp_path / "run"), str(tmp_path / "store")]  # imports at start-up
    # A process started from a test run may inherit an ignored SIGINT; a terminal's is live.
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import sys, time; import streamgex.cli as cli\n"
            "def slow_import():\n"
            "    print('importing', flush=True); time.sleep(60)\n"
            "cli._import_tensorflow_quietly = slow_import\n"
            f"sys.exit(cli.main({args!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "importing"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == "streamgex: interrupted"
