"""Benchmark: genes -> normalize -> standardize -> split, out of core vs in-memory numpy.

For each profile count, simulates a ``geo-full`` GCTX (22,268 probes, probe-level
maps) and ingests it, then runs each step as its own ``streamgex`` process and
reads that process's wall time and peak RSS (``wait4``). With ``--numpy N``,
the same four rules also run in one process on the whole matrix in memory
(numpy, the package's pure chunk functions applied to everything at once,
scikit-learn's k-means fitted in memory), loading the ingested store first and
saving the three parts at the end, as an in-memory script would.

    python tools/bench_preprocess.py --samples 10000,30000 --numpy 30000
    python tools/bench_preprocess.py --samples 112634          # full GEO shape (~10 GB)
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STEPS = ("genes", "normalize", "standardize", "split")


def run_measured(command, *, output=False):
    """Run ``command`` as a child; (wall seconds, its own peak RSS bytes[, stdout])."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE if output else subprocess.DEVNULL,
                            text=True)
    text = proc.stdout.read() if output else None
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}")
    measured = (time.perf_counter() - start, usage.ru_maxrss * 1024)
    return (*measured, text) if output else measured


def streamgex(*args):
    return [sys.executable, "-m", "streamgex", *map(str, args), "--quiet"]


def out_of_core(work, raw):
    stores = work / "stores"
    commands = {
        "genes": streamgex("genes", stores / "geo.zarr", "--landmarks", raw / "map_lm.txt",
                           "--targets", raw / "map_tg.txt", "--out", stores / "genes.zarr"),
        "normalize": streamgex("normalize", stores / "genes.zarr", "--reference", "mean",
                               "--out", stores / "norm.zarr"),
        "standardize": streamgex("standardize", stores / "norm.zarr", "--out", stores / "std.zarr"),
        "split": streamgex("split", stores / "std.zarr", "--out", work / "split"),
    }
    return {step: run_measured(command) for step, command in commands.items()}


def numpy_baseline(store, raw, out):
    """The four rules on the whole matrix in memory; prints 'step seconds' lines."""
    import numpy as np
    import zarr
    from sklearn.cluster import MiniBatchKMeans

    from streamgex.preprocess.genes import collapse, plan_collapse
    from streamgex.preprocess.maps import read_map
    from streamgex.preprocess.quantile import quantile_normalize
    from streamgex.preprocess.split import assign_parts, part_order

    times = {}
    start = time.perf_counter()
    group = zarr.open_group(store, mode="r")
    x = group["expression"][:]
    probes = [str(p) for p in group["gene"][:]]
    times["load"] = time.perf_counter() - start

    start = time.perf_counter()
    rows = read_map(raw / "map_lm.txt", is_landmark=True) + read_map(raw / "map_tg.txt",
                                                                     is_landmark=False)
    plan, kept, _ = plan_collapse(rows, probes, by="probe")
    x = collapse(x, plan)
    landmarks = np.flatnonzero([r.is_landmark for r in kept])
    times["genes"] = time.perf_counter() - start

    start = time.perf_counter()
    reference = np.sort(x, axis=1).astype(np.float64).mean(axis=0)
    x = quantile_normalize(x, reference)
    times["normalize"] = time.perf_counter() - start

    start = time.perf_counter()
    x64 = x.astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0)
    del x64
    x = ((x - mean) / (std + 1e-3)).astype(np.float32)
    times["standardize"] = time.perf_counter() - start

    start = time.perf_counter()
    model = MiniBatchKMeans(n_clusters=20, random_state=0, n_init=3, batch_size=1024)
    labels = model.fit_predict(x[:, landmarks])
    parts = assign_parts(labels, train_per_cluster=4500, val_per_cluster=700, seed=0)
    pieces = [x[part_order(parts, i, 0)] for i in range(3)]
    times["split"] = time.perf_counter() - start

    start = time.perf_counter()
    root = zarr.open_group(out, mode="w")
    for name, piece in zip(("train", "val", "test"), pieces):
        array = root.create_array(name, shape=piece.shape, dtype="float32",
                                  chunks=(320, piece.shape[1]))
        array[:] = piece
    times["save"] = time.perf_counter() - start
    for step, seconds in times.items():
        print(step, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="10000,30000")
    parser.add_argument("--numpy", type=int, default=0,
                        help="also run the in-memory numpy chain at this profile count")
    parser.add_argument("--workdir", default="bench-out/preprocess")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--numpy-baseline", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.numpy_baseline:
        store, raw, out = args.numpy_baseline
        return numpy_baseline(store, Path(raw), out)

    table = []
    for count in [int(c) for c in args.samples.split(",")]:
        work = Path(args.workdir) / str(count)
        shutil.rmtree(work, ignore_errors=True)
        raw = work / "raw"
        run_measured(streamgex("simulate", "--preset", "geo-full", "--out", raw,
                               "--samples", count))
        run_measured(streamgex("ingest", raw / "geo.gctx", "--out", work / "stores" / "geo.zarr"))
        measured = out_of_core(work, raw)
        row = {"profiles": count, "ooc": measured}
        if count == args.numpy:
            _, peak, text = run_measured(
                [sys.executable, __file__, "--numpy-baseline", str(work / "stores" / "geo.zarr"),
                 str(raw), str(work / "numpy.zarr")], output=True)
            row["numpy"] = {k: float(v) for k, v in (line.split() for line in text.splitlines())}
            row["numpy_rss"] = peak
        table.append(row)
        if not args.keep:
            shutil.rmtree(work)
    _print(table)


def _print(table):
    gib = 2**30
    print(f"{'profiles':>9} {'step':>12} {'out-of-core':>12} {'peak RSS':>9}   {'numpy':>8}")
    for row in table:
        total = 0.0
        for step in STEPS:
            wall, peak = row["ooc"][step]
            total += wall
            numpy = row.get("numpy", {}).get(step)
            print(f"{row['profiles']:>9,} {step:>12} {wall:>11.1f}s {peak / gib:>8.2f}G   "
                  + (f"{numpy:>7.1f}s" if numpy is not None else ""))
        peak_all = max(p for _, p in row["ooc"].values())
        line = f"{row['profiles']:>9,} {'total':>12} {total:>11.1f}s {peak_all / gib:>8.2f}G"
        if "numpy" in row:
            n = row["numpy"]
            numpy_total = sum(n.values())
            line += (f"   {numpy_total:>7.1f}s (load {n['load']:.1f}s + steps + save "
                     f"{n['save']:.1f}s), numpy peak RSS {row['numpy_rss'] / gib:.2f}G; "
                     f"out-of-core / numpy = {total / numpy_total:.2f}")
        print(line)


if __name__ == "__main__":
    main()
