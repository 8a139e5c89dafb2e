"""``streamgex preprocess CONFIG``: the whole chain for GEO and 1000G from one config.

GEO: ingest -> dedup -> genes (by probe) -> normalize -> standardize ->
split, and pca of the targets. 1000G (when ``inputs.rnaseq`` is set): ingest
-> genes (by Ensembl id) -> normalize onto GEO's reference (or the normal
one) -> standardize with GEO's statistics. Every step is skipped when its
output is complete and made from the same input with the same options, and
resumed when it was cut short; a step whose options changed is redone.
"""

import logging
from dataclasses import asdict
from pathlib import Path

from ..atomic import read_json
from ..errors import StreamgexError
from ..resources import map_path
from ..ingest import ingest
from ..store import open_store
from .dedup import dedup
from .genes import genes
from .pca import format_summary as format_pca
from .pca import pca
from .quantile import normalize
from .split import format_summary as format_split
from .split import split
from .standardize import standardize

log = logging.getLogger(__name__)


def stores_of(config):
    """Where the chain of ``config`` writes each output, by name."""
    work = Path(config.workdir)
    return {
        "geo": work / "stores" / "geo.zarr",
        "geo_dedup": work / "stores" / "geo_dedup.zarr",
        "geo_genes": work / "stores" / "geo_genes.zarr",
        "geo_norm": work / "stores" / "geo_norm.zarr",
        "geo_std": work / "stores" / "geo_std.zarr",
        "split": work / "split",
        "pca": work / "pca",
        "rnaseq": work / "stores" / "1000g.zarr",
        "rnaseq_genes": work / "stores" / "1000g_genes.zarr",
        "rnaseq_norm": work / "stores" / "1000g_norm.zarr",
        "rnaseq_std": work / "stores" / "1000g_std.zarr",
    }


def maps_of(config):
    """The landmark and target map files of ``config`` (``"dgex"``: the shipped D-GEX maps)."""
    return {role: map_path(getattr(config.inputs, role), role=role)
            for role in ("landmarks", "targets")}


def check_inputs(config):
    """Every raw file the config names exists, or an error naming the config key to set."""
    for key in ("geo", "rnaseq", "landmarks", "targets"):
        path = getattr(config.inputs, key)
        if key in ("landmarks", "targets"):
            path = maps_of(config)[key]
        if path and not Path(path).exists():
            raise StreamgexError(f"inputs.{key} = {path}: no such file (relative paths are "
                                 f"relative to {Path.cwd()}); put it there or pass "
                                 f"--set inputs.{key}=PATH")


def preprocess(config):
    """Run the chain of a validated ``config.Experiment``; returns the output paths."""
    check_inputs(config)
    paths = stores_of(config)
    inputs = config.inputs
    dask_options = {"scheduler": config.dask.scheduler or None, "overwrite": True}
    maps = maps_of(config)
    chunk = config.chunk_samples or None

    log.info("[%s] GEO", config.name)
    ingest(inputs.geo, paths["geo"], chunk_samples=chunk, overwrite=True)
    geo = paths["geo"]
    if config.dedup.enabled:
        dedup(geo, paths["geo_dedup"], clusters=config.dedup.clusters,
              distance=config.dedup.distance, seed=config.dedup.seed, **dask_options)
        counts = open_store(paths["geo_dedup"]).attrs["dedup"]
        log.info("dedup: dropped %s near-duplicate profiles, kept %s", f"{counts['dropped']:,}",
                 f"{counts['kept']:,}")
        geo = paths["geo_dedup"]
    genes(geo, paths["geo_genes"], by="probe", drop_missing=config.genes.drop_missing, **maps,
          **dask_options)
    normalize(paths["geo_genes"], paths["geo_norm"], reference=config.normalize.reference,
              **dask_options)
    standardize(paths["geo_norm"], paths["geo_std"], **dask_options)
    result = split(paths["geo_std"], paths["split"], **asdict(config.split), **dask_options)
    log.info("%s", format_split(read_json(result["summary"])))
    if config.pca.enabled:
        summary = pca(paths["geo_std"], paths["pca"], genes=config.pca.genes,
                      components=config.pca.components, scheduler=dask_options["scheduler"])
        log.info("%s", format_pca(summary))
    if inputs.rnaseq:
        log.info("[%s] RNA-Seq", config.name)
        ingest(inputs.rnaseq, paths["rnaseq"], chunk_samples=chunk, overwrite=True)
        genes(paths["rnaseq"], paths["rnaseq_genes"], by="ensembl",
              drop_missing=config.genes.drop_missing, **maps, **dask_options)
        reference_from = paths["geo_norm"] if config.normalize.reference == "mean" else None
        normalize(paths["rnaseq_genes"], paths["rnaseq_norm"], reference=config.normalize.reference,
                  reference_from=reference_from, **dask_options)
        standardize(paths["rnaseq_norm"], paths["rnaseq_std"], stats_from=paths["geo_std"],
                    **dask_options)
    return paths
