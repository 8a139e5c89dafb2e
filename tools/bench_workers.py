"""Benchmark: one model trained by one process on two threads against two worker processes
(tf.distribute's MultiWorkerMirroredStrategy on 127.0.0.1) of one thread each.

For the full-size E-MLP (175M weights: ~0.7 GB of gradients all-reduced a step) and the
full-size autoencoder (373M: ~1.5 GB), at batch 200 (the global batch: 100 rows a worker):

- ``1x2``: one process, both cores (``streamgex train``'s default);
- ``2x1``: two workers, each pinned to one core, each stepping on its half of every global
  batch with the gradients all-reduced (``training.placement``, the loop's own step);
- the all-reduce alone: the seconds per step of summing a model's gradients over the
  two workers (zeros of every variable's shape), and its share of the ``2x1`` step.

Then D-GEX's partition mode: one full-size partition (978-9000-9000-9000-4258) trained by
one process on two threads, against two such partitions trained at once by two workers of
one thread each (no all-reduce: the partitions are independent); the speed-up is their
summed pace over the one process's.

    python tools/bench_workers.py                       # E-MLP, autoencoder, D-GEX partitions
    python tools/bench_workers.py --models emlp --steps 10

Data: random standardized values in stores shaped like the real ones (``bench_train``'s),
written once under --workdir. Every figure is a ratio or pace measured in this one run.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_train import CODES, LANDMARKS, TARGETS

from streamgex import allocators
from streamgex.training.placement import local_ports

PARTITION_TARGETS = 4_258  # D-GEX's full GEO partition (21,290 / 5)


def build(model_name):
    """The full-size model, its optimizer (the paper's) and its stream's sources."""
    import numpy as np

    from streamgex.models.autoencoder import autoencoder_optimizer, build_autoencoder
    from streamgex.models.dgex import build_dgex, dgex_optimizer
    from streamgex.models.emlp import build_emlp, emlp_optimizer
    from streamgex.streams import Source

    data = WORKDIR / "expression.zarr"
    landmarks = np.arange(LANDMARKS)
    if model_name == "emlp":
        return (build_emlp(LANDMARKS, CODES, (11_850, 11_826)), emlp_optimizer(),
                (Source(data, landmarks), Source(WORKDIR / "codes.zarr")))
    if model_name == "autoencoder":
        targets = np.arange(LANDMARKS, LANDMARKS + TARGETS)
        return (build_autoencoder(TARGETS, (8000, 2000, 8000))[0], autoencoder_optimizer(),
                (Source(data, targets), Source(data, targets)))
    partition = np.arange(LANDMARKS, LANDMARKS + PARTITION_TARGETS)
    return (build_dgex(LANDMARKS, PARTITION_TARGETS, (9000, 9000, 9000)),
            dgex_optimizer(3e-4), (Source(data, landmarks), Source(data, partition)))


def worker(model_name, rank, world, ports, steps, batch, threads, together):
    """One training process: ``steps`` timed steps (after two untimed), as JSON on stdout.
    ``world`` > 1 with ``together``: one cluster (data-parallel); else alone."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from streamgex.streams import Stream
    from streamgex.training.loop import make_train_step
    from streamgex.training.placement import Placement

    addresses = tuple(f"127.0.0.1:{p}" for p in ports) if together and world > 1 else ()
    placement = Placement("cpu", addresses, rank if addresses else 0, timeout=600)
    with placement.scope():  # the optimizer's slots are built by make_train_step
        model, optimizer, sources = build(model_name)
        step = make_train_step(model, optimizer, placement=placement)
    stream = Stream(sources, batch=batch, seed=0)
    batches = stream.batches(epoch=0)

    def one():
        part, rows = placement.shard(next(batches))
        return step(*part, rows) if placement.distributed else step(*part)

    for _ in range(2):
        one().numpy()
    start = time.perf_counter()
    for _ in range(steps):
        loss = one()
    loss.numpy()
    seconds = (time.perf_counter() - start) / steps
    reduce_seconds = all_reduce_seconds(model, placement) if placement.distributed else 0.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"step_seconds": seconds, "peak_rss": peak, "samples_per_s": batch / seconds,
                      "all_reduce_seconds": reduce_seconds,
                      "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
                      "bytes_reduced": int(sum(np.prod(v.shape) * 4
                                               for v in model.trainable_variables))}))


