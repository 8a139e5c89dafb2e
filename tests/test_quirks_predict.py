"""Real-world quirks of predict's inputs (issue 27 items 4, 5 and 8): a small file per case,
read to exactly known values or refused in one line naming the file and the fix.

The model is a hand-made linear export bundle of 3 landmarks and 2 targets whose
normalization is worked out by hand below, so every prediction is a known number and no
demo run is needed (seconds, not minutes).
"""

import json
import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamgex.cli import main  # noqa: E402
from streamgex.digest import sha256_of  # noqa: E402
from streamgex.formats.gctx import create_gctx  # noqa: E402
from streamgex.ingest import ingest  # noqa: E402
from streamgex.store import building, open_store, strings  # noqa: E402

#: The model's genes, landmarks first: L0 averages two probes.
KEYS = ["ENSG0", "ENSG1", "ENSG2", "ENSG3", "ENSG4"]
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
PROBES = ["p0a,p0b", "p1", "p2", "p3", "p4"]
IS_LANDMARK = [True, True, True, False, False]
#: z = (x - MEAN) / (STD + 1e-3) = (x - MEAN) / SCALE, exactly in float64.
MEAN = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
SCALE = np.array([1.0, 2.0, 1.0, 1.0, 1.0])
REFERENCE = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
LANDMARK_REFERENCE = np.array([10.0, 20.0, 30.0])
WEIGHTS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
INTERCEPT = np.array([0.5, -0.5])

#: Two profiles of probe values, whole (the p0 pair averages to the gene's value).
SAMPLES = ["S1", "S2"]
PROBE_IDS = ["p0a", "p0b", "p1", "p2", "p3", "p4"]
VALUES = np.array([[9.0, 11.0, 30.0, 20.0, 50.0, 40.0],    # genes 10 30 20 50 40
                   [5.0, 5.0, 4.0, 3.0, 2.0, 1.0]], dtype=np.float32)  # genes 5 4 3 2 1


def targets_of(z):
    return z @ WEIGHTS + INTERCEPT


