"""Benchmark: does each model beat least squares, and what a user would write instead?

A simulated problem with a strong, documented non-linear dependence of the
targets on the landmarks (``streamgex simulate --preset bench --nonlinearity
V``: V is the mean share of a target's signal variance that no linear function
of the landmarks explains, 0.3 by default, the simulator's value calibrated to
real data; ``streamgex.simulate.model``), 27,000 profiles, 200
landmarks, 1,000 targets, split in the paper's proportions: ~90 training
profiles per landmark, as in the full GEO data (88,807 / 978) where the one
real-data fact about non-linear gain was measured. Each training recipe runs
the whole experiment through the normal
config and CLI (``streamgex run``, one config per recipe: linear regression,
autoencoder, E-MLP on codes, E-MLP fine-tuned, D-GEX 3 x 512 as one network).
On the same split, an off-the-shelf reference is trained the way a user would write
it instead: a plain Keras MLP (2 x 512 ReLU, Adam 1e-3, batch 128, early
stopping on validation, best weights restored).

Printed per model: test MAE, its ratio to least squares' and to the
reference's, median per-gene Pearson r, the share of genes with r > 0.7,
epochs and training wall time. Also written to ``WORKDIR/results.md``. Each
setting gets its own folders (``raw-...``, ``RECIPE-...``), so a re-run with
the same settings reuses what is done and one with other settings starts fresh
beside it.

    python tools/bench_accuracy.py                          # ~2 h on 2 cores (adam ~70 min)
    python tools/bench_accuracy.py --recipes adam --samples 15000   # ~20 min, ~50 per landmark
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streamgex.simulate.model import NONLINEARITY
from streamgex.simulate.presets import get_preset
from streamgex.training.recipes import NAMES as RECIPES

MODELS = ("linear", "autoencoder", "emlp", "emlp_tuned", "dgex")


#: The paper's split (2.4): at most 4,500 training and 700 validation profiles from each
#: of 20 clusters of GEO's 112,634: the caps are scaled by the profile count.
PAPER_PROFILES, PAPER_TRAIN, PAPER_VAL = 112_634, 4_500, 700


def config_text(recipe, epochs, raw, workdir, samples):
    """The experiment config of one recipe (shapes scaled to 200 -> 1,000 genes)."""
    network = f'recipe = "{recipe}"\nbatch = 128\nmax_epochs = {epochs}\n'
    # The adam recipe's networks get the linear skip, started at least squares' solution
    # (models.mlp); the paper recipe's stay as published.
    skip = "linear_skip = true\n" if recipe == "adam" else ""
    return f"""name = "bench-{recipe}"
workdir = "{workdir}"
chunk_samples = 1024

[inputs]
geo = "{raw}/geo.gctx"
rnaseq = "{raw}/1000g.txt.gz"
landmarks = "{raw}/map_lm.txt"
targets = "{raw}/map_tg.txt"

[split]
clusters = 20
train_per_cluster = {round(PAPER_TRAIN * samples / PAPER_PROFILES)}
val_per_cluster = {round(PAPER_VAL * samples / PAPER_PROFILES)}

[pca]
enabled = false

[train.linear]

