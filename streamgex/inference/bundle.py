"""``streamgex export``: a trained model in one folder that ``predict`` runs anywhere.

A bundle holds everything ``predict`` needs and nothing of the workdir::

    BUNDLE/
      manifest.json   format and version, streamgex version, model kind, gene counts,
                      the run's evaluation metrics, the training data's content
                      fingerprints, the files below with their SHA-256
      pipeline.npz    the fitted preprocessing, one entry per gene of the split in model
                      order (landmarks then targets: ``is_landmark``): ``keys``,
                      ``ensembl``, ``symbols``, ``probes`` (comma-joined), standardization
                      ``mean`` and ``std`` (z = (x - mean) / (std + 1e-3)), the
                      quantile-normalization ``reference`` and the ``landmark_reference``
                      (for landmark-only L1000 input)
      network.keras   the network as one Keras model, landmark z-scores -> target
                      z-scores (E-MLP + decoder, D-GEX's partitions side by side), or
      linear.npz      linear regression: ``weights`` (n_landmarks, n_targets) and
                      ``intercept`` (n_targets,), target = landmarks @ weights + intercept
      trust.npz       each target's Pearson r and MAE on the run's validation split
                      (``evaluation.trust``), which ``predict`` carries into its outputs;
                      absent from bundles exported before it

``network.keras`` opens with plain ``keras.models.load_model`` (custom layers:
``import streamgex.models.layers`` first); ``pipeline.npz`` with ``numpy.load``.
``formats=("savedmodel",)`` adds ``savedmodel/``: the network (the linear map
too) as a TensorFlow SavedModel whose ``serve`` signature takes landmark
z-scores ``(n, n_landmarks) float32`` and returns target z-scores, for
TensorFlow Serving, TF.js or TFLite converters (Keras's ``Model.export``).
``formats=("onnx",)`` adds ``network.onnx``: the same graph in ONNX (input
``landmarks``, output ``targets``), for onnxruntime and the runtimes beside it
(converted by tf2onnx: ``pip install 'streamgex[onnx]'``).
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__, storage
from ..atomic import atomic_path, read_json
from ..digest import sha256_of
from ..errors import StreamgexError

FORMAT = "streamgex-bundle"
#: Extra servable graphs ``export`` can add beside the bundle's own files.
EXTRA_FORMATS = ("savedmodel", "onnx")
SAVEDMODEL, ONNX = "savedmodel", "network.onnx"
ONNX_OPSET = 17
VERSION = 1
MANIFEST, PIPELINE, NETWORK, LINEAR = "manifest.json", "pipeline.npz", "network.keras", "linear.npz"
TRUST = "trust.npz"


def is_bundle(path):
    """Whether ``path`` is an export bundle folder (or the URL of one: its manifest there)."""
    if storage.is_url(str(path)):
        try:
            manifest = json.loads(storage.place(storage.join(str(path), MANIFEST)).read_all())
        except (FileNotFoundError, ValueError):
            return False
        return manifest.get("format") == FORMAT
    manifest = Path(path) / MANIFEST
    try:
        return manifest.is_file() and read_json(manifest).get("format") == FORMAT
    except ValueError:
        return False


def export(run, out, *, overwrite=False, formats=()):
    """Write the bundle of the finished ``run`` (an E-MLP, fine-tuned E-MLP, D-GEX or linear
    run) to the folder ``out``, with the extra ``formats`` (``EXTRA_FORMATS``); see the module
    doc. Returns ``out``."""
    from ..evaluation.evaluate import current_results
    from ..evaluation.trust import counts
    from ..evaluation.trust import of_run as trust_of_run
    from ..models.registry import save_keras
    from ..training.run import Run
    from .transform import landmark_reference, pipeline_state

    run = local(run)  # a run in a workdir in a bucket: its local view
    if storage.is_url(str(out)):
        return _export_to_url(run, str(out), overwrite=overwrite, formats=formats)
    out = Path(out)
    unknown = set(formats) - set(EXTRA_FORMATS)
    if unknown:
        raise StreamgexError(f"--format {', '.join(sorted(unknown))}: choose from "
                             f"{', '.join(EXTRA_FORMATS)}")
    if "onnx" in formats:
        _check_tf2onnx()
    if out.exists() and not overwrite:
        raise StreamgexError(f"{out}: exists; pass --overwrite to replace it")
    if out.exists() and not is_bundle(out):
        raise StreamgexError(f"{out}: exists and is not a streamgex bundle; streamgex replaces "
                             f"only what it made: choose another --out")
    run = Run.open(run).check_done()
    if not run.kind.infers_targets:
        raise StreamgexError(f"{run.path}: an {run.kind.title.lower()} predicts nothing from "
                             f"landmarks; export an E-MLP, D-GEX or linear run")
    state = pipeline_state(run.data)  # the network itself is loaded once, below
    trust = trust_of_run(run)  # before the network: an evaluation on val loads its own
    with atomic_path(out) as tmp:
        tmp.mkdir()
        np.savez(tmp / PIPELINE, keys=state.keys.astype(str), ensembl=state.ensembl.astype(str),
                 symbols=state.symbols.astype(str),
                 probes=np.array([",".join(p) for p in state.probes], dtype=str),
                 is_landmark=state.is_landmark, mean=state.mean, std=state.std,
                 reference=state.reference, landmark_reference=landmark_reference(state))
        network = run.kind.network(run)
        if network is None:
            from ..models.linear import Linear

            coefficients = np.load(run.best(Linear.FILE))
            np.savez(tmp / LINEAR, weights=coefficients[:-1], intercept=coefficients[-1])
            if formats:
                network = _linear_network(coefficients)
        else:
            save_keras(network, tmp / NETWORK)
        if trust is not None:
            trust.save(tmp / TRUST)
        files = sorted(p.name for p in tmp.iterdir())
        if SAVEDMODEL in formats:
            network.export(str(tmp / SAVEDMODEL), format="tf_saved_model", verbose=False)
        if "onnx" in formats:
            write_onnx(network, tmp / ONNX)
        manifest = {
            "format": FORMAT, "version": VERSION, "streamgex": __version__,
            "model": run.kind.name, "title": run.kind.title,
            "landmarks": int(state.is_landmark.sum()), "targets": int((~state.is_landmark).sum()),
            "metrics": {name: {k: v for k, v in result.items()
                               if k in ("dataset", "profiles", "mae", "correlation")}
                        for name, result in current_results(run).items()},
            "training_data": read_json(run.inputs_file).get("content"),
            "trust": None if trust is None else {
                "dataset": "val", "profiles": trust.profiles,
                "well_inferred": {str(c): n for c, n in counts(trust.pearson).items()}},
            "files": {name: sha256_of(tmp / name) for name in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def _export_to_url(run, url, *, overwrite, formats):
    """``export`` to object storage: the bundle is made in a local scratch folder, then
    uploaded with its manifest last (``storage.publish_folder``)."""
    where = storage.place(url)
    if where.exists() and not overwrite:
        raise StreamgexError(f"{url}: exists; pass --overwrite to replace it")
    if where.exists() and not is_bundle(url):
        raise StreamgexError(f"{url}: exists and is not a streamgex bundle; streamgex replaces "
                             f"only what it made: choose another --out")
    scratch = storage.scratch_for(url, ".bundle")
    shutil.rmtree(scratch, ignore_errors=True)
    export(run, scratch, formats=formats)
    storage.publish_folder(scratch, url, last=MANIFEST)
    shutil.rmtree(scratch, ignore_errors=True)
    return url


def local(path):
    """A bundle's or run's local folder: ``path`` itself; for a bundle's URL its cached copy
    (``storage.fetch_folder``); for a run in a workdir in a bucket its read-only local view
    (``mirror.view``)."""
    if storage.is_url(str(path)) and is_bundle(path):
        return storage.fetch_folder(str(path), last=MANIFEST)
    if storage.is_url(str(path)):
        from .. import mirror

        return mirror.view(str(path))
    return path


@dataclass
class BundlePredictor:
    """A bundle's model as ``evaluation.predictor.Predictor`` is used by ``predict``."""

    kind: object
    path: Path
    inputs: np.ndarray
    targets: np.ndarray
    predict: object
    trust: object = None

    def in_pieces(self):
        """One piece: a bundle's network is one model (``Predictor.in_pieces``)."""
        return [(0, len(self.targets), lambda: self.predict)]


