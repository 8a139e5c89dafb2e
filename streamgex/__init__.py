"""streamgex: out-of-core streaming training for gene expression inference.

The data travel through the package in the order of its folders: ``formats``
read raw files, ``ingest`` turns them into chunked Zarr ``store``s, and later
stages read those stores. ``simulate`` writes realistic raw files for trying
the whole pipeline without the real datasets.
"""

import os

__version__ = "0.1.0"

# TensorFlow's CPU tensors come from malloc by default, and glibc maps every
# block over 32 MB afresh: a 560 MB kernel gradient is 137,000 page faults of
# zeroed memory, every step. Its best-fit allocator (BFC) keeps freed blocks
# for the next step instead: the full E-MLP trained at 112 instead of 89
# samples/s, the full autoencoder at 64 instead of 51 (``tools/bench_train.py``,
# batch 200), peaks 0.14 and 0.05 GiB higher (the arena's fragmentation). Set before TensorFlow makes its allocator, so here;
# ``TF_CPU_ALLOCATOR_USE_BFC=false`` in the environment keeps malloc.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
