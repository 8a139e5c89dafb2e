"""One chunk of a Zarr array decoded straight into the caller's rows, on the caller's thread.

Zarr's synchronous API hands every read to its one event-loop thread, which
checks the checksum and copies the chunk into place for every caller in
turn: streams read ~14,000 full profiles/s that way with one reader thread or
four alike (``tools/bench_stream.py``). The split parts training streams from
are written uncompressed with a CRC-32C (``store.STREAMED``); where such a
store is on a local disk, ``read`` reads the chunk file into a scratch buffer
of the calling thread, checks its CRC-32C as Zarr does, and copies the asked
columns into place, the GIL let go for the read and the copy. Every other
array (compressed, sharded, remote, Zarr format 2) goes through Zarr.
"""

import threading
from pathlib import Path

import google_crc32c
import numpy as np
from zarr.buffer.cpu import NDBuffer
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.storage import LocalStore

_local = threading.local()


def chunk_folder(array):
    """The folder of ``array``'s chunk files where ``read`` can read them itself, else None:
    a 2-D float32 Zarr v3 array on a local disk, chunked by rows only, each chunk raw
    little-endian values and a CRC-32C."""
    meta = array.metadata
    if getattr(meta, "zarr_format", None) != 3 or not isinstance(array.store, LocalStore):
        return None
    codecs = tuple(meta.codecs)
    if (len(codecs) != 2 or not isinstance(codecs[0], BytesCodec)
            or codecs[0].endian is None or codecs[0].endian.value != "little"
            or not isinstance(codecs[1], Crc32cCodec)):
        return None
    if array.dtype != np.float32 or array.ndim != 2 or array.chunks[1] != array.shape[1]:
        return None
    return Path(array.store.root) / array.path


def scratch_bytes(array):
    """Bytes of the scratch buffer each reading thread keeps for ``array``."""
    return array.chunks[0] * array.shape[1] * 4 + 4 if chunk_folder(array) else 0


def read(array, chunk, parts, folder=None):
    """Rows of chunk ``chunk`` of ``array`` into each ``(columns, out)`` of ``parts``
    (``columns`` a slice or an index array; as many rows as the ``out`` arrays have), the
    chunk read once for all of them. ``folder``: ``chunk_folder(array)``, if known."""
    folder = chunk_folder(array) if folder is None else folder
    rows = parts[0][1].shape[0]
    start = chunk * array.chunks[0]
    values = _raw(array, chunk, folder, rows) if folder is not None else None
    if values is None and len(parts) == 1:
        _through_zarr(array, slice(start, start + rows), *parts[0])
        return
    if values is None:
        values = array[start:start + rows]
    for columns, out in parts:
        if isinstance(columns, slice):
            np.copyto(out, values[:, columns])
        else:
            np.take(values, columns, axis=1, out=out)


def _raw(array, chunk, folder, rows):
    """The first ``rows`` rows of a raw CRC-32C chunk, checked, in this thread's scratch
    buffer; None for a chunk never written (Zarr reads the fill value)."""
    width = array.shape[1]
    size = array.chunks[0] * width * 4
    scratch = getattr(_local, "scratch", None)
    if scratch is None or scratch.nbytes < size + 4:
        scratch = _local.scratch = np.empty(size + 4, np.uint8)
    raw = scratch[:size + 4]
    try:
        with open(folder / array.metadata.encode_chunk_key((chunk, 0)), "rb", buffering=0) as f:
            got = f.readinto(raw)
    except FileNotFoundError:
        return None
    if got != size + 4:
        raise ValueError(f"chunk file holds {got:,} bytes, expected {size + 4:,}")
    if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:].tobytes(), "little"):
        raise ValueError("stored and computed CRC-32C checksums do not match")
    return raw[:-4].view("<f4").reshape(array.chunks[0], width)[:rows]


def _through_zarr(array, rows, columns, out):
    """``array[rows, columns]`` into ``out`` through Zarr."""
    selection = (rows, columns)
    if isinstance(columns, slice):  # basic selection: 25% faster than orthogonal here
        array.get_basic_selection(selection, out=NDBuffer.from_numpy_array(out))
    else:
        array.get_orthogonal_selection(selection, out=NDBuffer.from_numpy_array(out))
