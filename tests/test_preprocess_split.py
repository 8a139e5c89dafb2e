"""gather, dedup and split: out-of-core results equal the in-memory rules; split survives SIGKILL."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

from rawfiles import small_matrix, write_gctx
from streamgex import store
from streamgex.errors import StreamgexError
from streamgex.ingest import ingest
from streamgex.preprocess import dedup as dedup_module
from streamgex.preprocess.dedup import dedup
from streamgex.preprocess.gather import gather
from streamgex.preprocess.split import split
from test_ingest_resume import kill_when


def make_store(tmp_path, values, chunk=16, name="x"):
    samples = [f"S{i:05d}" for i in range(len(values))]
    write_gctx(tmp_path / f"{name}.gctx", values, samples, [f"g{j}" for j in range(values.shape[1])])
    return ingest(tmp_path / f"{name}.gctx", tmp_path / f"{name}.zarr", chunk_samples=chunk)


def test_gather_any_order_in_several_buckets_equals_fancy_indexing(tmp_path):
    values = small_matrix(500, 30, seed=1)[0]
    source = zarr.open_group(make_store(tmp_path, values, chunk=16), mode="r")["expression"]
    order = np.random.default_rng(0).choice(500, size=333, replace=False)
    group = store.begin(tmp_path / "out.zarr", step="test", parameters={}, source={})
    store.define_expression(group, samples=np.arange(333).astype(str),
                            genes=np.arange(30).astype(str), chunk_samples=16)
    gather(source, order, group, budget=30 * 4 * 48)  # 48 rows: 7 buckets
    np.testing.assert_array_equal(group["expression"][:], values[order])


def numpy_dedup(values, labels, distance):
    kept = np.zeros(len(values), dtype=bool)
    for cluster in np.unique(labels):
        chosen = []
        for i in np.flatnonzero(labels == cluster):
            if all(np.linalg.norm(values[i].astype(np.float64) - values[j]) >= distance
                   for j in chosen):
                chosen.append(i)
        kept[chosen] = True
    return kept


@pytest.mark.parametrize("block", [1024, 5])
def test_dedup_equals_the_greedy_rule_in_numpy(tmp_path, monkeypatch, block):
    monkeypatch.setattr(dedup_module, "BLOCK", block)
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, size=(120, 40)).astype(np.float32) * 3
    step = np.zeros(40, np.float32)
    step[0] = 0.6
    chain = np.stack([base[0] + k * step for k in (1, 2, 3)])  # 0.6 apart: keep, drop, keep
    copies = base[[5, 9, 9, 30]] + rng.normal(0, 0.02, size=(4, 40)).astype(np.float32)
    values = np.concatenate([base, chain, copies])
    values = values[rng.permutation(len(values))]
    source = make_store(tmp_path, values)
    dedup(source, tmp_path / "d.zarr", clusters=6)
    ds = xr.open_zarr(tmp_path / "d.zarr")
    labels = ds.input_cluster.values
    expected = numpy_dedup(values, labels, 1.0)
    np.testing.assert_array_equal(ds.input_kept.values, expected)
    np.testing.assert_array_equal(ds.expression.values, values[expected])
    assert ds.attrs["dedup"]["dropped"] == int((~expected).sum()) >= 5
    assert list(ds.sample.values) == [f"S{i:05d}" for i in np.flatnonzero(expected)]


def test_split_follows_the_papers_rule_per_cluster(tmp_path, demo_raw):
    ingest(demo_raw["geo"], tmp_path / "geo.zarr", chunk_samples=128)
    paths = split(tmp_path / "geo.zarr", tmp_path / "split", clusters=8, train_per_cluster=150,
                  val_per_cluster=40, seed=3)
    source = xr.open_zarr(tmp_path / "geo.zarr")
    row = {s: i for i, s in enumerate(source.sample.values)}
    labels = zarr.open_group(tmp_path / "split" / "plan")["cluster"][:]
    seen = []
    counts = {}
    for part in ("train", "val", "test"):
        ds = xr.open_zarr(paths[part])
        rows = np.array([row[s] for s in ds.sample.values])
        np.testing.assert_array_equal(ds.expression.values, source.expression.values[rows])
        np.testing.assert_array_equal(ds.cluster.values, labels[rows])
        assert not np.all(np.diff(rows) > 0), "rows are pre-shuffled"
        counts[part] = np.bincount(labels[rows], minlength=8)
        seen.extend(rows)
    assert sorted(seen) == list(range(3000))
    sizes = np.bincount(labels, minlength=8)
    np.testing.assert_array_equal(counts["train"], np.minimum(sizes, 150))
    np.testing.assert_array_equal(counts["val"], np.clip(sizes - 150, 0, 40))
    np.testing.assert_array_equal(counts["test"], np.maximum(sizes - 190, 0))
    summary = json.loads(paths["summary"].read_text())
    assert summary["totals"]["train"] == int(counts["train"].sum())
    assert summary["features"] == "all genes"
    assert (tmp_path / "split" / "clusters.csv").read_text().startswith("cluster,size,train,val,test")


def test_split_killed_in_its_gather_then_rerun_equals_an_uninterrupted_split(tmp_path):
    values = small_matrix(2000, 120, seed=5)[0]
    source = make_store(tmp_path, values, chunk=16)
    options = dict(clusters=4, train_per_cluster=350, val_per_cluster=50, seed=1)
    code = ("import streamgex.preprocess.gather as g; g.BUDGET = 120 * 4 * 64; "
            "from streamgex.preprocess.split import split; "
            f"split({str(source)!r}, {str(tmp_path / 'killed')!r}, **{options!r})")
    kill_when(code, tmp_path / "killed" / "train",
              lambda p: p.get("phase") == "gather" and p.get("gathered", 0) >= 5)
    written = {f: f.stat().st_mtime_ns for f in (tmp_path / "killed").rglob("*")
               if f.is_file() and ("plan" in f.parts or "c" in f.parts)}
    chunks = [f for f in written if "train.partial" in f.parts and "expression" in f.parts]
    plan = [f for f in written if "plan" in f.parts]
    assert chunks and plan, "the kill came after the plan and some training chunks were written"
    # re-run as `run` and `preprocess` do, with overwrite (issue 11.14: it deleted the folder)
    rerun = code.replace(f"**{options!r})", f"**{options!r}, overwrite=True)")
    assert rerun != code
    subprocess.run([sys.executable, "-c", rerun], check=True)
    for f in plan:  # the k-means plan is reused, not recomputed
        assert f.stat().st_mtime_ns == written[f], f
    published = {f: tmp_path / "killed" / "train" / f.relative_to(tmp_path / "killed" /
                                                                   "train.partial")
                 for f in chunks}  # the partial store, renamed into place when finished
    kept = [f for f in chunks
            if published[f].exists() and published[f].stat().st_mtime_ns == written[f]]
    assert kept, "chunks finished before the kill are kept, not rewritten"
    import streamgex.preprocess.gather as g
    g.BUDGET, budget = 120 * 4 * 64, g.BUDGET
    try:
        split(source, tmp_path / "reference", **options)
    finally:
        g.BUDGET = budget
    for part in ("train", "val", "test"):
        a, b = xr.open_zarr(tmp_path / "killed" / part), xr.open_zarr(tmp_path / "reference" / part)
        np.testing.assert_array_equal(a.expression.values, b.expression.values)
        assert list(a.sample.values) == list(b.sample.values)


def test_split_refuses_empty_parts_and_replaces_only_its_own_parts(tmp_path):
    """Issue 11.8 and 11.4: a part that would be empty is an error naming the options; another
    split in the folder is replaced only with overwrite, and files not ours are kept."""
    source = make_store(tmp_path, small_matrix(300, 20, seed=2)[0], chunk=32)
    with pytest.raises(StreamgexError, match=r"val and test parts would be empty: 4 clusters "
                                             r"with train_per_cluster=4500"):
        split(source, tmp_path / "split", clusters=4)
    options = dict(clusters=4, train_per_cluster=50, val_per_cluster=10)
    split(source, tmp_path / "split", seed=0, **options)
    (tmp_path / "split" / "notes.txt").write_text("mine")
    with pytest.raises(StreamgexError, match=r"holds the train part of another split"):
        split(source, tmp_path / "split", seed=1, **options)
    paths = split(source, tmp_path / "split", seed=1, overwrite=True, **options)
    assert store.open_store(paths["train"]).attrs is not None
    assert json.loads(paths["summary"].read_text())["parameters"]["seed"] == 1
    assert (tmp_path / "split" / "notes.txt").read_text() == "mine"


def test_pca_explained_variance_equals_numpy_svd(tmp_path):
    from streamgex.preprocess.pca import pca

    rng = np.random.default_rng(4)
    values = (rng.normal(size=(300, 6)) @ rng.normal(size=(6, 30)) * 2
              + rng.normal(size=(300, 30))).astype(np.float32)
    source = make_store(tmp_path, values, chunk=64)
    summary = pca(source, tmp_path / "pca", genes="all")
    centred = values.astype(np.float64) - values.mean(0)
    s = np.linalg.svd(centred, compute_uv=False)
    expected = s**2 / (centred**2).sum()
    table = np.loadtxt(tmp_path / "pca" / "explained_variance.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 1], expected[:29], rtol=1e-4, atol=1e-7)
    first90 = int(np.flatnonzero(np.cumsum(expected) >= 0.9)[0]) + 1
    assert summary["components_90"] == first90 and summary["components"] == 29
    assert (tmp_path / "pca" / "explained_variance.png").stat().st_size > 10_000


def test_pca_of_few_components_out_of_many_genes_matches_numpy_and_ignores_chunking():
    """The case the paper's curve is: components far fewer than genes, the basis iterated
    over the profiles chunk by chunk (waves of blocks)."""
    import dask.array as da

    from streamgex.preprocess.pca import explained_variance

    rng = np.random.default_rng(5)
    scales = 0.8 ** np.arange(40)  # a decaying spectrum, then noise
    values = (rng.normal(size=(700, 40)) * scales @ rng.normal(size=(40, 250))
              + 0.05 * rng.normal(size=(700, 250)))
    centred = values - values.mean(0)
    exact = np.linalg.svd(centred, compute_uv=False) ** 2 / (centred**2).sum()
    found = [explained_variance(da.from_array(values, chunks=(chunk, 250)), components=12)
             for chunk in (64, 700)]
    np.testing.assert_allclose(found[0], exact[:12], rtol=1e-6)
    np.testing.assert_allclose(found[0], found[1], rtol=1e-10)
    with pytest.raises(StreamgexError, match="no variance"):  # a NaN curve is no result
        explained_variance(da.from_array(np.ones((50, 8)), chunks=(16, 8)), components=3)
