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
import zarr

from . import store
from .errors import StreamgexError

WINDOW = 4


@dataclass(frozen=True)
class Source:
    """Columns of one store a stream reads: ``store[:, columns]`` per row."""

    path: Path
    columns: np.ndarray = None  # None: all columns

    def open(self):
        return zarr.open_group(self.path, mode="r")[store.EXPRESSION]


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

    def _read(self, chunks, permutation):
        """The window of ``chunks`` with its rows in ``permutation`` order, one array per
        source. The chunks are read and decoded in parallel (Blosc and the file reads let
        go of the GIL), and each chunk's rows go straight to their permuted places: no
        concatenated copy of the window is made first."""
        sizes = [self._chunk_size(c) for c in chunks]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        inverse = np.empty_like(permutation)
        inverse[permutation] = np.arange(len(permutation))
        out, wanted = {}, {}
        for source in self.sources:
            key = _key(source)
            if key not in out:  # the very same columns of the same store: one array serves both
                width = self._arrays[self._index(source.path)].shape[1] \
                    if source.columns is None else len(source.columns)
                out[key] = np.empty((len(permutation), width), dtype=np.float32)
                wanted[key] = source

        def place(item):
            index, chunk = item
            rows = inverse[offsets[index]:offsets[index + 1]]
            for path in dict.fromkeys(s.path for s in wanted.values()):
                block = self._chunk(path, chunk)
                for key, source in wanted.items():
                    if source.path == path:
                        out[key][rows] = block if source.columns is None \
                            else block[:, source.columns]

        list(_pool().map(place, enumerate(chunks)))
        return [out[_key(s)] for s in self.sources]

    def _index(self, path):
        return [s.path for s in self.sources].index(path)

    def _chunk(self, path, chunk):
        """Chunk ``chunk`` of the store at ``path``, decoded; a damaged one named."""
        array = self._arrays[self._index(path)]
        start = chunk * self.chunk_rows
        try:
            return array[start:start + self._chunk_size(chunk)]
        except Exception as exc:  # checksum, codec or I/O: name the chunk, not just the codec
            raise StreamgexError(
                f"{path}: chunk {chunk} (profiles {start:,}-"
                f"{start + self._chunk_size(chunk) - 1:,}) cannot be read "
                f"({type(exc).__name__}: {str(exc)[:80]}); `streamgex info --verify {path}` "
                f"checks the whole store") from exc

    def batches(self, epoch, start_step=0):
        """Yield the epoch's batches from ``start_step`` on, as tuples of float32 arrays."""
        windows = self.windows(epoch)
        sizes = np.array([len(p) for _, p in windows])
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        position = start_step * self.batch
        if position >= self.n_samples:
            return
        first = int(np.searchsorted(bounds, position, side="right") - 1)
        reader = _ReadAhead(self._read, windows[first:])
        pending, offset = None, position - bounds[first]
        for parts in reader:
            parts = [p[offset:] for p in parts]
            offset = 0
            if pending is not None:  # a batch across two windows: only its rows are copied
                need = self.batch - len(pending[0])
                joined = [np.concatenate([a, b[:need]]) for a, b in zip(pending, parts)]
                parts = [p[need:] for p in parts]
                if len(joined[0]) < self.batch:  # a window smaller than the rest of a batch
                    pending = joined
                    continue
                yield tuple(joined)
            full = len(parts[0]) // self.batch * self.batch
            for start in range(0, full, self.batch):
                yield tuple(p[start:start + self.batch] for p in parts)
            pending = [p[full:] for p in parts] if full < len(parts[0]) else None
        if pending is not None:
            yield tuple(pending)

    def dataset(self, epoch, start_step=0, prefetch=2):
        """The batches as a ``tf.data.Dataset`` (prefetched on TensorFlow's threads)."""
        import tensorflow as tf

        signature = tuple(tf.TensorSpec((None, w), tf.float32) for w in self.widths())
        return tf.data.Dataset.from_generator(
            lambda: self.batches(epoch, start_step), output_signature=signature
        ).prefetch(prefetch)


def _key(source):
    """Sources of the same store and columns share one window array."""
    return source.path, None if source.columns is None else source.columns.tobytes()


@functools.cache
def _pool():
    """The threads that read a window's chunks (one more than the cores: a thread waiting
    on a read leaves its core to another's decode). Made once per process, with
    ``_keep_freed_memory``."""
    _keep_freed_memory()
    return ThreadPoolExecutor((os.cpu_count() or 1) + 1, thread_name_prefix="streamgex-read")


def _keep_freed_memory():
    """Let glibc reuse freed chunk-sized blocks instead of returning them to the system at
    once: each chunk decode allocates ~30 MB, and taking fresh pages from the kernel
    (zeroed, one fault per 4 KiB) cost more than the decode itself (measured in
    ``tools/bench_stream.py``: ~1 GB/s of fresh pages). At most 256 MiB of freed memory
    is kept. Elsewhere than glibc this does nothing."""
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
