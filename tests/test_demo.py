"""The demo command (what tools/demo.sh runs) works, and a second run reuses what is done."""

from streamgex.cli import main
from streamgex.store import open_store


def test_demo_runs_then_skips_finished_steps(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "simulating the demo dataset" in first and first.count("ingesting") == 2
    assert "3,000 samples x 900 genes" in first and "120 samples x 700 genes" in first
    assert open_store(tmp_path / "stores" / "geo.zarr").sizes == {"sample": 3000, "gene": 900}

    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    second = capsys.readouterr().out
    assert "simulating" not in second and "ingesting" not in second
    assert "3,000 samples x 900 genes" in second


def test_later_stages_refuse_what_is_not_a_store(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "not a streamgex store" in capsys.readouterr().err
