"""The ``streamgex`` command: argument parsing only; each command calls one public function."""

import argparse
import json
import logging
import os
import signal
import sys
import threading

from . import __version__, allocators, storage
from .errors import StreamgexError
from .paths import check_local
from .quiet import import_tensorflow as _import_tensorflow_quietly


def _simulate(args):
    from .simulate import simulate

    paths = simulate(
        args.preset, args.out, seed=args.seed, samples=args.samples,
        nonlinearity=args.nonlinearity, overwrite=args.overwrite,
    )
    for key, path in paths.items():
        print(f"{key:7s} {path}")


def _ingest(args):
    from .ingest import ingest
    from .store import summary

    out = ingest(
        args.source, args.out, format=args.format, samples_as=args.samples_as,
        chunk_samples=args.chunk_samples,
        allow_missing=args.allow_missing, overwrite=args.overwrite,
    )
    if not args.quiet:
        print(summary(out))


def _genes(args):
    from .preprocess.genes import genes

    _done(args, genes(
        args.store, args.out, landmarks=args.landmarks, targets=args.targets, by=args.by,
        drop_missing=args.drop_missing, **_step_options(args),
    ))


def _normalize(args):
    from .preprocess.quantile import normalize

    _done(args, normalize(
        args.store, args.out, reference=args.reference, reference_from=args.reference_from,
        **_step_options(args),
    ))


def _standardize(args):
    from .preprocess.standardize import standardize

    _done(args, standardize(args.store, args.out, stats_from=args.stats_from, **_step_options(args)))


def _dedup(args):
    from .preprocess.dedup import dedup

    out = dedup(args.store, args.out, clusters=args.clusters, distance=args.distance,
                seed=args.seed, **_step_options(args))
    if not args.quiet:
        from .store import open_store

        counts = open_store(out).attrs["dedup"]
        print(f"dropped {counts['dropped']:,} near-duplicate profiles, kept {counts['kept']:,}")
    _done(args, out)


def _split(args):
    from .preprocess.split import format_summary, split

    from .atomic import read_json

    paths = split(args.store, args.out, clusters=args.clusters,
                  train_per_cluster=args.train_per_cluster, val_per_cluster=args.val_per_cluster,
                  seed=args.seed, **_step_options(args))
    if not args.quiet:
        print(format_summary(read_json(paths["summary"])))


def _pca(args):
    from .preprocess.pca import format_summary, pca

    summary = pca(args.store, args.out, genes=args.genes, components=args.components,
                  seed=args.seed, scheduler=args.scheduler)
    if not args.quiet:
        print(format_summary(summary))


def _preprocess(args):
    from .config import load_config
    from .preprocess.pipeline import preprocess

    preprocess(_storage_of(load_config(args.config, args.set), args))


def _train(args):
    from .config import parse_options
    from .models import registry

    overrides = list(args.set)
    if args.precision:
        overrides.append(f'precision="{args.precision}"')
    if args.memory_budget:
        overrides.append(f'memory_budget="{args.memory_budget}"')
    options = parse_options(registry.get(args.model).Options, overrides)
    _import_tensorflow_quietly()  # after the options are checked: a mistake costs no seconds
    from .training.train import train

    train(args.model, args.data, args.run_dir, options=options, codes=args.codes,
          source=args.source, restart=args.restart, placement=_placement(args))


def _encode(args):
    from .training.encode import encode

    extra = {}
    for item in args.store:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise StreamgexError(f"--store {item!r}: expected NAME=STORE, e.g. "
                                 f"1000g=stores/1000g_std.zarr")
        extra[name] = path
    for name, path in encode(args.autoencoder_run, args.data, args.out, extra=extra).items():
        print(f"{name:6s} {path}")


def _run(args):
    from .config import load_config
    from .evaluation.report import headline
    from .experiment import folders_of, run_experiment
    from .mirror import as_given

    config = _storage_of(load_config(args.config, args.set), args)
    _import_tensorflow_quietly()  # after the config is checked: a mistake costs no seconds
    report = run_experiment(config, retrain=args.retrain, placement=_placement(args))
    if report is not None:  # worker 0's (the others only train)
        shown = as_given(report, config)
        _print_report(shown if shown is report else f"{shown} (local copy: {report})",
                      folders_of(config)["runs"].values(), headline)


