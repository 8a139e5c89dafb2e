"""Benchmark: PCA's peak memory and time against the profile count (``streamgex pca``).

Writes, once per size under ``--workdir``, a store of simulated ``geo-full``
z-scores restricted to 21,290 genes (the targets' count; 320-profile chunks,
as the standardized store), then computes 1,000 components' explained
variance (``preprocess.pca.explained_variance``, the ``pca`` stage's work)
in a fresh process per size and prints seconds, profiles/s and peak RSS.
``--dask-svd`` measures Dask's ``svd_compressed`` (two power iterations, the
method used before) the same way, for the ratio within one run. Memory
bounded by the chunk size shows as the same peak at every size.

    python tools/bench_pca.py                                  # 2,500 and 10,000 profiles
    python tools/bench_pca.py --samples 2500,10000,20000 --dask-svd
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import run_child  # noqa: E402

GENES = 21_290
COMPONENTS = 1000


def make_store(path, profiles, seed=0):
    """``profiles`` simulated z-score profiles of ``GENES`` genes, written once."""
    from streamgex import store
    from streamgex.simulate.model import ExpressionModel, build_universe
    from streamgex.simulate.presets import get_preset

    parameters = {"profiles": profiles, "genes": GENES, "seed": seed}
    if store.matches(path, step="bench-pca", parameters=parameters, source={}):
        return
    preset = get_preset("geo-full", samples=profiles)
    model = ExpressionModel(build_universe(preset, seed), preset, seed)
    group = store.begin(path, step="bench-pca", parameters=parameters, source={},
                        overwrite=True)
    store.define_expression(group, samples=np.arange(profiles).astype(str),
                            genes=np.arange(GENES).astype(str), chunk_samples=320)
    array = group[store.EXPRESSION]
    rng = np.random.default_rng([seed, 11])
    for start in range(0, profiles, 320):
        values = (model.geo_genes(rng, min(320, profiles - start)) - model.mean) / model.sd
        array[start:start + len(values)] = values[:, :GENES]
    store.finish(group)


def measure(path, method):
    """One PCA of the store at ``path`` in this process: a JSON line on stdout."""
    import dask

    from streamgex import steps
    from streamgex.preprocess.pca import explained_variance

    _, x = steps.open_input(path)
    start = time.perf_counter()
    with steps.scheduler(None):
        if method == "streamgex":
            ratios = explained_variance(x, components=COMPONENTS)
        else:
            import dask.array as da

            x64 = x.astype(np.float64)
            mean, var = dask.compute(x64.mean(axis=0), x64.var(axis=0))
            _, s, _ = da.linalg.svd_compressed(x64 - mean, k=COMPONENTS, n_power_iter=2, seed=0)
            ratios = (s.compute() ** 2 / x.shape[0]) / var.sum()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "explained": float(ratios.sum()),
                      "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-pca"))
    parser.add_argument("--samples", default="2500,10000", help="profile counts, comma-separated")
    parser.add_argument("--dask-svd", action="store_true",
                        help="also measure dask.array.linalg.svd_compressed")
    parser.add_argument("--make", nargs=2, metavar=("STORE", "PROFILES"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("STORE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:  # in a child too: a parent's peak would pass to the measuring children
        make_store(Path(args.make[0]), int(args.make[1]))
        return print("{}")
    if args.measure:
        return measure(Path(args.measure[0]), args.measure[1])
    methods = ["streamgex"] + (["dask svd_compressed"] if args.dask_svd else [])
    print(f"{COMPONENTS} components of {GENES:,} genes, 320-profile chunks")
    print("| profiles | method | seconds | profiles/s | peak RSS | explained |")
    print("|---|---|---|---|---|---|")
    for profiles in (int(s) for s in args.samples.split(",")):
        path = args.workdir / f"x{profiles}.zarr"
        run_child(__file__, "--make", str(path), str(profiles))
        for method in methods:
            r = run_child(__file__, "--measure", str(path), method.split()[0])
            print(f"| {profiles:,} | {method} | {r['seconds']:.1f} | "
                  f"{profiles / r['seconds']:.0f} | {r['peak_gib']:.2f} GiB | "
                  f"{r['explained']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
