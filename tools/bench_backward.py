"""Benchmark: the Dense layers' gradient order (``streamgex.training.backward``).

First the products of one training step of the E-MLP's largest layer
(11,850 x 11,826 at batch 200), each as TensorFlow computes it for ``x @ W``
and in the order ``fast_backward`` makes it use, in GFLOP/s; then every
product of one step of each model at its own shapes, timed alone (the step's
matmul time: shapes other than the largest run at other rates); then full-size
training steps (``training.loop.make_train_step`` on random data) of each
model with TensorFlow's own order and with ``fast_backward``, each in a fresh
process, with the losses of both (they must agree).

    python tools/bench_backward.py                       # E-MLP and autoencoder
    python tools/bench_backward.py --models emlp --steps 6
"""

import argparse
import json
import os
import sys
import time

from _bench import run_child

BATCH = 200


def products():
    import tensorflow as tf

    n, m = 11_850, 11_826
    x, dy = tf.random.normal((BATCH, n)), tf.random.normal((BATCH, m))
    w = tf.Variable(tf.random.normal((n, m)) * 0.01)
    flops = 2 * BATCH * n * m
    cases = [
        ("forward x W (both)", lambda: tf.matmul(x, w)),
        ("forward (W^T x^T)^T (fast_backward's first version)",
         lambda: tf.transpose(tf.matmul(w, tf.transpose(x), transpose_a=True))),
        ("input gradient dY W^T (TensorFlow)", lambda: tf.matmul(dy, w, transpose_b=True)),
        ("input gradient (W dY^T)^T (fast_backward)",
         lambda: tf.transpose(tf.matmul(w, tf.transpose(dy)))),
        ("kernel gradient x^T dY (both)", lambda: tf.matmul(x, dy, transpose_a=True)),
    ]
    for name, product in cases:
        print(f"{name:<52} {flops / seconds(product) / 1e9:7.1f} GFLOP/s", flush=True)


def seconds(product):
    """Seconds per call of ``product`` compiled, best of three rounds of three."""
    import tensorflow as tf

    product = tf.function(product)
    product().numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(3):
            out = product()
        out.numpy()
        best = min(best, (time.perf_counter() - start) / 3)
    return best


#: Layer widths of the full-size models.
WIDTHS = {"emlp": (978, 11_850, 11_826, 2000), "autoencoder": (21_290, 8000, 2000, 8000, 21_290)}


def step_products(model_name):
    """Every product of one training step of the full model as ``fast_backward`` orders
    them (forward ``x W``, kernel gradient ``x^T dY``, input gradient ``(W dY^T)^T`` past the
    first layer), each timed alone: the step's matmul time at its own shapes."""
    import tensorflow as tf

    widths = WIDTHS[model_name]
    total = flops = 0.0
    for i, (n, m) in enumerate(zip(widths, widths[1:])):
        x, dy = tf.random.normal((BATCH, n)), tf.random.normal((BATCH, m))
        w = tf.Variable(tf.random.normal((n, m)) * 0.01)
        cases = [("forward", lambda: tf.matmul(x, w)),
                 ("kernel gradient", lambda: tf.matmul(x, dy, transpose_a=True))]
        if i > 0:
            cases.append(("input gradient",
                          lambda: tf.transpose(tf.matmul(w, tf.transpose(dy)))))
        for name, product in cases:
            took = seconds(product)
            total, flops = total + took, flops + 2 * BATCH * n * m
            print(f"{model_name} {n:>6} x {m:<6} {name:<16} {took * 1e3:7.1f} ms "
                  f"{2 * BATCH * n * m / took / 1e9:7.1f} GFLOP/s", flush=True)
    print(f"{model_name}: all products {total * 1e3:.0f} ms per step, "
          f"{flops / total / 1e9:.1f} GFLOP/s overall", flush=True)


def step(model_name, order, steps):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import streamgex.training.loop as loop
    from streamgex.models.autoencoder import autoencoder_optimizer, build_autoencoder
    from streamgex.models.emlp import build_emlp, emlp_optimizer

    if order == "tensorflow":
        loop.fast_backward = lambda model: 0
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if model_name == "emlp":
        model, optimizer = build_emlp(978, 2000, (11_850, 11_826), seed=0), emlp_optimizer()
        x = rng.standard_normal((BATCH, 978), dtype=np.float32)
        y = rng.standard_normal((BATCH, 2000), dtype=np.float32)
    else:
        model, optimizer = build_autoencoder(21_290, (8000, 2000, 8000))[0], autoencoder_optimizer()
        x = y = rng.standard_normal((BATCH, 21_290), dtype=np.float32)
    train_step = loop.make_train_step(model, optimizer)
    losses = [float(train_step(x, y)) for _ in range(2)]  # tracing, first steps
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(float(train_step(x, y)))
    rate = steps * BATCH / (time.perf_counter() - start)
    print(json.dumps({"samples_per_s": rate, "losses": losses}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="emlp,autoencoder")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        return step(*args.step, args.steps)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"products of one step, batch {BATCH}, {os.cpu_count()} cores:")
    products()
    for model in args.models.split(","):
        step_products(model)
    print(f"\n{'model':<12} {'TensorFlow order':>17} {'fast_backward':>14} {'speed-up':>9}  losses")
    for model in args.models.split(","):
        plain, fast = (run_child(__file__, "--step", model, order, "--steps", str(args.steps))
                       for order in ("tensorflow", "fast"))
        same = all(abs(a - b) <= 1e-5 * max(1.0, abs(a))
                   for a, b in zip(plain["losses"], fast["losses"]))
        print(f"{model:<12} {plain['samples_per_s']:>13.1f} s/s {fast['samples_per_s']:>10.1f} s/s "
              f"{fast['samples_per_s'] / plain['samples_per_s']:>8.2f}x  "
              f"{'the same' if same else 'DIFFER'}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
