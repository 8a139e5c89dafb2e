"""Atomic checkpoints of a model, its optimizer and the loop's state.

A checkpoint is a folder ``ckpt-<global step>`` holding ``variables.npz``
(every model variable, the dropout seed generators included, and every
optimizer variable: momentum slots, iteration, learning rate) and
``state.json`` (epoch, step in the epoch, schedule, best so far). It is
written under a temporary name and renamed, so a kill at any moment leaves
either the previous checkpoint or the new one, never half of one. The newest
two are kept: when the newest cannot be read (a damaged disk, a file cut
short outside streamgex), resuming falls back to the one before, with a
warning.
"""

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, is_partial, read_json, write_json
from ..errors import StreamgexError

KEEP = 2

log = logging.getLogger(__name__)

#: What reading a damaged checkpoint raises: a cut-short or altered ``variables.npz`` (zip
#: directory, CRC-32), a broken ``state.json``, a missing file.
DAMAGED = (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, KeyError)


def _variables(model, optimizer):
    # Keyed by position, not by Keras path: paths carry process-wide name
    # counters ("seed_generator_3"), which differ between the run that saved
    # and the process that resumes after building other models first.
    named = {f"model/{i:05d}": v for i, v in enumerate(model.variables)}
    named.update({f"optimizer/{i:05d}": v for i, v in enumerate(optimizer.variables)})
    return named


def as_array(variable):
    """A Keras variable's values as numpy: a read-only view of TensorFlow's own buffer
    (``numpy()`` copies it: 0.6 GiB for the full autoencoder's largest kernel)."""
    import tensorflow as tf

    return np.asarray(tf.convert_to_tensor(variable.value))


def _finite(array, rows=4096):
    """Whether every value of ``array`` is finite, checked a block of rows at a time."""
    flat = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
    return all(np.isfinite(flat[i:i + rows]).all() for i in range(0, len(flat), rows))


def _write_variables(file, named, folder):
    """``np.savez``'s format, one variable at a time, each written from TensorFlow's own
    buffer (``as_array``): converting them all first held a copy of every weight and
    momentum slot at once (3 GB more for the full autoencoder)."""
    with zipfile.ZipFile(file, "w", allowZip64=True) as archive:
        for name, variable in named.items():
            array = as_array(variable)
            if name.startswith("model/") and array.dtype.kind == "f" and not _finite(array):
                # a checkpoint must be a state worth resuming from
                raise StreamgexError(f"{folder.parent}: training diverged, the weights became NaN "
                                     f"or infinite; no checkpoint written. Lower learning_rate "
                                     f"and retrain with --restart")
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def save(folder, model, optimizer, state, *, keep=KEEP):
    """Write a checkpoint for ``state["global_step"]`` into ``folder``; keep the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("ckpt-*.partial"):  # what a kill left half-written or half-removed
        shutil.rmtree(leftover, ignore_errors=True)
    final = folder / f"ckpt-{state['global_step']:012d}"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        with open(tmp / "variables.npz", "wb") as f:
            _write_variables(f, _variables(model, optimizer), folder)
            f.flush()
            os.fsync(f.fileno())
        write_json(tmp / "state.json", state)
    for old in sorted(p for p in folder.glob("ckpt-*") if not is_partial(p))[:-keep]:
        # renamed first: a kill inside the removal leaves a partial name, not a broken checkpoint
        doomed = old.with_name(f"{old.name}.old.partial")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def candidates(folder):
    """The complete checkpoint folders, newest first."""
    found = sorted(p for p in Path(folder).glob("ckpt-*") if not is_partial(p)) \
        if Path(folder).exists() else []
    return found[::-1]


def latest(folder):
    """The newest complete checkpoint folder, or None."""
    found = candidates(folder)
    return found[0] if found else None


def restore_newest(folder, model, optimizer):
    """Restore the newest checkpoint that reads back whole; returns ``(path, state)`` or
    ``(None, None)`` when there is none. A damaged one is skipped with a warning and removed
    once an older one has been restored; an error when every one is damaged."""
    found = candidates(folder)
    for path in found:
        try:
            state = restore(path, model, optimizer)
        except DAMAGED as exc:
            log.warning("%s: cannot be read (%s: %s); falling back to the checkpoint before it",
                        path, type(exc).__name__, exc)
            continue
        for damaged in found[:found.index(path)]:  # else they would stay "newest" for good
            shutil.rmtree(damaged, ignore_errors=True)
        return path, state
    if found:
        raise StreamgexError(f"{folder}: no checkpoint can be read back; retrain with --restart")
    return None, None


def newest_state(folder):
    """The loop state of the newest checkpoint whose ``state.json`` reads back, or None."""
    for path in candidates(folder):
        try:
            return read_state(path)
        except DAMAGED:
            continue
    return None


def restore(path, model, optimizer):
    """Load a checkpoint into ``model`` and ``optimizer``; returns its state dict."""
    path = Path(path)
    optimizer.build(model.trainable_variables)
    named = _variables(model, optimizer)
    with np.load(path / "variables.npz") as arrays:
        missing = sorted(set(named) - set(arrays.files))
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {missing[:3]}; was the model changed?")
        for name, variable in named.items():
            array = arrays[name]  # read from the file at each indexing: once
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(f"{path}: {name} ({variable.path}) has shape "
                                 f"{array.shape}, the model {tuple(variable.shape)}")
            variable.assign(array)
            del array
    return read_state(path)


def read_state(path):
    """The loop state saved with the checkpoint folder ``path``."""
    return read_json(Path(path) / "state.json")
