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

from .. import store
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
    model_path = run.best(run.kind.ENCODER)
    encoder = keras.saving.load_model(model_path)
    sources = {part: Path(data) / part for part in PARTS}
    sources.update({name: Path(path) for name, path in (extra or {}).items()})
    outputs = {}
    for name, source in sources.items():
        outputs[name] = _encode_store(encoder, source, Path(out) / name, run, model_path)
    return outputs


def _encode_store(encoder, source, out, run, model_path):
    ds = store.open_store(source)
    _, targets = split_columns(source)
    width = encoder.output_shape[-1]
    origin = {"store": str(source.resolve()), "fingerprint": fingerprint(source),
              "run": str(run.path.resolve()),
              "encoder": str(model_path.resolve()),
              "encoder_mtime_ns": model_path.stat().st_mtime_ns,
              # what the codes folder's readers follow: a workdir moved whole still works
              "relative": {"run": relative(run.path, out.parent)}}
    group = store.begin(out, step="encode", parameters={}, source=origin, overwrite=True)
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
