"""``streamgex preprocess CONFIG``: the whole chain for GEO and 1000G from one config.

GEO: ingest -> dedup -> genes (by probe) -> normalize -> standardize ->
split, and pca of the targets. 1000G (when ``inputs.rnaseq`` is set): ingest
-> genes (by Ensembl id) -> normalize onto GEO's reference (or the normal
one) -> standardize with GEO's statistics. Every step is skipped when its
output is complete and made from the same input with the same options, and
resumed when it was cut short; a step whose options changed is redone.
The stages are declared once (``_stages``; ``stages`` adds the split and
PCA, as ``stages.Stage``s): ``preprocess`` makes those that are not done and
``status`` (``experiment.status``) reports each by the same rule, its step's
own identity (the step, its parameters, its input's content).
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import storage, store
from ..atomic import read_json
from ..errors import StreamgexError
from ..ingest import identity as ingest_identity
from ..ingest import ingest
from ..resources import map_path
from ..stages import Line, Stage, make_all
from ..store import open_store
from .dedup import dedup
from .dedup import identity as dedup_identity
from .fitted import identity as step_identity
from .fitted import run_step
from .genes import SelectGenes
from .pca import current as pca_current
from .pca import format_summary as format_pca
from .pca import pca
from .quantile import QuantileNormalize
from .split import format_summary as format_split
from .split import identity as split_identity
from .split import split
from .standardize import Standardize

log = logging.getLogger(__name__)


def stores_of(config):
    """Where the chain of ``config`` writes each output, by name."""
    from ..mirror import here, stores_folder

    work, stores = here(config.workdir), stores_folder(config.workdir)
    return {
        "geo": storage.join(stores, "geo.zarr"),
        "geo_dedup": storage.join(stores, "geo_dedup.zarr"),
        "geo_genes": storage.join(stores, "geo_genes.zarr"),
        "geo_norm": storage.join(stores, "geo_norm.zarr"),
        "geo_std": storage.join(stores, "geo_std.zarr"),
        "split": work / "split",
        "pca": work / "pca",
        "rnaseq": storage.join(stores, "1000g.zarr"),
        "rnaseq_genes": storage.join(stores, "1000g_genes.zarr"),
        "rnaseq_norm": storage.join(stores, "1000g_norm.zarr"),
        "rnaseq_std": storage.join(stores, "1000g_std.zarr"),
    }


def maps_of(config):
    """The landmark and target map files of ``config`` (``"dgex"``: the shipped D-GEX maps)."""
    return {role: map_path(getattr(config.inputs, role), role=role)
            for role in ("landmarks", "targets")}


def check_inputs(config):
    """Every raw file the config names exists and the workdir is a folder (or nothing yet),
    or an error naming the config key to set."""
    work = Path(config.workdir)
    if not storage.is_url(config.workdir) and work.exists() and not work.is_dir():
        raise StreamgexError(f"workdir = {work}: is a file, not a folder; pass --set "
                             f"workdir=FOLDER")
    for key in ("geo", "rnaseq", "landmarks", "targets"):
        path = getattr(config.inputs, key)
        if key in ("landmarks", "targets"):
            path = maps_of(config)[key]
        if path and storage.is_url(str(path)):
            storage.stat(storage.probe(str(path), f"inputs.{key} ="))  # one line if missing
        elif path and not Path(path).exists():
            raise StreamgexError(f"inputs.{key} = {path}: no such file (relative paths are "
                                 f"relative to {Path.cwd()}); put it there or pass "
                                 f"--set inputs.{key}=PATH")


@dataclass(frozen=True)
class StoreStage:
    """One store of the chain: how to make it, and the identity its step would record now."""

    name: str
    path: Path
    make: object  # () -> the store, made, resumed or found up to date
    identity: object  # () -> store.begin's step, parameters and source (inputs complete)
    after: tuple = ()  # the stages whose stores it reads

    def status(self):
        """``store.status`` by the step's own rule: done, stale, partial or to do."""
        try:
            identity = self.identity()
        except StreamgexError:  # an input is missing or incomplete: this cannot be current
            state, detail = store.status(self.path)
            return ("stale", "its input is not complete") if state == "done" else (state, detail)
        return store.status(self.path, identity)


