"""``streamgex run CONFIG`` and ``streamgex status CONFIG``: the whole experiment.

Raw files -> ingest -> preprocess (``preprocess.pipeline``) -> train the
models of the config's ``[train.<model>]`` tables (the autoencoder, then
``encode``, before the E-MLP; the E-MLP before its fine-tuning) -> evaluate
each on validation, test and 1000G
-> report. Every stage keeps its own record of completion (store attrs,
checkpoints, evaluation identities), so a re-run skips what is complete and
unchanged and resumes what was cut short: after a crash or a reboot, run the
same command again. ``status`` reads those records without running anything.

A model trained on other data (the split rebuilt from changed inputs or with
other options) or with other options is never reused: ``run`` stops before
training anything, listing those runs, unless ``retrain`` (``run --retrain``)
discards and retrains them.
"""

import logging
from pathlib import Path

from . import allocators, isolate, locks, mirror, storage
from .errors import StreamgexError
from .models import registry
from .preprocess.pipeline import check_inputs, stores_of
from .preprocess.pipeline import stages as chain_stages
from .stages import Line, Stage, make_all
from .stages import status as stage_status
from .training.run import Run

log = logging.getLogger(__name__)


def folders_of(config):
    """Where the experiment's runs, codes and report go (beside ``stores_of``)."""
    work = mirror.here(config.workdir)  # a workdir in a bucket: its local copy
    runs = {name: work / "runs" / name for name in registry.training_order(list(config.train))}
    return {"runs": runs, "codes": work / "runs" / "codes", "report": work / "report"}


def datasets_of(config):
    """The stores every model is evaluated on: ``{name: store}``."""
    paths = stores_of(config)
    found = {"val": paths["split"] / "val", "test": paths["split"] / "test"}
    if config.inputs.rnaseq:
        found["1000g"] = paths["rnaseq_std"]
    return found


def check_models(config):
    """Every model that trains on codes, or starts from another model, has that model in the
    config."""
    for name in config.train:
        kind = registry.get(name)
        for source, what in ((kind.codes_from, "trains on {} codes"),
                             (kind.starts_from, "starts from a trained {}")):
            if source and source not in config.train:
                raise StreamgexError(f"[train.{name}] {what.format(source)}: add a "
                                     f"[train.{source}] table to the config")


def run_experiment(config, *, retrain=False, placement=None):
    """Run every stage of ``config`` (a ``config.Experiment``); returns the report's path.

    ``retrain``: discard and retrain the runs made with other data or options (without it,
    such runs are an error naming them). ``placement`` (``training.placement``): the
    device training uses, or this worker's place in a cluster that trains every model
    together: worker 0 runs every stage, each other worker waits for what a training stage
    reads, joins it, and returns None when the last one is done."""
    from .training.placement import Placement

    check_models(config)
    placement = placement or Placement()
    if placement.distributed and storage.is_url(config.workdir):
        raise StreamgexError(f"workdir = {config.workdir}: `run --cluster` needs a workdir "
                             f"every worker sees (a shared folder); a workdir in a bucket is "
                             f"worked on through one machine's local copy")
    check_inputs(config)  # a refusal writes nothing, in a bucket either
    with mirror.working(config):
        if not placement.chief:
            return _join_training(config, placement, retrain)
        with locks.hold(config.workdir, what="this experiment's workdir"):
            make_all(stages(config, retrain=retrain, placement=placement),
                     after=mirror.push_current)
            return folders_of(config)["report"] / "report.md"


#: Seconds between two looks at the workdir of a worker waiting for another.
POLL_SECONDS = 2.0


def _join_training(config, placement, retrain):
    """Worker ``placement.rank`` of ``run --cluster``: for each training stage in order, wait
    until worker 0 has made what it reads (while worker 0 holds the workdir), then train it
    together (``train``'s own rules: the same options and data, or it is refused)."""
    found = stages(config, retrain=retrain, placement=placement)
    by_name = {stage.name: stage for stage in found}
    for stage in found:
        if not stage.name.startswith("train ") or not registry.get(stage.name[6:]).iterative:
            continue
        _wait_for(config, [by_name[name] for name in stage.after], placement)
        if stage.done():
            continue
        stage.make()
    log.info("every training stage of %s is done", config.name)