def load(path):
    """``(predictor, pipeline state)`` of a bundle; an error naming a missing or altered file."""
    from ..evaluation.trust import Trust
    from ..models import registry
    from .transform import PipelineState

    path = Path(path)
    manifest = read_json(path / MANIFEST)
    if manifest.get("version", 0) > VERSION:
        raise StreamgexError(f"{path}: a bundle of format version {manifest['version']} (made by "
                             f"streamgex {manifest.get('streamgex')}); this streamgex reads "
                             f"version {VERSION}: upgrade it")
    for name, digest in manifest["files"].items():
        if not (path / name).is_file() or sha256_of(path / name) != digest:
            raise StreamgexError(f"{path / name}: missing or altered since export (its SHA-256 "
                                 f"differs from the manifest's); export the run again")
    with np.load(path / PIPELINE) as saved:
        state = PipelineState(
            keys=saved["keys"], ensembl=saved["ensembl"], symbols=saved["symbols"],
            probes=[tuple(p.split(",")) if p else () for p in saved["probes"].tolist()],
            is_landmark=saved["is_landmark"].astype(bool), mean=saved["mean"], std=saved["std"],
            reference=saved["reference"], train=None,
            landmark_reference_=saved["landmark_reference"])
    if (path / LINEAR).exists():
        with np.load(path / LINEAR) as linear:
            weights, intercept = linear["weights"], linear["intercept"]

        def predict(x):
            return (np.asarray(x, dtype=np.float64) @ weights + intercept).astype(np.float32)
    else:
        from ..evaluation.predictor import load_keras, side_by_side

        predict = side_by_side([load_keras(path / NETWORK)])
    try:
        kind = registry.get(manifest["model"])
    except KeyError:
        raise StreamgexError(f"{path}: a bundle of model kind {manifest['model']!r}, which this "
                             f"streamgex does not have") from None
    mask = state.is_landmark
    trust = Trust.load(path / TRUST) if (path / TRUST).exists() else None
    return BundlePredictor(kind, path, state.keys[mask], state.keys[~mask], predict,
                           trust), state


def _check_tf2onnx():
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:
        raise StreamgexError("--format onnx needs tf2onnx, an optional extra: "
                             "pip install 'streamgex[onnx]'")


def write_onnx(network, path):
    """``network`` (landmark z-scores -> target z-scores) as an ONNX file: one input
    ``landmarks`` ``(n, n_landmarks) float32``, one output ``targets``."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, network.inputs[0].shape[-1]), tf.float32, name="landmarks"),)

    @tf.function(input_signature=spec)
    def serve(landmarks):
        return {"targets": network(landmarks, training=False)}

    tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET,
                                  output_path=str(path))


def _linear_network(coefficients):
    """The linear solution as a Keras model (only for the servable formats)."""
    import keras

    landmarks = keras.Input((coefficients.shape[0] - 1,), name="landmarks")
    dense = keras.layers.Dense(coefficients.shape[1], name="targets")
    model = keras.Model(landmarks, dense(landmarks), name="linear")
    dense.set_weights([coefficients[:-1].astype(np.float32), coefficients[-1].astype(np.float32)])
    return model


