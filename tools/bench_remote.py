"""Benchmark: ingest and stream throughput with the stores in an S3 bucket, next to a local disk.

The bucket is moto's S3 server on 127.0.0.1 (``tests/s3.py``, the tests' own), reached
directly and through a proxy adding a round-trip latency (``--latency``, default 20 ms:
a service in another building). For each place it times

- ``ingest``: a GCTX of ``--profiles`` simulated full-width profiles (22,268 genes,
  320-profile chunks of ~28 MiB) from the local disk into a store there;
- ``stream``: an epoch of ``streams.Stream.batches`` (the better of two) at batch 200 over a store shaped
  like a split part (raw values and a CRC-32C, ``store.STREAMED``), as the autoencoder's
  stream reads it (all columns, one decode for inputs and outputs);

and prints MB/s of float32 and profiles/s, with the full-size E-MLP's training pace on a
CPU from ``tools/bench_train.py`` (README, Training) beside the stream's figures: a
stream faster than that pace keeps training fed. moto is a Python server, so its figures
are a floor: a real S3, MinIO or GCS serves many requests at once.

    python tools/bench_remote.py                     # 1,280 profiles, 20 ms latency
    python tools/bench_remote.py --profiles 3200 --latency 0.05
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

GENES = 22_268
CHUNK = 320
BATCH = 200
#: The full-size E-MLP's float32 training pace on a CPU (README, Training recipes).
EMLP_PACE = 168.1


def make_gctx(path, profiles, seed=0):
    from rawfiles import write_gctx

    rng = np.random.default_rng(seed)
    values = rng.normal(8.0, 2.0, size=(profiles, GENES)).astype(np.float32)
    write_gctx(path, values, [f"S{i}" for i in range(profiles)],
               [f"G{j}" for j in range(GENES)], chunks=(CHUNK, GENES))


def make_part(url, profiles, seed=1):
    """A store shaped like a split part (``store.STREAMED``) at ``url``."""
    from streamgex import store

    group = store.begin(url, step="bench-remote", parameters={"profiles": profiles},
                        source={}, overwrite=True)
    if group is None:
        return
    array = store.define_expression(group, samples=np.arange(profiles).astype(str),
                                    genes=np.arange(GENES).astype(str), chunk_samples=CHUNK,
                                    compressors=store.STREAMED)
    rng = np.random.default_rng(seed)
    for start in range(0, profiles, CHUNK):
        rows = min(CHUNK, profiles - start)
        array[start:start + rows] = rng.normal(size=(rows, GENES)).astype(np.float32)
    store.finish(group)


def timed_ingest(gctx, out, profiles):
    from streamgex.ingest import ingest

    start = time.perf_counter()
    ingest(gctx, out, chunk_samples=CHUNK, overwrite=True)
    return time.perf_counter() - start


def timed_stream(part):
    from streamgex.streams import Source, Stream

    stream = Stream((Source(part), Source(part)), batch=BATCH, seed=0)
    best = None
    for epoch in range(2):  # the better of two: the first pays for connections and imports
        start = time.perf_counter()
        count = sum(len(batch[0]) for batch in stream.batches(epoch=epoch))
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1280)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request")
    parser.add_argument("--workdir", default=None, help="local folder (default: a temporary one)")
    args = parser.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "STREAMGEX_CACHE": tempfile.mkdtemp(prefix="bench-remote-cache-")})
    import logging

    logging.disable(logging.WARNING)
    from s3 import faulty_proxy, filesystem, moto_server

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    gctx = work / "bench.gctx"
    if not gctx.exists():
        make_gctx(gctx, args.profiles)
    megabytes = args.profiles * GENES * 4 / 1e6
    rows = []
    with moto_server() as endpoint, faulty_proxy(endpoint, every=0,
                                                 delay=args.latency) as (slow, _):
        bucket = f"s3://bench-{uuid.uuid4().hex[:8]}"
        filesystem(endpoint).mkdir(bucket[5:])
        places = [("local disk", str(work), None), ("S3 loopback", bucket, endpoint),
                  (f"S3 +{args.latency * 1000:.0f} ms", bucket + "/slow", slow)]
        for name, base, url in places:
            if url:
                os.environ["AWS_ENDPOINT_URL"] = url
            seconds = timed_ingest(gctx, f"{base}/geo.zarr", args.profiles)
            make_part(f"{base}/part.zarr", args.profiles)
            stream_s, count = timed_stream(f"{base}/part.zarr")
            rows.append((name, megabytes / seconds, args.profiles / seconds,
                         megabytes / stream_s, count / stream_s))
    print(f"{args.profiles:,} profiles x {GENES:,} genes ({megabytes:,.0f} MB of float32), "
          f"chunks of {CHUNK}, batch {BATCH}; full-size E-MLP training pace: "
          f"{EMLP_PACE} profiles/s")
    print(f"{'place':16s} {'ingest MB/s':>12s} {'ingest prof/s':>14s} {'stream MB/s':>12s} "
          f"{'stream prof/s':>14s} {'x E-MLP pace':>13s}")
    for name, imb, ips, smb, sps in rows:
        print(f"{name:16s} {imb:12.1f} {ips:14.0f} {smb:12.1f} {sps:14.0f} "
              f"{sps / EMLP_PACE:13.1f}")


if __name__ == "__main__":
    main()