[train.autoencoder]
hidden = [1024, 256, 1024]
{network}
[train.emlp]
{network}{skip}
[train.emlp_tuned]
recipe = "{recipe}"
batch = 128
max_epochs = {max(epochs // 2, 1)}
{skip}
[train.dgex]
hidden = [512, 512, 512]
{network}{skip}"""


def simulate(raw, nonlinearity, samples, seed):
    """The simulated raw files in ``raw`` (made once: ``simulated.json`` marks them complete)."""
    wanted = {"nonlinearity": nonlinearity, "samples": samples, "seed": seed}
    record = raw / "simulated.json"
    if record.exists() and json.loads(record.read_text()) == wanted:
        return raw
    streamgex("simulate", "--preset", "bench", "--out", str(raw), "--nonlinearity",
              str(nonlinearity), "--samples", str(samples), "--seed", str(seed), "--overwrite")
    record.write_text(json.dumps(wanted))
    return raw


def streamgex(*args, cwd=None):
    """Run a streamgex command, its progress and messages on this terminal; exit on failure
    (its own one-line error is already printed)."""
    done = subprocess.run([sys.executable, "-m", "streamgex", *args], cwd=cwd)
    if done.returncode:
        sys.exit(f"bench_accuracy: `streamgex {' '.join(args)}` failed (exit {done.returncode})")


def load_part(split, part):
    """Landmarks and targets of a split part, in memory (bench size: tens of MB)."""
    from streamgex.store import open_store

    ds = open_store(split / part)
    values = ds.expression.values
    mask = ds.is_landmark.values.astype(bool)
    return values[:, mask], values[:, ~mask]


def reference(split, seed=0):
    """The plain Keras MLP a user would write; returns (test predictions, test truth, epochs,
    seconds)."""
    import keras

    keras.utils.set_random_seed(seed)
    (x, y), (xv, yv), (xt, yt) = (load_part(split, p) for p in ("train", "val", "test"))
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(y.shape[1])])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)
    started = time.monotonic()
    history = model.fit(x, y, batch_size=128, epochs=60, validation_data=(xv, yv),
                        callbacks=[stop], verbose=2)  # a line per epoch
    seconds = time.monotonic() - started
    return model.predict(xt, batch_size=1024, verbose=0), yt, len(history.history["loss"]), seconds


def run_figures(run):
    """Epochs and training seconds from a run's log.csv files (0 for least squares)."""
    epochs, seconds = 0, 0.0
    for log in sorted(run.rglob("log.csv")):
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "seconds" in rows[0]:  # least squares logs one row of its own
            epochs = max(epochs, len(rows))
            seconds += sum(float(r["seconds"]) for r in rows)
    return epochs, seconds


def epochs_to(run, target):
    """The first epoch whose validation MAE is at most ``target`` (one network's log.csv, in
    target units), or None when none is."""
    with open(run / "log.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["val_mae"] and float(row["val_mae"]) <= target:
                return int(row["epoch"])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench-accuracy")
    parser.add_argument("--nonlinearity", type=float, default=NONLINEARITY,
                        help="the simulator's (default: its calibrated value)")
    parser.add_argument("--samples", type=int, default=get_preset("bench").geo_samples,
                        help="GEO profiles (default: the bench preset's)")
    parser.add_argument("--epochs", type=int, default=60, help="max epochs of each network")
    parser.add_argument("--recipes", default="paper,adam", help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    unknown = set(args.recipes.split(",")) - set(RECIPES)
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(RECIPES)}")
    from streamgex.evaluation.metrics import (correlation_summary, pearson_columns,
                                              pearson_rows, spearman_columns)
    from streamgex.models import registry

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = f"n{args.samples}-v{args.nonlinearity:g}-s{args.seed}"
    raw = simulate(work / f"raw-{data}", args.nonlinearity, args.samples, args.seed)
    rows, walls, folders = [], {}, {}
    for recipe in args.recipes.split(","):
        folders[recipe] = f"{recipe}-{data}-e{args.epochs}"
        config = work / f"{folders[recipe]}.toml"
        config.write_text(config_text(recipe, args.epochs, raw, folders[recipe], args.samples))
        started = time.monotonic()
        streamgex("run", str(config), "--retrain", cwd=work)  # a changed model setting: retrained
        walls[recipe] = time.monotonic() - started
        for model in MODELS:
            run = work / folders[recipe] / "runs" / model
            result = json.loads((run / "eval" / "test.json").read_text())
            if not registry.get(model).infers_targets or (model == "linear" and rows):
                continue  # least squares has no recipe: shown once
            epochs, seconds = run_figures(run)
            if model == "linear":
                linear_val = json.loads((run / "eval" / "val.json").read_text())["mae"]
            # validated in target units (the E-MLP's log is in code units: not comparable)
            reach = epochs_to(run, 0.9 * linear_val) if model in ("emlp_tuned", "dgex") \
                else None
            rows.append({"model": registry.get(model).title,
                         "recipe": "normal equations" if model == "linear" else recipe,
                         "mae": result["mae"], "correlation": result["correlation"],
                         "floor": result.get("reconstruction", {}).get("mae"),
                         "epochs": epochs, "seconds": seconds, "reach": reach})
    split = work / folders[args.recipes.split(",")[0]] / "split"
    train_profiles = json.loads((split / "summary.json").read_text())["totals"]["train"]
    predicted, truth, epochs, seconds = reference(split, args.seed)
    correlation = correlation_summary(pearson_columns(predicted, truth),
                                      spearman_columns(predicted, truth),
                                      pearson_rows(predicted, truth))
    rows.append({"model": "plain Keras MLP (reference)", "recipe": "Adam",
                 "mae": float(np.abs(predicted - truth).mean()), "correlation": correlation,
                 "floor": None, "epochs": epochs, "seconds": seconds, "reach": None})

    least_squares = next(r["mae"] for r in rows if r["model"] == "Linear regression")
    ref = rows[-1]["mae"]
    header = ("model", "recipe", "test MAE", "x least squares", "x reference", "gene r (median)",
              "genes r > 0.7", "epochs", "epochs to 0.90x (val)", "train s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        c = r["correlation"]
        lines.append("| " + " | ".join([
            r["model"] + (f" (autoencoder floor {r['floor']:.4f})" if r["floor"] else ""),
            r["recipe"], f"{r['mae']:.4f}", f"{r['mae'] / least_squares:.3f}",
            f"{r['mae'] / ref:.3f}", f"{c['gene_pearson_median']:.3f}",
            f"{100 * c['share_r_above']['0.7']:.1f}%", str(r["epochs"]),
            "-" if r["reach"] is None else str(r["reach"]), f"{r['seconds']:.0f}"]) + " |")
    lines += ["", f"nonlinearity {args.nonlinearity}, {args.samples:,} profiles "
                  f"({train_profiles:,} training), max {args.epochs} epochs; `streamgex run` "
                  "per recipe in this call (stages already done are reused): "
              + ", ".join(f"{k} {v / 60:.1f} min" for k, v in walls.items())]
    text = "\n".join(lines)
    (work / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
