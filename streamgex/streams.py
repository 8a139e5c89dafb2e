"""Minibatch streams from pre-shuffled Zarr stores, for tf.data and Keras.

The split step writes every part pre-shuffled, so a stream only has to mix
chunks, not rows across the whole store. For epoch ``e`` of seed ``s``:

1. the chunks are visited in the order ``permutation(s, e)``;
2. consecutive groups of ``window`` chunks are read together (an interleave
   of ``window`` chunks) and their rows shuffled by ``permutation(s, e, w)``:
   a shuffle buffer of ``window`` chunks;
3. the epoch's rows are these windows one after another; batch ``k`` is rows
   ``[k * batch, (k + 1) * batch)`` of it (the last batch may be short).

So the batch sequence is a pure function of ``(seed, epoch, step)``: a run
resumed at step ``k`` starts at the window holding row ``k * batch`` and sees
exactly the batches it would have seen. Memory is two windows (the one being
batched and the one read ahead on a background thread), whatever the store
size.
"""

import ctypes
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import chunkread, store
from .errors import StreamgexError

WINDOW = 4
#: Threads reading a window's chunks: one more than the cores, so that a thread waiting on
#: a read leaves its core to another's decode.
READERS = (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class Source:
    """Columns of one store a stream reads: ``store[:, columns]`` per row."""

    path: Path  # or a URL: its chunks come through Zarr, several at once (``READERS``)
    columns: np.ndarray = None  # None: all columns

    def open(self):
        return store.open_group(self.path)[store.EXPRESSION]


@dataclass(frozen=True)
class Stream:
    """A deterministic minibatch stream over row-aligned stores.

    Attributes
    ----------
    sources : tuple of Source
        What each batch holds, in order (inputs, then outputs); all stores
        must have the same rows in the same order (a split part and its codes).
    batch : int
    seed : int
    window : int
        Chunks read and shuffled together.
    """

    sources: tuple
    batch: int
    seed: int = 0
    window: int = WINDOW
    _arrays: list = field(default=None, compare=False, repr=False)
    _folders: list = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        arrays = [s.open() for s in self.sources]
        rows = {a.shape[0] for a in arrays}
        chunks = {a.chunks[0] for a in arrays}
        if len(rows) != 1 or len(chunks) != 1:
            raise StreamgexError(
                "stream sources must have the same samples and chunking: "
                + ", ".join(f"{s.path} {a.shape} chunks {a.chunks}" for s, a in zip(self.sources, arrays))
            )
        if self.batch < 1:
            raise StreamgexError(f"batch size must be positive, got {self.batch}")
        object.__setattr__(self, "_arrays", arrays)
        object.__setattr__(self, "_folders", [chunkread.chunk_folder(a) for a in arrays])

    @property
    def n_samples(self):
        return self._arrays[0].shape[0]

    @property
    def chunk_rows(self):
        return self._arrays[0].chunks[0]

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n_samples / self.batch)

    def widths(self):
        """Columns of each part of a batch."""
        return tuple(
            a.shape[1] if s.columns is None else len(s.columns)
            for s, a in zip(self.sources, self._arrays)
        )

    def buffer_bytes(self):
        """Bytes of the two windows' buffers ``batches`` holds (the one batched, the one read
        ahead), whatever the store's size."""
        widths = {_key(s): w for s, w in zip(self.sources, self.widths())}
        scratch = max(chunkread.scratch_bytes(a) for a in self._arrays)
        return 2 * self.window * self.chunk_rows * sum(widths.values()) * 4 \
            + READERS * scratch

    def windows(self, epoch):
        """The epoch's windows: ``[(chunk indices, row permutation), ...]``."""
        n_chunks = math.ceil(self.n_samples / self.chunk_rows)
        order = np.random.default_rng([self.seed, epoch]).permutation(n_chunks)
        out = []
        for w, start in enumerate(range(0, n_chunks, self.window)):
            chunks = np.sort(order[start:start + self.window])
            size = sum(self._chunk_size(c) for c in chunks)
            out.append((chunks, np.random.default_rng([self.seed, epoch, w]).permutation(size)))
        return out

    def _chunk_size(self, chunk):
        return min(self.chunk_rows, self.n_samples - chunk * self.chunk_rows)

    def _buffers(self, rows):
        """One window's arrays, one per distinct ``_key`` of the sources."""
        out = {}
        for source in self.sources:
            key = _key(source)
            if key not in out:  # the very same columns of the same store: one array serves both
                width = self._arrays[self._index(source.path)].shape[1] \
                    if source.columns is None else len(source.columns)
                out[key] = np.empty((rows, width), dtype=np.float32)
        return out

    def _decode(self, chunks, buffers):
        """Decode ``chunks``, in order, into the first rows of ``buffers``.

        The chunks are decoded in parallel by the ``READERS`` threads, each
        straight into its rows of the window with its columns picked on the way
        (``chunkread.read``); with the buffers reused from window to window no
        fresh pages are faulted in (that cost as much as the decode). A store
        read for several sources (D-GEX's landmarks and targets) is read once
        per chunk.
        """
        sizes = [self._chunk_size(c) for c in chunks]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        by_path = {}
        for key, source in {_key(s): s for s in self.sources}.items():
            by_path.setdefault(source.path, []).append((key, source.columns))

        def place(item):
            index, chunk = item
            rows = slice(offsets[index], offsets[index + 1])
            for path, wanted in by_path.items():
                self._chunk(path, chunk, [(slice(None) if columns is None else _as_slice(columns),
                                           buffers[key][rows]) for key, columns in wanted])

        list(_pool().map(place, enumerate(chunks)))

    def _index(self, path):
        return [s.path for s in self.sources].index(path)

    def _chunk(self, path, chunk, parts):
        """Chunk ``chunk`` of the store at ``path`` into each ``(columns, out)`` of ``parts``;
        a damaged one named."""
        index = self._index(path)
        start = chunk * self.chunk_rows
        try:
            chunkread.read(self._arrays[index], chunk, parts, self._folders[index])
        except Exception as exc:  # checksum, codec or I/O: name the chunk, not just the codec
            raise StreamgexError(
                f"{path}: chunk {chunk} (profiles {start:,}-"
                f"{start + self._chunk_size(chunk) - 1:,}) cannot be read "
                f"({type(exc).__name__}: {str(exc)[:80]}); `streamgex info --verify {path}` "
                f"checks the whole store") from exc

    def batches(self, epoch, start_step=0):
        """Yield the epoch's batches from ``start_step`` on, as tuples of float32 arrays.

        Each batch is gathered from its window (``np.take`` of its rows of the
        permutation): the caller owns it, while the two windows' buffers (the one
        batched, the one read ahead) are reused for the whole epoch.
        """
        windows = self.windows(epoch)
        sizes = np.array([len(p) for _, p in windows])
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        position = start_step * self.batch
        if position >= self.n_samples:
            return
        first = int(np.searchsorted(bounds, position, side="right") - 1)
        spare = [self._buffers(int(sizes.max())) for _ in range(2)]

        keys = [_key(s) for s in self.sources]

        def decode(index, chunks, permutation):
            buffers = spare[index % 2]
            self._decode(chunks, buffers)
            return buffers, permutation

        def batch(arrays):  # sources of the same columns share one array, as in the window
            return tuple(arrays[key] for key in keys)

        reader = _ReadAhead(decode, [(i, *w) for i, w in enumerate(windows[first:])])
        pending, offset = None, position - bounds[first]
        for buffers, permutation in reader:
            def take(rows):
                return {key: np.take(b, rows, axis=0) for key, b in buffers.items()}

            order = permutation[offset:]
            offset = 0
            if pending is not None:  # a batch across two windows
                need = self.batch - len(pending[keys[0]])
                more = take(order[:need])
                pending = {key: np.concatenate([pending[key], more[key]]) for key in pending}
                order = order[need:]
                if len(pending[keys[0]]) < self.batch:  # a window smaller than a batch's rest
                    continue
                yield batch(pending)
                pending = None
            full = len(order) // self.batch * self.batch
            for start in range(0, full, self.batch):
                yield batch(take(order[start:start + self.batch]))
            pending = take(order[full:]) if full < len(order) else None
        if pending is not None:
            yield batch(pending)

    def dataset(self, epoch, start_step=0, prefetch=2):
        """The batches as a ``tf.data.Dataset`` (prefetched on TensorFlow's threads)."""
        import tensorflow as tf

        signature = tuple(tf.TensorSpec((None, w), tf.float32) for w in self.widths())
        return tf.data.Dataset.from_generator(
            lambda: self.batches(epoch, start_step), output_signature=signature
        ).prefetch(prefetch)


