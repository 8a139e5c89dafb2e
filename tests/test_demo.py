"""The demo command (what tools/demo.sh runs) works, and a second run reuses what is done."""

import json

from streamgex.cli import main
from streamgex.store import open_store


def test_demo_runs_then_skips_finished_steps(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    first = capsys.readouterr()
    assert "simulating the demo dataset" in first.out
    assert "dedup: dropped" in first.out and "split 2,9" in first.out
    assert "x 500 genes" in first.out
    summary = json.loads((tmp_path / "work" / "split" / "summary.json").read_text())
    train = open_store(tmp_path / "work" / "split" / "train")
    assert train.sizes["sample"] == summary["totals"]["train"] and train.sizes["gene"] == 500
    assert train.expression.encoding["chunks"][0] == 256
    assert "validation MAE" in first.out
    for model in ("linear", "autoencoder", "emlp", "dgex"):
        line = next(l for l in first.out.splitlines() if l.strip().startswith(model))
        assert 0 < float(line.split()[1]) < 2, line

    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    second = capsys.readouterr()
    assert "simulating" not in second.out
    assert second.err.count("up to date") >= 10, second.err


def test_later_stages_refuse_what_is_not_a_store(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "not a streamgex store" in capsys.readouterr().err
