"""Benchmark: how fast the training streams deliver full 22,268-gene profiles, no model.

Writes stores of simulated z-scores shaped like a split part (``geo-full``'s
genes: 978 landmarks + 21,290 targets + the rest, 320-profile chunks of
~28 MiB, CRC-32C like every store) once per codec under ``--workdir``, then
reads whole epochs through ``streams.Stream.batches`` at batch 200, as the
autoencoder's stream does (inputs and outputs the same columns: one decode
serves both), as the training loop consumes them (``Stream.batches``, numpy
arrays handed to the compiled step), and through ``Stream.dataset`` (tf.data,
for Keras users), with ``streams.keep_freed_memory`` on as when a GPU trains.
``none`` is how split parts are stored (``store.STREAMED``: raw values and a
CRC-32C, read by ``streamgex.chunkread`` on the reader threads); the
compressed codecs go through Zarr. Cold: each chunk file's pages are dropped from the
page cache first (``posix_fadvise(DONTNEED)``, no root needed), one epoch;
warm: two more epochs from the page cache. Prints profiles/s, GB/s of float32 delivered and the
store's size on disk, the disk's own rate (``files/N``: every chunk file read whole
from a cold cache on N threads, nothing checked or copied; its GB/s are of the
file bytes), and checks that the batches of (seed, epoch, step) are
the same for every codec and reader setting.

    python tools/bench_stream.py                           # 12,800 profiles, lz4 / zstd / none
    python tools/bench_stream.py --profiles 25600 --codecs none
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

GENES = 22_268
BATCH = 200


def make_store(path, codec, profiles, seed=0):
    """A store of ``profiles`` simulated z-score profiles compressed with ``codec``."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    from streamgex import store
    from streamgex.simulate.model import ExpressionModel, build_universe
    from streamgex.simulate.presets import get_preset

    if store.matches(path, step="bench-stream", parameters={"codec": codec,
                                                            "profiles": profiles}, source={}):
        return
    preset = get_preset("geo-full", samples=profiles)
    model = ExpressionModel(build_universe(preset, seed), preset, seed)
    group = store.begin(path, step="bench-stream", parameters={"codec": codec,
                                                               "profiles": profiles},
                        source={}, overwrite=True)
    compressors = {"lz4": [store.COMPRESSOR, Crc32cCodec()],
                   "lz4-shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
                                   Crc32cCodec()],
                   "zstd": [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
                            Crc32cCodec()],
                   "none": [Crc32cCodec()]}[codec]
    store.define_expression(group, samples=np.arange(profiles).astype(str),
                            genes=np.arange(GENES).astype(str), chunk_samples=320)
    array = group.create_array(store.EXPRESSION, shape=(profiles, GENES), chunks=(320, GENES),
                               dtype="float32", compressors=compressors,
                               dimension_names=("sample", "gene"), overwrite=True)
    rng = np.random.default_rng([seed, 7])
    for start in range(0, profiles, 320):
        values = (model.geo_genes(rng, min(320, profiles - start)) - model.mean) / model.sd
        array[start:start + len(values)] = values[:, :GENES]  # the GCTX's probe count
    store.finish(group)


def drop_cache(path):
    """Evict the store's chunk files from the page cache (a cold read comes from disk)."""
    for file in Path(path).rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)  # pages not yet written back stay cached whatever the advice
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def disk_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def read_files(path, threads):
    """Seconds to read every file of the store whole, on ``threads`` threads, nothing
    checked or copied: what the disk (or page cache) delivers, the ceiling of a cold epoch."""
    from concurrent.futures import ThreadPoolExecutor

    files = sorted(f for f in Path(path).rglob("*") if f.is_file())
    buffers = {}

    def read(file):
        size = file.stat().st_size
        buffer = buffers.get(threading.get_ident())
        if buffer is None or len(buffer) < size:
            buffer = buffers[threading.get_ident()] = bytearray(size)
        with open(file, "rb", buffering=0) as f:
            f.readinto(memoryview(buffer)[:size])

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, files))
    return time.perf_counter() - start


