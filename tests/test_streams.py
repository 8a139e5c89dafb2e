"""Streams: deterministic in (seed, epoch, step), resumable at any step, bounded buffers."""

import numpy as np
import pytest

from rawfiles import write_gctx
from streamgex.ingest import ingest
from streamgex.streams import Source, Stream, _key


@pytest.fixture(scope="module")
def indexed_store(tmp_path_factory):
    """A store whose value at (row, column) is row * 100 + column: rows are traceable."""
    tmp = tmp_path_factory.mktemp("stream")
    n, g = 1000, 12
    values = (np.arange(n)[:, None] * 100 + np.arange(g)[None, :]).astype(np.float32)
    write_gctx(tmp / "x.gctx", values, [f"S{i}" for i in range(n)], [f"g{j}" for j in range(g)])
    return ingest(tmp / "x.gctx", tmp / "x.zarr", chunk_samples=64)


def make(store, **options):
    x = Source(store, np.array([0, 1, 2]))
    y = Source(store, np.arange(3, 12))
    return Stream((x, y), **{"batch": 50, "seed": 7, "window": 3, **options})


def window_rows(stream, chunks, permutation):
    """A window of ``chunks`` with its rows in ``permutation`` order, one array per source:
    what the stream's batches must be cut from."""
    buffers = stream._buffers(len(permutation))
    stream._decode(chunks, buffers)
    return [np.take(buffers[_key(s)], permutation, axis=0) for s in stream.sources]