def all_reduce_seconds(model, placement, rounds=3):
    """Seconds to sum a gradient of every variable's shape over the workers, one variable at
    a time as the fused step does (best of three)."""
    import tensorflow as tf

    strategy = placement.strategy()
    best = 0.0
    for variable in model.trainable_variables:
        zeros = tf.zeros(variable.shape, tf.float32)

        @tf.function
        def reduce():
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, zeros))

        reduce()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            tf.reduce_sum(reduce()).numpy()
            times.append(time.perf_counter() - start)
        best += min(times)
        del zeros
    return best


def launch(model_name, world, steps, batch, together):
    """``world`` workers, each pinned to its own core when more than one; their JSON."""
    ports = local_ports(world)
    cores = sorted(os.sched_getaffinity(0))
    threads = 1 if world > 1 else len(cores)
    processes = []
    for rank in range(world):
        args = [sys.executable, __file__, "--worker", model_name, str(rank), str(world),
                ",".join(map(str, ports)), str(steps), str(batch), str(threads),
                "1" if together else "0", "--workdir", str(WORKDIR)]
        pinned = {cores[rank % len(cores)]} if world > 1 else set(cores)
        processes.append(subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda pinned=pinned: os.sched_setaffinity(0, pinned)))
    found = []
    for process in processes:
        out, err = process.communicate(timeout=1800)
        if process.returncode:
            sys.exit(err[-3000:])
        found.append(json.loads(out.strip().splitlines()[-1]))
    return found


WORKDIR = Path("bench-out/workers")


def main():
    global WORKDIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="emlp,autoencoder,dgex")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--workdir", default=str(WORKDIR))
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    allocators.use_for_training()  # every child: the allocator a training process has
    WORKDIR = Path(args.workdir)
    if args.worker:
        model, rank, world, ports, steps, batch, threads, together = args.worker
        return worker(model, int(rank), int(world), [int(p) for p in ports.split(",")],
                      int(steps), int(batch), int(threads), together == "1")
    WORKDIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(Path(__file__).with_name("bench_train.py")),
                    "--make-data", str((args.steps + 4) * args.batch), "--workdir",
                    str(WORKDIR)], check=True)
    print(f"{'model':>11} {'params':>7} {'1x2 s/s':>8} {'2x1 s/s':>8} {'2x1/1x2':>8} "
          f"{'step 2x1':>9} {'all-reduce':>10} {'share':>6} {'peak 1x2':>9} {'peak 2x1':>9}")
    for model in args.models.split(","):
        if model == "dgex":
            continue
        alone = launch(model, 1, args.steps, args.batch, together=True)[0]
        pair = launch(model, 2, args.steps, args.batch, together=True)
        rate = min(r["samples_per_s"] for r in pair)  # the slower worker sets the pace
        reduce = max(r["all_reduce_seconds"] for r in pair)
        step = max(r["step_seconds"] for r in pair)
        print(f"{model:>11} {alone['parameters'] / 1e6:>6.1f}M {alone['samples_per_s']:>8.1f} "
              f"{rate:>8.1f} {rate / alone['samples_per_s']:>8.2f} {step:>8.3f}s "
              f"{reduce:>9.3f}s {reduce / step:>6.2f} {alone['peak_rss'] / 2**30:>8.2f}G "
              f"{max(r['peak_rss'] for r in pair) / 2**30:>8.2f}G")
    if "dgex" in args.models.split(","):
        alone = launch("dgex", 1, args.steps, args.batch, together=False)[0]
        pair = launch("dgex", 2, args.steps, args.batch, together=False)
        paces = [r["samples_per_s"] for r in pair]
        each = " + ".join(f"{pace:.1f}" for pace in paces)
        print(f"D-GEX partition mode ({alone['parameters'] / 1e6:.1f}M weights a partition): "
              f"one process x 2 threads {alone['samples_per_s']:.1f} profiles/s on one "
              f"partition; two workers x 1 thread, a partition each: {each} = "
              f"{sum(paces):.1f} profiles/s; speed-up {sum(paces) / alone['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