def _wait_for(config, inputs, placement):
    """Until every stage of ``inputs`` is done; an error once worker 0 no longer holds the
    workdir (it stopped before making them) or has not taken it within the peer timeout."""
    import time

    lock, started, seen, told = (locks.lock_file(config.workdir), time.monotonic(), False,
                                 False)
    while not all(stage.done() for stage in inputs):
        seen = seen or lock.exists()
        waiting = ", ".join(s.name for s in inputs if not s.done())
        if seen and not lock.exists() or not seen and \
                time.monotonic() - started > placement.timeout:
            raise StreamgexError(
                f"worker {placement.rank}: worker 0 is not running `streamgex run` on "
                f"{config.workdir} ({'it stopped' if seen else 'it never started'} before "
                f"{waiting} was done); start it there first, with --rank 0")
        if not told:
            log.info("waiting for worker 0 to make %s", waiting)
            told = True
        time.sleep(POLL_SECONDS)


def stages(config, *, retrain=False, placement=None):
    """Every stage of the experiment in order, as ``stages.Stage``s: the preprocessing chain
    (``preprocess.pipeline.stages``), then per model ``encode`` (before a model on codes) and
    ``train NAME``, then ``evaluate NAME`` (validation, test, 1000G), then ``report``.

    ``run_experiment`` makes each that ``status`` would not call done (``stages.make_all``);
    each ``make()`` also finds its output up to date, resumes it or makes it, so a stage can
    as well run in a process of its own, after the ones before it
    (``tools/bench_fullsize.py`` measures them that way). A ``train`` stage trains in a
    fresh process of its own with TensorFlow's best-fit arena (``isolate``,
    ``allocators``), which gives its memory back when the model is done.
    """
    from .evaluation.report import report

    paths, folders = stores_of(config), folders_of(config)
    datasets = datasets_of(config)
    found = list(chain_stages(config))
    for name, path in folders["runs"].items():
        kind = registry.get(name)
        if kind.codes_from:
            found.append(Stage("encode", lambda name=name: _encode(config, name),
                               lambda name=name: [_codes_line(config, name)],
                               (f"train {kind.codes_from}", "split")))
        found.append(Stage(f"train {name}",
                           lambda name=name: _train(config, name, retrain, placement),
                           lambda name=name: [training_line(config, name)],
                           ("split",) + (("encode",) if kind.codes_from else ())
                           + ((f"train {kind.starts_from}",) if kind.starts_from else ())))
    for name, path in folders["runs"].items():
        found.append(Stage(f"evaluate {name}", lambda path=path: evaluate_run(
            Run(path), datasets, partitions=config.evaluate.partitions),
            lambda name=name, path=path: _evaluation_lines(config, name, Run(path)),
            (f"train {name}", "split") + (("rnaseq_std",) if "1000g" in datasets else ())))
    runs = [Run(path) for path in folders["runs"].values()]
    pca = paths["pca"] if config.pca.enabled else None
    title = f"streamgex report: {config.name}"
    found.append(Stage("report", lambda: report(runs, folders["report"], pca=pca, title=title),
                       lambda: [report_stage(runs, folders["report"], pca, title)],
                       tuple(f"evaluate {name}" for name in folders["runs"])
                       + (("pca",) if pca else ())))
    return found


def _encode(config, name):
    from .training.encode import encode

    folders = folders_of(config)
    encode(Run(folders["runs"][registry.get(name).codes_from]), stores_of(config)["split"],
           folders["codes"])


def _codes_line(config, name):
    """The codes' status line by ``encode``'s own rule (``training.encode.status``)."""
    from .training.encode import status as codes_status

    folders = folders_of(config)
    return Line("encode", *codes_status(folders["runs"][registry.get(name).codes_from],
                                        stores_of(config)["split"], folders["codes"]))


