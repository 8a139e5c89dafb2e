"""Benchmark: ingest, stream and E-MLP training throughput with the stores in an S3 bucket, next to a local disk.

The bucket is moto's S3 server on 127.0.0.1 (``tests/s3.py``, the tests' own) in a
process of its own (``served_apart``), reached directly and through a proxy there adding a
round-trip latency (``--latency``, default 20 ms: a service in another building). For
each place it times

- ``ingest``: a GCTX of ``--profiles`` simulated full-width profiles (22,268 genes,
  320-profile chunks of ~28 MiB) from the local disk into a store there;
- ``stream``: an epoch of ``streams.Stream.batches`` (the better of two) at batch 200 over a store shaped
  like a split part (raw values and a CRC-32C, ``store.STREAMED``), as the autoencoder's
  stream reads it (all columns, one decode for inputs and outputs);
- ``train``: the full-size E-MLP (978 -> 11,850 -> 11,826 -> 2,000, float32, the
  training loop's compiled step, as ``tools/bench_train.py`` builds it) fed by the stream
  its training reads: the 978 landmark columns of a split part and the row-aligned
  codes store (``TrainJob.streams``' ``Source``s), ``--warmup`` steps then ``--steps``
  timed ones at batch 200, all within one epoch (the stores hold enough profiles), the
  next window read ahead as in training; beside it the same steps on one batch held in
  memory (no stream at all). The places take turns for ``--rounds`` rounds and each
  keeps its best (other work on the machine only slows steps). ``--skip-training``
  leaves it out.

It prints MB/s of float32 and profiles/s, with the full-size E-MLP's training pace on a
CPU from ``tools/bench_train.py`` (README, Training) beside the stream's figures: a
stream faster than that pace keeps training fed. moto is one Python process on the same
cores, so its figures are a floor: a real S3, MinIO or GCS serves many requests at once.

``--obstore`` also times the stream with Zarr reading the bucket through
``zarr.storage.ObjectStore(obstore.store.S3Store(...))`` instead of streamgex's
``FsspecStore`` (the benchmark swaps ``storage.zarr_store``; streamgex itself uses fsspec).

    python tools/bench_remote.py                     # 1,280 profiles, 20 ms latency
    python tools/bench_remote.py --obstore           # and the stream through obstore
    python tools/bench_remote.py --profiles 3200 --latency 0.05 --skip-training
"""

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

GENES = 22_268
LANDMARKS, CODES = 978, 2_000
EMLP_HIDDEN = (11_850, 11_826)
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


def make_store(url, profiles, width, *, compressors=None, seed=1):
    """A ``profiles x width`` store of random values at ``url``: ``compressors=STREAMED``
    is a split part's shape, the default (the store's compressor and a CRC-32C) what
    ``encode`` writes codes with."""
    from streamgex import store

    group = store.begin(url, step="bench-remote", parameters={"profiles": profiles,
                                                               "width": width},
                        source={}, overwrite=True)
    if group is None:
        return
    array = store.define_expression(group, samples=np.arange(profiles).astype(str),
                                    genes=np.arange(width).astype(str), chunk_samples=CHUNK,
                                    compressors=compressors)
    rng = np.random.default_rng(seed)
    for start in range(0, profiles, CHUNK):
        rows = min(CHUNK, profiles - start)
        array[start:start + rows] = rng.normal(size=(rows, width)).astype(np.float32)
    store.finish(group)


def make_part(url, profiles):
    """A store shaped like a split part (``store.STREAMED``) at ``url``."""
    from streamgex import store

    make_store(url, profiles, GENES, compressors=store.STREAMED)


def timed_ingest(gctx, out, profiles):
    from streamgex.ingest import ingest

    start = time.perf_counter()
    ingest(gctx, out, chunk_samples=CHUNK, overwrite=True)
    return time.perf_counter() - start


def timed_stream(part):
    """``(seconds, profiles, CPU seconds of this process)`` of the better of two epochs (the
    first pays for connections and imports)."""
    from streamgex.streams import Source, Stream

    stream = Stream((Source(part), Source(part)), batch=BATCH, seed=0)
    best = None
    for epoch in range(2):
        start, cpu = time.perf_counter(), time.process_time()
        count = sum(len(batch[0]) for batch in stream.batches(epoch=epoch))
        seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, count, time.process_time() - cpu)
    return best


def emlp_step():
    """The full-size E-MLP's compiled training step (``training.loop.make_train_step``)."""
    import keras

    from streamgex.models.emlp import build_emlp, emlp_optimizer
    from streamgex.training.loop import make_train_step

    keras.mixed_precision.set_global_policy("float32")
    return make_train_step(build_emlp(LANDMARKS, CODES, EMLP_HIDDEN), emlp_optimizer())


def timed_training(step, part, codes, *, warmup, steps):
    """Profiles/s of ``steps`` E-MLP steps after ``warmup`` ones, fed by the E-MLP's
    stream: the landmark columns of ``part``, the codes of ``codes``."""
    from streamgex.streams import Source, Stream

    stream = Stream((Source(part, np.arange(LANDMARKS)), Source(codes)), batch=BATCH, seed=0)
    batches = stream.batches(epoch=0)
    for x, y in itertools.islice(batches, warmup):
        step(x, y).numpy()
    start = time.perf_counter()
    for x, y in itertools.islice(batches, steps):
        loss = step(x, y)
    loss.numpy()
    return steps * BATCH / (time.perf_counter() - start)


