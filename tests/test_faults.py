"""Fault injection over a whole small experiment: SIGKILLs at seeded random moments across
`streamgex run`, then the same command run to the end, give the outputs of a run that was never
interrupted, value for value (issue 11.10). The other faults have their own tests beside the
code they exercise: a kill inside a store's finish (test_ingest_resume), two writers
(test_locks), a damaged chunk (test_ingest_resume), a full disk (test_ingest_resume)."""

import json
import subprocess
import sys
import time

import numpy as np
import xarray as xr

from streamgex.store import building
from test_experiment import LINEAR_ONLY

SEED = 20261128
KILLS = 3


def run(config):
    return subprocess.Popen([sys.executable, "-m", "streamgex", "run", str(config), "--quiet"],
                            stderr=subprocess.PIPE)


def stores(work):
    """Every complete store of a workdir (preprocessing and split parts), by relative path."""
    return sorted(p.parent.relative_to(work) for p in work.rglob("zarr.json")
                  if p.parent.name.endswith(".zarr") or p.parent.name in ("train", "val", "test"))


def test_seeded_random_sigkills_across_a_run_end_with_the_uninterrupted_outputs(
        tmp_path, demo_raw):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for work in (reference, killed):
        (tmp_path / f"{work.name}.toml").write_text(LINEAR_ONLY.format(work=work, raw=demo_raw))
    started = time.monotonic()
    proc = run(tmp_path / "reference.toml")
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    whole = time.monotonic() - started

    # Each kill lands while a store chosen at random is being built (its partial name has
    # appeared), a random fraction of a second in: spread over the run's stages in order.
    order = sorted(stores(reference), key=lambda n: (reference / n / "zarr.json").stat().st_mtime)
    rng = np.random.default_rng(SEED)
    kills = []
    for target in sorted(rng.choice(len(order), size=KILLS, replace=False)):
        proc = run(tmp_path / "killed.toml")
        wanted = (building(killed / order[target]), killed / order[target])
        deadline = time.monotonic() + whole * 3
        while not any(p.exists() for p in wanted) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.5))
        if proc.poll() is not None:
            continue  # it finished first: nothing to kill
        proc.kill()
        proc.wait()
        kills.append((str(order[target]), sorted(str(p.relative_to(killed))
                                                 for p in killed.rglob("*.partial*"))))
    assert kills, "at least one kill hit the run"
    print("kills (while building, partial stores and files left):", kills)
    proc = run(tmp_path / "killed.toml")
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]

    assert stores(killed) == stores(reference) and stores(reference), (kills, stores(killed))
    for name in stores(reference):
        a, b = xr.open_zarr(killed / name), xr.open_zarr(reference / name)
        np.testing.assert_array_equal(a.expression.values, b.expression.values, err_msg=str(name))
        assert list(a.sample.values) == list(b.sample.values) and \
            list(a.gene.values) == list(b.gene.values), name
    assert not list(killed.rglob("*.partial*")), "no partial store or file is left"
    model = ("runs", "linear", "best", "linear.npy")
    assert killed.joinpath(*model).read_bytes() == reference.joinpath(*model).read_bytes()
    results = [json.loads(w.joinpath("runs", "linear", "eval", "test.json").read_text())
               for w in (killed, reference)]
    assert results[0]["mae"] == results[1]["mae"], kills
    assert (killed / "report" / "report.md").exists()
