"""``streamgex predict``: target genes for new landmark profiles, streaming.

Reads the input a block of profiles at a time (``profiles``), re-applies the
pipeline's normalization (``transform``), runs the run's model (E-MLP +
decoder, D-GEX or linear: ``evaluation.predictor``) and writes a store of the
predicted targets, chunk by chunk and resumable like every store. Memory is
one block of profiles and the model, whatever the input size (the
1,328,098-profile L1000 file included).

Outputs are z-scores in the pipeline's units, or with ``expression`` the
normalized expression they stand for (``z * (std + 1e-3) + mean``: log2 scale
after quantile normalization). ``gctx`` also writes a GCTX copy. Each target
carries its validation r and MAE and a well-inferred flag (``evaluation.trust``);
``only_well_inferred`` writes only those targets. A model in pieces (D-GEX's
partitions) predicts one piece per pass over the input (``passes``).
"""

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .. import storage, store
from ..atomic import atomic_path, read_json
from ..errors import StreamgexError
from ..evaluation.evaluate import models_identity
from ..evaluation.predictor import BATCH, load_predictor
from ..evaluation.trust import CUTOFF, check_cutoff
from ..evaluation.trust import of_run as trust_of_run
from ..formats import writers
from ..training.run import Run
from .profiles import open_profiles, source_identity
from . import bundle
from .geneids import input_ids
from .passes import write_in_passes
from .transform import input_transform, match_genes, pipeline_state

log = logging.getLogger(__name__)