def epoch(stream, *, reader):
    """Seconds for one whole epoch, profiles delivered, digest of the first batches.
    ``reader``: "numpy" (``batches``), "tensors" (each batch's inputs and outputs made
    TensorFlow tensors, as the compiled training step receives them) or "tf.data"."""
    import tensorflow as tf

    first, profiles = [], 0
    start = time.perf_counter()
    batches = stream.dataset(0) if reader == "tf.data" else stream.batches(0)
    for k, parts in enumerate(batches):
        if reader == "tensors":
            parts = [tf.convert_to_tensor(p) for p in parts]
        profiles += len(parts[0])
        if k < 3:
            first.append(parts[0])  # hashed after the clock stops
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for x in first:
        digest.update(np.ascontiguousarray(x if reader == "numpy" else x.numpy()).tobytes())
    return seconds, profiles, digest.hexdigest()[:16]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-stream"))
    parser.add_argument("--profiles", type=int, default=12800,
                        help="profiles in each store (6,400 is too few for a steady state)")
    parser.add_argument("--codecs", default="lz4,lz4-shuffle,zstd,none",
                        help="lz4 is the stores' default (Blosc LZ4 with bit-shuffling)")
    parser.add_argument("--json", action="store_true", help="one JSON line per measurement")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from streamgex.streams import READERS, Source, Stream, keep_freed_memory

    keep_freed_memory()  # as training does when a GPU consumes the batches

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows, digests = [], set()
    for codec in args.codecs.split(","):
        path = args.workdir / f"{codec}-{args.profiles}.zarr"
        make_store(path, codec, args.profiles)
        stream = Stream((Source(path), Source(path)), batch=BATCH, seed=0)
        for threads in (1, READERS, 8):  # the disk's own rate, cold: the files read whole
            drop_cache(path)
            seconds = read_files(path, threads)
            rows.append({"codec": codec, "reader": f"files/{threads}", "cache": "cold",
                         "profiles_per_s": args.profiles / seconds,
                         "gb_per_s": disk_bytes(path) / seconds / 1e9,
                         "disk_mb": disk_bytes(path) / 1e6,
                         "ratio": args.profiles * GENES * 4 / disk_bytes(path)})
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
        for reader in ("numpy", "tensors", "tf.data"):
            for cache in ("cold", "warm"):
                if cache == "cold":
                    drop_cache(path)
                    seconds, profiles, digest = epoch(stream, reader=reader)
                else:  # the steady state: two more epochs, from the page cache
                    runs = [epoch(stream, reader=reader) for _ in range(2)]
                    seconds, profiles, digest = sum(r[0] for r in runs), runs[0][1], runs[0][2]
                    profiles *= len(runs)
                digests.add(digest)
                row = {"codec": codec, "reader": reader, "cache": cache,
                       "profiles_per_s": profiles / seconds,
                       "gb_per_s": profiles * GENES * 4 / seconds / 1e9,
                       "disk_mb": disk_bytes(path) / 1e6,
                       "ratio": args.profiles * GENES * 4 / disk_bytes(path)}
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
    print(f"\n{args.profiles:,} profiles x {GENES:,} genes, batch {BATCH}, "
          f"{os.cpu_count()} cores")
    print(f"{'codec':<14} {'reader':<8} {'cache':<5} {'profiles/s':>11} {'GB/s':>6} "
          f"{'disk MB':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['codec']:<14} {r['reader']:<8} {r['cache']:<5} {r['profiles_per_s']:>11,.0f} "
              f"{r['gb_per_s']:>6.2f} {r['disk_mb']:>8.0f} {r['ratio']:>6.2f}")
    same = len(digests) == 1
    print("batches of (seed, epoch, step): " + ("the same for every codec and reader" if same
                                                else "DIFFER between settings"))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
