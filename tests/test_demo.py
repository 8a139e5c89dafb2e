"""The demo command (what tools/demo.sh runs): the whole experiment, then a re-run that skips it."""

import json

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
    headline = out[out.index(f"report: {report}"):].splitlines()[2:5]
    assert [line.split()[0] for line in headline] == ["Linear", "D-GEX", "E-MLP"]
    for line in headline:
        test_mae, rnaseq_mae = map(float, line.split()[-2:])
        assert 0.2 < test_mae < 1.2 and 0.2 < rnaseq_mae < 2.0, line

    assert main(["demo", "--workdir", str(workdir)]) == 0
    second = capsys.readouterr()
    assert "simulating" not in second.err + second.out and "epoch 1:" not in second.err
    assert second.err.count("up to date") >= 20, second.err
    assert "training finished" in second.err


def test_later_stages_refuse_what_is_not_a_store(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "not a streamgex store" in capsys.readouterr().err


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