def _as_slice(columns):
    """``columns`` as a slice where they are a run of consecutive indices (the targets of a
    split store), so Zarr copies whole row runs instead of picking single values."""
    if len(columns) and np.array_equal(columns, np.arange(columns[0], columns[0] + len(columns))):
        return slice(int(columns[0]), int(columns[0]) + len(columns))
    return columns


def _key(source):
    """Sources of the same store and columns share one window array."""
    return source.path, None if source.columns is None else source.columns.tobytes()


@functools.cache
def _pool():
    """The ``READERS`` threads that read a window's chunks, made once per process."""
    return ThreadPoolExecutor(READERS, thread_name_prefix="streamgex-read")


@functools.cache
def keep_freed_memory():
    """Let glibc keep up to 256 MiB of freed blocks for reuse instead of returning them to
    the system at once, for a stream that must keep a fast consumer fed (a GPU).

    Every batch is a fresh array (17.8 MB at batch 200 of 22,268 genes), and
    taking fresh pages from the kernel (zeroed, one fault per 4 KiB) halves a
    stream's rate: 21,000 against 10,500 profiles/s in ``tools/bench_stream.py``.
    But the setting holds for the whole process, and TensorFlow's own CPU
    temporaries are kept the same way: the full autoencoder trained on the CPU
    peaked 0.6 GiB higher with it (5.9 against 5.3 GiB), for a stream a hundred
    times faster than that training needs. So training turns it on only when a
    GPU trains. Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 2**20)
    libc.mallopt(m_trim_threshold, 256 * 2**20)


class _ReadAhead:
    """Iterate ``read(*item)`` over items, reading the next item on a background thread."""

    def __init__(self, read, items):
        self.read, self.items = read, list(items)

    def __iter__(self):
        if not self.items:
            return
        result = {}

        def load(index):
            try:
                result[index] = self.read(*self.items[index])
            except BaseException as exc:  # re-raised in the consuming thread
                result[index] = exc

        thread = threading.Thread(target=load, args=(0,), daemon=True)
        thread.start()
        for index in range(len(self.items)):
            thread.join()
            value = result.pop(index)
            if index + 1 < len(self.items):
                thread = threading.Thread(target=load, args=(index + 1,), daemon=True)
                thread.start()
            if isinstance(value, BaseException):
                raise value
            yield value