def _storage_of(config, args):
    """Configure the object store from the config's ``[storage]``, then ``--storage-option``
    over it; returns ``config``."""
    storage.configure({**config.storage, **storage.parse_options(args.storage_option)})
    return config


#: ``status``'s exit status while a stage is to do, partial or stale (0: all done).
WORK_LEFT = 3


def _status(args):
    from dataclasses import asdict

    from .config import load_config
    from .experiment import format_status, status

    stages = status(_storage_of(load_config(args.config, args.set), args))
    if args.json:
        print(json.dumps([asdict(s) for s in stages], indent=1))
    else:
        print(format_status(stages))
    return 0 if all(s.state == "done" for s in stages) else WORK_LEFT


def _evaluate(args):
    from .evaluation.evaluate import compare_runs, evaluate, format_result

    result = evaluate(args.run, args.store, name=args.name, partitions=args.partitions)
    print(format_result(result))
    if args.against:
        other = evaluate(args.against, args.store, name=args.name, partitions=args.partitions)
        print(format_result(other))
        print(compare_runs(result, other))


def _report(args):
    from .evaluation.report import headline, report

    _print_report(report(args.runs, args.out, pca=args.pca), args.runs, headline)


def _print_report(path, runs, headline):
    print(f"report: {path}\n{headline(list(runs))}")


def _predict(args):
    from .inference.predict import predict

    out = predict(args.run, args.input, args.out, units=args.units, expression=args.expression,
                  gctx=args.gctx, overwrite=args.overwrite, genes_by=args.genes_by,
                  samples_as=args.samples_as, only_well_inferred=args.only_well_inferred,
                  **({} if args.well_inferred_r is None
                     else {"well_inferred_r": args.well_inferred_r}))
    if not args.quiet:
        from .store import summary

        print(summary(out))


def _export_store(args):
    from .formats.writers import export_store

    print(export_store(args.store, args.out, overwrite=args.overwrite))


def _export(args):
    from .inference.bundle import export

    print(export(args.run, args.out, overwrite=args.overwrite, formats=args.format))


def _step_options(args):
    return {"overwrite": args.overwrite, "scheduler": args.scheduler}


def _done(args, out):
    if not args.quiet:
        from .store import summary

        print(summary(out))


def _info(args):
    if args.devices:
        _devices(args)
        return
    if args.store is None:
        raise StreamgexError("info: name a store to describe, e.g. streamgex info "
                             "stores/geo.zarr, or give --devices for this machine's devices")
    from .store import describe, summary, verify

    checked = verify(args.store) if args.verify else None  # first: it names damaged chunks
    if args.json:
        print(json.dumps({**describe(args.store), "verified_chunks": checked}, indent=1))
        return
    print(summary(args.store))
    if checked is not None:
        print(f"  verified    all {checked:,} chunks read back intact")


def _devices(args):
    from . import devices

    if args.store or args.verify:
        raise StreamgexError("info --devices describes this machine, not a store: drop the "
                             "store and --verify")
    found = devices.describe()
    if args.json:
        print(json.dumps({"devices": found, "training_uses": devices.default(found)}, indent=1))
        return
    print(devices.format_devices(found))


def _completion(args):
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))


def _demo(args):
    from .demo import demo, demo_config
    from .experiment import folders_of

    runs = folders_of(demo_config(args.workdir))["runs"].values()
    _import_tensorflow_quietly()
    from .evaluation.report import headline

    _print_report(demo(args.workdir), runs, headline)


def samples_as(sub):
    sub.add_argument("--samples-as", choices=("rows", "columns"),
                     help="a TSV/CSV table's orientation: columns (a gene per line, samples "
                     "across) or rows (a sample per line, genes across); default: told by its "
                     "ids, an error where they cannot tell")


