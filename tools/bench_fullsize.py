"""Benchmark: the whole experiment at full size, each stage in a process of its own.

Simulates ``geo-full`` (112,634 GEO profiles x 22,268 probes, its 1000G table
and probe-level maps) and runs ``configs/geo_full.toml`` on it stage by stage
(``streamgex.experiment.stages``: ingest, dedup, genes, normalize,
standardize, split, pca, 1000G, every model, encode, evaluations, report),
each in a fresh Python process, with ``--epochs`` epochs per model. Per stage
it records wall time, the process's own peak RSS (``wait4``), throughput
(a training stage's steady samples/s per network, from the seconds per step
its checkpoints keep) and, for models, the time the configured ``max_epochs``
would take at that pace (an upper bound: early stopping ends runs sooner). With ``--samples`` below the
full count, times are also scaled to 112,634 profiles (linear in profiles,
said in the table; the split keeps GEO's 4,500 / 700 per cluster in
proportion, and the E-MLP the hidden sizes its formula gives at GEO's
88,000 training profiles). At the end ``streamgex status`` must find every stage
done: the stages run one by one are the experiment ``run`` would have run.

With ``--memory-max 8G`` each stage runs in a cgroup v2 with that
``memory.max`` where the machine lets this user make one; otherwise the
table says that only the peak was measured.

    python tools/bench_fullsize.py                                 # full size, 1 epoch per model
    python tools/bench_fullsize.py --samples 20000 --epochs 1      # a quicker look
    python tools/bench_fullsize.py --memory-max 8G --models linear,emlp

Writes ``WORKDIR/bench.json`` (every figure) beside the workdir.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FULL = 112_634
CHILD = """
import logging, sys
from streamgex import allocators
allocators.use_for_everything_else()  # as `streamgex run` does; its train stages: isolate
from streamgex.config import load_config
from streamgex.experiment import stages
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
config = load_config(sys.argv[1], sys.argv[3:])
found = {stage.name: stage.make for stage in stages(config)}
found[sys.argv[2]]()
"""


def parse_bytes(text):
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units \
        else int(text)


class Cgroup:
    """A cgroup v2 with ``memory.max`` for the stage processes, where one can be made."""

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, limit):
        self.limit, self.path, self.why = limit, None, None
        if limit is None:
            return
        controllers = self.ROOT / "cgroup.controllers"
        if not controllers.exists() or "memory" not in controllers.read_text().split():
            self.why = "no cgroup v2 memory controller on this machine"
            return
        try:
            path = self.ROOT / f"streamgex-bench-{os.getpid()}"
            path.mkdir()
            (path / "memory.max").write_text(str(limit))
            (path / "memory.swap.max").write_text("0")
            self.path = path
        except OSError as exc:
            self.why = f"cannot make a cgroup here ({exc.strerror})"

    def enter(self):
        """In the child before exec: move itself into the cgroup."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self):
        if self.path is not None:
            self.path.rmdir()

    def describe(self):
        if self.limit is None:
            return "no memory limit asked: peak RSS measured"
        if self.path is None:
            return f"memory.max {self.limit / 2**30:.1f} GiB NOT enforced ({self.why}): " \
                   f"peak RSS measured only"
        return f"each stage under a cgroup v2 memory.max of {self.limit / 2**30:.1f} GiB"


def measured(command, log, cgroup):
    """Run ``command``; (exit code, wall seconds, its peak RSS bytes)."""
    start = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=cgroup.enter)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss * 1024


