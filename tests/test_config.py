"""One configuration path: a config file, ``run --set``, ``train --set`` and ``status`` are
validated by the same parser, and a bad value is refused before anything runs or is written."""

import time
from pathlib import Path

import pytest

from streamgex.cli import main
from streamgex.config import load_config, parse_options
from streamgex.errors import StreamgexError
from streamgex.models import registry

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"

BAD_TABLES = [
    ("train.emlp.batchsize=3", "--set 'train.emlp.batchsize=3': unknown key train.emlp.batchsize"),
    ("train.bogus.batch=3", "unknown model table [train.bogus]; known models: linear, dgex, emlp"),
    ("train.autoencoder.tied=ture", "train.autoencoder.tied must be true or false, got 'ture'"),
    ('train.emlp.precision="fp8"', "train.emlp.precision must be one of float32, bf16, float16, got 'fp8'"),
    ("train.autoencoder.hidden=64,16",
     "train.autoencoder.hidden must be symmetric around the code"),
    ("train.dgex.partitions=0", "train.dgex.partitions must be at least 1"),
    ("train.emlp.batch=true", "train.emlp.batch must be an integer, got True"),
]


BAD_TABLES += [  # issue 11.12: URLs became local folders named s3: (a bucket is a workdir now)
    ('workdir="https://example.org/work"', "workdir = https://example.org/work: https:// is "
                                           "read-only"),
    ('workdir="ftp2://host/work"', "workdir = ftp2://host/work: ftp2:// is not a storage "
                                   "protocol"),
    ('inputs.landmarks="memory://x.txt"', "inputs.landmarks = memory://x.txt: URLs (memory://)"),
]


@pytest.mark.parametrize("override,message", BAD_TABLES)
@pytest.mark.parametrize("command", ["run", "status"])
def test_run_and_status_refuse_a_bad_model_table_before_anything(tmp_path, capsys, command,
                                                                   override, message):
    started = time.monotonic()
    status = main([command, str(CONFIG), "--set", f'workdir="{tmp_path / "work"}"',
                   "--set", override])
    err = capsys.readouterr().err
    assert status == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "work").exists(), "nothing may be written"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("model,override,message", [
    ("autoencoder", "tied=ture", "tied must be true or false, got 'ture'"),
    ("autoencoder", "hidden=64,16", "hidden must be symmetric around the code"),
    ("emlp", "precision=fp8", "precision must be one of float32, bf16, float16, got 'fp8'"),
    ("emlp", "batchsize=3", "unknown key batchsize; known keys: batch, checkpoint_minutes"),
    ("linear", "learning_rate=0.1", "unknown key learning_rate; known keys: batch, ridge"),
    ("dgex", "memory_budget=lots", "memory_budget"),
])
def test_train_refuses_a_bad_option_before_writing_the_run(tmp_path, capsys, model, override,
                                                          message):
    status = main(["train", model, "--data", str(tmp_path / "split"), "--run-dir",
                   str(tmp_path / "run"), "--set", override])
    err = capsys.readouterr().err
    assert status == 1 and message in err and f"--set {override!r}" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_config_table_and_the_command_line_give_the_same_typed_options():
    kind = registry.get("autoencoder")
    from_table = parse_options(kind.Options, table={"hidden": [64, 16, 64], "tied": True,
                                                    "precision": "bf16"})
    from_flags = parse_options(kind.Options, ["hidden=64,16,64", "tied=true",
                                              'precision="bf16"'])
    assert from_table == from_flags
    assert from_table.hidden == (64, 16, 64) and from_table.tied is True
    assert from_table.max_epochs == 150 and from_table.batch == 200  # the kind's defaults
    config = load_config(CONFIG, ['train.emlp.precision="bf16"'])
    assert config.train["emlp"].precision == "bf16"
    assert isinstance(config.train["emlp"], registry.get("emlp").Options)
    assert list(config.train) == ["linear", "autoencoder", "emlp", "emlp_tuned", "dgex"]


def test_the_shipped_maps_are_the_default_and_need_no_shared_folder():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "cross_platform.toml")
    from streamgex.preprocess.pipeline import maps_of

    maps = maps_of(config)
    assert config.inputs.landmarks == "dgex" and maps["landmarks"].exists()
    assert len(maps["landmarks"].read_text().splitlines()) == 943
    assert len(maps["targets"].read_text().splitlines()) == 9520
    assert "shared" not in maps["targets"].parts


def test_a_set_flag_without_a_value_is_refused():
    with pytest.raises(StreamgexError, match="expected KEY=VALUE"):
        load_config(CONFIG, ["split.seed"])