def placement_options(sub):
    """Where a training command's steps run: ``training.placement``."""
    sub.add_argument("--device", default="auto", metavar="auto|cpu|gpu[:N]",
                     help="the device each worker trains on (default auto: the first GPU "
                     "TensorFlow sees, else the CPU; `streamgex info --devices`)")
    sub.add_argument("--cluster", metavar="HOST:PORT,HOST:PORT[,...]",
                     help="train together with these workers (data-parallel on "
                     "tf.distribute's MultiWorkerMirroredStrategy; D-GEX's partitions a "
                     "whole one per worker): every worker runs the same command with its "
                     "own --rank. Default: TF_CONFIG when set (Slurm, Kubernetes, Ray)")
    sub.add_argument("--rank", type=int, help="this worker's place in --cluster (0: the "
                     "first, which writes the run folder)")
    sub.add_argument("--peer-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="how long a worker waits for its peers to join or answer")


def device_option(sub):
    """``--device`` of a command that runs a model (default: TensorFlow's own placement, the
    first GPU it sees, else the CPU)."""
    sub.add_argument("--device", dest="on_device", metavar="cpu|gpu[:N]",
                     help="run the model there (default: the first GPU TensorFlow sees, "
                     "else the CPU)")


def _placement(args):
    from .training.placement import placement

    found = placement(device=args.device, cluster=args.cluster, rank=args.rank,
                      timeout=args.peer_timeout)
    if found.distributed:  # every message of a cluster's worker names it
        for handler in logging.getLogger("streamgex").handlers:
            handler.setFormatter(logging.Formatter(f"[worker {found.rank}] "
                                                   f"{handler.formatter._fmt}"))
    return found


def build_parser():
    from .formats import FORMATS
    from .ingest import MISSING_POLICIES
    from .models import registry
    from .simulate import PRESETS

    parser = argparse.ArgumentParser(
        prog="streamgex", description="Out-of-core gene expression inference on a desktop."
    )
    parser.add_argument("--version", action="version", version=f"streamgex {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        example = "\n".join(f"  {line}" for line in EXAMPLES[name])
        sub = commands.add_parser(name, help=help, description=help, formatter_class=Formatter,
                                  epilog=f"example:\n{example}")
        sub.set_defaults(func=func)
        sub.add_argument("--quiet", action="store_true",
                         help="no progress bars, messages or summary; errors only")
        sub.add_argument("--verbose", action="store_true", help="debug messages too")
        sub.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                         help="an option of the object store's filesystem (s3fs, gcsfs, "
                         "adlfs), e.g. endpoint_url=http://127.0.0.1:9000; repeatable")
        sub.add_argument("--log-file", metavar="FILE",
                         help="also append every message, timestamped, to FILE")
        return sub

    sub = command("simulate", _simulate, "write a simulated GEO + 1000G dataset in the real formats")
    sub.add_argument("--preset", choices=list(PRESETS), default="demo",
                     help="dataset shape: demo (small), bench (accuracy benchmark), "
                     "cross-platform, geo-full (112,634 x 22,268)")
    sub.add_argument("--out", required=True, help="output folder")
    sub.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    sub.add_argument("--samples", type=int, help="GEO profile count instead of the preset's")
    sub.add_argument("--nonlinearity", type=float, metavar="V",
                     help="mean share (0-1) of a target's signal variance that no linear function "
                          "of the landmarks explains (default: calibrated to real data, "
                          "streamgex.simulate.model)")
    sub.add_argument("--overwrite", action="store_true", help="replace existing files")

    sub = command("ingest", _ingest, "convert a GCTX/GCT/GEO series-matrix/GEUVADIS/TSV/AnnData "
                  "file into a Zarr store")
    sub.add_argument("source", nargs="+", help="raw expression file (text may be gzipped) or "
                     "AnnData-Zarr folder; several files of one format and platform (GEO "
                     "series matrices) go into one store, their samples in order")
    sub.add_argument("--out", required=True, help="Zarr store to write")
    sub.add_argument("--format", choices=FORMATS, default="auto",
                     help="input format; auto looks at the content (HDF5 signature, #1.2/#1.3, "
                     "!Series_, the GEUVADIS header, else a delimited table)")
    samples_as(sub)
    sub.add_argument("--chunk-samples", type=int, help="samples per chunk (default: ~32 MiB chunks)")
    sub.add_argument(
        "--allow-missing", choices=MISSING_POLICIES,
        help="store NaN/Inf/NA cells as NaN or 0 instead of rejecting the file",
    )
    sub.add_argument("--overwrite", action="store_true", help="replace an existing store")

    def step(name, func, help):
        sub = command(name, func, help)
        sub.add_argument("store", help="input store")
        sub.add_argument("--out", required=True, help="output store")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
        sub.add_argument("--scheduler", help="address of a dask.distributed scheduler "
                         "(default: local threads)")
        return sub

    sub = step("genes", _genes, "select the mapped genes; average probes into genes")
    sub.add_argument("--landmarks", required=True, help="landmark map (D-GEX layout)")
    sub.add_argument("--targets", required=True, help="target map (D-GEX layout)")
    sub.add_argument("--by", choices=("probe", "ensembl"), default="probe",
                     help="match map probes (Affymetrix) or Ensembl ids (RNA-Seq)")
    sub.add_argument("--drop-missing", action="store_true", help="leave out unmatched map rows")

    sub = step("normalize", _normalize, "quantile-normalize each profile onto a reference")
    sub.add_argument("--reference", choices=("mean", "normal"), required=True,
                     help="mean: the mean sorted profile (D-GEX's code); normal: standard normal "
                     "quantiles (the paper's text)")
    sub.add_argument("--reference-from", help="store whose reference to use (mean reference)")

    sub = step("standardize", _standardize, "standardize each gene: (x - mean) / (std + 1e-3)")
    sub.add_argument("--stats-from", help="store whose gene statistics to use")

    sub = step("dedup", _dedup, "drop near-duplicate profiles (D-GEX: k-means, distance < 1)")
    sub.add_argument("--clusters", type=int, default=100,
                     help="k-means clusters the near-duplicate search runs within")
    sub.add_argument("--distance", type=float, default=1.0,
                     help="profiles closer than this (Euclidean) are duplicates")
    sub.add_argument("--seed", type=int, default=0, help="k-means seed")

    sub = step("split", _split, "cluster, then train/val/test per cluster (paper 2.4)")
    sub.add_argument("--clusters", type=int, default=20, help="k-means clusters of the profiles")
    sub.add_argument("--train-per-cluster", type=int, default=4500,
                     help="at most this many training profiles from each cluster")
    sub.add_argument("--val-per-cluster", type=int, default=700,
                     help="at most this many validation profiles from each cluster; the rest "
                     "is the test part")
    sub.add_argument("--seed", type=int, default=0, help="seed of the clustering and the draw")

    sub = command("pca", _pca, "explained variance of the targets (paper Figure 1)")
    sub.add_argument("store", help="input store")
    sub.add_argument("--out", required=True, help="output folder (CSV, PNG, summary.json)")
    sub.add_argument("--genes", choices=("targets", "landmarks", "all"), default="targets",
                     help="the genes whose explained variance is computed")
    sub.add_argument("--components", type=int, help="components to compute (default 1000)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the randomized PCA")
    sub.add_argument("--scheduler", help="address of a dask.distributed scheduler")

    sub = command("preprocess", _preprocess, "run the preprocessing chain of a config file")
    sub.add_argument("config", help="TOML file, e.g. configs/cross_platform.toml")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set inputs.geo=data/geo.gctx")

    sub = command("train", _train, "train a model on a split, resumably")
    sub.add_argument("model", choices=registry.names(), help="model kind")
    sub.add_argument("--data", required=True, help="split folder (train/, val/)")
    sub.add_argument("--run-dir", required=True, help="run folder (created or resumed)")
    sub.add_argument("--codes", help="E-MLP: the codes folder written by `streamgex encode`")
    sub.add_argument("--from", dest="source", metavar="RUN",
                     help="emlp_tuned: the finished E-MLP run it starts from")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override an option: recipe=adam hidden=6000,2000,6000 batch=200 "
                     "max_epochs=250 precision=bf16 tied=true checkpoint_steps=500 ...")
    sub.add_argument("--restart", action="store_true", help="discard an existing run folder")
    sub.add_argument("--precision", choices=("float32", "bf16", "float16"),
                     help="bf16: Keras mixed bfloat16 (faster only with AVX512_BF16, AMX or a "
                     "GPU of compute capability 8.0 on); float16: mixed float16 with loss "
                     "scaling, for older GPUs")
    sub.add_argument("--memory-budget", help="e.g. 8GB (default: 80%% of the machine's memory)")
    placement_options(sub)

    sub = command("encode", _encode, "write the autoencoder codes of a split (and other stores)")
    sub.add_argument("autoencoder_run", help="run folder of a trained autoencoder")
    sub.add_argument("--data", required=True, help="split folder")
    sub.add_argument("--out", required=True, help="codes folder (train/, val/, test/)")
    sub.add_argument("--store", action="append", default=[], metavar="NAME=STORE",
                     help="also encode another store, e.g. 1000g=stores/1000g_std.zarr")
    device_option(sub)
    sub = command("run", _run, "run a whole experiment from a config: raw files to report")
    sub.add_argument("config", help="TOML file, e.g. configs/cross_platform.toml")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.emlp.precision=\"bf16\"")
    sub.add_argument("--retrain", action="store_true",
                     help="discard and retrain models made with other data or options")
    placement_options(sub)
    sub = command("status", _status, "list an experiment's stages: done, partial, stale or to "
                  f"do (exit status {WORK_LEFT} while any is not done)")
    sub.add_argument("config", help="TOML file of the experiment")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="the same overrides given to `run`")
    sub.add_argument("--json", action="store_true",
                     help="print the stages as JSON (name, state, detail)")

    sub = command("evaluate", _evaluate, "a trained run's errors on a store (paper Tables 1-3)")
    sub.add_argument("run", help="run folder")
    sub.add_argument("store", help="standardized store with the run's genes, e.g. SPLIT/test")
    sub.add_argument("--name", help="dataset name in the results (default: the store's name)")
    sub.add_argument("--partitions", type=int, default=0,
                     help="partitions for the paper's sum-over-partitions figure (0: the paper's)")
    sub.add_argument("--against", metavar="RUN",
                     help="also evaluate this run and compare: relative improvement, share of "
                     "genes better")
    device_option(sub)
    sub = command("report", _report, "the paper's tables and figures from evaluated runs")
    sub.add_argument("runs", nargs="+", help="evaluated run folders")
    sub.add_argument("--out", required=True, help="report folder")
    sub.add_argument("--pca", help="a `streamgex pca` folder, for Figure 1")

    sub = command("predict", _predict, "infer target genes for new landmark profiles")
    sub.add_argument("run", help="an E-MLP, D-GEX or linear run folder, or its export bundle")
    sub.add_argument("input", help="profiles: GCTX, GCT, TSV/CSV, .h5ad, AnnData-Zarr or a store; "
                     "probe or gene ids, or symbols")
    sub.add_argument("--out", required=True, help="output store of predicted targets")
    sub.add_argument("--units", choices=("raw", "normalized", "standardized"), default="raw",
                     help="raw: normalize as the pipeline did; normalized: quantile-normalized "
                     "already; standardized: the pipeline's z-scores")
    sub.add_argument("--expression", action="store_true",
                     help="write normalized expression instead of z-scores")
    sub.add_argument("--gctx", help="also write the predictions to this GCTX file")
    sub.add_argument("--genes-by", default="auto", metavar="auto|id|ensembl|probe|symbol|FIELD",
                     help="match input rows to the model's genes by their ids (probe, Ensembl, "
                     "gene key), by Ensembl id (pr_ensembl_id/gene_ids field, else the ids), by "
                     "probe id, by gene symbol (the pr_gene_symbol field, or the ids), or by a "
                     "named row-metadata field; auto: ids, then symbols if those find more "
                     "landmarks")
    samples_as(sub)
    sub.add_argument("--well-inferred-r", type=float, metavar="R",
                     help="a target is well inferred when its Pearson r on the run's "
                     "validation split exceeds R (default 0.3, evaluation.trust.CUTOFF); "
                     "every output flags it")
    sub.add_argument("--only-well-inferred", action="store_true",
                     help="write only the well-inferred targets")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
    device_option(sub)
    sub = command("export", _export, "write a trained model and its fitted preprocessing to "
                  "one folder that predict runs anywhere")
    sub.add_argument("run", help="a finished E-MLP, fine-tuned E-MLP, D-GEX or linear run folder")
    sub.add_argument("--out", required=True, help="bundle folder to write")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    sub.add_argument("--format", action="append", default=[], choices=("savedmodel", "onnx"),
                     help="also write the network as a TensorFlow SavedModel (savedmodel/) or "
                     "as ONNX (network.onnx; needs the onnx extra); repeat for both")

    sub = command("export-store", _export_store, "write a store as AnnData (.h5ad or .zarr), GCTX or "
                  "a samples-by-genes CSV/TSV")
    sub.add_argument("store", help="a streamgex store")
    sub.add_argument("--out", required=True, help="file to write: .h5ad, .zarr (AnnData-Zarr), "
                     ".gctx, .csv or .tsv")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing file")

    sub = command("info", _info, "describe a store, or with --devices the devices TensorFlow "
                  "sees and the one training uses")
    sub.add_argument("store", nargs="?", help="a streamgex store")
    sub.add_argument("--devices", action="store_true",
                     help="list the CPU and GPUs TensorFlow sees, the one training uses, and "
                     "whether bf16 is faster there (instead of a store)")
    sub.add_argument("--verify", action="store_true",
                     help="read every chunk back: an error names each missing or damaged one")
    sub.add_argument("--json", action="store_true", help="print the description as JSON")

    sub = command("demo", _demo, "run the whole experiment on the built-in simulated data")
    sub.add_argument("--workdir", default="streamgex-demo", help="folder for the demo's files")

    sub = command("completion", _completion, "print a shell completion script")
    sub.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete in")
    return parser


