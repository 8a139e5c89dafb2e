"""``streamgex simulate``: realistic GEO and 1000G files in their real formats.

The real datasets (paper section 2.1) cannot be downloaded everywhere; this
writes stand-ins with the same layouts, identifiers and statistical traits, so
the pipeline runs unchanged on either. The generative model is documented in
``streamgex.simulate.model``; the sizes in ``streamgex.simulate.presets``.
"""

from pathlib import Path

from ..errors import StreamgexError
from .model import ExpressionModel, build_universe
from .presets import PRESETS, Preset, get_preset
from .writers import write_gctx, write_geuvadis, write_map

OUTPUTS = {"geo": "geo.gctx", "rnaseq": "1000g.txt.gz", "map_lm": "map_lm.txt", "map_tg": "map_tg.txt"}

__all__ = ["OUTPUTS", "PRESETS", "Preset", "get_preset", "simulate"]


def simulate(preset, out, *, seed=0, samples=None, nonlinearity=None, overwrite=False):
    """Write a simulated dataset into the folder ``out``.

    Parameters
    ----------
    preset : str
        ``"demo"``, ``"bench"``, ``"cross-platform"`` or ``"geo-full"``.
    out : str or Path
        Folder for ``geo.gctx``, ``1000g.txt.gz``, ``map_lm.txt``, ``map_tg.txt``.
    seed : int
        Same seed, same files.
    samples : int, optional
        GEO profile count instead of the preset's (the genes stay).
    nonlinearity : float, optional
        The targets' mean non-linear share instead of the preset's (``model``).
    overwrite : bool
        Replace existing outputs.

    Returns
    -------
    dict of str -> Path
        ``geo``, ``rnaseq``, ``map_lm``, ``map_tg``.
    """
    spec = get_preset(preset, samples=samples, nonlinearity=nonlinearity)
    out = Path(out)
    paths = {key: out / name for key, name in OUTPUTS.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise StreamgexError(
            f"{existing[0]}: already exists; pass --overwrite to replace the simulated files"
        )
    out.mkdir(parents=True, exist_ok=True)
    universe = build_universe(spec, seed)
    model = ExpressionModel(universe, spec, seed)
    write_map(paths["map_lm"], universe.landmark_rows, universe)
    write_map(paths["map_tg"], universe.target_rows, universe)
    write_geuvadis(
        paths["rnaseq"], universe=universe, model=model, samples=spec.rnaseq_samples, seed=seed
    )
    write_gctx(
        paths["geo"], universe=universe, model=model, samples=spec.geo_samples, seed=seed,
    )
    return paths