def timed_in_memory(step, *, warmup, steps):
    """Profiles/s of the same steps on one batch held in memory: the pace with no stream."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, LANDMARKS)).astype(np.float32))
    y = tf.constant(rng.normal(size=(BATCH, CODES)).astype(np.float32))
    for _ in range(warmup):
        step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    loss.numpy()
    return steps * BATCH / (time.perf_counter() - start)


@contextlib.contextmanager
def through_obstore(endpoint):
    """Within this, Zarr opens ``s3://`` stores through obstore's S3 client
    (``zarr.storage.ObjectStore``) at ``endpoint`` instead of ``FsspecStore``."""
    try:
        from obstore.store import S3Store
    except ImportError:
        sys.exit("--obstore needs the obstore package: pip install obstore")
    from zarr.storage import ObjectStore

    from streamgex import storage

    def zarr_store(url, *, read_only=False):
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        client = S3Store(bucket, prefix=prefix or None, endpoint=endpoint,
                         access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                         secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                         region=os.environ["AWS_DEFAULT_REGION"],
                         client_options={"allow_http": True})
        return ObjectStore(client, read_only=read_only)

    saved, storage.zarr_store = storage.zarr_store, zarr_store
    try:
        yield
    finally:
        storage.zarr_store = saved


#: A full-size E-MLP checkpoint: its 175M weights and Adam's two moments, float32.
EMLP_CHECKPOINT_MB = 175_000_000 * 3 * 4 / 1e6


def timed_workdir(url, megabytes):
    """``(push s, unchanged push s, pull s)`` of a workdir in a bucket (``streamgex.mirror``)
    holding a run with one checkpoint of ``megabytes``: the first push from a local copy,
    a push with nothing changed (the copy's scan alone), and the pull into another
    machine's empty copy."""
    from streamgex import mirror

    copy = mirror.Mirror(url)
    checkpoint = copy.local / "runs" / "emlp" / "checkpoints" / "ckpt-1" / "variables.npz"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with open(checkpoint, "wb") as f:
        for start in range(0, int(megabytes * 1e6), 2**26):
            f.write(os.urandom(min(2**26, int(megabytes * 1e6) - start)))
    (checkpoint.parent / "state.json").write_text('{"epoch": 1}')
    (copy.local / "runs" / "emlp" / "log.csv").write_text("epoch,loss\n1,0.5\n")
    started = time.perf_counter()
    copy.push()
    pushed = time.perf_counter() - started
    started = time.perf_counter()
    copy.push()
    unchanged = time.perf_counter() - started
    os.environ["STREAMGEX_CACHE"] = tempfile.mkdtemp(prefix="bench-remote-other-machine-")
    started = time.perf_counter()
    mirror.Mirror(url).pull()
    pulled = time.perf_counter() - started
    return pushed, unchanged, pulled


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1280)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request")
    parser.add_argument("--workdir", default=None, help="local folder (default: a temporary one)")
    parser.add_argument("--warmup", type=int, default=2, help="E-MLP steps before the timed ones")
    parser.add_argument("--steps", type=int, default=6, help="timed E-MLP steps")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the E-MLP's timed steps over every place")
    parser.add_argument("--skip-training", action="store_true",
                        help="leave out the E-MLP's training pace")
    parser.add_argument("--obstore", action="store_true",
                        help="also time the stream through obstore's S3 client")
    parser.add_argument("--checkpoint-mb", type=float, default=1000.0,
                        help="a run's checkpoint in a workdir in the bucket, pushed and "
                             "pulled (0: leave out; the full-size E-MLP's is 2,100)")
    args = parser.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "TF_CPP_MIN_LOG_LEVEL": "2",
                       "STREAMGEX_CACHE": tempfile.mkdtemp(prefix="bench-remote-cache-")})
    import logging

    logging.disable(logging.WARNING)
    from s3 import filesystem, served_apart

    from streamgex import allocators

    allocators.use_for_training()  # the allocator a training process has
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    gctx = work / "bench.gctx"
    if not gctx.exists():
        make_gctx(gctx, args.profiles)
    megabytes = args.profiles * GENES * 4 / 1e6
    # every timed step inside one epoch, the window after the warm-up's read ahead
    train_profiles = -(-(args.warmup + args.steps + 1) * BATCH // CHUNK) * CHUNK
    rows, obstore_rows, feeds = [], [], []
    with served_apart(latency=args.latency) as served:
        endpoint, slow = served["endpoint"], served["slow"]
        bucket = f"s3://bench-{uuid.uuid4().hex[:8]}"
        filesystem(endpoint).mkdir(bucket[5:])
        places = [("local disk", str(work), None), ("S3 loopback", bucket, endpoint),
                  (f"S3 +{args.latency * 1000:.0f} ms", bucket + "/slow", slow)]
        for name, base, url in places:
            if url:
                os.environ["AWS_ENDPOINT_URL"] = url
            seconds = timed_ingest(gctx, f"{base}/geo.zarr", args.profiles)
            make_part(f"{base}/part.zarr", args.profiles)
            stream_s, count, cpu = timed_stream(f"{base}/part.zarr")
            rows.append((name, megabytes / seconds, args.profiles / seconds,
                         megabytes / stream_s, count / stream_s))
            if args.obstore and url:
                with through_obstore(url):
                    obstore_s, _, obstore_cpu = timed_stream(f"{base}/part.zarr")
                obstore_rows.append((name, count / obstore_s, count / stream_s,
                                     obstore_cpu / megabytes * 1e3, cpu / megabytes * 1e3))
            if not args.skip_training:
                # written once per storage, read through each of its places
                data = str(work) if url is None else bucket
                if url != slow:
                    make_part(f"{data}/train.zarr", train_profiles)
                    make_store(f"{data}/codes.zarr", train_profiles, CODES)
                feeds.append((name, data, url))
        workdirs = []
        for name, base, url in places[1:] if args.checkpoint_mb else []:
            os.environ["AWS_ENDPOINT_URL"] = url
            cache = os.environ["STREAMGEX_CACHE"]
            workdirs.append((name, *timed_workdir(f"{base}/workdir", args.checkpoint_mb)))
            os.environ["STREAMGEX_CACHE"] = cache
        training = {}
        if feeds:
            step = emlp_step()
            # the places in turn, round after round, each its best round: a machine
            # shared with other work slows some steps, never speeds them up
            for _ in range(args.rounds):
                pace = timed_in_memory(step, warmup=args.warmup, steps=args.steps)
                training.setdefault("in memory (no stream)", []).append(pace)
                for name, data, url in feeds:
                    if url:
                        os.environ["AWS_ENDPOINT_URL"] = url
                    pace = timed_training(step, f"{data}/train.zarr", f"{data}/codes.zarr",
                                          warmup=args.warmup, steps=args.steps)
                    training.setdefault(name, []).append(pace)
    print(f"{args.profiles:,} profiles x {GENES:,} genes ({megabytes:,.0f} MB of float32), "
          f"chunks of {CHUNK}, batch {BATCH}; full-size E-MLP training pace: "
          f"{EMLP_PACE} profiles/s")
    print(f"{'place':16s} {'ingest MB/s':>12s} {'ingest prof/s':>14s} {'stream MB/s':>12s} "
          f"{'stream prof/s':>14s} {'x E-MLP pace':>13s}")
    for name, imb, ips, smb, sps in rows:
        print(f"{name:16s} {imb:12.1f} {ips:14.0f} {smb:12.1f} {sps:14.0f} "
              f"{sps / EMLP_PACE:13.1f}")
    if obstore_rows:
        print("\nstream through Zarr's ObjectStore (obstore) vs FsspecStore (s3fs); CPU: "
              "this process's CPU seconds per GB streamed")
        print(f"{'place':16s} {'obstore prof/s':>15s} {'fsspec prof/s':>14s} "
              f"{'obstore/fsspec':>15s} {'obstore CPU':>12s} {'fsspec CPU':>11s}")
        for name, obstore, fsspec, obstore_cpu, fsspec_cpu in obstore_rows:
            print(f"{name:16s} {obstore:15.0f} {fsspec:14.0f} {obstore / fsspec:15.2f} "
                  f"{obstore_cpu:11.1f}s {fsspec_cpu:10.1f}s")
    if workdirs:
        print(f"\na workdir in the bucket (streamgex.mirror) holding a run with a "
              f"{args.checkpoint_mb:,.0f} MB checkpoint: first push, push with nothing "
              f"changed, pull into an empty copy; a full-size E-MLP checkpoint is "
              f"{EMLP_CHECKPOINT_MB:,.0f} MB")
        print(f"{'place':16s} {'push MB/s':>10s} {'unchanged s':>12s} {'pull MB/s':>10s} "
              f"{'full E-MLP ckpt push s':>23s}")
        for name, pushed, unchanged, pulled in workdirs:
            rate = args.checkpoint_mb / pushed
            print(f"{name:16s} {rate:10.1f} {unchanged:12.2f} "
                  f"{args.checkpoint_mb / pulled:10.1f} {EMLP_CHECKPOINT_MB / rate:23.0f}")
    if training:
        local = max(training["local disk"])
        print(f"\nfull-size E-MLP (978 -> {EMLP_HIDDEN[0]:,} -> {EMLP_HIDDEN[1]:,} -> "
              f"{CODES:,}, float32) fed by its stream: {args.steps} steps after "
              f"{args.warmup} at batch {BATCH}, {train_profiles:,} profiles; best of "
              f"{args.rounds} rounds (each round's figure after it)")
        print(f"{'fed from':22s} {'profiles/s':>11s} {'x local disk':>13s}  rounds")
        for name, paces in training.items():
            print(f"{name:22s} {max(paces):11.1f} {max(paces) / local:13.2f}  "
                  + " ".join(f"{p:.1f}" for p in paces))

if __name__ == "__main__":
    main()
