"""The preprocess chain: configs validated at the edge, finished steps skipped, changed ones redone."""

import pytest

from streamgex.cli import main
from streamgex.config import load_config
from streamgex.errors import StreamgexError
from streamgex.preprocess.pipeline import preprocess, stores_of


def write_config(tmp_path, demo_raw, extra=""):
    path = tmp_path / "c.toml"
    path.write_text(f"""
name = "t"
workdir = "{tmp_path / 'work'}"
chunk_samples = 512
[inputs]
geo = "{demo_raw['geo']}"
rnaseq = "{demo_raw['rnaseq']}"
landmarks = "{demo_raw['map_lm']}"
targets = "{demo_raw['map_tg']}"
[split]
train_per_cluster = 80
val_per_cluster = 10
[pca]
enabled = false
{extra}
""")
    return path


@pytest.mark.parametrize("text,message", [
    ("name = 1", "name must be a string"),
    ('name = "x"\nworkdir = "w"\n[inputs]\nlandmarks = "l"', "missing required key inputs.geo"),
    ('name = "x"\nworkdir = "w"\nbogus = 2', "unknown key bogus"),
    ('name = "x"\nworkdir = "w"\n[inputs]\ngeo="g"\nlandmarks="l"\ntargets="t"\n[split]\nclusters = "20"',
     "split.clusters must be an integer"),
    ('name = "x"\nworkdir = "w"\n[inputs]\ngeo="g"\n[split]\nclusters = 0',
     "split.clusters must be at least 1"),
    ('name = "x"\nworkdir = "w"\n[inputs]\ngeo="g"\n[normalize]\nreference = "median"',
     "normalize.reference must be one of mean, normal"),
    ('name = "x"\nworkdir = "w"\n[inputs]\ngeo="g"\n[dedup]\nenabled = "yes"',
     "dedup.enabled must be true or false"),
    ("name = ", "not valid TOML"),
])
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(StreamgexError, match=message):
        load_config(tmp_path / "bad.toml")


def test_shipped_configs_load(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.toml", "cross_platform.toml", "geo_full.toml"):
        config = load_config(root / name)
        assert config.split.clusters == 20
    assert load_config(root / "cross_platform.toml").split.train_per_cluster == 4500
    overridden = load_config(root / "geo_full.toml", ["split.seed=7", "inputs.geo=/x/y.gctx"])
    assert overridden.split.seed == 7 and overridden.inputs.geo == "/x/y.gctx"


def test_chain_skips_finished_steps_and_redoes_changed_ones(tmp_path, demo_raw, capsys):
    config = write_config(tmp_path, demo_raw)
    assert main(["preprocess", str(config)]) == 0
    paths = stores_of(load_config(config))
    stamp = {k: (p / "zarr.json").stat().st_mtime_ns for k, p in paths.items()
             if (p / "zarr.json").exists()}
    stamp["train"] = (paths["split"] / "train" / "zarr.json").stat().st_mtime_ns
    capsys.readouterr()

    assert main(["preprocess", str(config), "--set", "split.seed=5"]) == 0
    err = capsys.readouterr().err
    assert "geo_std: up to date" in err and "rnaseq_std: up to date" in err
    for key in ("geo", "geo_dedup", "geo_genes", "geo_norm", "geo_std", "rnaseq_std"):
        assert (paths[key] / "zarr.json").stat().st_mtime_ns == stamp[key], key
    assert (paths["split"] / "train" / "zarr.json").stat().st_mtime_ns != stamp["train"]

    again = {k: (p / "zarr.json").stat().st_mtime_ns for k, p in paths.items()
             if (p / "zarr.json").exists()}
    again["train"] = (paths["split"] / "train" / "zarr.json").stat().st_mtime_ns
    preprocess(load_config(config, ["split.seed=5"]))  # the same options: nothing is rewritten
    for key, stamp in again.items():
        path = paths["split"] / "train" if key == "train" else paths[key]
        assert (path / "zarr.json").stat().st_mtime_ns == stamp, key


def test_a_missing_raw_file_names_the_config_key_to_set(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "cross_platform.toml"
    assert main(["run", str(config), "--set", f"workdir={tmp_path}",
                 "--set", f"inputs.geo={tmp_path / 'nowhere.gctx'}"]) == 1
    err = capsys.readouterr().err
    assert f"inputs.geo = {tmp_path / 'nowhere.gctx'}: no such file" in err
    assert "--set inputs.geo=PATH" in err
    assert not (tmp_path / "stores").exists()  # refused before writing anything
