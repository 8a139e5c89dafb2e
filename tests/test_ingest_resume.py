"""An ingest killed with SIGKILL resumes from its chunks and ends identical to an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from rawfiles import small_matrix, write_gctx, write_geuvadis
from streamgex.errors import StreamgexError
from streamgex.ingest import ingest
from streamgex.store import building, open_store


def progress_of(store):
    """The progress a stage building ``store`` has recorded (in its partial name)."""
    try:
        with open(building(store) / "zarr.json") as f:
            return json.load(f)["attributes"]["streamgex"]["progress"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {}


def ingest_code(source, out, **options):
    return (
        "import logging; logging.basicConfig(level=logging.INFO); "  # messages, as the CLI shows
        "from streamgex.ingest import ingest; "
        f"ingest({str(source)!r}, {str(out)!r}, **{options!r})"
    )


def kill_when(code, store, reached, timeout=120):
    """Run ``code`` in a fresh interpreter and SIGKILL it once ``reached(progress)``."""
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = progress_of(store)
        if reached(progress):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if store.exists():  # only a complete store (an old one being replaced) is there
                state = json.loads((store / "zarr.json").read_text())["attributes"]["streamgex"]
                assert state["complete"], "a partial store under the final name"
            return progress
        if proc.poll() is not None:
            pytest.fail(f"ingest ended (rc {proc.returncode}) before the kill point: "
                        f"{proc.stderr.read().decode()}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail("the kill point was never reached")


def assert_same_store(a, b):
    x, y = xr.open_zarr(a), xr.open_zarr(b)
    np.testing.assert_array_equal(x.expression.values, y.expression.values)
    for name in x.coords:
        assert list(x[name].values) == list(y[name].values)
    assert x.expression.encoding["chunks"] == y.expression.encoding["chunks"]
    assert x.attrs == y.attrs


def chunk_mtimes(store, count):
    return {k: os.stat(store / "expression" / "c" / str(k) / "0").st_mtime_ns for k in range(count)}


def test_gctx_resume_after_sigkill(tmp_path):
    values, samples, genes = small_matrix(40_000, 300, seed=7)
    source = tmp_path / "big.gctx"
    write_gctx(source, values, samples, genes, chunks=(32, 300))
    out, reference = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    options = {"chunk_samples": 32}

    at_kill = kill_when(ingest_code(source, out, **options), out,
                        lambda p: p.get("chunks_done", 0) >= 40)
    with pytest.raises(StreamgexError, match="incomplete store.*re-run the same"):
        open_store(out)
    written = at_kill["chunks_done"]
    before = chunk_mtimes(building(out), written)

    resumed = subprocess.run([sys.executable, "-c", ingest_code(source, out, chunk_samples=32)],
                             capture_output=True, text=True, check=True)
    assert f"resuming {out}: " in resumed.stderr and "chunks already written" in resumed.stderr
    assert chunk_mtimes(out, written) == before, "chunks written before the kill were redone"

    ingest(source, reference, **options)
    assert_same_store(out, reference)
    np.testing.assert_array_equal(open_store(out).expression.values, values)


def test_text_transpose_resume_after_sigkill(tmp_path):
    values, samples, genes = small_matrix(200, 6000, seed=8, low=0, high=100)
    source = tmp_path / "g.txt"
    ensembl = [f"ENSG{j:011d}.3" for j in range(6000)]
    write_geuvadis(source, values, samples, ensembl, genes, gz=False)
    out, reference = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    options = {"chunk_samples": 64, "block_values": 200 * 20}

    at_kill = kill_when(ingest_code(source, out, **options), out,
                        lambda p: p.get("phase") == "transpose" and p["rows_done"] >= 600)
    assert 600 <= at_kill["rows_done"] < 6000

    resumed = subprocess.run(
        [sys.executable, "-c", ingest_code(source, out, **options)],
        capture_output=True, text=True, check=True,
    )
    assert "gene rows already transposed" in resumed.stderr

    ingest(source, reference, **options)
    assert_same_store(out, reference)
    np.testing.assert_array_equal(open_store(out).expression.values, values)


def test_resume_refuses_changed_options_and_changed_source(tmp_path):
    values, samples, genes = small_matrix(40_000, 300, seed=9)
    source = tmp_path / "big.gctx"
    write_gctx(source, values, samples, genes, chunks=(32, 300))
    out = tmp_path / "killed.zarr"
    kill_when(ingest_code(source, out, chunk_samples=32), out,
              lambda p: p.get("chunks_done", 0) >= 5)
    with pytest.raises(StreamgexError, match="holds an interrupted ingest output made from "
                       "another input or with other options"):
        ingest(source, out, chunk_samples=64)
    os.utime(source, ns=(0, 0))
    with pytest.raises(StreamgexError, match="--overwrite"):
        ingest(source, out, chunk_samples=32)
    ingest(source, out, chunk_samples=32, overwrite=True)
    np.testing.assert_array_equal(open_store(out).expression.values, values)


def test_a_store_killed_between_marked_complete_and_consolidated_is_finished(tmp_path, capsys):
    """Issue 11.4: killed inside ``finish`` after the complete flag, before the metadata was
    consolidated: info, re-runs and --overwrite failed with a traceback. Whatever reads the
    store now finishes the consolidation."""
    from streamgex.cli import main

    values, samples, genes = small_matrix(40, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=16)
    root = out / "zarr.json"
    meta = json.loads(root.read_text())
    meta.pop("consolidated_metadata")
    root.write_text(json.dumps(meta))  # as the kill left it
    assert main(["info", str(out)]) == 0
    assert json.loads(root.read_text()).get("consolidated_metadata")
    root.write_text(json.dumps(meta))
    assert main(["ingest", str(tmp_path / "x.gctx"), "--out", str(out),
                 "--chunk-samples", "16"]) == 0
    assert "up to date" in capsys.readouterr().err
    np.testing.assert_array_equal(open_store(out).expression.values, values)
    assert xr.open_zarr(out).expression.shape == (40, 6)


def test_a_source_changed_with_its_size_and_time_kept_is_not_up_to_date(tmp_path, capsys):
    """Issue 11.11: a file replaced by `cp -p` or `touch -r` (same size, same mtime) was taken
    as unchanged. Now other content is caught; the same content, moved or touched, is
    recognised by its SHA-256 and not ingested again."""
    import shutil

    from streamgex.cli import main

    values, samples, genes = small_matrix(40, 6)
    source = tmp_path / "x.gctx"
    write_gctx(source, values, samples, genes)
    args = ["ingest", str(source), "--out", str(tmp_path / "x.zarr")]
    assert main(args) == 0
    stat = source.stat()
    changed = values.copy()
    changed[3, 2] += 1.0
    write_gctx(tmp_path / "other.gctx", changed, samples, genes)
    assert (tmp_path / "other.gctx").stat().st_size == stat.st_size
    shutil.copyfile(tmp_path / "other.gctx", source)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # touch -r: the old time back
    assert source.stat().st_mtime_ns == stat.st_mtime_ns
    capsys.readouterr()
    assert main(args) == 1
    assert "made from another input" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--quiet"]) == 0
    assert open_store(tmp_path / "x.zarr").expression.values[3, 2] == changed[3, 2]

    os.rename(source, tmp_path / "moved.gctx")  # same content, new change time
    shutil.copy2(tmp_path / "moved.gctx", source)  # and a new inode
    written = (tmp_path / "x.zarr" / "expression" / "c" / "0" / "0").stat().st_mtime_ns
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "comparing its content" in err and "up to date" in err, err
    assert (tmp_path / "x.zarr" / "expression" / "c" / "0" / "0").stat().st_mtime_ns == written
    assert main(args) == 0
    assert "comparing" not in capsys.readouterr().err  # the record now has the new times


def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path, capsys, monkeypatch):
    """Disk full in the middle of writing chunks (ENOSPC injected into Zarr's local store):
    one line, exit 1; after space is freed the same command finishes the store."""
    import errno

    import zarr.storage

    from streamgex.cli import main

    values, samples, genes = small_matrix(400, 30)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    args = ["ingest", str(tmp_path / "x.gctx"), "--out", str(tmp_path / "x.zarr"),
            "--chunk-samples", "16", "--quiet"]
    real, calls = zarr.storage.LocalStore.set, {"n": 0}

    async def set_until_full(self, key, value):
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device", key)
        return await real(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_until_full)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1, err
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real)
    assert main(args) == 0
    np.testing.assert_array_equal(open_store(tmp_path / "x.zarr").expression.values, values)


def test_info_verify_names_a_missing_and_an_altered_chunk(tmp_path, capsys):
    """Issue 11.7: a missing or altered chunk went unnoticed (`info` exited 0)."""
    from streamgex.cli import main

    values, samples, genes = small_matrix(80, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=16)
    assert main(["info", str(out), "--verify"]) == 0
    assert "all 5 chunks read back intact" in capsys.readouterr().out
    chunk = out / "expression" / "c" / "3" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    chunk.write_bytes(bytes(data))
    (out / "expression" / "c" / "1" / "0").unlink()
    assert main(["info", str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "2 of 5 chunks damaged" in err and "chunk 1 (profiles 16-31): missing" in err, err
    assert "chunk 3 (profiles 48-63): ValueError: Stored and computed checksum" in err, err
    with pytest.raises(ValueError, match="checksum"):  # a plain read of it fails
        xr.open_zarr(out).expression.values
    with pytest.raises(StreamgexError, match="damaged store: 2 chunks found damaged"):
        open_store(out)  # verify recorded the damage: streamgex reads it no more
    assert main(["ingest", str(tmp_path / "x.gctx"), "--out", str(out),
                 "--chunk-samples", "16"]) == 0  # the command that made it builds it again
    assert "building it again" in capsys.readouterr().err
    np.testing.assert_array_equal(open_store(out).expression.values, values)
    assert main(["info", str(out), "--verify"]) == 0


def test_a_missing_chunk_is_refused_on_open_and_a_stream_names_a_damaged_chunk(tmp_path):
    """Issue 11.7: a missing chunk read as NaN (`genes` wrote NaN profiles into a complete
    store) and a damaged one gave a bare codec error naming neither store nor chunk."""
    from streamgex.streams import Source, Stream

    values, samples, genes = small_matrix(80, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = ingest(tmp_path / "x.gctx", tmp_path / "x.zarr", chunk_samples=16)
    chunk = out / "expression" / "c" / "2" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    stream = Stream((Source(out),), batch=8, seed=0, window=1)
    with pytest.raises(StreamgexError, match=r"x.zarr: chunk 2 \(profiles 32-47\) cannot be "
                       r"read.*info --verify"):
        list(stream.batches(0))
    (out / "expression" / "c" / "4" / "0").unlink()
    with pytest.raises(StreamgexError, match=r"damaged store: 1 chunk files missing \(4\)"):
        open_store(out)
    ingest(tmp_path / "x.gctx", out, chunk_samples=16)
    np.testing.assert_array_equal(open_store(out).expression.values, values)


def test_a_store_is_published_only_when_complete_and_an_overwrite_keeps_the_old_until_then(
        tmp_path, capsys):
    """Issue 11.2 (atomic publish): a store is built under its partial name and renamed into
    place when complete. A kill during an --overwrite rebuild leaves the old store complete and
    openable; a kill between finishing and the rename is finished by the re-run."""
    from streamgex.cli import main

    values, samples, genes = small_matrix(40_000, 300, seed=11)
    source = tmp_path / "big.gctx"
    write_gctx(source, values, samples, genes, chunks=(32, 300))
    out = tmp_path / "x.zarr"
    ingest(source, out, chunk_samples=64)
    kill_when(ingest_code(source, out, chunk_samples=32, overwrite=True), out,
              lambda p: p.get("chunks_done", 0) >= 5)
    assert xr.open_zarr(out).expression.encoding["chunks"] == (64, 300), "the old store stays"
    assert open_store(out).expression.shape == (40_000, 300)
    assert building(out).exists()

    ingest(source, out, chunk_samples=32, overwrite=True)
    assert not building(out).exists()
    assert xr.open_zarr(out).expression.encoding["chunks"] == (32, 300)

    os.rename(out, building(out))  # as a kill between the complete flag and the rename leaves it
    with pytest.raises(StreamgexError, match="incomplete store"):
        open_store(out)
    capsys.readouterr()
    assert main(["ingest", str(source), "--out", str(out), "--chunk-samples", "32"]) == 0
    assert "up to date" in capsys.readouterr().err
    np.testing.assert_array_equal(open_store(out).expression.values, values)


def test_a_kill_inside_the_creation_of_a_partial_store_does_not_block_the_rerun(tmp_path):
    """Found by the seeded kills (test_faults): a SIGKILL between the partial folder's mkdir
    and its zarr.json (or half-way through that file) left `geo_dedup.partial.zarr`, which the
    re-run refused as "not a streamgex store". Such a folder is what a cut creation leaves and
    is started again; a partial folder holding anything else is still refused."""
    values, samples, genes = small_matrix(20, 6, seed=2)
    source = tmp_path / "x.gctx"
    write_gctx(source, values, samples, genes)
    out = tmp_path / "x.zarr"
    building(out).mkdir()
    np.testing.assert_array_equal(open_store(ingest(source, out)).expression.values, values)
    other = tmp_path / "y.zarr"
    building(other).mkdir()
    (building(other) / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    np.testing.assert_array_equal(open_store(ingest(source, other)).expression.values, values)
    mine = tmp_path / "z.zarr"
    building(mine).mkdir()
    (building(mine) / "notes.txt").write_text("mine")
    with pytest.raises(StreamgexError, match="not a streamgex store"):
        ingest(source, mine)
    assert (building(mine) / "notes.txt").read_text() == "mine"


def test_a_kill_after_the_scratch_array_was_dropped_is_finished_by_the_rerun(tmp_path):
    """Found by the seeded kills (test_faults): a text table's ingest killed inside
    ``store.finish`` after it deleted the transpose scratch array, before the complete flag,
    failed every re-run with ``KeyError: 'scratch'``."""
    values, samples, genes = small_matrix(30, 50, seed=4, low=0, high=100)
    source = tmp_path / "g.txt"
    write_geuvadis(source, values, samples, genes, genes, gz=False)
    out = tmp_path / "g.zarr"
    killed_after_delete = (
        "import os, zarr; real = zarr.Group.__delitem__\n"
        "def delete_then_die(group, key):\n"
        "    real(group, key); os._exit(9)\n"
        "zarr.Group.__delitem__ = delete_then_die\n"
        + ingest_code(source, out, chunk_samples=8))
    assert subprocess.run([sys.executable, "-c", killed_after_delete]).returncode == 9
    assert progress_of(out)["chunks_done"] == 4  # every chunk written
    assert not (building(out) / "scratch").exists()
    np.testing.assert_array_equal(open_store(ingest(source, out, chunk_samples=8))
                                  .expression.values, values)