def _train(config, name, retrain, placement=None):
    """Train one run of the config (the runs before it in training order are done: its
    stage comes after theirs), in a fresh process of its own with TensorFlow's best-fit
    arena (``isolate``, ``allocators``); a finished, unchanged run is skipped here.

    Refuses, before training anything, when a run of the config was made with other data
    or options (``stale_runs``) unless ``retrain``; then each such run is discarded and
    trained again, in training order, and the runs built on it (codes, an E-MLP, its
    fine-tuning) follow.
    """
    split, folders = stores_of(config)["split"], folders_of(config)
    stale = stale_runs(config, split)
    if stale and not retrain:
        listed = "; ".join(f"{folder} ({', '.join(changed)})" for folder, changed in stale.items())
        raise StreamgexError(f"made with other data or options, so not reused: {listed}; "
                             f"re-run with --retrain to discard and retrain them")
    kind, run = registry.get(name), folders["runs"][name]
    codes = folders["codes"] if kind.codes_from else None
    source = Run(folders["runs"][kind.starts_from]) if kind.starts_from else None
    changed = Run(run).differences(kind, config.train[name], data=split, codes=codes,
                                   source=source)
    if changed:
        log.info("[%s] %s was made with other %s: retraining it", config.name, run,
                 ", ".join(changed))
    elif Run(run).is_done():
        log.info("%s: up to date (training finished)", run)
        return
    log.info("[%s] training %s in %s", config.name, name, run)
    isolate.call(_train_here, name, split, run, config.train[name], codes,
                 source and source.path, bool(changed), placement, mirror.current(),
                 environ=allocators.for_training(), what=f"training {name}")
    if placement is not None and placement.distributed:
        _wait_until_trained(Run(run), placement)


def _train_here(name, split, run, options, codes, source, restart, placement, copy=None):
    """``training.train.train`` without its result (a ``Run``: it need not cross processes);
    TensorFlow imported quietly first, as the CLI does. ``copy``: the ``mirror.Mirror`` of a
    workdir in a bucket, pushed after each checkpoint."""
    from .quiet import import_tensorflow
    from .training.train import train

    import_tensorflow()
    with mirror.attached(copy):
        train(name, split, run, options=options, codes=codes, source=source, restart=restart,
              placement=placement)


#: Seconds without a file of a run folder changing after which the networks other workers
#: train are taken as stopped (they write a log row and a checkpoint at every epoch's end).
STALLED_SECONDS = 1800.0


def _wait_until_trained(run, placement):
    """Worker 0, after its networks of a run whose networks the workers train one each
    (D-GEX's partitions): until every network is done; an error once no file of the run
    has changed for ``STALLED_SECONDS`` (a worker stopped: re-run it)."""
    import time

    told = False
    while not run.is_done():
        newest = max((f.stat().st_mtime for f in run.path.rglob("*") if f.is_file()),
                     default=0.0)
        if time.time() - newest > STALLED_SECONDS:
            raise StreamgexError(f"{run.path}: the networks other workers train have not "
                                 f"progressed for {STALLED_SECONDS / 60:.0f} min; re-run "
                                 f"`streamgex run --cluster ...` on every worker to resume")
        if not told:
            log.info("worker 0: waiting for the other workers' networks of %s", run.path)
            told = True
        time.sleep(POLL_SECONDS)


def stale_runs(config, split):
    """``{run folder: [what differs]}`` for the config's runs made with other data (the split's
    or codes' content), options or source run than the config and ``split`` give now."""
    folders = folders_of(config)
    stale = {}
    for name, path in folders["runs"].items():
        kind = registry.get(name)
        if not Run(path).config_file.exists():
            continue
        codes = folders["codes"] if kind.codes_from and folders["codes"].exists() else None
        source = folders["runs"][kind.starts_from] if kind.starts_from else None
        changed = Run(path).differences(kind, config.train[name], data=split, codes=codes,
                                        source=source)
        if codes is None and kind.codes_from:
            changed = [c for c in changed if c != "codes"]
        if changed:
            stale[path] = changed
    return stale


