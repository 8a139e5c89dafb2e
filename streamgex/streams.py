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

import math
import threading
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
        parts, made = [], {}
        read = {path: self._decode(path, chunks) for path in dict.fromkeys(
            s.path for s in self.sources)}
        for source in self.sources:
            key = (source.path, None if source.columns is None else source.columns.tobytes())
            if key not in made:  # the very same columns of the same store: one array serves both
                rows, kept = read[source.path]
                columns = source.columns if kept is None else np.searchsorted(kept, source.columns)
                # One gather for rows and columns together: no intermediate copy.
                index = permutation if columns is None else np.ix_(permutation, columns)
                made[key] = np.ascontiguousarray(rows[index], dtype=np.float32)
            parts.append(made[key])
        return parts

    def _decode(self, path, chunks):
        """A store's rows of ``chunks``, decoded once for every source reading it.

        Returns ``(rows, kept)``: when the sources need under half of the
        store's columns (an E-MLP's 978 landmarks of 22,268 genes), each chunk
        is cut down to them (``kept``, sorted) as soon as it is decoded, so the
        window holds those columns only; else ``kept`` is None (all columns).
        """
        array = self._arrays[[s.path for s in self.sources].index(path)]
        wanted = [s.columns for s in self.sources if s.path == path]
        kept = (None if any(c is None for c in wanted)
                else np.unique(np.concatenate(wanted)))
        if kept is not None and len(kept) * 2 > array.shape[1]:
            kept = None
        blocks = []
        for c in chunks:
            start = c * self.chunk_rows
            try:
                block = array[start:start + self._chunk_size(c)]
            except Exception as exc:  # checksum, codec or I/O: name the chunk, not just the codec
                raise StreamgexError(
                    f"{path}: chunk {c} (profiles {start:,}-{start + self._chunk_size(c) - 1:,}) "
                    f"cannot be read ({type(exc).__name__}: {str(exc)[:80]}); `streamgex info "
                    f"--verify {path}` checks the whole store") from exc
            blocks.append(block if kept is None else block[:, kept])
        return np.concatenate(blocks), kept

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
            if pending is not None:
                parts = [np.concatenate([a, b]) for a, b in zip(pending, parts)]
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
