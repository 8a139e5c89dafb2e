"""Data files shipped with streamgex.

``maps/dgex_map_lm.txt`` and ``maps/dgex_map_tg.txt``: the landmark (943 rows)
and target (9,520 rows) gene maps of D-GEX's cross-platform experiment
(Chen et al., Bioinformatics 2016), from D-GEX's public repository (GPL-2.0),
unchanged: ``SYMBOL<TAB>ENSEMBL_ID<TAB>AFFY_PROBE[,PROBE...]`` per row. They
are gene identifiers, not code; see ``maps/NOTICE``.
"""

from pathlib import Path

MAPS = Path(__file__).resolve().parent / "maps"

#: The value of ``inputs.landmarks`` / ``inputs.targets`` that means the shipped maps.
PACKAGED = "dgex"


def map_path(value, *, role):
    """The map file a config value names: ``"dgex"`` is the shipped D-GEX map of ``role``.

    ``role``: ``"landmarks"`` or ``"targets"``. Any other value is a path.
    """
    if value == PACKAGED:
        return MAPS / ("dgex_map_lm.txt" if role == "landmarks" else "dgex_map_tg.txt")
    return Path(value)