class Formatter(argparse.RawDescriptionHelpFormatter):
    """A default worth saying shown after each help text; the examples kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        trivial = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if not trivial and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


#: One example per command, shown under its --help.
EXAMPLES = {
    "simulate": ["streamgex simulate --preset demo --out data/demo"],
    "ingest": ["streamgex ingest data/demo/geo.gctx --out stores/geo.zarr"],
    "genes": ["streamgex genes stores/geo.zarr --out stores/geo_genes.zarr "
              "--landmarks data/demo/map_lm.txt --targets data/demo/map_tg.txt"],
    "normalize": ["streamgex normalize stores/geo_genes.zarr --out stores/geo_norm.zarr "
                  "--reference mean"],
    "standardize": ["streamgex standardize stores/geo_norm.zarr --out stores/geo_std.zarr"],
    "dedup": ["streamgex dedup stores/geo.zarr --out stores/geo_dedup.zarr"],
    "split": ["streamgex split stores/geo_std.zarr --out split"],
    "pca": ["streamgex pca split/train --out pca"],
    "preprocess": ["streamgex preprocess configs/cross_platform.toml --set workdir=work"],
    "train": ["streamgex train dgex --data split --run-dir runs/dgex --set recipe=adam"],
    "encode": ["streamgex encode runs/autoencoder --data split --out runs/codes"],
    "run": ["streamgex run configs/demo.toml --set workdir=work/demo"],
    "status": ["streamgex status configs/demo.toml --set workdir=work/demo --json"],
    "evaluate": ["streamgex evaluate runs/emlp split/test --against runs/linear"],
    "report": ["streamgex report runs/linear runs/emlp runs/dgex --out report"],
    "predict": ["streamgex predict runs/emlp data/l1000.gctx --out predicted.zarr "
                "--gctx predicted.gctx"],
    "info": ["streamgex info stores/geo.zarr --verify --json", "streamgex info --devices"],
    "export": ["streamgex export runs/emlp --out emlp-bundle"],
    "export-store": ["streamgex export-store predicted.zarr --out predicted.h5ad"],
    "demo": ["streamgex demo --workdir streamgex-demo"],
    "completion": ["streamgex completion bash > ~/.local/share/bash-completion/completions/"
                   "streamgex"],
}


#: Commands that load TensorFlow before they start (the others never pay for importing
#: it; ``train``, ``run`` and ``demo`` import it themselves once their options are checked).
USES_TENSORFLOW = {"encode", "evaluate", "report", "predict", "export"}


def setup_logging(*, quiet=False, verbose=False, log_file=None):
    """Messages of the ``streamgex`` logger to stderr (INFO; ``quiet``: warnings and errors
    only; ``verbose``: DEBUG), and with ``log_file`` every message, timestamped, to that file."""
    file = _log_file_handler(log_file) if log_file else None  # refused before any change
    logger = logging.getLogger("streamgex")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if file:
        file.setLevel(logging.DEBUG)
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(file)
    logger.setLevel(logging.DEBUG if verbose or log_file else level)
    logger.propagate = False
    return logger


def _log_file_handler(path):
    """A handler appending to ``path``, its missing parent folders made; a folder or an
    unwritable file refused in one line before anything runs."""
    if os.path.isdir(path):
        raise StreamgexError(
            f"--log-file {path}: is a folder; give a file in it, e.g. "
            f"{os.path.join(path, 'streamgex.log')}"
        )
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return logging.FileHandler(path)
    except OSError as exc:
        raise StreamgexError(
            f"--log-file {path}: cannot write it ({exc.strerror}: {exc.filename}); choose a writable file"
        ) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel, ``kill``, a container stop), raised where the program is
    so that it unwinds as after Ctrl-C: partial work kept for resuming, locks released."""


