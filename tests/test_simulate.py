"""The simulator writes the real formats, deterministically, with the traits later stages rely on."""

import filecmp
import gzip

import h5py
import numpy as np
import pandas as pd
import pytest

from streamgex.cli import main
from streamgex.simulate import get_preset, simulate
from streamgex.simulate.model import ExpressionModel, build_universe


def read_map(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    assert all(len(r) == 3 for r in rows)
    return [(sym, ens, probes.split(",")) for sym, ens, probes in rows]


def read_gctx(path):
    with h5py.File(path) as f:
        return (
            f["0/DATA/0/matrix"][()],
            [s.decode() for s in f["0/META/COL/id"][()]],
            [s.decode() for s in f["0/META/ROW/id"][()]],
        )


def test_same_seed_same_files_other_seed_other_files(tmp_path, demo_raw):
    again = simulate("small", tmp_path / "a", seed=0)
    other = simulate("small", tmp_path / "b", seed=1)
    for key in ("map_lm", "map_tg"):
        assert filecmp.cmp(demo_raw[key], again[key], shallow=False)
    assert gzip.open(demo_raw["rnaseq"]).read() == gzip.open(again["rnaseq"]).read()
    np.testing.assert_array_equal(read_gctx(demo_raw["geo"])[0], read_gctx(again["geo"])[0])
    assert not np.array_equal(read_gctx(demo_raw["geo"])[0], read_gctx(other["geo"])[0])


def test_demo_files_have_the_real_layouts(demo_raw):
    values, samples, probes = read_gctx(demo_raw["geo"])
    assert values.shape == (3000, 900) and values.dtype == np.float32
    assert len(set(samples)) == 3000 and all(s.startswith("GSM") for s in samples)
    assert all(p.endswith("_at") for p in probes) and len(set(probes)) == 900
    assert 3.5 < values.min() and values.max() <= 15.0 + 1e-3

    table = pd.read_csv(demo_raw["rnaseq"], sep="\t")
    assert list(table.columns[:4]) == ["TargetID", "Gene_Symbol", "Chr", "Coord"]
    assert table.shape == (700, 4 + 120)
    assert table.TargetID.str.fullmatch(r"ENSG\d{11}\.\d+").all()
    rpkm = table.iloc[:, 4:].to_numpy()
    assert rpkm.min() == 0 and 0.01 < (rpkm == 0).mean() < 0.3, "zeros, but not mostly"
    assert np.percentile(rpkm, 99.9) > 20 * np.median(rpkm), "a heavy upper tail"


def test_demo_maps_link_the_platforms_like_the_real_ones(demo_raw):
    lm, tg = read_map(demo_raw["map_lm"]), read_map(demo_raw["map_tg"])
    assert len(lm) == 100 and len(tg) == 400
    assert all(len(p) == 1 for _, _, p in lm)
    assert 0.25 < np.mean([len(p) > 1 for _, _, p in tg]) < 0.55, "some targets have several probes"
    probes = [p for _, _, ps in lm + tg for p in ps]
    assert len(probes) == len(set(probes)), "no probe in two rows"
    gctx_probes = set(read_gctx(demo_raw["geo"])[2])
    assert set(probes) <= gctx_probes and len(gctx_probes - set(probes)) > 0
    lm_ens, tg_ens = {e for _, e, _ in lm}, {e for _, e, _ in tg}
    assert len(lm_ens) == 100 and len(tg_ens) == 400 and len(lm_ens & tg_ens) == 12
    rnaseq = {g.split(".")[0] for g in pd.read_csv(demo_raw["rnaseq"], sep="\t").TargetID}
    assert lm_ens | tg_ens <= rnaseq


def test_near_duplicates_sit_below_the_dedup_distance(demo_raw):
    values = read_gctx(demo_raw["geo"])[0].astype(np.float64)
    sq = (values**2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * values @ values.T
    np.fill_diagonal(d2, np.inf)
    nearest = np.sqrt(np.maximum(d2.min(1), 0))
    close = nearest < 1.0
    assert 0.02 < close.mean() < 0.06, "about 2% copies, each with its original"
    assert np.median(nearest) > 10, "distinct profiles are far apart"


def test_targets_depend_on_landmarks_but_not_linearly_alone():
    preset = get_preset("demo")
    universe = build_universe(preset, 0)
    model = ExpressionModel(universe, preset, 0)
    genes = model.geo_genes(np.random.default_rng(1), 6000)
    x, y = genes[:, model.landmark], genes[:, model.target]
    x = np.c_[(x - x.mean(0)) / x.std(0), np.ones(len(x))]
    y = (y - y.mean(0)) / y.std(0)
    fit = np.linalg.lstsq(x[:5000], y[:5000], rcond=None)[0]
    r2 = 1 - ((x[5000:] @ fit - y[5000:]) ** 2).mean(0)
    assert 0.3 < np.median(r2) < 0.85, "landmarks explain targets in part, linearly"
    residual = y[5000:] - x[5000:] @ fit
    noise_floor = np.mean(model.n_target**2)
    assert residual.var(0).mean() > 1.2 * noise_floor, "a non-linear part a better model can learn"


@pytest.mark.parametrize("nonlinearity", [0.0, 0.3])
def test_nonlinearity_is_the_share_of_signal_no_linear_model_explains(nonlinearity):
    preset = get_preset("demo", nonlinearity=nonlinearity)
    model = ExpressionModel(build_universe(preset, 0), preset, 0)
    z = model._latent(np.random.default_rng(2), 12_000, model.centers, model.weights, 0.6)
    landmarks = model._standardized(z, np.random.default_rng(3))[:, model.landmark]
    signal = model.signal(landmarks)
    x = np.c_[landmarks, np.ones(len(landmarks))]
    fit = np.linalg.lstsq(x[:10_000], signal[:10_000], rcond=None)[0]
    explained = 1 - ((x[10_000:] @ fit - signal[10_000:]) ** 2).mean(0) / signal[10_000:].var(0)
    np.testing.assert_allclose(1 - explained, model.v_target, atol=0.05)
    assert (1 - explained).mean() == pytest.approx(model.v_target.mean(), abs=0.01)
    assert model.v_target.mean() == pytest.approx(nonlinearity, abs=0.02)


class NoNoise:
    """Stands in for a numpy Generator that draws only zeros."""

    def standard_normal(self, size, dtype):
        return np.zeros(size, dtype)


def test_rnaseq_is_a_monotone_non_linear_distortion():
    preset = get_preset("demo")
    model = ExpressionModel(build_universe(preset, 0), preset, 0)
    x = np.linspace(4, 15, 111, dtype=np.float32)[:, None].repeat(50, 1)
    rpkm = model.rpkm(NoNoise(), np.arange(50), x)
    assert (np.diff(rpkm, axis=0) >= 0).all(), "monotone in the microarray value"
    assert (rpkm[0] == 0).any() and (rpkm[-1] > 100).all()
    log = np.log2(rpkm + 0.3)  # the log-RPKM the model draws, where RPKM > 0
    expressed = (rpkm[30] > 0) & (rpkm[29] > 0)
    slope_mid = (log[30] - log[29])[expressed] / 0.1  # around x = 7
    slope_high = (log[100] - log[99]) / 0.1  # around x = 14
    assert expressed.any() and np.all(slope_mid > slope_high[expressed] + 0.3), "not a power law"


@pytest.mark.parametrize("name,landmarks,targets,shared,probes", [
    ("cross-platform", 943, 9520, 445, 22_268),
    ("geo-full", 978, 21_290, 445, 22_268),
])
def test_full_presets_have_the_papers_shapes(name, landmarks, targets, shared, probes):
    preset = get_preset(name)
    assert preset.geo_samples == 112_634 and preset.rnaseq_samples == 462
    universe = build_universe(preset, 0)
    assert len(universe.landmark_rows) == landmarks and len(universe.target_rows) == targets
    assert len(universe.probe_ids) == probes
    lm = {universe.ensembl[g] for g, _ in universe.landmark_rows}
    tg = {universe.ensembl[g] for g, _ in universe.target_rows}
    assert len(lm & tg) == shared
    if preset.probe_level_targets:
        assert all(len(p) == 1 for _, p in universe.target_rows)
        assert landmarks + targets == probes
    assert len(universe.rnaseq_genes) == 23_722


def test_cli_simulate_refuses_to_overwrite(tmp_path, capsys):
    assert main(["simulate", "--preset", "demo", "--out", str(tmp_path), "--samples", "50"]) == 0
    capsys.readouterr()
    assert main(["simulate", "--out", str(tmp_path), "--samples", "50"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert read_gctx(tmp_path / "geo.gctx")[0].shape == (50, 900)
