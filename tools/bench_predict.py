"""Benchmark: ``streamgex predict`` with a full-size network on a large landmark file.

Builds, under --workdir, what a finished full-size experiment leaves behind —
a split whose genes are 978 landmarks + 21,290 targets (a few profiles; only
its coordinates, statistics and quantile reference matter), an autoencoder
run (8000-2000-8000, ~373M parameters; its encoder and decoder) and an E-MLP
run (978-11,850-11,826-2,000, ~175M parameters), random weights, or with
``--model dgex`` a D-GEX run of five 978-9000-9000-9000-4,258 partitions
(~1,045M parameters, as the paper's) — and an L1000-like GCTX holding raw values of the 978 landmark probes only. Then, in a
fresh process, times ``predict`` (landmark-only quantile normalization,
standardization, E-MLP, decoder, Zarr output) and prints its streaming rate
(after the one-off model loading, which it reports apart) in profiles/s, achieved
GFLOP/s (2 FLOPs per weight per profile), the matmul rate of the largest layer
at the batch predict runs (the higher of a fresh process's and the predicting
process's after it predicted), their ratio (target: at least
0.80) and the process's peak RSS.

    python tools/bench_predict.py                       # 20,000 profiles
    python tools/bench_predict.py --profiles 100000
    python tools/bench_predict.py --model dgex
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _bench import matmul_gflops, run_child

LANDMARKS, TARGETS = 978, 21_290
EMLP, AUTOENCODER = (11_850, 11_826), (8000, 2000, 8000)
DGEX_HIDDEN, DGEX_PARTITIONS = (9000, 9000, 9000), 5
#: Each model's largest layer: the decoder's output layer; a D-GEX hidden layer.
LARGEST = {"emlp": (AUTOENCODER[2], TARGETS), "dgex": (9000, 9000)}


def weights(model):
    """The model's weights (its matmuls do 2 FLOPs per weight per profile)."""
    if model == "emlp":
        widths = [(LANDMARKS, *EMLP, AUTOENCODER[1]), (AUTOENCODER[1], AUTOENCODER[2], TARGETS)]
    else:
        widths = [(LANDMARKS, *DGEX_HIDDEN, TARGETS // DGEX_PARTITIONS)] * DGEX_PARTITIONS
    return sum(a * b for w in widths for a, b in zip(w, w[1:]))


def make_fixture(workdir, profiles, model):
    """The stores, runs and GCTX described in the module doc (skipped when present)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from streamgex import store
    from streamgex.models.autoencoder import build_autoencoder, export_coders
    from streamgex.models.dgex import build_dgex, partitions
    from streamgex.models.emlp import build_emlp
    from streamgex.models import registry
    from streamgex.preprocess.quantile import QuantileNormalize
    from streamgex.preprocess.standardize import Standardize
    from streamgex.steps import save_vector
    from streamgex.training.run import Run

    done = workdir / "fixture.json"
    if done.exists() and json.loads(done.read_text()) == {"profiles": profiles, "model": model}:
        return
    rng = np.random.default_rng(0)
    genes = LANDMARKS + TARGETS
    keys = np.array([f"ENSG{i:011d}" for i in range(genes)], dtype=object)
    probes = np.array([f"{200000 + i}_at" for i in range(genes)], dtype=object)

    def write(path, values, step, source, extra=None, vectors=None, fitted=()):
        group = store.begin(path, step=step, parameters={}, source=source, overwrite=True)
        if group is None:  # made by an earlier run of this benchmark
            return
        coords = {"is_landmark": ("gene", np.arange(genes) < LANDMARKS),
                  "gene_ensembl": ("gene", keys), "gene_symbol": ("gene", keys),
                  "gene_probes": ("gene", probes)}
        coords.update(extra or {})
        store.start_writing(group, samples=np.array([f"S{i}" for i in range(len(values))],
                                                    dtype=object),
                            genes=keys if values.shape[1] == genes else
                            np.array([f"code{i}" for i in range(values.shape[1])], dtype=object),
                            coords=coords if values.shape[1] == genes else None,
                            chunk_samples=64)
        store.write_chunks(group, lambda a, b: values[a:b], desc="")
        for name, vector in (vectors or {}).items():
            save_vector(group, name, vector, "rank")
        for step in fitted:
            step.save(group)
        store.finish(group)

    sample = (rng.standard_normal((64, genes)) + 8).astype(np.float32)
    norm = workdir / "data" / "norm.zarr"
    write(norm, sample, "normalize", {},
          vectors={"reference": np.sort(sample.astype(np.float64), axis=1).mean(0)})
    mean, std = sample.mean(0).astype(np.float64), sample.std(0).astype(np.float64)
    split = workdir / "data" / "split"
    normalizer, statistics = QuantileNormalize(), Standardize()
    normalizer.reference_ = np.sort(sample.astype(np.float64), axis=1).mean(0)
    statistics.mean_, statistics.std_ = mean, std
    write(split / "train", (sample - mean) / (std + 1e-3), "split",
          {"store": str(norm.resolve())},
          {"gene_mean": ("gene", mean), "gene_std": ("gene", std)},
          fitted=(normalizer, statistics))

    if model == "dgex":
        dgex = registry.get("dgex")
        run = Run.create(workdir / "runs" / "dgex", dgex,
                         dgex.Options(partitions=DGEX_PARTITIONS), data=split, restart=True)
        run.best_dir.mkdir(exist_ok=True)
        for index, (start, stop) in enumerate(partitions(TARGETS, DGEX_PARTITIONS)):
            registry.save_keras(build_dgex(LANDMARKS, stop - start, DGEX_HIDDEN, seed=index),
                                run.best(dgex.file(index)))
            run.network_dir(index).mkdir(exist_ok=True)
            run.mark_done(index)
        write_gctx(workdir / "l1000.gctx", probes[:LANDMARKS], profiles, rng)
        done.write_text(json.dumps({"profiles": profiles, "model": model}))
        return
    autoencoder, emlp = registry.get("autoencoder"), registry.get("emlp")
    ae_run = Run.create(workdir / "runs" / "autoencoder", autoencoder,
                        autoencoder.Options(hidden=AUTOENCODER), data=split)
    _, encoder, decoder = build_autoencoder(TARGETS, list(AUTOENCODER))
    ae_run.best_dir.mkdir(exist_ok=True)
    export_coders(encoder, decoder, ae_run.best(autoencoder.ENCODER),
                  ae_run.best(autoencoder.DECODER))
    ae_run.mark_done()
    codes = workdir / "runs" / "codes"
    write(codes / "train", np.zeros((64, AUTOENCODER[1]), np.float32), "encode",
          {"run": str(ae_run.path.resolve())})
    emlp_run = Run.create(workdir / "runs" / "emlp", emlp, emlp.Options(), data=split,
                          codes=codes)
    emlp_run.best_dir.mkdir(exist_ok=True)
    registry.save_keras(build_emlp(LANDMARKS, AUTOENCODER[1], EMLP), emlp_run.best(emlp.FILE))
    emlp_run.mark_done()

    write_gctx(workdir / "l1000.gctx", probes[:LANDMARKS], profiles, rng)
    done.write_text(json.dumps({"profiles": profiles, "model": model}))


def write_gctx(path, probes, profiles, rng):
    """An L1000-like GCTX: raw values of the landmark probes only."""
    import h5py

    from streamgex.formats.gctx import create_gctx

    with h5py.File(path, "w") as f:
        matrix = create_gctx(f, sample_ids=[f"L1000_{i}" for i in range(profiles)],
                             gene_ids=probes)
        for start in range(0, profiles, 10_000):
            rows = min(10_000, profiles - start)
            matrix[start:start + rows] = (rng.standard_normal((rows, len(probes))) * 2 + 8)


def run_one(workdir, model):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import shutil

    from streamgex.evaluation.predictor import BATCH
    from streamgex.inference.predict import predict
    from streamgex.store import default_chunk_samples

    chunk = default_chunk_samples(TARGETS)
    batch = max(1, BATCH // chunk) * chunk  # the rows predict passes through the model at once
    out = workdir / "predicted.zarr"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    predict(workdir / "runs" / model, workdir / "l1000.gctx", out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import zarr

    streamed = zarr.open_group(out, mode="r").attrs["predict"]["streamed"]
    matmul_rate = matmul_gflops("float32", batch, LARGEST[model])
    print(json.dumps({"profiles": streamed["profiles"], "seconds": seconds,
                      "streaming": streamed["seconds"], "weights": weights(model),
                      "batch": batch, "matmul_gflops": matmul_rate, "peak_rss": peak}))


def run_matmul(model):
    from streamgex.evaluation.predictor import BATCH
    from streamgex.store import default_chunk_samples

    chunk = default_chunk_samples(TARGETS)
    print(json.dumps({"matmul_gflops": matmul_gflops("float32", max(1, BATCH // chunk) * chunk,
                                                     LARGEST[model])}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--workdir", default="bench-out/predict")
    parser.add_argument("--model", choices=sorted(LARGEST), default="emlp")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.make:
        return make_fixture(workdir, args.profiles, args.model)
    if args.one:
        return run_one(workdir, args.model)
    if args.matmul:
        return run_matmul(args.model)
    workdir.mkdir(parents=True, exist_ok=True)
    # Each phase in a child of this small parent, so the timed run's peak RSS is its own.
    model = ["--model", args.model]
    subprocess.run([sys.executable, __file__, "--make", "--profiles", str(args.profiles),
                    "--workdir", str(workdir), *model], check=True)
    fresh = run_child(__file__, "--matmul", *model)["matmul_gflops"]
    r = run_child(__file__, "--one", "--workdir", str(workdir), *model)
    # The matmul rate of a fresh process and of the predicting process after it
    # predicted: the higher one is the reference, so the ratio is not flattered.
    reference = max(fresh, r["matmul_gflops"])
    rate = r["profiles"] / r["streaming"]
    gflops = rate * 2 * r["weights"] / 1e9
    title = {"emlp": "E-MLP + decoder", "dgex": f"D-GEX, {DGEX_PARTITIONS} partitions"}
    print(f"predict, {title[args.model]} ({r['weights'] / 1e6:.0f}M weights), {r['profiles']:,} "
          f"landmark profiles from GCTX to Zarr, batch {r['batch']}:")
    lazily = " (D-GEX's partitions load at the first block: in the streaming time)" \
        if args.model == "dgex" else ""
    print(f"  {r['seconds']:.1f} s in all ({r['seconds'] - r['streaming']:.1f} s loading the "
          f"models and the pipeline's state, once{lazily}); streaming {rate:,.0f} profiles/s, "
          f"{gflops:.1f} GFLOP/s")
    print(f"  matmul of the largest layer {reference:.1f} GFLOP/s (fresh process {fresh:.1f}, "
          f"after predicting {r['matmul_gflops']:.1f}); ratio {gflops / reference:.2f}; "
          f"peak RSS {r['peak_rss'] / 2**30:.2f} GB")

if __name__ == "__main__":
    main()