def evaluate_run(run, datasets, *, partitions=0):
    """Evaluate one run on each of ``datasets`` (``{name: store}``), loading its model once."""
    from .evaluation.evaluate import current_result, evaluate, format_result
    from .evaluation.predictor import load_predictor

    stale = [current_result(run, data, name=name, partitions=partitions) is None
             for name, data in datasets.items()]
    predictor = load_predictor(run) if any(stale) else None
    for (name, data), redo in zip(datasets.items(), stale):
        result = evaluate(run, data, name=name, partitions=partitions, predictor=predictor)
        if redo:
            log.info("%s", format_result(result))


def status(config):
    """The state of every stage of ``config``, in pipeline order (``stages.Line``s), by the
    rule ``run`` makes them by; runs nothing. The config's input files and workdir are
    checked first, with ``run``'s own errors."""
    check_models(config)
    with mirror.viewing(config):
        check_inputs(config)
        return [Line(line.name, line.state, mirror.as_given(line.detail, config))
                for line in stage_status(stages(config))]


def training_line(config, name):
    """A run's status line: ``training_stage``, stale when it was made with other data,
    codes, options or source run than the config gives now."""
    folders = folders_of(config)
    kind, run = registry.get(name), Run(folders["runs"][name])
    codes = folders["codes"] if kind.codes_from else None
    line = training_stage(name, run)
    changed = run.differences(kind, config.train[name], data=stores_of(config)["split"],
                              codes=codes, source=folders["runs"][kind.starts_from]
                              if kind.starts_from else None)
    if changed and line.state != "to do":
        return Line(line.name, "stale", f"made with other {', '.join(changed)}; "
                                        f"`streamgex run --retrain` retrains it")
    return line


def report_stage(runs, folder, pca, title):
    """The report is current when it lays out the evaluations (and PCA) there are now
    (``report.current``); ``status`` marks it stale after a stale evaluation, which ``run``
    makes again before it."""
    from .evaluation.report import current

    path = folder / "report.md"
    if not path.exists():
        return Line("report", "to do", str(path))
    if current(runs, folder, pca=pca, title=title):
        return Line("report", "done", str(path))
    return Line("report", "stale", f"{path}: its evaluations changed since; `run` redoes it")


def _evaluation_lines(config, name, run):
    return [evaluation_stage(name, run, dataset, data, config.evaluate.partitions)
            for dataset, data in datasets_of(config).items()]


def evaluation_stage(name, run, dataset, data, partitions):
    """An evaluation's ``Stage`` by ``evaluate``'s own rule: done only while the saved result's
    model files and store are the ones there now."""
    from .evaluation.evaluate import current_result

    label = f"evaluate {name} on {dataset}"
    result = current_result(run, data, name=dataset, partitions=partitions) \
        if run.is_done() else None
    if result is not None:
        return Line(label, "done", f"MAE {result['mae']:.4f}")
    if run.result_file(dataset).exists():
        return Line(label, "stale", "the model or the store changed since")
    return Line(label, "to do")


def training_stage(name, run):
    """A run's ``Stage``: epochs done, the best validation error so far, done or not."""
    states = run.progress() if run.config_file.exists() else []
    if not states:
        return Line(f"train {name}", "to do")
    kind, details = run.kind, []
    for i, s in enumerate(states if kind.iterative else []):
        best = ((s.get("hooks") or {}).get("schedule") or {}).get("best")
        text = f"{s['epoch']} epochs done"
        text += f" + {s['step']} steps of epoch {s['epoch'] + 1}" if s.get("step") else ""
        text += f", best validation MAE {best[1]:.4f} (epoch {best[0] + 1})" if best else ""
        text += kind.curve_label if best else ""
        details.append(f"part {i + 1}: {text}" if run.networks > 1 else text)
    if not run.is_done():
        from .training.eta import format_duration, remaining

        left = remaining(run, states) if kind.iterative else None
        if left is not None:
            details.append(f"about {format_duration(left)} left at most (to max_epochs, at "
                           f"the speed measured)")
        return Line(f"train {name}", "partial", "; ".join(details))
    return Line(f"train {name}", "done", "; ".join(details))


def format_status(stages):
    """``status`` as aligned text lines."""
    width = max(len(s.name) for s in stages)
    return "\n".join(f"{s.name:<{width}}  {s.state:<7}  {s.detail}".rstrip() for s in stages)