def predict(run, source, out, *, units="raw", expression=False, gctx=None, overwrite=False,
            genes_by="auto", samples_as=None, well_inferred_r=CUTOFF, only_well_inferred=False):
    """Predict the targets of every profile of ``source`` with ``run``'s model.

    Parameters
    ----------
    run : path
        A finished E-MLP, D-GEX or linear run folder, or its export bundle
        (``streamgex export``).
    source : path
        Profiles: a store, GCTX, GCT, TSV/CSV; probe or gene ids; all genes or
        only the landmarks.
    out : path
        The output store: ``(n_samples, n_targets) float32``.
    units : {"raw", "normalized", "standardized"}
        What the input values are (``transform`` module doc).
    expression : bool
        Write normalized expression instead of z-scores.
    gctx : path, optional
        Also write the output as GCTX.
    genes_by : "auto", "id", "symbol" or a row field name
        How input rows are matched to the model's genes (``geneids``).
    samples_as : {None, "rows", "columns"}
        A TSV/CSV input's orientation where its ids cannot tell.
    well_inferred_r : float
        A target whose validation Pearson r exceeds it is flagged well inferred
        (``evaluation.trust``: CMap's BING idea; default ``CUTOFF``, 0.3).
    only_well_inferred : bool
        Write only the well-inferred targets.

    Returns
    -------
    Path
        The output store.
    """
    out, run = store.as_path(out), bundle.local(run)  # a bundle by URL: its local copy
    if gctx:
        check_gctx(store.as_path(gctx), source, out, overwrite)
    check_cutoff(well_inferred_r)
    parameters = {"model": model_identity(run), "units": units, "genes_by": genes_by,
                  "samples_as": samples_as, "expression": expression,
                  "well_inferred_r": well_inferred_r, "only_well_inferred": only_well_inferred}
    if store.matches(out, step="predict", parameters=parameters, source=source_identity(source)):
        log.info("%s: up to date", out)  # before the model is loaded or a text input converted
        if gctx:
            write_gctx(out, gctx)
        return out
    if bundle.is_bundle(run):  # an export: nothing of the workdir is read
        predictor, state = bundle.load(run)
        trust = predictor.trust
    else:
        predictor = load_predictor(run)
        state = pipeline_state(predictor.data)
        trust = trust_of_run(predictor.run, predictor=predictor)
    keep = kept_targets(run, trust, predictor.targets, well_inferred_r, only_well_inferred)
    scratch = storage.scratch_for(out, ".input")
    profiles = open_profiles(source, scratch=scratch, samples_as=samples_as)
    try:
        landmarks = np.flatnonzero(state.is_landmark)
        try:
            keys, matched_by = input_ids(state, profiles.gene_ids, profiles.gene_fields,
                                         genes_by, landmarks)
            found = len(landmarks) - len(match_genes(state, keys, landmarks)[1])
            log.info("%s: %d of the model's %d landmark genes found %s", source, found,
                     len(landmarks), matched_by)
            norm = input_transform(state, keys, units)
        except StreamgexError as exc:  # about the input's rows: the message names it
            raise StreamgexError(f"{source}: {exc}") from None
        log.info("%s: %s: %s", source, norm.how, norm.why)
        targets = ~state.is_landmark
        group = store.begin(out, step="predict", parameters=parameters,
                            source=profiles.identity, overwrite=overwrite)
        if group is not None:
            if "chunks_done" not in store.state(group)["progress"]:
                measured = np.isin(state.ensembl[targets], state.ensembl[state.is_landmark])
                store.start_writing(
                    group, samples=profiles.sample_ids, genes=state.keys[targets][keep],
                    coords={"gene_symbol": ("gene", state.symbols[targets][keep]),
                            "gene_ensembl": ("gene", state.ensembl[targets][keep]),
                            # CMap's flag: the gene is also a landmark, measured in the input
                            "gene_is_landmark": ("gene", measured[keep]),
                            **(trust.coords(well_inferred_r, keep) if trust is not None
                               else {}),
                            **{name: ("sample", values)
                               for name, values in profiles.sample_fields.items()
                               if name not in RESERVED}},
                    chunk_samples=store.default_chunk_samples(int(keep.sum())))

            def inputs(start, stop):
                block = profiles.read(start, stop)
                check_missing(block, start, profiles, norm, source)
                return norm.apply(block)

            def finish(z, columns):
                return (state.destandardize(z, np.flatnonzero(targets)[columns])
                        .astype(np.float32) if expression else z)

            chunk = group[store.EXPRESSION].chunks[0]
            started = time.perf_counter()
            try:
                done = write_in_passes(group, predictor.in_pieces(), inputs, finish,
                                       keep=keep,
                                       desc=f"predict ({predictor.kind.name})",
                                       chunks_per_read=max(1, BATCH // chunk))
            except StreamgexError:  # the input is wrong: its fixed version starts afresh
                store.abandon(out)
                raise
            streamed = {"profiles": done, "seconds": time.perf_counter() - started}
            store.finish(group, attrs={"units": "normalized expression" if expression
                                       else "z-score", "predict": {
                "normalization": norm.how, "normalization_reason": norm.why,
                "model": predictor.kind.name,
                "values": "expression" if expression else "z-scores",
                "streamed": streamed}})
    finally:
        profiles.close()
    if profiles.scratch is not None:
        shutil.rmtree(profiles.scratch, ignore_errors=True)
    if gctx:
        write_gctx(out, gctx)
    return out


def check_missing(block, start, profiles, norm, source):
    """An error naming the profile and the gene of the first missing (or non-finite) value
    in ``block`` (profiles ``start`` on) that ``norm`` reads; values of genes the model does
    not use are no matter."""
    if np.isfinite(block).all():  # the usual case, without copying the columns read
        return
    bad = ~np.isfinite(block[:, norm.columns])
    if not bad.any():
        return
    i, k = np.argwhere(bad)[0]
    column = int(norm.columns[k])
    fix = "fix the value in the input"
    if column not in norm.landmark_columns:  # read only to normalize whole profiles
        fix += (" or leave that gene out: with the landmarks alone, predict normalizes "
                "them onto the landmark reference")
    raise StreamgexError(
        f"{source}: profile {str(profiles.sample_ids[start + i])!r} has a missing or "
        f"non-finite value ({block[i, column]}) in gene {str(profiles.gene_ids[column])!r}, "
        f"which the model uses ({norm.how}); {fix}")


def model_identity(run):
    """What makes a prediction, read without loading the model: a bundle's files by the
    SHA-256 its manifest gives (checked when it is loaded), or a finished run's kind,
    training data (content) and model files with their times (as ``evaluate`` records
    them). Neither names the folder, so a moved bundle or run folder is the same model."""
    if bundle.is_bundle(run):
        manifest = read_json(Path(run) / bundle.MANIFEST)
        return {"model": manifest.get("model"), "files": manifest["files"]}
    found = Run.open(run).check_done()
    if not found.kind.infers_targets:
        raise StreamgexError(f"{run}: an {found.kind.title.lower()} predicts nothing "
                             f"from landmarks; pass a run of a model that infers targets")
    return {"model": found.kind.name, "training_data": read_json(found.inputs_file).get("content"),
            "files": models_identity(found)}


def check_gctx(gctx, source, out, overwrite):
    """Before any work: refuse a GCTX path that is the input or the output store, or an
    existing file without ``overwrite``."""
    for other, what in ((source, "input"), (out, "output store")):
        if storage.resolved(gctx) == storage.resolved(other):
            raise StreamgexError(f"--gctx {gctx}: is also the {what}; choose another file")
    if storage.is_url(str(gctx)):
        if storage.place(gctx).exists() and not overwrite:
            raise StreamgexError(f"--gctx {gctx}: exists; pass --overwrite to replace it")
        return
    if gctx.is_dir():
        raise StreamgexError(f"--gctx {gctx}: is a folder; give a file name ending in .gctx")
    if gctx.exists() and not overwrite:
        raise StreamgexError(f"--gctx {gctx}: exists; pass --overwrite to replace it")


#: Names a carried sample field cannot take in the output store.
RESERVED = ("sample", "gene", store.EXPRESSION, "gene_symbol", "gene_ensembl", "gene_is_landmark",
            "gene_val_pearson", "gene_val_mae", "gene_is_well_inferred")


def kept_targets(run, trust, targets, cutoff, only):
    """``(n_targets,) bool``: the targets the output holds, every one or (``only``) the well
    inferred; an error when ``only`` has no figures to go by or leaves no target."""
    if trust is not None and list(trust.genes) != list(targets):
        raise StreamgexError(f"{run}: its validation figures name other targets than its "
                             f"model; evaluate it again (`streamgex evaluate {run} "
                             f"SPLIT/val`) or export it again")
    if not only:
        return np.ones(len(targets), dtype=bool)
    if trust is None:
        raise StreamgexError(f"{run}: carries no per-gene validation figures (a bundle "
                             f"exported before them, or a split without validation "
                             f"profiles); export the run again, or leave out "
                             f"--only-well-inferred")
    keep = trust.well_inferred(cutoff)
    if not keep.any():
        raise StreamgexError(f"{run}: no target has a validation Pearson r above {cutoff}; "
                             f"lower --well-inferred-r")
    log.info("%d of the model's %d targets are well inferred (validation r > %g): writing "
             "only those", keep.sum(), len(keep), cutoff)
    return keep


def write_gctx(path, gctx):
    """Copy a prediction store to a GCTX file (``formats.writers``: written as
    ``gctx.partial``, renamed), with CMap's row metadata (``pr_gene_symbol``,
    ``pr_ensembl_id``, ``pr_is_lm``: also a landmark, ``pr_is_inferred``; ``pr_is_bing``:
    well inferred, with ``pr_val_r`` and ``pr_val_mae``) and the input's column metadata."""
    ds = store.open_store(path)
    remote = storage.is_url(str(gctx))
    local = storage.scratch_for(gctx, ".gctx") if remote else Path(gctx)
    with atomic_path(local) as partial:
        writers.write_gctx(path, ds, partial, row_meta={
            "pr_is_inferred": np.ones(ds.sizes["gene"], dtype=np.int32)})
    if remote:  # one upload: a reader sees the old object or the new one whole
        fs, key = storage.filesystem(str(gctx))
        fs.put_file(str(local), key)
        local.unlink()
    return store.as_path(gctx)