def _stages(config):
    """The chain's store stages in order (GEO, then 1000G), split and PCA excepted."""
    paths, inputs, maps = stores_of(config), config.inputs, maps_of(config)
    scheduler, chunk = config.dask.scheduler or None, config.chunk_samples or None
    dask_options = {"scheduler": scheduler, "overwrite": True}

    def raw(name, file):
        return StoreStage(name, paths[name],
                          lambda: ingest(file, paths[name], chunk_samples=chunk, overwrite=True),
                          lambda: ingest_identity(file, chunk_samples=chunk, out=paths[name]))

    def fitted(name, make_step, source, also=()):
        return StoreStage(name, paths[name],
                          lambda: run_step(make_step(), paths[source], paths[name],
                                           **dask_options),
                          lambda: step_identity(make_step(), paths[source]), (source, *also))

    stages = [raw("geo", inputs.geo)]
    if config.dedup.enabled:
        options = asdict(config.dedup)
        options.pop("enabled")
        stages.append(StoreStage(
            "geo_dedup", paths["geo_dedup"],
            lambda: dedup(paths["geo"], paths["geo_dedup"], **options, **dask_options),
            lambda: dedup_identity(paths["geo"], **options), ("geo",)))
    geo = "geo_dedup" if config.dedup.enabled else "geo"
    reference = config.normalize.reference
    drop = config.genes.drop_missing
    stages += [
        fitted("geo_genes", lambda: SelectGenes(**maps, by="probe", drop_missing=drop), geo),
        fitted("geo_norm", lambda: QuantileNormalize(reference), "geo_genes"),
        fitted("geo_std", Standardize, "geo_norm"),
    ]
    if inputs.rnaseq:
        reference_from = paths["geo_norm"] if reference == "mean" else None
        stages += [
            raw("rnaseq", inputs.rnaseq),
            fitted("rnaseq_genes", lambda: SelectGenes(**maps, by="ensembl", drop_missing=drop),
                   "rnaseq"),
            fitted("rnaseq_norm", lambda: QuantileNormalize(reference, reference_from),
                   "rnaseq_genes", ("geo_norm",) if reference_from else ()),
            fitted("rnaseq_std", lambda: Standardize(paths["geo_std"]), "rnaseq_norm",
                   ("geo_std",)),
        ]
    return stages


def stages(config):
    """The chain as ``stages.Stage``s in order: every store stage, with GEO's split and pca
    right after ``geo_std`` (before 1000G, as the chain reads). Each says its state by its
    step's own identity rule and makes, resumes or finds up to date that one output."""
    paths, scheduler = stores_of(config), config.dask.scheduler or None
    found = []
    for stage in _stages(config):
        found.append(Stage(stage.name, _logged(config, stage),
                           lambda stage=stage: [Line(f"{stage.name} store", *stage.status())],
                           stage.after))
        if stage.name == "geo_std":
            found.append(Stage("split", lambda: log.info("%s", format_split(read_json(split(
                paths["geo_std"], paths["split"], **asdict(config.split), scheduler=scheduler,
                overwrite=True)["summary"]))),
                lambda: [Line("split", *_split_status(config, paths))], ("geo_std",)))
            if config.pca.enabled:
                found.append(Stage("pca", lambda: log.info("%s", format_pca(pca(
                    paths["geo_std"], paths["pca"], genes=config.pca.genes,
                    components=config.pca.components, scheduler=scheduler))),
                    lambda: [Line("pca", *_pca_status(config, paths))], ("geo_std",)))
    return found


def _logged(config, stage):
    def make():
        if stage.name in ("geo", "rnaseq"):
            log.info("[%s] %s", config.name, "GEO" if stage.name == "geo" else "RNA-Seq")
        stage.make()
        if stage.name == "geo_dedup":
            counts = open_store(stage.path).attrs["dedup"]
            log.info("dedup: dropped %s near-duplicate profiles, kept %s",
                     f"{counts['dropped']:,}", f"{counts['kept']:,}")
    return make


def preprocess(config):
    """Run the chain of a validated ``config.Experiment``; returns the output paths."""
    from .. import mirror

    check_inputs(config)
    with mirror.working(config):  # a workdir in a bucket: its lock, copy and pushes
        make_all(stages(config), after=mirror.push_current)
        return stores_of(config)


def _pca_status(config, paths):
    current = pca_current(paths["geo_std"], paths["pca"], genes=config.pca.genes,
                          components=config.pca.components) \
        if store.status(paths["geo_std"])[0] == "done" else None
    if current:
        return "done", ""
    return ("stale", "its input or options changed since; `run` redoes it") \
        if (paths["pca"] / "summary.json").exists() else ("to do", "")


def _split_status(config, paths):
    parts = {part: paths["split"] / part for part in ("train", "val", "test")}
    try:
        identities = split_identity(paths["geo_std"], **asdict(config.split))
    except StreamgexError:
        identities = None
    states = [store.status(path, identities and identities[part])[0]
              for part, path in parts.items()]
    if all(s == "done" for s in states):
        return "done", ""
    if "stale" in states:
        return "stale", "its input or options changed since; `run` redoes it"
    started = (paths["split"] / "plan").exists() or any(s != "to do" for s in states)
    return ("partial" if started else "to do"), ""