def training_pace(run_dir):
    """``(samples/s of one network, seconds per epoch of the whole model)`` in the steady
    state: the loop's own seconds per step (first step, its tracing, left out) from each
    network's newest checkpoint; None where nothing was measured."""
    from streamgex.training.run import Run

    states = [s for s in Run(run_dir).progress() if s.get("step_seconds")]
    if not states:
        return None, None
    epoch = sum(s["step_seconds"] * s["steps_per_epoch"] for s in states)
    batch = Run(run_dir).options.batch
    return batch / (sum(s["step_seconds"] for s in states) / len(states)), epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-fullsize"))
    parser.add_argument("--samples", type=int, default=FULL, help="GEO profiles to simulate")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per model")
    parser.add_argument("--models", default="linear,autoencoder,emlp,dgex",
                        help="the config's models to train (comma-separated)")
    parser.add_argument("--config", type=Path,
                        default=Path(__file__).resolve().parent.parent / "configs" /
                        "geo_full.toml")
    parser.add_argument("--memory-max", type=parse_bytes, help="e.g. 8G: a cgroup v2 limit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="further config overrides (e.g. train.emlp.precision=\"bf16\")")
    args = parser.parse_args()
    work = args.workdir.resolve()
    raw, log = work / "raw", work / "bench.log"
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    cgroup = Cgroup(args.memory_max)
    results = []

    def stage(name, command, **extra):
        print(f"{time.strftime('%H:%M:%S')} {name} ...", end=" ", flush=True)
        code, wall, peak = measured(command, log, cgroup)
        print(f"{wall:,.0f} s, peak RSS {peak / 2**30:.2f} GiB" + ("" if code == 0 else
                                                                   f", FAILED ({code})"))
        results.append({"stage": name, "seconds": wall, "peak_rss": peak, "exit": code, **extra})
        (work / "bench.json").write_text(json.dumps({"samples": args.samples, "epochs":
                                                     args.epochs, "stages": results}, indent=1))
        if code != 0:
            cgroup.close()
            sys.exit(f"{name} failed (exit {code}); its log: {log}")

    if not (raw / "geo.gctx").exists():
        stage("simulate", [python, "-m", "streamgex", "simulate", "--preset", "geo-full",
                           "--samples", str(args.samples), "--out", str(raw), "--quiet"])
    sets = [f"workdir={work / 'work'}", f"inputs.geo={raw / 'geo.gctx'}",
            f"inputs.rnaseq={raw / '1000g.txt.gz'}", f"inputs.landmarks={raw / 'map_lm.txt'}",
            f"inputs.targets={raw / 'map_tg.txt'}", *args.set]
    if args.samples < FULL:  # the split keeps GEO's proportions at a smaller size
        scale = args.samples / FULL
        sets += [f"split.train_per_cluster={max(1, round(4500 * scale))}",
                 f"split.val_per_cluster={max(1, round(700 * scale))}"]
        if "emlp" in args.models.split(","):  # its formula's sizes at GEO's training count
            sets.append("train.emlp.hidden=[11850, 11826]")
    models = args.models.split(",")
    sets += [f"train.{m}.max_epochs={args.epochs}" for m in models if m != "linear"]
    config = _config_without(args.config, models, work)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from streamgex.config import load_config
    from streamgex.experiment import folders_of, stages

    loaded = load_config(config, sets)
    names = [stage.name for stage in stages(loaded)]
    paper_epochs = {m: load_config(args.config, []).train[m].max_epochs
                    for m in models if m != "linear"}
    for name in names:
        stage(name, [python, "-c", CHILD, str(config), name, *sets])
        if name.startswith("train "):
            model = name.split()[1]
            speed, epoch = training_pace(folders_of(loaded)["runs"][model])
            results[-1].update(model=model, samples_per_second=speed, epoch_seconds=epoch)
    status = subprocess.run([python, "-m", "streamgex", "status", str(config), "--json",
                             *[a for s in sets for a in ("--set", s)]],
                            capture_output=True, text=True)
    not_done = [s for s in json.loads(status.stdout) if s["state"] != "done"]
    cgroup.close()
    report(results, args, paper_epochs, not_done, cgroup)


def _config_without(path, models, work):
    """The config with only ``models``' train tables (written beside the workdir)."""
    lines, keep = [], True
    for line in Path(path).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            table = stripped.strip("[]").split("]")[0].strip()
            keep = not table.startswith("train.") or table.split(".")[1] in models
        if keep:
            lines.append(line)
    out = work / "config.toml"
    out.write_text("\n".join(lines) + "\n")
    return out


def report(results, args, paper_epochs, not_done, cgroup):
    scale = FULL / args.samples
    print(f"\nwhole experiment, geo-full preset, {args.samples:,} GEO profiles"
          + ("" if scale == 1 else f" (times also scaled x{scale:.2f} to {FULL:,})")
          + f", {args.epochs} epoch(s) per model, {os.cpu_count()} cores; {cgroup.describe()}")
    head = "| stage | wall | peak RSS | samples/s (one network) | max_epochs at that pace |"
    if scale != 1:
        head += f" wall at {FULL:,} |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    total = 0.0
    for r in results:
        speed = r.get("samples_per_second")
        full = ""
        if r.get("model") in paper_epochs and r.get("epoch_seconds"):
            epochs = paper_epochs[r["model"]]  # at the steady pace, start-up left out
            full = f"{r['epoch_seconds'] * epochs * scale / 3600:,.1f} h ({epochs})"
        row = (f"| {r['stage']} | {_duration(r['seconds'])} | {r['peak_rss'] / 2**30:.2f} GiB | "
               f"{'' if not speed else f'{speed:,.0f}'} | {full} |")
        if scale != 1:
            row += f" {_duration(r['seconds'] * scale)} |"
        print(row)
        total += r["seconds"]
    print(f"\ntotal {_duration(total)}" + ("" if scale == 1 else
                                          f" (scaled to {FULL:,}: {_duration(total * scale)})"))
    worst = max(results, key=lambda r: r["peak_rss"])
    print(f"largest peak RSS: {worst['stage']} {worst['peak_rss'] / 2**30:.2f} GiB")
    print("status after the stages: " + ("every stage done" if not not_done else
                                         "NOT done: " + ", ".join(s["name"] for s in not_done)))


def _duration(seconds):
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
