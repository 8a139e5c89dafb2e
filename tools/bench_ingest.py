"""Benchmark: ingest a geo-full-shaped GCTX and print wall time, throughput and peak RSS.

For each profile count, simulates a ``geo-full`` GCTX (22,268 probes) of that
many profiles, then runs ``streamgex ingest`` on it in a fresh process and
reads that process's own peak RSS from the kernel (``wait4``). Memory must not
grow with the profile count: a column compares each peak with the smallest
run's. Both steps run as child processes of this small script, because Linux
carries a parent's peak RSS into a child it forks.

    python tools/bench_ingest.py                      # 10,000 and 30,000 profiles
    python tools/bench_ingest.py --samples 112634     # the real GEO shape (~10 GB)
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_measured(command):
    """Run ``command``; return (wall seconds, peak RSS in bytes) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return wall, usage.ru_maxrss * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="10000,30000", help="comma-separated profile counts")
    parser.add_argument("--workdir", default="bench-out/ingest")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    rows = []
    for count in [int(c) for c in args.samples.split(",")]:
        raw, store = workdir / f"raw-{count}", workdir / f"geo-{count}.zarr"
        simulated, _ = run_measured(
            [sys.executable, "-m", "streamgex", "simulate", "--preset", "geo-full", "--out",
             str(raw), "--samples", str(count), "--overwrite", "--quiet"]
        )
        shutil.rmtree(store, ignore_errors=True)
        wall, peak = run_measured(
            [sys.executable, "-m", "streamgex", "ingest", str(raw / "geo.gctx"), "--out",
             str(store), "--quiet"]
        )
        raw_bytes = count * 22_268 * 4
        stored = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        rows.append((count, simulated, wall, raw_bytes / wall / 1e6, peak, raw_bytes / stored))
        if not args.keep:
            shutil.rmtree(raw)
            shutil.rmtree(store)
    base = rows[0][4]
    print(f"{'profiles':>9} {'genes':>6} {'float32':>9} {'simulate':>9} {'ingest':>8} "
          f"{'MB/s':>7} {'peak RSS':>9} {'RSS/first':>9} {'ratio':>6}")
    for count, simulated, wall, rate, peak, ratio in rows:
        print(f"{count:>9,} {22_268:>6,} {count * 22_268 * 4 / 2**30:>7.2f}GB {simulated:>8.1f}s "
              f"{wall:>7.1f}s {rate:>7.0f} {peak / 2**20:>7.0f}MB {peak / base:>9.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
