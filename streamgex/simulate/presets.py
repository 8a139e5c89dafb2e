"""Dataset sizes the simulator can write."""

from dataclasses import dataclass, replace

from ..errors import StreamgexError
from .model import NONLINEARITY


@dataclass(frozen=True)
class Preset:
    """Shapes of one simulated dataset.

    Attributes
    ----------
    name : str
    geo_samples : int
        GEO profiles, near-duplicates included.
    landmarks : int
        Landmark map rows (one probe and one gene each).
    target_rows : int
        Target map rows: genes (several probes each) or, with
        ``probe_level_targets``, single probes.
    shared : int
        Genes listed in both maps, a landmark row and a target row with
        different probes (445 in the real D-GEX maps).
    geo_probes : int
        Probes in the GCTX; those in no map are GEO-only genes.
    rnaseq_genes : int
        Genes in the 1000G table; those in no map are RNA-Seq-only genes.
    rnaseq_samples : int
    groups : int
        Tissue / cell-type groups the GEO profiles come from.
    probe_level_targets : bool
        Target map rows are probes (D-GEX's full-GEO experiment used every
        probe as its own target), so probes of one gene share its Ensembl id.
    nonlinearity : float
        Mean share of a target's signal variance no linear function of the
        landmarks explains (``model.NONLINEARITY``; documented in ``model``).
    """

    name: str
    geo_samples: int
    landmarks: int
    target_rows: int
    shared: int
    geo_probes: int
    rnaseq_genes: int
    rnaseq_samples: int = 462
    groups: int = 40
    probe_level_targets: bool = False
    nonlinearity: float = NONLINEARITY


PRESETS = {
    # `streamgex demo`: after de-duplication and the split (configs/demo.toml), ~9,800
    # training profiles for 100 landmarks, ~98 per landmark as in the full GEO data
    # (88,807 / 978), where networks have the data to learn the non-linear part.
    "demo": Preset(
        name="demo",
        geo_samples=14_000,
        landmarks=100,
        target_rows=400,
        shared=12,
        geo_probes=900,
        rnaseq_genes=700,
        rnaseq_samples=120,
        groups=24,
    ),
    # The demo's genes with fewer profiles (~20 training profiles per landmark): what the
    # tests run on, seconds where the demo's data takes minutes.
    "small": Preset(
        name="small",
        geo_samples=3_000,
        landmarks=100,
        target_rows=400,
        shared=12,
        geo_probes=900,
        rnaseq_genes=700,
        rnaseq_samples=120,
        groups=24,
    ),
    # tools/bench_accuracy.py: ~90 training profiles per landmark after the paper's split,
    # as in the full GEO data (88,807 / 978), the size the one real-data fact about
    # non-linear gain is measured at (model.NONLINEARITY).
    "bench": Preset(
        name="bench",
        geo_samples=27_000,
        landmarks=200,
        target_rows=1_000,
        shared=20,
        geo_probes=2_400,
        rnaseq_genes=1_600,
        rnaseq_samples=200,
    ),
    # Paper section 2.1 / Table 2: 943 landmarks and 9,520 targets found on both
    # platforms, out of GEO's 22,268 probes and GEUVADIS's ~23,722 genes.
    "cross-platform": Preset(
        name="cross-platform",
        geo_samples=112_634,
        landmarks=943,
        target_rows=9_520,
        shared=445,
        geo_probes=22_268,
        rnaseq_genes=23_722,
    ),
    # Paper section 3.5: 978 landmark and 21,290 target probes, 112,634 profiles.
    "geo-full": Preset(
        name="geo-full",
        geo_samples=112_634,
        landmarks=978,
        target_rows=21_290,
        shared=445,
        geo_probes=22_268,
        rnaseq_genes=23_722,
        probe_level_targets=True,
    ),
}


def get_preset(name, *, samples=None, nonlinearity=None):
    """The preset called ``name``, with ``geo_samples`` and ``nonlinearity`` replaced if given."""
    if name not in PRESETS:
        raise StreamgexError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if samples is not None:
        if samples < 1:
            raise StreamgexError(f"--samples must be a positive integer, got {samples}")
        preset = replace(preset, geo_samples=samples)
    if nonlinearity is not None:
        if not 0 <= nonlinearity <= 1:
            raise StreamgexError(f"--nonlinearity must be between 0 and 1, got {nonlinearity}")
        preset = replace(preset, nonlinearity=nonlinearity)
    return preset
