"""The demo command (what tools/demo.sh runs): the whole experiment, then a re-run that skips it."""

import json

import numpy as np

from streamgex.cli import main
from streamgex.store import open_store


def test_demo_runs_the_experiment_then_skips_finished_stages(demo_experiment, capsys):
    workdir, out, err = demo_experiment
    assert "simulating the demo dataset" in err  # messages on stderr, the report on stdout
    summary = json.loads((workdir / "work" / "split" / "summary.json").read_text())
    dedup = open_store(workdir / "work" / "stores" / "geo_dedup.zarr").attrs["dedup"]
    assert f"dedup: dropped {dedup['dropped']:,} near-duplicate profiles" in err
    assert f"split {summary['profiles']:,} profiles" in err
    assert summary["profiles"] == dedup["kept"] and dedup["dropped"] > 0
    train = open_store(workdir / "work" / "split" / "train")
    assert train.sizes["sample"] == summary["totals"]["train"] and train.sizes["gene"] == 500
    assert train.expression.encoding["chunks"][0] == 256
    report = workdir / "work" / "report" / "report.md"
    assert f"report: {report}" in out
    headline = out[out.index(f"report: {report}"):].splitlines()[2:6]
    assert [" ".join(line.split()[:-5]) for line in headline] == [
        "Linear regression", "D-GEX", "E-MLP", "E-MLP fine-tuned"]
    # Every network beats least squares on GEO test, by design, not by luck: the simulator's
    # targets have a known non-linear part (a mean 30% of their signal variance no linear
    # function of the landmarks explains: simulate.model.NONLINEARITY), the demo trains on
    # ~98 profiles per landmark (GEO's ratio, where tools/bench_accuracy.py measures every
    # network well below least squares), and each network starts at least squares' exact
    # solution (models.mlp.start_at_least_squares; the fine-tuned E-MLP at its E-MLP plus
    # least squares of its residuals) and keeps its start unless validation improves on it.
    assert "3 of 3 networks beat least squares" in out, out[-1500:]
    for line in headline[1:]:
        assert float(line.split()[-4]) < 1.0, line  # x least squares on GEO test
    assert summary["totals"]["train"] >= 96 * 100, "GEO's ~96 training profiles per landmark"
    floors = {name: mean_predictor_mae(workdir / "work" / path, train)
              for name, path in (("test", "split/test"), ("1000g", "stores/1000g_std.zarr"))}
    for line in headline:
        test_mae, _, _, rnaseq_mae, _ = map(float, line.split()[-5:])
        # each model beats predicting every target's training mean by a clear margin
        assert test_mae < 0.8 * floors["test"], (line, floors)
        assert rnaseq_mae < 0.95 * floors["1000g"], (line, floors)

    assert main(["demo", "--workdir", str(workdir)]) == 0
    second = capsys.readouterr()
    assert "simulating" not in second.err + second.out and "epoch 1:" not in second.err
    assert second.err.count("up to date") >= 20, second.err
    assert "train linear: up to date" in second.err


def mean_predictor_mae(path, train):
    """MAE of predicting each target gene's training mean, on the store at ``path``."""
    targets = ~train.is_landmark.values.astype(bool)
    mean = train.expression.values[:, targets].mean(0)
    ds = open_store(path)
    index = {g: i for i, g in enumerate(ds.gene.values.tolist())}
    columns = [index[g] for g in train.gene.values[targets].tolist()]
    return float(np.abs(ds.expression.values[:, columns] - mean).mean())


def test_later_stages_refuse_what_is_not_a_store(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "not a streamgex store" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.zarr"), "--verify"]) == 1  # verify checks first
    assert "not a streamgex store" in capsys.readouterr().err


def test_the_command_line_imports_tensorflow_only_for_a_command_that_uses_it():
    """Building the parser (every command, ``--help``, ``status``, ``ingest``) must not import
    TensorFlow: that costs seconds, and on an AVX-512 CPU its import prints oneDNN notes
    that only ``cli._import_tensorflow_quietly`` holds back (D-GEX's module imported Keras
    when the registry listed the model kinds for the parser)."""
    import subprocess
    import sys

    code = ("import sys, streamgex.cli as cli; cli.build_parser()\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_tensorflow_command_prints_only_its_own_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "streamgex", "evaluate", str(tmp_path / "run"),
                          str(tmp_path / "store")], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    # no TensorFlow start-up notes (oneDNN, CPU features) around the one-line error
    assert out.stderr.splitlines() == [
        f"streamgex: error: {tmp_path / 'store'}: not a streamgex store (no Zarr group with "
        f"streamgex attrs); create it with `streamgex ingest`"], out.stderr
