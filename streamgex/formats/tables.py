"""Gene-by-sample text tables: the GEUVADIS RPKM table and generic TSV/CSV.

GEUVADIS (1000 Genomes RNA-Seq, file ``GD462.GeneQuantRPKM.50FN...txt.gz``)::

    TargetID\tGene_Symbol\tChr\tCoord\t<462 sample ids>
    ENSG00000152931.6\tPART1\t5\t59783540\t<RPKM values>

Generic table: a header row ``<id column name>[,<symbol column>],<sample ids>``
then one row per gene, tab- or comma-separated (whichever the header uses).
A second column named like a symbol (``gene_symbol``, ``symbol``,
``gene_name``, ``description``) is kept as ``gene_symbol``. Double quotes
around ids, as R's ``write.csv`` writes them, are removed.
"""

from ..errors import StreamgexError
from .source import GeneMajorSource
from .text import TableLayout, check_unique, head

GEUVADIS_HEADER = ("TargetID", "Gene_Symbol", "Chr", "Coord")
SYMBOL_COLUMNS = ("gene_symbol", "symbol", "gene_name", "description")


def unquote(text):
    """``"abc"`` -> ``abc``; anything else unchanged."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def is_geuvadis_header(line):
    return tuple(line.split("\t")[:4]) == GEUVADIS_HEADER


def open_geuvadis(path):
    """Read the GEUVADIS table's header and return its gene-major source."""
    header = _header(path)
    if not is_geuvadis_header(header):
        raise StreamgexError(
            f"{path}:1: not a GEUVADIS table: the header must start with "
            f"{chr(9).join(GEUVADIS_HEADER)}"
        )
    samples = header.split("\t")[4:]
    _check_samples(path, samples, first_column=5)
    layout = TableLayout(
        path=str(path), delimiter="\t", sample_ids=samples, n_meta=4, first_data_line=2
    )
    return GeneMajorSource(
        format="geuvadis",
        layout=layout,
        meta_names=[None, "gene_symbol", "gene_chr", "gene_coord"],
        nonnegative=True,
    )


def open_table(path):
    """Read a generic gene-by-sample TSV/CSV header and return its source."""
    header = _header(path)
    delimiter = "\t" if "\t" in header else "," if "," in header else None
    if delimiter is None:
        raise StreamgexError(
            f"{path}:1: no tab or comma in the header line; a table needs a gene id column "
            f"and at least one sample column"
        )
    fields = [unquote(f) for f in header.split(delimiter)]
    n_meta = 2 if len(fields) > 2 and fields[1].lower() in SYMBOL_COLUMNS else 1
    samples = fields[n_meta:]
    _check_samples(path, samples, first_column=n_meta + 1)
    layout = TableLayout(
        path=str(path), delimiter=delimiter, sample_ids=samples, n_meta=n_meta, first_data_line=2
    )
    names = [None, "gene_symbol"][:n_meta]
    return GeneMajorSource(format="tsv", layout=layout, meta_names=names)


def _header(path):
    lines = head(path, 1)
    if not lines:
        raise StreamgexError(f"{path}: empty file")
    return lines[0][1]


def _check_samples(path, samples, *, first_column):
    if not samples or samples == [""]:
        raise StreamgexError(f"{path}:1: the header names no sample columns")
    check_unique(samples, what="sample", path=path, where=lambda i: f"line 1, column {first_column + i}")