def rows_of(batch):
    return (batch[:, 0] // 100).astype(int)


def test_each_epoch_visits_every_profile_once_with_aligned_inputs_and_outputs(indexed_store):
    stream = make(indexed_store)
    batches = list(stream.batches(epoch=0))
    assert len(batches) == stream.steps_per_epoch == 20
    seen = np.concatenate([rows_of(x) for x, _ in batches])
    assert sorted(seen) == list(range(1000))
    for x, y in batches:
        np.testing.assert_array_equal(x[:, 0] // 100, y[:, 0] // 100)
        np.testing.assert_array_equal(y[0] % 100, np.arange(3, 12))
    assert not np.array_equal(seen, np.sort(seen)), "shuffled"


def test_batch_sequence_is_a_pure_function_of_seed_epoch_and_step(indexed_store):
    a = [rows_of(x) for x, _ in make(indexed_store).batches(epoch=3)]
    b = [rows_of(x) for x, _ in make(indexed_store).batches(epoch=3)]
    c = [rows_of(x) for x, _ in make(indexed_store).batches(epoch=4)]
    d = [rows_of(x) for x, _ in make(indexed_store, seed=8).batches(epoch=3)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    assert not all(np.array_equal(p, q) for p, q in zip(a, d))


@pytest.mark.parametrize("step", [0, 1, 3, 4, 11, 19])
def test_resuming_at_step_k_sees_the_same_batches(indexed_store, step):
    stream = make(indexed_store, batch=47)  # batches straddle window boundaries
    full = list(stream.batches(epoch=2))
    resumed = list(make(indexed_store, batch=47).batches(epoch=2, start_step=step))
    assert len(resumed) == len(full) - step
    for (x1, y1), (x2, y2) in zip(full[step:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_buffers_hold_at_most_two_windows(indexed_store, monkeypatch):
    """Two windows' buffers are made per epoch and reused: the one batched from and the one
    read ahead; batches are the caller's own (still right after the buffers were reused)."""
    stream = make(indexed_store)
    reads, made = [], []
    decode, buffers = Stream._decode, Stream._buffers

    def counting(self, chunks, into):
        reads.append(sum(self._chunk_size(c) for c in chunks))
        return decode(self, chunks, into)

    def making(self, rows):
        made.append(rows)
        return buffers(self, rows)

    monkeypatch.setattr(Stream, "_decode", counting)
    monkeypatch.setattr(Stream, "_buffers", making)
    consumed, kept = 0, []
    for x, y in stream.batches(epoch=0):
        consumed += len(x)
        kept.append((x, y))
        # rows read so far: the windows batched from, plus one read ahead
        assert sum(reads) <= consumed + 2 * 3 * 64
    assert sum(reads) == 1000 and made == [3 * 64, 3 * 64]
    for (x1, y1), (x2, y2) in zip(kept, make(indexed_store).batches(epoch=0)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_tf_dataset_yields_the_same_batches(indexed_store):
    stream = make(indexed_store)
    direct = list(stream.batches(epoch=1, start_step=5))
    through_tf = [(x.numpy(), y.numpy()) for x, y in stream.dataset(epoch=1, start_step=5)]
    assert len(direct) == len(through_tf)
    for (x1, y1), (x2, y2) in zip(direct, through_tf):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_a_few_columns_are_cut_from_each_chunk_in_the_order_asked(indexed_store):
    # 3 of 12 columns: the window keeps only them (an E-MLP's landmarks of all genes)
    x, y = Source(indexed_store, np.array([7, 1])), Source(indexed_store, np.array([10]))
    stream = Stream((x, y), batch=50, seed=7, window=3)
    window = window_rows(stream, np.array([0, 2]), np.arange(128))
    assert [part.shape for part in window] == [(128, 2), (128, 1)]
    for xb, yb in stream.batches(epoch=1):
        np.testing.assert_array_equal(xb % 100, np.tile([7, 1], (len(xb), 1)))
        np.testing.assert_array_equal(yb[:, 0] // 100, xb[:, 0] // 100)
        np.testing.assert_array_equal(yb % 100, 10)


@pytest.mark.parametrize("batch,window", [(50, 3), (150, 1), (64, 1), (1000, 2)])
def test_batches_are_the_windows_rows_cut_in_order_whatever_batch_and_window(
        indexed_store, batch, window):
    """A batch across two windows copies only its own rows (the whole next window was
    copied for each such batch); batches larger than a window still come out whole."""
    stream = make(indexed_store, batch=batch, window=window)
    whole = [np.concatenate(parts) for parts in zip(
        *(window_rows(stream, chunks, permutation) for chunks, permutation in stream.windows(2)))]
    got = list(stream.batches(epoch=2))
    assert [len(b[0]) for b in got[:-1]] == [batch] * (len(got) - 1)
    for part, expected in zip(zip(*got), whole):
        np.testing.assert_array_equal(np.concatenate(part), expected)


@pytest.fixture(scope="module")
def streamed_store(tmp_path_factory):
    """The indexed store's values stored as split parts are (``store.STREAMED``: raw values
    and a CRC-32C), which ``chunkread`` reads itself instead of through Zarr."""
    from streamgex import store

    path = tmp_path_factory.mktemp("streamed") / "x.zarr"
    n, g = 1000, 12
    group = store.begin(path, step="test", parameters={}, source={})
    array = store.define_expression(group, samples=[f"S{i}" for i in range(n)],
                                    genes=[f"g{j}" for j in range(g)], chunk_samples=64,
                                    compressors=store.STREAMED)
    array[:] = (np.arange(n)[:, None] * 100 + np.arange(g)[None, :]).astype(np.float32)
    store.finish(group)
    return path


@pytest.mark.parametrize("columns", [None, np.array([7, 1, 4]), np.arange(2, 9)])
def test_raw_chunks_read_directly_give_what_zarr_gives(indexed_store, streamed_store, columns):
    from streamgex import chunkread

    direct, through_zarr = (Stream((Source(p, columns), Source(p, np.array([0]))), batch=37,
                                   seed=3, window=2) for p in (streamed_store, indexed_store))
    assert direct._folders[0] is not None and through_zarr._folders[0] is None
    assert chunkread.scratch_bytes(direct._arrays[0]) == 64 * 12 * 4 + 4
    got, expected = list(direct.batches(epoch=1)), list(through_zarr.batches(epoch=1))
    assert len(got) == len(expected) == 28  # the last chunk is short: 1000 = 15 x 64 + 40
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_a_damaged_raw_chunk_is_named_not_read(streamed_store, tmp_path):
    import shutil

    from streamgex.errors import StreamgexError

    damaged = tmp_path / "x.zarr"
    shutil.copytree(streamed_store, damaged)
    with open(damaged / "expression" / "c" / "3" / "0", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    stream = Stream((Source(damaged, np.arange(3)), Source(damaged)), batch=50, window=1)
    with pytest.raises(StreamgexError, match=r"chunk 3 \(profiles 192-255\).*CRC-32C"):
        list(stream.batches(epoch=0))
