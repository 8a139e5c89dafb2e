"""Benchmark: full-size models trained for a fixed number of steps, fed from Zarr.

For each model and precision, in a fresh process of its own:

- the matmul rate of the model's largest layer (batch x in @ in x out, same
  precision), best of three rounds, measured in the training process after
  training (so that its operands do not count in the training's peak RSS) and
  in a fresh process just before; the ratio uses the higher of the two;
- training throughput on in-memory tensors (one batch repeated) and on
  batches streamed from Zarr stores (``streams.Stream``'s numpy batches, as
  the training loop feeds them);
- achieved GFLOP/s (6 FLOPs per weight per sample: forward, two backward
  products; 4 for the first layer, whose input needs no gradient), its ratio
  to the matmul rate, the Zarr / in-memory ratio;
- the process's peak RSS, beside the estimate ``streamgex train`` checks;
- the seconds per step of the step's memory-bound work alone (``update``: the
  momentum update of every variable, and under bf16 the kernels' casts) and the
  ``ceiling`` it leaves the ratio: matmul time / (matmul time + that time), the
  ratio a step would reach if its matmuls ran at the measured rate and nothing
  else took time but that work, run after them. A measured ratio above it means
  some of that work overlapped the matmuls (TensorFlow runs independent ops
  side by side).

Every process takes TensorFlow's CPU tensors from the allocator a training
process has (``allocators.for_training``: the best-fit arena) unless the
environment says otherwise: ``TF_CPU_ALLOCATOR_USE_BFC=false
TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` measures malloc.

    python tools/bench_train.py                                  # both models, float32 and bf16
    python tools/bench_train.py --models emlp --precisions float32 --batch 1024

Data: random standardized values in stores shaped like the real ones (978
landmarks + 21,290 targets; 2,000 codes), written once under --workdir.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _bench import matmul_gflops, run_child

from streamgex import allocators

LANDMARKS, TARGETS, CODES = 978, 21_290, 2_000


def make_data(workdir, rows):
    import numpy as np

    from streamgex import store

    for name, width in (("expression", LANDMARKS + TARGETS), ("codes", CODES)):
        path = workdir / f"{name}.zarr"
        if store.matches(path, step="bench-data", parameters={"rows": rows}, source={}):
            continue
        group = store.begin(path, step="bench-data", parameters={"rows": rows}, source={},
                            overwrite=True)
        # written where begin put it (built under its partial name, renamed by finish)
        array = store.define_expression(group, samples=np.arange(rows).astype(str),
                                        genes=np.arange(width).astype(str), chunk_samples=320)
        rng = np.random.default_rng(0)
        for start in range(0, rows, 320):
            array[start:start + 320] = rng.standard_normal((min(320, rows - start), width),
                                                           dtype=np.float32)
        store.finish(group)


def largest_layer(model_name):
    return (11_850, 11_826) if model_name == "emlp" else (TARGETS, 8000)


def run_matmul(model_name, precision, batch):
    print(json.dumps({"matmul_gflops": matmul_gflops(precision, batch, largest_layer(model_name))}))


def run_one(workdir, model_name, precision, steps, batch):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from streamgex.models.autoencoder import autoencoder_optimizer, build_autoencoder
    from streamgex.models.emlp import build_emlp, emlp_optimizer
    from streamgex.streams import Source, Stream
    from streamgex.training.loop import fusable, make_train_step
    from streamgex.training.memory import estimate

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    data = workdir / "expression.zarr"
    if model_name == "emlp":
        model = build_emlp(LANDMARKS, CODES, (11_850, 11_826))
        optimizer = emlp_optimizer()
        sources = (Source(data, np.arange(LANDMARKS)), Source(workdir / "codes.zarr"))
    else:
        model, _, _ = build_autoencoder(TARGETS, (8000, 2000, 8000))
        optimizer = autoencoder_optimizer()
        targets = np.arange(LANDMARKS, LANDMARKS + TARGETS)
        sources = (Source(data, targets), Source(data, targets))
    largest = largest_layer(model_name)
    kernels = [int(np.prod(v.shape)) for v in model.trainable_variables if len(v.shape) == 2]
    # forward and kernel gradient for every weight, input gradient past the first layer
    flops_per_sample = 6 * sum(kernels) - 2 * kernels[0]

    step = make_train_step(model, optimizer)
    stream = Stream(sources, batch=batch, seed=0)
    x, y = next(stream.batches(epoch=0))
    x, y = tf.constant(x), tf.constant(y)
    for _ in range(3):
        step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    loss.numpy()
    memory_rate = steps * batch / (time.perf_counter() - start)

    iterator = stream.batches(epoch=1)  # numpy batches, as the training loop feeds them
    step(*next(iterator)).numpy()
    start = time.perf_counter()
    done = 0
    for xb, yb in iterator:
        loss = step(xb, yb)
        done += 1
        if done == steps:
            break
    loss.numpy()
    zarr_rate = done * batch / (time.perf_counter() - start)
    parts = estimate(model, batch=batch, stream_bytes=stream.buffer_bytes(),
                     precision=precision, each_gradient=fusable(optimizer))
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # training only
    matmul_rate = matmul_gflops(precision, batch, largest)
    memory_bound = memory_bound_seconds(model, precision)
    print(json.dumps({
        "model": model_name, "precision": precision, "batch": batch,
        "parameters": int(sum(int(np.prod(v.shape)) for v in model.trainable_variables)),
        "matmul_gflops": matmul_rate, "memory_samples_per_s": memory_rate,
        "zarr_samples_per_s": zarr_rate, "gflops": zarr_rate * flops_per_sample / 1e9,
        "memory_gflops": memory_rate * flops_per_sample / 1e9,
        "estimate_bytes": parts["total"],
        "peak_rss": peak, "flops_per_step": flops_per_sample * batch,
        "memory_bound_seconds": memory_bound,
    }))


def memory_bound_seconds(model, precision):
    """Seconds per step of the step's memory-bound work alone, best of three rounds of five:
    the fused momentum update of every variable as ``make_train_step`` applies it (read
    weight, gradient and momentum, write weight and momentum: 20 bytes per float32
    parameter) and, under bf16, each kernel's cast to bfloat16 for the forward pass and its
    bfloat16 gradient's cast back. Measured after training, with a zero rate and momentum
    (the same traffic, the weights unchanged)."""
    import tensorflow as tf

    variables = model.trainable_variables
    kernels = [v for v in variables if len(v.shape) == 2]
    low = tf.bfloat16 if precision == "bf16" else tf.float32
    gradients = [tf.zeros(v.shape, low if len(v.shape) == 2 else tf.float32) for v in variables]
    slots = [tf.Variable(tf.zeros(v.shape, tf.float32)) for v in variables]
    zero = tf.constant(0.0)

    @tf.function(autograph=False)
    def memory_bound():
        casts = [tf.cast(v.value, tf.bfloat16)[0, 0] for v in kernels] if precision == "bf16" else []
        updates = [tf.raw_ops.ResourceApplyKerasMomentum(
            var=v.value.handle, accum=slot.handle, lr=zero, grad=tf.cast(g, tf.float32),
            momentum=zero, use_locking=False, use_nesterov=False)
            for v, slot, g in zip(variables, slots, gradients)]
        with tf.control_dependencies(updates):
            return tf.add_n([tf.cast(c, tf.float32) for c in casts] + [zero])

    memory_bound().numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(5):
            memory_bound().numpy()
        best = min(best, (time.perf_counter() - start) / 5)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="emlp,autoencoder")
    parser.add_argument("--precisions", default="float32,bf16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--workdir", default="bench-out/train")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--make-data", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--matmul", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    allocators.use_for_training()  # every child here: the allocator training processes have
    workdir = Path(args.workdir)
    if args.make_data:
        return make_data(workdir, args.make_data)
    if args.one:
        return run_one(workdir, *args.one, args.steps, args.batch)
    if args.matmul:
        return run_matmul(*args.matmul, args.batch)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = (args.steps + 8) * args.batch
    # Written by a child, so this small parent's RSS never counts in the runs' peaks.
    subprocess.run([sys.executable, __file__, "--make-data", str(rows), "--workdir", str(workdir)],
                   check=True)
    results = []
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            fresh = run_child(__file__, "--matmul", model, precision, "--batch", str(args.batch))
            result = run_child(__file__, "--one", model, precision, "--steps", str(args.steps),
                            "--batch", str(args.batch), "--workdir", str(workdir))
            # The matmul rate of a fresh process and of the training process after
            # training: the higher one is the reference, so the ratio is not flattered.
            result["fresh_matmul_gflops"] = fresh["matmul_gflops"]
            result["reference_gflops"] = max(fresh["matmul_gflops"], result["matmul_gflops"])
            matmuls = result["flops_per_step"] / (result["reference_gflops"] * 1e9)
            result["ceiling"] = matmuls / (matmuls + result["memory_bound_seconds"])
            results.append(result)
    gib = 2**30
    print("allocator: " + ", ".join(f"{k}={os.environ.get(k, '')}" for k in
                                    ("TF_CPU_ALLOCATOR_USE_BFC", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR")))
    print(f"{'model':>11} {'prec':>7} {'batch':>5} {'params':>7} {'zarr s/s':>9} {'mem s/s':>8} "
          f"{'GFLOP/s':>8} {'matmul':>7} {'fresh':>7} {'ratio':>6} {'update':>7} {'ceiling':>7} "
          f"{'zarr/mem':>8} {'peak RSS':>9} {'estimate':>9}")
    for r in results:
        print(f"{r['model']:>11} {r['precision']:>7} {r['batch']:>5} {r['parameters'] / 1e6:>6.1f}M "
              f"{r['zarr_samples_per_s']:>9.1f} {r['memory_samples_per_s']:>8.1f} {r['gflops']:>8.1f} "
              f"{r['matmul_gflops']:>7.1f} {r['fresh_matmul_gflops']:>7.1f} "
              f"{r['gflops'] / r['reference_gflops']:>6.2f} "
              f"{r['memory_bound_seconds']:>6.3f}s {r['ceiling']:>7.2f} "
              f"{r['zarr_samples_per_s'] / r['memory_samples_per_s']:>8.3f} "
              f"{r['peak_rss'] / gib:>8.2f}G {r['estimate_bytes'] / gib:>8.2f}G")
    by = {(r["model"], r["precision"]): r for r in results}
    for model in args.models.split(","):
        if (model, "float32") in by and (model, "bf16") in by:
            speedup = by[(model, "bf16")]["zarr_samples_per_s"] / by[(model, "float32")]["zarr_samples_per_s"]
            print(f"{model}: bf16 / float32 throughput = {speedup:.2f}")


if __name__ == "__main__":
    main()