#: Whole profiles: gene ranks [0 2 1 4 3] and [4 3 2 1 0] take the reference's values
#: [0 2 1 4 3] and [4 3 2 1 0]; landmarks standardized: [-1 0 -2] and [3 0.5 -1].
WHOLE = targets_of(np.array([[-1.0, 0.0, -2.0], [3.0, 0.5, -1.0]]))
#: Landmarks alone: ranks [0 2 1] and [2 1 0] onto the landmark reference [10 20 30].
LANDMARKS_ONLY = targets_of((np.array([[10.0, 30.0, 20.0], [30.0, 20.0, 10.0]])
                             - MEAN[:3]) / SCALE[:3])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A linear export bundle (``inference.bundle``'s layout) of the model above."""
    path = tmp_path_factory.mktemp("bundle")
    np.savez(path / "pipeline.npz", keys=np.array(KEYS), ensembl=np.array(KEYS),
             symbols=np.array(SYMBOLS), probes=np.array(PROBES), is_landmark=IS_LANDMARK,
             mean=MEAN, std=SCALE - 1e-3, reference=REFERENCE,
             landmark_reference=LANDMARK_REFERENCE)
    np.savez(path / "linear.npz", weights=WEIGHTS, intercept=INTERCEPT)
    files = {name: sha256_of(path / name, bar=False) for name in ("pipeline.npz", "linear.npz")}
    (path / "manifest.json").write_text(json.dumps(
        {"format": "streamgex-bundle", "version": 1, "model": "linear", "files": files}))
    return path


def write_gctx(path, values=VALUES, genes=PROBE_IDS, row_meta=None, col_meta=None):
    with h5py.File(path, "w") as f:
        create_gctx(f, sample_ids=SAMPLES, gene_ids=genes, row_meta=row_meta,
                    col_meta=col_meta)[:] = values
    return path


def predict(bundle, source, out, *options):
    return main(["predict", str(bundle), str(source), "--out", str(out), *options])


GCT13 = """#1.3
3\t2\t3\t2
id\tpr_gene_symbol\tpr_gene_id\tpr gene/title\tS1\tS2
cell_id\t-666\t-666\t-666\tA375\tMCF7
sample\t-666\t-666\t-666\tx\ty
7001\tAAA\tENSG0\tfirst\t10\t5
7002\tBBB\tENSG1\tsecond\t30\t4
7003\tCCC\tENSG2\tthird\t20\t3
"""


def test_gct13_keeps_its_row_and_column_fields(tmp_path):
    """Quirk: GCT 1.3 with row and column metadata, one field name with a space and a slash,
    one column field named like a store coordinate. Every field is kept (issue 27.4; before,
    only the symbol was): row fields as gene coordinates, column fields as sample ones."""
    (tmp_path / "meta.gct").write_text(GCT13)
    ds = open_store(ingest(tmp_path / "meta.gct", tmp_path / "meta.zarr"))
    assert list(strings(ds.gene_symbol.values)) == ["AAA", "BBB", "CCC"]
    assert list(strings(ds.pr_gene_id.values)) == ["ENSG0", "ENSG1", "ENSG2"]
    assert list(strings(ds.pr_gene_title.values)) == ["first", "second", "third"]
    assert list(strings(ds.cell_id.values)) == ["A375", "MCF7"]
    assert ds.cell_id.dims == ("sample",)
    assert list(strings(ds.sample_2.values)) == ["x", "y"]
    np.testing.assert_array_equal(ds.expression.values, [[10, 30, 20], [5, 4, 3]])


def test_a_ragged_gct13_metadata_line_is_refused_naming_it(tmp_path, capsys):
    """Quirk: a column-metadata line short of a sample: one line naming file:line and fix."""
    lines = GCT13.splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0]
    (tmp_path / "ragged.gct").write_text("\n".join(lines) + "\n")
    assert main(["ingest", str(tmp_path / "ragged.gct"), "--out", str(tmp_path / "r.zarr")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ragged.gct:4: column-metadata line with 5" in err
    assert "fix the line" in err


@pytest.mark.parametrize("genes_by", ["pr_gene_id", "pr_gene_symbol", "symbol"])
def test_gct13_and_gctx_predict_alike_by_a_row_field_and_carry_column_fields(
        bundle, tmp_path, genes_by):
    """Issue 27.4: ``--genes-by FIELD`` and the carried column metadata work for GCT 1.3 as
    for GCTX (before, a GCT lost every field but the symbol: "no such row field")."""
    (tmp_path / "meta.gct").write_text(GCT13)
    gctx = write_gctx(tmp_path / "meta.gctx", values=[[10, 30, 20], [5, 4, 3]],
                      genes=["7001", "7002", "7003"],
                      row_meta={"pr_gene_symbol": SYMBOLS[:3], "pr_gene_id": KEYS[:3]},
                      col_meta={"cell_id": ["A375", "MCF7"]})
    for source in (tmp_path / "meta.gct", gctx):
        out, copy = tmp_path / f"{source.suffix[1:]}.zarr", tmp_path / f"{source.suffix[1:]}.gct"
        assert predict(bundle, source, out, "--genes-by", genes_by, "--gctx", str(copy),
                       "--quiet") == 0
        ds = open_store(out)
        np.testing.assert_allclose(ds.expression.values, LANDMARKS_ONLY, rtol=1e-6)
        assert list(strings(ds.cell_id.values)) == ["A375", "MCF7"]
        with h5py.File(copy) as f:
            assert [c.decode() for c in f["/0/META/COL/cell_id"][()]] == ["A375", "MCF7"]


def test_predict_says_which_normalization_it_took_and_why(bundle, tmp_path, capsys):
    """Issue 27.5: the path (whole profiles or landmarks only) and the reason, in the log and
    the output's attributes; the values are the hand-computed ones of each path."""
    whole = write_gctx(tmp_path / "whole.gctx")
    landmarks = write_gctx(tmp_path / "lm.gctx", values=VALUES[:, :4], genes=PROBE_IDS[:4])
    for source, expected, how, why in (
            (whole, WHOLE, "quantile-normalized over whole profiles",
             "the input has all 5 genes of the model's pipeline"),
            (landmarks, LANDMARKS_ONLY, "landmarks quantile-normalized onto the landmark "
             "reference", "the input lacks 2 of the 5 genes of the model's pipeline "
             "(ENSG3, ENSG4), so whole profiles cannot be normalized")):
        out = tmp_path / f"{source.stem}.zarr"
        assert predict(bundle, source, out) == 0
        assert f"{how}: {why}" in capsys.readouterr().err
        ds = open_store(out)
        np.testing.assert_allclose(ds.expression.values, expected, rtol=1e-6)
        assert ds.attrs["predict"]["normalization"] == how
        assert ds.attrs["predict"]["normalization_reason"].startswith(why)


@pytest.mark.parametrize("suffix", ["gctx", "tsv"])
def test_a_missing_value_in_a_gene_the_model_does_not_use_is_no_error(bundle, tmp_path,
                                                                      suffix):
    """Issue 27.5 quirk: an Affymetrix control probe with NaN cells (an "NA" in a table).
    Before, any missing value failed the whole input (a table already in its conversion)."""
    values = np.c_[VALUES, [np.nan, 1.0]].astype(np.float32)
    genes = [*PROBE_IDS, "AFFX-BioB-5_at"]
    path = tmp_path / f"control.{suffix}"
    if suffix == "gctx":
        write_gctx(path, values=values, genes=genes)
    else:
        path.write_text("\t".join(["probe", *SAMPLES]) + "\n" + "".join(
            "\t".join([g, *("NA" if np.isnan(v) else repr(float(v)) for v in values[:, j])])
            + "\n" for j, g in enumerate(genes)))
    assert predict(bundle, path, tmp_path / "o.zarr", "--quiet") == 0
    np.testing.assert_allclose(open_store(tmp_path / "o.zarr").expression.values, WHOLE,
                               rtol=1e-6)


@pytest.mark.parametrize("probe, fix", [
    ("p1", "fix the value in the input"),
    ("p3", "or leave that gene out"),  # a target's probe, read to normalize whole profiles
])
def test_a_missing_value_in_a_gene_the_model_uses_names_the_gene_and_the_profile(
        bundle, tmp_path, capsys, probe, fix):
    values = VALUES.copy()
    values[1, PROBE_IDS.index(probe)] = np.nan
    path = write_gctx(tmp_path / "hole.gctx", values=values)
    assert predict(bundle, path, tmp_path / "o.zarr") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"hole.gctx: profile 'S2' has a missing or non-finite value (nan) in gene " \
           f"'{probe}', which the model uses" in err and fix in err, err


def test_auto_reports_missing_landmarks_as_missing_not_as_ambiguous_symbols(bundle, tmp_path,
                                                                             capsys):
    """Issue 27.5 quirk: probe rows with a pr_gene_symbol field (several probes share a
    symbol) missing a landmark's probe. ``--genes-by auto`` said "1 gene symbols are
    ambiguous"; now it names the missing landmark."""
    genes = [p for p in PROBE_IDS if p != "p2"]
    path = write_gctx(tmp_path / "probes.gctx", values=VALUES[:, [0, 1, 2, 4, 5]], genes=genes,
                      row_meta={"pr_gene_symbol": ["AAA", "AAA", "BBB", "DDD", "EEE"]})
    assert predict(bundle, path, tmp_path / "o.zarr") == 1
    err = capsys.readouterr().err
    assert "lacks 1 of the 3 landmark genes the model needs: ENSG2 (probes p2)" in err, err
    assert "ambiguous" not in err


def test_after_a_failed_predict_the_same_command_on_the_fixed_input_succeeds(bundle, tmp_path,
                                                                             capsys):
    """Issue 27.5: a predict failed by its input left a partial output, and the same command
    on the fixed input was refused as "made from another input"."""
    values = VALUES.copy()
    values[0, 2] = np.inf
    path = write_gctx(tmp_path / "in.gctx", values=values)
    out = tmp_path / "o.zarr"
    assert predict(bundle, path, out) == 1
    assert "profile 'S1'" in capsys.readouterr().err
    write_gctx(path)
    os.utime(path, ns=(1, 10**18))  # surely another input than the failed one
    assert predict(bundle, path, out) == 0, capsys.readouterr().err
    np.testing.assert_allclose(open_store(out).expression.values, WHOLE, rtol=1e-6)
    assert not building(out).exists()


GENE_VALUES = [[10, 30, 20, 50, 40], [5, 4, 3, 2, 1]]  # VALUES with p0a and p0b averaged


def gct(version, ids):
    """A GCT 1.2 (Description ``na``) or 1.3 (no metadata) of ``GENE_VALUES``."""
    head = "#1.2\n5\t2\nName\tDescription\tS1\tS2\n" if version == "1.2" else \
        "#1.3\n5\t2\t0\t0\nid\tS1\tS2\n"
    lead = "\tna" if version == "1.2" else ""
    return head + "".join(f"{g}{lead}\t{a}\t{b}\n" for g, (a, b) in
                          zip(ids, zip(*GENE_VALUES)))


@pytest.mark.parametrize("case", ["versioned Ensembl ids (GCT 1.2)", "GCT 1.3 without metadata",
                                  "space-padded GCTX ids", "versioned Ensembl ids (GCTX)"])
def test_id_quirks_read_to_the_known_predictions(bundle, tmp_path, case):
    """Quirks that need no option: Ensembl ids with versions (GENCODE), GCTX ids padded to a
    fixed width (HDF5 fixed-length strings), a GCT 1.3 with no metadata at all."""
    versioned = [f"{k}.{7 + i}" for i, k in enumerate(KEYS)]
    if "GCT 1.2" in case:
        (path := tmp_path / "in.gct").write_text(gct("1.2", versioned))
    elif "GCT 1.3" in case:
        (path := tmp_path / "in.gct").write_text(gct("1.3", KEYS))
    else:
        ids = [f"{k}   " for k in KEYS] if "padded" in case else versioned
        path = write_gctx(tmp_path / "in.gctx", values=GENE_VALUES, genes=ids)
    assert predict(bundle, path, tmp_path / "o.zarr", "--quiet") == 0
    np.testing.assert_allclose(open_store(tmp_path / "o.zarr").expression.values, WHOLE,
                               rtol=1e-6)


def test_a_repeated_id_the_model_reads_is_refused_naming_both_rows(bundle, tmp_path, capsys):
    """Quirk: a GCTX (read in place, unlike a converted table) whose probe p1 is on two rows
    with different values: the last was read silently. A repeated id of no model gene, as
    control probes merged twice, stays no matter."""
    values = np.c_[VALUES, VALUES[:, 2] + 1, [7.0, 8.0], [7.0, 8.0]].astype(np.float32)
    path = write_gctx(tmp_path / "twice.gctx", values=values,
                      genes=[*PROBE_IDS, "p1", "AFFX-x", "AFFX-x"])
    assert predict(bundle, path, tmp_path / "o.zarr") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{path}: the input has the id 'p1' on gene rows 3 and 7" in err, err
    path = write_gctx(tmp_path / "controls.gctx", values=values[:, [0, 1, 2, 3, 4, 5, 7, 8]],
                      genes=[*PROBE_IDS, "AFFX-x", "AFFX-x"])
    assert predict(bundle, path, tmp_path / "o.zarr", "--quiet") == 0
    np.testing.assert_allclose(open_store(tmp_path / "o.zarr").expression.values, WHOLE,
                               rtol=1e-6)