def _terminate(signum, frame):
    raise Terminated()


def _interrupted_status(exc):
    """The shell's convention: 128 + the signal's number."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def main(argv=None):
    """Run the CLI; returns the exit status (0 ok, 1 user or system error, 130 interrupted,
    143 terminated)."""
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal.signal's requirement
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # during start-up (TensorFlow's import takes seconds)
        print("streamgex: interrupted", file=sys.stderr)
        return _interrupted_status(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv):
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN) is not for users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command == "train":
        allocators.use_for_training()
    else:
        allocators.use_for_everything_else()
    try:
        storage.configure(storage.parse_options(args.storage_option))
        _check_paths(args)
        logger = setup_logging(quiet=args.quiet, verbose=args.verbose, log_file=args.log_file)
    except StreamgexError as exc:
        print(f"streamgex: error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command in USES_TENSORFLOW:
            _import_tensorflow_quietly()
        return _call(args)
    except StreamgexError as exc:  # TensorFlow not installed (_call reports the others)
        print(f"streamgex: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for handler in list(logger.handlers):  # a library caller after us sees no CLI handlers
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


#: Arguments that are not paths (a scheduler address is a URL by nature).
NOT_PATHS = {"scheduler", "set", "func", "command", "name", "model", "preset", "format",
             "units", "by", "reference", "genes", "allow_missing", "precision",
             "memory_budget", "shell", "genes_by", "samples_as", "storage_option"}

#: Arguments that take a URL (object storage, ``storage``) as well as a path, by command.
TAKES_URLS = {"ingest": ("source", "out"), "info": ("store",), "genes": ("store", "out"),
              "normalize": ("store", "out", "reference_from"),
              "standardize": ("store", "out", "stats_from"), "dedup": ("store", "out"),
              "predict": ("run", "input", "out", "gctx"), "export": ("run", "out"),
              "evaluate": ("store",), "export-store": ("store", "out")}


def _check_paths(args):
    """Refuse a URL given as a path argument that takes none, before anything runs
    (``paths``); check that a URL's protocol library is installed (``storage``)."""
    for key, value in vars(args).items():
        if key in NOT_PATHS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and key in TAKES_URLS.get(args.command, ()) and \
                    storage.is_url(item):
                where = f"--{key.replace('_', '-')}" if key != "source" else "source"
                if key in ("out", "gctx"):
                    storage.check_writable(item, where)
                storage.probe(item, where)
            elif isinstance(item, str):
                check_local(item.partition("=")[2] if key == "store" else item,
                            f"--{key.replace('_', '-')}")


def _call(args):
    try:
        if getattr(args, "on_device", None):  # encode, evaluate, predict: --device given
            from .training.placement import on_device

            with on_device(args.on_device):
                return args.func(args) or 0
        return args.func(args) or 0
    except StreamgexError as exc:
        print(f"streamgex: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied, credentials refused: not a bug
        text = storage.explain(exc) if storage.refusal(exc) else exc
        print(f"streamgex: error: {text}", file=sys.stderr)
        return 1
    except Exception as exc:  # an object store that stayed unreachable through the retries
        if not storage.is_service_error(exc):
            raise
        print(f"streamgex: error: {storage.explain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("streamgex: interrupted; re-run the same command to resume", file=sys.stderr)
        # Zarr's event loop may hold a write the interrupt cut short; its "Task was
        # destroyed but it is pending!" at exit would follow the one line above
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return _interrupted_status(exc)


def entry_point():
    sys.exit(main())
