"""Gene-by-sample text tables: the GEUVADIS RPKM table and generic TSV/CSV.

GEUVADIS (1000 Genomes RNA-Seq, file ``GD462.GeneQuantRPKM.50FN...txt.gz``)::

    TargetID\tGene_Symbol\tChr\tCoord\t<462 sample ids>
    ENSG00000152931.6\tPART1\t5\t59783540\t<RPKM values>

Generic table: a header row ``<id column name>[,<symbol column>],<sample ids>``
then one row per gene, tab- or comma-separated (whichever the header uses).
A second column named like a symbol (``gene_symbol``, ``symbol``,
``gene_name``, ``description``) is kept as ``gene_symbol``. Double quotes
around ids, as R's ``write.csv`` writes them, are removed.

The other orientation, one sample per row (what ``AnnData.to_df().to_csv()``
and most sample sheets write), is recognised where the ids make it certain:
header ids that are gene ids (Ensembl ``ENSG...``, Affymetrix ``..._at``,
``AFFX-...``) and a first column that holds none. Such a table is read a
profile per line (``SampleMajorSource``), as a GCTX is. Tables whose ids are
neither (gene symbols, say) are read gene per row, as before.
"""

import re

import numpy as np

from ..errors import StreamgexError
from .source import GeneMajorSource, SampleMajorSource
from .text import TableLayout, check_unique, head, numbered_lines, parse_numbers

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
    if samples_as_rows(path, delimiter, fields):
        return _sample_rows(path, delimiter, fields)
    n_meta = 2 if len(fields) > 2 and fields[1].lower() in SYMBOL_COLUMNS else 1
    samples = fields[n_meta:]
    _check_samples(path, samples, first_column=n_meta + 1)
    layout = TableLayout(
        path=str(path), delimiter=delimiter, sample_ids=samples, n_meta=n_meta, first_data_line=2
    )
    names = [None, "gene_symbol"][:n_meta]
    return GeneMajorSource(format="tsv", layout=layout, meta_names=names)


#: Ids that can only be genes: Ensembl gene ids, Affymetrix probe sets.
GENE_ID = re.compile(r"^(ENS[A-Z]*G\d{6,}(\.\d+)?|\d+(_[a-z])?_at|AFFX-.+)$")


def samples_as_rows(path, delimiter, fields, *, lines=50):
    """Whether a table holds one sample per row: its header's ids are gene ids (at least
    nine in ten) and the first column of its first ``lines`` data lines holds none."""
    ids = fields[1:]
    if not ids or sum(bool(GENE_ID.match(i)) for i in ids) < 0.9 * len(ids):
        return False
    firsts = [unquote(line.split(delimiter, 1)[0]) for _, line in head(path, lines + 1)[1:]]
    return bool(firsts) and not any(GENE_ID.match(f) for f in firsts)


def _sample_rows(path, delimiter, fields):
    """A samples-by-genes table as a ``SampleMajorSource``: one pass reads the sample ids,
    then ``read`` goes through the lines in order (``ingest`` reads forward only)."""
    genes = np.array(fields[1:], dtype=object)
    check_unique(genes, what="gene", path=path, where=lambda i: f"line 1, column {i + 2}")
    samples, numbers = [], []
    for number, line in numbered_lines(path):
        if number > 1 and line.strip():
            samples.append(unquote(line.split(delimiter, 1)[0]))
            numbers.append(number)
    if not samples:
        raise StreamgexError(f"{path}: the table has a header but no sample rows")
    samples = np.array(samples, dtype=object)
    check_unique(samples, what="sample", path=path,
                 where=lambda i: f"line {numbers[i]}, column 1")
    cursor = {"next": 0, "lines": None}

    def read(start, stop):
        if cursor["lines"] is None or start < cursor["next"]:
            cursor["lines"] = (item for item in numbered_lines(path)
                               if item[0] > 1 and item[1].strip())
            cursor["next"] = 0
        rows, at = [], []
        for number, line in cursor["lines"]:
            index = cursor["next"]
            cursor["next"] += 1
            if index < start:
                continue
            rest = line.split(delimiter, 1)[1] if delimiter in line else ""
            if rest.count(delimiter) != len(genes) - 1:
                raise StreamgexError(f"{path}:{number}: {rest.count(delimiter) + 1} values for "
                                     f"{len(genes)} genes in the header")
            rows.append(rest)
            at.append(number)
            if cursor["next"] >= stop:
                break
        return parse_numbers(rows, delimiter=delimiter, path=path, lines=at, first_column=2)

    return SampleMajorSource(
        format="tsv", path=str(path), sample_ids=samples, gene_ids=genes, read=read,
        position=lambda i, j: f"{path}:{numbers[i]}:{j + 2} (sample {samples[i]!r}, gene "
                              f"{genes[j]!r})",
        gene_position=lambda i: f"line 1, column {i + 2}")


def _header(path):
    lines = head(path, 1)
    if not lines:
        raise StreamgexError(f"{path}: empty file")
    return lines[0][1]


def _check_samples(path, samples, *, first_column):
    if not samples or samples == [""]:
        raise StreamgexError(f"{path}:1: the header names no sample columns")
    check_unique(samples, what="sample", path=path, where=lambda i: f"line 1, column {first_column + i}")
