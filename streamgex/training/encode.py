"""``streamgex encode``: the targets of every profile through a trained encoder (paper 3.1).

"The encoded target expressions were written onto disk for training the
prediction networks": each split part (and any other store with the same
genes, such as 1000G) becomes a codes store with the same samples in the same
order and chunking, so an E-MLP stream reads landmarks and codes row-aligned.
Chunk by chunk, resumable like every store.
"""

from pathlib import Path

import numpy as np
import zarr

from .. import digest, store
from ..steps import fingerprint
from ..errors import StreamgexError
from ..paths import relative
from .run import Run
from .train import split_columns

PARTS = ("train", "val", "test")


def encode(autoencoder_run, data, out, *, extra=None):
    """Write codes stores ``out/train``, ``out/val``, ``out/test`` (+ ``extra`` name -> store).

    Each records the autoencoder run it came from (``source.run``), so an
    E-MLP trained on the codes finds its decoder.
    """
    import keras

    run = Run.open(autoencoder_run)
    if run.kind.infers_targets or not run.is_done():
        raise StreamgexError(f"{run.path}: not a finished autoencoder run; run `streamgex train "
                             f"autoencoder` first")
    encoder = keras.saving.load_model(run.best(run.kind.ENCODER))
    sources = {part: Path(data) / part for part in PARTS}
    sources.update({name: Path(path) for name, path in (extra or {}).items()})
    outputs = {}
    for name, source in sources.items():
        outputs[name] = _encode_store(encoder, source, Path(out) / name, run)
    return outputs


def identity(run, source, out):
    """The step, parameters and source the codes store ``out`` of ``source`` records
    (``store.begin``): the input's content and the encoder's (by SHA-256, so a copied
    workdir's codes stay current and a retrained autoencoder's are redone)."""
    run = Run(run) if not isinstance(run, Run) else run
    model_path = run.best(run.kind.ENCODER)
    return {"step": "encode", "parameters": {}, "source": {
        "store": str(Path(source).resolve()), "fingerprint": fingerprint(source),
        "run": str(run.path.resolve()), "encoder": str(model_path.resolve()),
        "encoder_sha256": digest.sha256(model_path, remember=True),
        # what the codes folder's readers follow: a workdir moved whole still works
        "relative": {"run": relative(run.path, Path(out).parent)}}}


def status(autoencoder_run, data, out):
    """``(state, detail)`` of the codes folder ``out`` by ``encode``'s own rule (the parts of
    the split ``data``; ``store.status``)."""
    run = Run(autoencoder_run)
    if not run.is_done():
        states = [store.status(Path(out) / part)[0] for part in PARTS]
        return ("to do" if all(s == "to do" for s in states) else "stale"), \
            "its autoencoder is not trained yet"
    states = [store.status(Path(out) / part, identity(run, Path(data) / part, Path(out) / part))
              for part in PARTS]
    for wanted in ("stale", "partial"):
        found = [detail for state, detail in states if state == wanted]
        if found:
            return wanted, found[0]
    return ("done", "") if all(s == "done" for s, _ in states) else ("to do", "")


def _encode_store(encoder, source, out, run):
    ds = store.open_store(source)
    _, targets = split_columns(source)
    width = encoder.output_shape[-1]
    group = store.begin(out, **identity(run, source, out), overwrite=True)
    if group is None:
        return out
    array = zarr.open_group(source, mode="r")[store.EXPRESSION]
    if "chunks_done" not in store.state(group)["progress"]:
        store.start_writing(
            group, samples=ds.sample.values,
            genes=np.array([f"code{i}" for i in range(width)], dtype=object),
            chunk_samples=array.chunks[0],
        )

    def read(start, stop):
        return np.asarray(encoder(array[start:stop][:, targets], training=False),
                          dtype=np.float32)

    store.write_chunks(group, read, desc=f"encode {out.name}")
    store.finish(group, attrs={"units": "autoencoder codes"})
    return out
