"""``streamgex run CONFIG`` and ``streamgex status CONFIG``: the whole experiment.

Raw files -> ingest -> preprocess (``preprocess.pipeline``) -> train the
models of the config's ``[train.<model>]`` tables (the autoencoder, then
``encode``, before the E-MLP) -> evaluate each on validation, test and 1000G
-> report. Every stage keeps its own record of completion (store attrs,
checkpoints, evaluation identities), so a re-run skips what is complete and
unchanged and resumes what was cut short: after a crash or a reboot, run the
same command again. ``status`` reads those records without running anything.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from . import store
from .errors import StreamgexError
from .preprocess.pipeline import preprocess, stores_of
from .training.train import is_done, overrides_from_table, run_progress

#: Training order: the E-MLP needs the autoencoder's codes.
MODELS = ("linear", "autoencoder", "emlp", "dgex")


def folders_of(config):
    """Where the experiment's runs, codes and report go (beside ``stores_of``)."""
    work = Path(config.workdir)
    runs = {m: work / "runs" / m for m in MODELS if m in config.train}
    return {"runs": runs, "codes": work / "runs" / "codes", "report": work / "report"}


def datasets_of(config):
    """The stores every model is evaluated on: ``{name: store}``."""
    paths = stores_of(config)
    found = {"val": paths["split"] / "val", "test": paths["split"] / "test"}
    if config.inputs.rnaseq:
        found["1000g"] = paths["rnaseq_std"]
    return found


def run_experiment(config, *, quiet=False):
    """Run every stage of ``config`` (a ``config.Experiment``); returns the report's path."""
    from .evaluation.report import headline, report

    paths = preprocess(config, quiet=quiet)
    runs = train_models(config, paths["split"], quiet=quiet)
    for run in runs.values():
        evaluate_run(run, datasets_of(config), partitions=config.evaluate.partitions, quiet=quiet)
    path = report(list(runs.values()), folders_of(config)["report"],
                  pca=paths["pca"] if config.pca.enabled else None,
                  title=f"streamgex report: {config.name}")
    _say(quiet, f"report: {path}\n{headline(list(runs.values()))}")
    return path


def train_models(config, split, *, quiet=False):
    """Train the models of the config's ``[train.<model>]`` tables; returns ``{kind: run}``."""
    from .training.encode import encode
    from .training.train import train

    folders = folders_of(config)
    done = {}
    for kind, run in folders["runs"].items():
        codes = None
        if kind == "emlp":
            if "autoencoder" not in done:
                raise StreamgexError("an E-MLP needs an autoencoder: add a [train.autoencoder] "
                                     "table to the config")
            encode(done["autoencoder"], split, folders["codes"], quiet=quiet)
            codes = folders["codes"]
        _say(quiet, f"[{config.name}] training {kind} in {run}")
        done[kind] = train(kind, split, run, codes=codes, quiet=quiet,
                           overrides=overrides_from_table(config.train[kind]))
    return done


def evaluate_run(run, datasets, *, partitions=0, quiet=False):
    """Evaluate one run on each of ``datasets`` (``{name: store}``), loading its model once."""
    from .evaluation.evaluate import current_result, evaluate
    from .evaluation.predictor import load_predictor

    stale = [current_result(run, data, name=name, partitions=partitions) is None
             for name, data in datasets.items()]
    predictor = load_predictor(run) if any(stale) else None
    for name, data in datasets.items():
        evaluate(run, data, name=name, partitions=partitions, predictor=predictor, quiet=quiet)


@dataclass(frozen=True)
class Stage:
    """One line of ``status``: a stage, ``done`` / ``partial`` / ``to do``, and details."""

    name: str
    state: str
    detail: str = ""


def status(config):
    """The state of every stage of ``config``, in pipeline order; runs nothing."""
    paths = stores_of(config)
    stages = []
    for name in ("geo", "geo_dedup", "geo_genes", "geo_norm", "geo_std"):
        if name == "geo_dedup" and not config.dedup.enabled:
            continue
        stages.append(Stage(f"{name} store", *store.status(paths[name])))
    parts = [store.status(paths["split"] / part)[0] for part in ("train", "val", "test")]
    stages.append(Stage("split", _combine(parts, (paths["split"] / "plan").exists())))
    if config.pca.enabled:
        done = (paths["pca"] / "summary.json").exists()
        stages.append(Stage("pca", "done" if done else "to do"))
    if config.inputs.rnaseq:
        for name in ("rnaseq", "rnaseq_genes", "rnaseq_norm", "rnaseq_std"):
            stages.append(Stage(f"{name} store", *store.status(paths[name])))
    folders = folders_of(config)
    for kind, run in folders["runs"].items():
        if kind == "emlp":
            parts = [store.status(folders["codes"] / p)[0] for p in ("train", "val", "test")]
            stages.append(Stage("encode", _combine(parts, folders["codes"].exists())))
        stages.append(training_stage(kind, run))
    for kind, run in folders["runs"].items():
        for name in datasets_of(config):
            result = run / "eval" / f"{name}.json"
            if result.exists():
                mae = json.loads(result.read_text())["mae"]
                stages.append(Stage(f"evaluate {kind} on {name}", "done", f"MAE {mae:.4f}"))
            else:
                stages.append(Stage(f"evaluate {kind} on {name}", "to do"))
    stages.append(Stage("report", "done" if (folders["report"] / "report.md").exists()
                        else "to do", str(folders["report"] / "report.md")))
    return stages


def training_stage(kind, run):
    """A run's ``Stage``: epochs done, the best validation error so far, done or not."""
    states = run_progress(run) if (run / "config.json").exists() else []
    if not states:
        return Stage(f"train {kind}", "to do")
    details = []
    for i, s in enumerate(states if kind != "linear" else []):  # linear: solved in one go
        best = (s.get("schedule") or {}).get("best")
        text = f"{s['epoch']} epochs done"
        text += f" + {s['step']} steps of epoch {s['epoch'] + 1}" if s.get("step") else ""
        text += f", best validation MAE {best[1]:.4f} (epoch {best[0] + 1})" if best else ""
        text += " on codes" if best and kind == "emlp" else ""
        details.append(f"part {i + 1}: {text}" if kind == "dgex" else text)
    return Stage(f"train {kind}", "done" if is_done(run) else "partial", "; ".join(details))


def format_status(stages):
    """``status`` as aligned text lines."""
    width = max(len(s.name) for s in stages)
    return "\n".join(f"{s.name:<{width}}  {s.state:<7}  {s.detail}".rstrip() for s in stages)


def _combine(states, started):
    if all(s == "done" for s in states):
        return "done"
    return "partial" if started or "partial" in states or "done" in states else "to do"


def _say(quiet, text):
    if not quiet:
        print(text, flush=True)
