"""D-GEX gene maps: ``SYMBOL<TAB>ENSEMBL<TAB>PROBE[,PROBE...]`` per row.

The landmark map and the target map list the genes found on both platforms
(paper section 2.1: 943 landmarks and 9,520 targets). A gene may be in both
maps with different probes (445 genes in the real maps), so a row's key is
its Ensembl id when that id is in one row only, else ``ENSEMBL_FIRSTPROBE``:
unique, readable, and the same on every platform.
"""

from dataclasses import dataclass

from ..errors import StreamgexError
from ..formats.text import check_unique
from ..ingest import strip_version


#: What a GEO platform table (``GPL570.annot``, ``GPL570-55999.txt``) given as a map lacks.
PLATFORM_HINT = ("; this looks like a GEO platform (GPL) annotation table: it maps probes to "
                 "genes but says neither which genes are landmarks or targets nor their "
                 "Ensembl ids; write a landmark and a target map from it in the D-GEX layout")


def is_platform_table(line):
    """Whether a line opens a GEO platform table: a ``#`` column note, a SOFT ``^``/``!``
    line, or a header ``ID<TAB>...``."""
    return line.startswith(("#", "^", "!")) or line.split("\t", 1)[0].strip() == "ID"


@dataclass(frozen=True)
class MapRow:
    """One gene of a map: symbol, Ensembl id (unversioned), probes, role."""

    symbol: str
    ensembl: str
    probes: tuple
    is_landmark: bool


def read_map(path, *, is_landmark):
    """Read a D-GEX map file into MapRows, checking its layout line by line."""
    rows = []
    try:
        lines = open(path, encoding="utf-8-sig").read().splitlines()
    except FileNotFoundError:
        raise StreamgexError(f"{path}: no such gene map") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].strip() or not fields[2].strip():
            raise StreamgexError(
                f"{path}:{number}: a map row is SYMBOL<TAB>ENSEMBL<TAB>PROBE[,PROBE...], "
                f"found {len(fields)} fields"
                + (PLATFORM_HINT if is_platform_table(line) else "")
            )
        probes = tuple(p.strip() for p in fields[2].split(",") if p.strip())
        rows.append(MapRow(fields[0].strip(), strip_version(fields[1].strip()), probes, is_landmark))
    if not rows:
        raise StreamgexError(f"{path}: empty gene map")
    return rows


def row_keys(rows):
    """Unique gene keys for map rows (see the module docstring)."""
    counts = {}
    for row in rows:
        counts[row.ensembl] = counts.get(row.ensembl, 0) + 1
    keys = [r.ensembl if counts[r.ensembl] == 1 else f"{r.ensembl}_{r.probes[0]}" for r in rows]
    check_unique(keys, what="gene", path="the gene maps",
                 where=lambda i: f"row {i + 1} (landmark rows first)")
    return keys
