"""The command line as a script or a new user meets it: help and an example for every command
and argument, shell completion, JSON for `info` (issue 12.6; `status --json` and its exit
status are checked with the experiment, tests/test_experiment.py)."""

import argparse
import json

import numpy as np

from rawfiles import small_matrix, write_gctx
from streamgex.cli import EXAMPLES, build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_and_argument_has_help_and_every_command_an_example():
    commands = subcommands()
    assert set(commands) == set(EXAMPLES)
    for name, sub in commands.items():
        assert sub.description, name
        missing = [a.dest for a in sub._actions if not a.help]
        assert not missing, (name, missing)
        text = sub.format_help()
        assert "example:" in text and f"streamgex {name}" in text, name
        for example in EXAMPLES[name]:  # each example parses as that command
            parsed = build_parser().parse_args(example.split(">")[0].split()[1:])
            assert parsed.command == name, example


def test_completion_scripts_name_every_command(capsys):
    for shell in ("bash", "zsh"):
        assert main(["completion", shell]) == 0
        script = capsys.readouterr().out
        assert all(name in script for name in subcommands()), shell
        assert "--train-per-cluster" in script


def test_info_json_describes_the_store(tmp_path, capsys):
    values, samples, genes = small_matrix(40, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    assert main(["ingest", str(tmp_path / "x.gctx"), "--out", str(tmp_path / "x.zarr"),
                 "--chunk-samples", "16", "--quiet"]) == 0
    assert main(["info", str(tmp_path / "x.zarr"), "--json", "--verify", "--quiet"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["samples"], found["genes"], found["chunk_samples"], found["chunks"]) == (
        40, 6, 16, 3)
    assert found["step"] == "ingest" and found["source"]["format"] == "gctx"
    assert found["verified_chunks"] == 3 and found["bytes"] == values.astype(np.float32).nbytes


def test_stores_say_what_their_values_are(tmp_path, capsys):
    """Issue 12.4: raw, normalized and z-score stores looked alike; each now carries `units`
    (a step's own, or its input's), shown by info."""
    values, samples, genes = small_matrix(40, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    chain = [["ingest", str(tmp_path / "x.gctx")],
             ["normalize", str(tmp_path / "x.zarr"), "--reference", "mean"],
             ["standardize", str(tmp_path / "n.zarr")]]
    outs = ["x.zarr", "n.zarr", "s.zarr"]
    for args, out in zip(chain, outs):
        assert main([*args, "--out", str(tmp_path / out), "--quiet"]) == 0
    units = []
    for out in outs:
        assert main(["info", str(tmp_path / out), "--json"]) == 0
        units.append(json.loads(capsys.readouterr().out)["units"])
    assert units == ["as in the source file", "quantile-normalized", "z-score"]
    assert main(["info", str(tmp_path / "s.zarr")]) == 0
    assert "values      z-score" in capsys.readouterr().out


#: Run before the CLI in a fresh interpreter: an install with neither TensorFlow extra.
WITHOUT_TENSORFLOW = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
"""


def run_without_tensorflow(args):
    import subprocess
    import sys

    code = WITHOUT_TENSORFLOW + f"import streamgex.cli as cli; sys.exit(cli.main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_tensorflow_command_without_tensorflow_names_both_extras(tmp_path):
    """Issue 26.1: TensorFlow is an extra (cpu or gpu); without either, a command that needs it
    says what to install in one line instead of an ImportError's traceback."""
    for args in (["evaluate", str(tmp_path / "run"), str(tmp_path / "store")],
                 ["info", "--devices"]):
        out = run_without_tensorflow(args)
        assert out.returncode == 1, args
        assert out.stderr.splitlines() == [
            "streamgex: error: TensorFlow is not installed: pip install 'streamgex[cpu]' "
            "(or 'streamgex[gpu]' for an NVIDIA GPU)"], out.stderr
    values, samples, genes = small_matrix(40, 6)  # a store needs no TensorFlow
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = run_without_tensorflow(["ingest", str(tmp_path / "x.gctx"), "--out",
                                  str(tmp_path / "x.zarr"), "--quiet"])
    assert out.returncode == 0, out.stderr


def test_info_devices_lists_the_cpu_and_the_device_training_uses(capsys):
    """Issue 26.1: `info --devices` says what TensorFlow sees and where training runs: the first
    GPU where there is one, else the CPU (this machine: the CPU)."""
    assert main(["info", "--devices", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    kinds = [d["kind"] for d in found["devices"]]
    assert kinds[0] == "CPU" and found["devices"][0]["device"] == "cpu"
    assert found["training_uses"] == ("gpu:0" if "GPU" in kinds else "cpu")
    assert main(["info", "--devices"]) == 0
    assert f"training uses {found['training_uses']} " in capsys.readouterr().out
    assert main(["info"]) == 1  # neither a store nor --devices
    assert "--devices" in capsys.readouterr().err


def test_bf16_is_faster_only_on_hardware_that_multiplies_it():
    from streamgex import devices

    found = [devices.cpu_device(("a CPU", {"avx2", "avx512f"})),
             devices.gpu_device(0, "T4", (7, 5)), devices.gpu_device(1, "A100", (8, 0))]
    assert [d["bf16"] for d in found] == [False, False, True]
    assert devices.default(found) == "gpu:0"
    assert devices.format_devices(found).splitlines()[-1] == (
        "training uses gpu:0 (its first GPU); float32 (the default) is as fast there")
    assert devices.cpu_device(("a CPU", {"avx512_bf16", "amx_bf16"}))["bf16"] is True
    assert devices.cpu_device((None, None))["bf16"] is None  # no /proc/cpuinfo: not said


def test_log_file_in_a_missing_folder_is_made_and_a_folder_or_unwritable_path_refused(
        tmp_path, capsys):
    values, samples, genes = small_matrix(4, 6)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    ingest = ["ingest", str(tmp_path / "x.gctx"), "--quiet", "--log-file"]
    assert main([*ingest, str(tmp_path / "logs" / "day1" / "i.log"),
                 "--out", str(tmp_path / "a.zarr")]) == 0
    assert (tmp_path / "logs" / "day1" / "i.log").is_file()
    capsys.readouterr()
    (tmp_path / "plain").write_text("")
    for path in (tmp_path / "logs", tmp_path / "plain" / "i.log"):
        assert main([*ingest, str(path), "--out", str(tmp_path / "b.zarr")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("streamgex: error: --log-file ") and "\n" not in err, err
        assert str(path) in err, err
        assert not (tmp_path / "b.zarr").exists()


def test_sigterm_stops_like_ctrl_c_in_one_line_and_releases_the_lock(tmp_path):
    """Issue 27.7: a scheduler's cancel (SIGTERM) killed the process with no message; it now
    unwinds as Ctrl-C does: one line, exit 143, the store's lock released for a re-run."""
    import signal
    import subprocess
    import sys
    import time

    from streamgex.locks import lock_file
    from streamgex.store import building

    values, samples, genes = small_matrix(20000, 50)
    write_gctx(tmp_path / "x.gctx", values, samples, genes)
    out = tmp_path / "x.zarr"
    # chunks of 4 samples: 5,000 chunks, several seconds of writing to stop in the middle of
    proc = subprocess.Popen([sys.executable, "-m", "streamgex", "ingest", str(tmp_path / "x.gctx"),
                             "--out", str(out), "--chunk-samples", "4", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not building(out).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert proc.poll() is None, "the ingest ended before it could be stopped"
        assert lock_file(out).exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "streamgex: interrupted; re-run the same command to resume", err
    assert not lock_file(out).exists()
