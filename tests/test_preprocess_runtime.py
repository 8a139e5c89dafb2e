"""Steps run unchanged on a dask.distributed cluster, and resume after SIGKILL."""

import subprocess
import sys

import numpy as np
import xarray as xr

from rawfiles import small_matrix, write_gctx
from streamgex.ingest import ingest
from streamgex.preprocess.pca import pca
from streamgex.preprocess.quantile import normalize
from streamgex.preprocess.standardize import standardize
from test_ingest_resume import kill_when


def test_local_cluster_with_two_worker_processes_gives_the_same_store(tmp_path):
    import distributed
    values, samples, genes = small_matrix(300, 50, seed=11)
    values = np.round(values, 1)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=32)
    normalize(tmp_path / "x.zarr", tmp_path / "local.zarr")
    standardize(tmp_path / "local.zarr", tmp_path / "local_s.zarr")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        normalize(tmp_path / "x.zarr", tmp_path / "cluster.zarr",
                  scheduler=cluster.scheduler_address)
        standardize(tmp_path / "cluster.zarr", tmp_path / "cluster_s.zarr",
                    scheduler=cluster.scheduler_address)
        pca(tmp_path / "cluster_s.zarr", tmp_path / "cluster_pca", genes="all", components=20,
            scheduler=cluster.scheduler_address)
        with distributed.Client(cluster):  # a caller's own client; the step runs on threads
            pca(tmp_path / "local_s.zarr", tmp_path / "local_pca", genes="all", components=20)
    a, b = xr.open_zarr(tmp_path / "local_s.zarr"), xr.open_zarr(tmp_path / "cluster_s.zarr")
    np.testing.assert_array_equal(a.expression.values, b.expression.values)
    np.testing.assert_array_equal(a.gene_mean.values, b.gene_mean.values)
    curves = [np.loadtxt(tmp_path / f"{name}_pca" / "explained_variance.csv", delimiter=",",
                         skiprows=1) for name in ("local", "cluster")]
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-9)


def test_normalize_killed_then_rerun_equals_an_uninterrupted_run(tmp_path):
    values, samples, genes = small_matrix(6_000, 200, seed=12)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=8)
    out = tmp_path / "killed.zarr"
    code = ("from streamgex.preprocess.quantile import normalize; "
            f"normalize({str(tmp_path / 'x.zarr')!r}, {str(out)!r})")
    at_kill = kill_when(code, out, lambda p: p.get("chunks_done", 0) >= 40)
    assert at_kill["chunks_done"] < 750
    shown = "import logging; logging.basicConfig(level=logging.INFO); " + code  # library messages
    resumed = subprocess.run([sys.executable, "-c", shown],
                             capture_output=True, text=True, check=True)
    assert "chunks already written" in resumed.stderr
    normalize(tmp_path / "x.zarr", tmp_path / "reference.zarr")
    a, b = xr.open_zarr(out), xr.open_zarr(tmp_path / "reference.zarr")
    np.testing.assert_array_equal(a.expression.values, b.expression.values)
    np.testing.assert_array_equal(a.reference.values, b.reference.values)
    assert a.attrs["streamgex"] == b.attrs["streamgex"]


def test_a_cluster_whose_workers_lack_streamgex_is_named_before_any_output(tmp_path,
                                                                            monkeypatch):
    """Issue 11.13: such a step waited for ever; a wrong address left an empty store behind.
    Also: DASK_SCHEDULER_ADDRESS is honoured."""
    import socket
    import time

    import pytest

    from streamgex.errors import StreamgexError

    values, samples, genes = small_matrix(64, 10, seed=3)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # a worker whose environment has no streamgex: its import fails
    broken = ("import sys; sys.modules['streamgex'] = None; "
              "from distributed.cli.dask_worker import main; sys.argv = ['dask-worker', "
              f"{address!r}, '--nthreads', '1', '--no-dashboard', '--no-nanny']; main()")
    worker = subprocess.Popen([sys.executable, "-c", broken], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        started = time.monotonic()
        with pytest.raises(StreamgexError, match=r"cannot run streamgex .*cannot import it"):
            normalize(tmp_path / "x.zarr", tmp_path / "out.zarr")
        assert time.monotonic() - started < 60
        assert not (tmp_path / "out.zarr").exists()
    finally:
        worker.kill()
        scheduler.kill()
        worker.wait()
        scheduler.wait()
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{port}")  # nobody there now
    with pytest.raises(StreamgexError, match="cannot reach the Dask scheduler"):
        standardize(tmp_path / "x.zarr", tmp_path / "out2.zarr")
    assert not (tmp_path / "out2.zarr").exists()
