"""What the benchmarks share: the matmul-rate reference and running a phase in a child."""

import json
import os
import subprocess
import sys
import time


def run_child(script, *arguments):
    """Run ``script`` with ``arguments`` in a fresh interpreter; its last stdout line as JSON.

    Each measured phase runs in a child of a small parent, so its peak RSS is
    its own (Linux carries a forked parent's peak into the child).
    """
    out = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


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
