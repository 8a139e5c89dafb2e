"""Which allocator TensorFlow takes its CPU tensors from, per process.

Two choices, made before TensorFlow is imported, each unless the environment
already says otherwise:

- ``for_training()``: TensorFlow's best-fit arena (BFC). malloc maps each
  kernel gradient afresh every step: the full E-MLP trained at 89 samples/s
  with it and 112 with BFC on an AVX2 CPU (``tools/bench_train.py``); the
  arena keeps the process's peak for good, so a process that trains does only
  that (``streamgex train``, and each model of ``streamgex run`` in a process
  of its own: ``isolate``).
- ``for_everything_else()``: malloc, which gives memory back when a stage is
  done with it. TensorFlow turns oneDNN on by itself on CPUs with AVX512_VNNI,
  AVX512_BF16 or AMX, and oneDNN brings an arena of its own for every tensor
  of 4 KiB or more (``MklCPUAllocator``); ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR``
  sends those to malloc too. Without it, on such a CPU, every process had an
  arena that never shrank, whatever it did (measured: a 650 MiB variable from
  ``tf.random.normal`` left RSS 2,083 MiB higher with oneDNN's arena, 656 with
  malloc).
"""

import os

TRAINING = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
EVERYTHING_ELSE = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}


def for_training():
    """The environment a training process needs: ``TRAINING`` where this one does not say."""
    return {key: os.environ.get(key, value) for key, value in TRAINING.items()}


def use_for_training():
    """Set ``for_training()`` in this process; before TensorFlow allocates."""
    os.environ.update(for_training())


def use_for_everything_else():
    """malloc for every tensor in this process, oneDNN's too; before TensorFlow allocates."""
    for key, value in EVERYTHING_ELSE.items():
        os.environ.setdefault(key, value)
