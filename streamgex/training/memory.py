"""Will a training run fit in memory? An estimate made before the first step.

For a dense network, memory is dominated by per-parameter state: float32
weights and the optimizer's slots (momentum SGD: one; Adam's two moments:
two), kept for the whole run, plus one step's gradients (all of them for an
optimizer's own ``apply``; only the largest variable's for the fused momentum
update, which applies each gradient as it comes: ``loop.make_train_step``),
and a bfloat16 copy of the weights under mixed precision;
then the activations of one batch (kept for the backward pass, about four
values per unit: pre-activation, activation, dropout mask, gradient), the
stream's two windows of chunks, and the TensorFlow runtime with its compiled
steps.

Measured (``tools/bench_train.py``, batch 200, streamed from Zarr): the full
untied autoencoder (373M parameters) peaked at 4.89 GiB, estimated 4.98; the
E-MLP (175M) at 2.97 GiB, estimated 3.26. oneDNN's working copies of the
kernels, once counted here as three times the largest kernel, did not show in
any measured peak.
"""

import math
import os
import re

from ..errors import StreamgexError

#: TensorFlow, Keras, Dask and xarray imported (0.62 GiB), compiled steps, allocator slack
#: (0.25 GiB more than malloc's with TF_CPU_ALLOCATOR_USE_BFC=true).
RUNTIME = int(1.25 * 2**30)
UNITS = {"": 1, "B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


def parse_size(text):
    """``"8GB"`` -> bytes (binary units; ``KiB``-style spellings accepted)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise StreamgexError(f"memory budget {text!r}: expected a size such as 8GB or 512MB")
    number, unit = match.groups()
    return int(float(number) * UNITS[(unit.upper() + "B") if unit else ""])


def machine_budget():
    """Default budget: 80% of the machine's physical memory."""
    return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimate(model, *, batch, stream_bytes, precision, slots=1, each_gradient=False):
    """Bytes a training run of ``model`` needs, with its parts, as a dict; ``slots``: the
    optimizer's float32 values per parameter (momentum 1, Adam 2); ``each_gradient``:
    whether the update applies each gradient as it comes (the fused momentum update)."""
    sizes = [math.prod(v.shape) for v in model.trainable_variables]
    parameters = sum(sizes)
    gradients = 4 * (max(sizes, default=0) if each_gradient else parameters)
    units = sum(int(layer.output.shape[-1]) for layer in model.layers[1:]
                if hasattr(layer, "output") and layer.output is not None)
    half = precision in ("bf16", "float16")  # 16-bit activations and a copy of the weights
    activation_bytes = 2 if half else 4
    parts = {
        "parameters": parameters,
        "weights, gradients, optimizer":
            parameters * (4 + 4 * slots + (2 if half else 0)) + gradients,
        "activations": batch * units * activation_bytes * 4,
        "stream buffers": stream_bytes,
        "runtime": RUNTIME,
    }
    parts["total"] = sum(v for k, v in parts.items() if k != "parameters")
    return parts


def check(parts, budget, *, what, batch):
    """Refuse a run whose estimate exceeds ``budget``, saying what would fit: the batch that
    would, or, where the parameters and their state alone exceed it, what shrinks those."""
    if parts["total"] <= budget:
        return
    gib = 2**30
    needs = (f"{what} needs about {parts['total'] / gib:.1f} GiB ({parts['parameters'] / 1e6:.0f}M "
             f"parameters: {parts['weights, gradients, optimizer'] / gib:.1f} GiB of weights, "
             f"gradients and optimizer state; {parts['activations'] / gib:.1f} GiB of "
             f"activations at batch {batch}) but the budget is {budget / gib:.1f} GiB")
    room = budget - (parts["total"] - parts["activations"])
    fits = int(batch * room / parts["activations"]) if parts["activations"] else 0
    if fits >= 1:
        advice = (f"a batch of {fits} would fit (--set batch={fits}); bf16 (--precision bf16) "
                  f"halves the activations; or smaller hidden layers, or a larger "
                  f"--memory-budget if the machine has more")
    else:
        advice = ("the parameters and their state alone do not fit, whatever the batch or "
                  "precision (bf16 keeps float32 weights): tied weights (--set tied=true, "
                  "autoencoder: the decoder reuses the encoder's kernels, half the parameters), "
                  "smaller hidden layers (--set hidden=...), or a larger --memory-budget if "
                  "the machine has more")
    raise StreamgexError(f"{needs}; {advice}")
