"""Issue 27.1: a stage's identity is its inputs' content, for every input, and ``status`` and
``run`` ask the one question of it (``stages.Stage``): a copied workdir (new file times,
same content) is all done and ``run`` redoes nothing; an edited gene map makes exactly the
stages downstream of it stale, and ``run`` redoes them."""

import logging
import shutil

import pytest

from streamgex import experiment
from streamgex.cli import main
from streamgex.config import load_config
from streamgex.demo import demo_config
from streamgex.errors import StreamgexError

#: The stages an edit of the target map leaves done: the raw stores and dedup read no map.
UNTOUCHED_BY_MAPS = {"geo store", "geo_dedup store", "rnaseq store"}


def states(config):
    return {line.name: line.state for line in experiment.status(config)}


def test_a_copied_workdir_is_done_and_an_edited_map_redoes_what_follows_it(
        demo_experiment, tmp_path, caplog):
    workdir, _, _ = demo_experiment
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)  # new times and inodes for every file, the same content
    config = demo_config(copy)
    found = states(config)
    assert set(found.values()) == {"done"}, found

    models = sorted((copy / "work" / "runs").rglob("best/*"))
    written = {f: f.stat().st_mtime_ns for f in models}
    caplog.set_level(logging.INFO)
    experiment.run_experiment(config)
    stages = [stage.name for stage in experiment.stages(config)]
    made = [s for s in stages if f"{s}: up to date" not in caplog.text]
    assert not made, made
    assert {f: f.stat().st_mtime_ns for f in models if f.name != ".sha256.json"} == {
        f: t for f, t in written.items() if f.name != ".sha256.json"}

    # five target genes fewer: the genes stores and everything made from them are stale
    targets = copy / "raw" / "map_tg.txt"
    lines = targets.read_text().splitlines(keepends=True)
    targets.write_text("".join(lines[:2] + lines[7:]))
    found = states(config)
    assert {name for name, state in found.items() if state == "done"} == UNTOUCHED_BY_MAPS
    assert {found[name] for name in found if name not in UNTOUCHED_BY_MAPS} == {"stale"}


def test_maps_are_known_by_content_not_by_path(tmp_path, demo_raw, caplog):
    """The same maps by another path are the same input (nothing to retrain); an edited map
    is another (its genes store and what follows are redone: run --retrain)."""
    from test_experiment import LINEAR_ONLY

    moved = tmp_path / "maps"
    moved.mkdir()
    for key in ("map_lm", "map_tg"):
        shutil.copy(demo_raw[key], moved / demo_raw[key].name)
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(LINEAR_ONLY.format(work=tmp_path / "work", raw=demo_raw))
    assert main(["run", str(config_file), "--quiet"]) == 0
    other_place = [f"inputs.landmarks={moved / demo_raw['map_lm'].name}",
                   f"inputs.targets={moved / demo_raw['map_tg'].name}"]
    config = load_config(config_file, other_place)
    assert set(states(config).values()) == {"done"}

    targets = moved / demo_raw["map_tg"].name
    kept = targets.read_text().splitlines(keepends=True)
    targets.write_text("".join(kept[:-5]))
    found = states(config)
    assert found["geo_genes store"] == "stale" and found["geo store"] == "done"
    assert found["train linear"] == "stale" and found["report"] == "stale"
    with pytest.raises(StreamgexError, match="made with other data"):
        experiment.run_experiment(config)
    experiment.run_experiment(config, retrain=True)
    assert set(states(config).values()) == {"done"}
    from streamgex.store import open_store

    genes = open_store(tmp_path / "work" / "stores" / "geo_genes.zarr")
    assert int((~genes.is_landmark.values.astype(bool)).sum()) == len(kept) - 5


def test_status_gives_runs_errors_for_a_missing_input_or_a_workdir_that_is_a_file(
        tmp_path, demo_raw, capsys):
    from test_experiment import LINEAR_ONLY

    config_file = tmp_path / "tiny.toml"
    config_file.write_text(LINEAR_ONLY.format(work=tmp_path / "work", raw=demo_raw))
    typo = f"inputs.geo={tmp_path / 'geo.gctz'}"
    for command in ("status", "run"):
        assert main([command, str(config_file), "--set", typo]) == 1
        assert "inputs.geo" in capsys.readouterr().err.splitlines()[-1]
    (tmp_path / "file").write_text("")
    for command in ("status", "run"):
        assert main([command, str(config_file), "--set", f"workdir={tmp_path / 'file'}"]) == 1
        assert "is a file, not a folder" in capsys.readouterr().err
