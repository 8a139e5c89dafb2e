"""The benchmarks' reference: the matmul rate of a model's largest layer on this machine."""

import os
import time


def matmul_gflops(precision, batch, shape):
    """GFLOP/s of ``(batch, in) @ (in, out)`` in this process, best of three rounds of 10."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    a = tf.cast(tf.random.normal((batch, shape[0])), dtype)
    b = tf.cast(tf.random.normal(shape), dtype)

    @tf.function(autograph=False)
    def matmul():
        return tf.matmul(a, b)

    matmul().numpy()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(10):
            matmul().numpy()
        best = max(best, 10 * 2 * batch * shape[0] * shape[1] / (time.perf_counter() - start) / 1e9)
    return best
