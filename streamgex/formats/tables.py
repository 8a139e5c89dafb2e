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
and most sample sheets write), is read a profile per line
(``SampleMajorSource``), as a GCTX is. Which one a table is comes from
``samples_as`` (``--samples-as rows|columns``) when given, else from what
makes it certain (``orientation``): gene ids (Ensembl ``ENSG...``, Affymetrix
``..._at``, ``AFFX-...``) on one side and none on the other, a symbol column,
or a first header field that names genes (``gene_id``, ``ID_REF``, ...) or
samples (``sample``, ``cell``, ...). A table that shows neither (gene symbols
against sample names under an empty corner, say) is an error asking for
``--samples-as``: read the wrong way round it would be a silent transpose.
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


def open_table(path, samples_as=None):
    """Read a generic TSV/CSV header and return its source.

    ``samples_as``: ``"columns"`` (one gene per line), ``"rows"`` (one sample per
    line) or None (``orientation`` decides, or says it cannot).
    """
    header = _header(path)
    delimiter = "\t" if "\t" in header else "," if "," in header else None
    if delimiter is None:
        raise StreamgexError(
            f"{path}:1: no tab or comma in the header line; a table needs a gene id column "
            f"and at least one sample column"
        )
    fields = [unquote(f) for f in header.split(delimiter)]
    if samples_as not in (None, *SAMPLES_AS):
        raise StreamgexError(f"--samples-as must be one of {', '.join(SAMPLES_AS)}, "
                             f"got {samples_as!r}")
    if (samples_as or orientation(path, delimiter, fields)) == "rows":
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


SAMPLES_AS = ("rows", "columns")
#: First header fields that name the gene column, or the sample column (lower case).
GENE_CORNERS = {"id", "gene", "genes", "gene_id", "geneid", "gene_ids", "targetid", "probe",
                "probe_id", "probeid", "probe_set_id", "id_ref", "ensembl", "ensembl_id",
                "ensembl_gene_id", "symbol", "gene_symbol", "gene_name", "name", "feature",
                "feature_id", "rid"}
SAMPLE_CORNERS = {"sample", "samples", "sample_id", "sampleid", "cell", "cells", "cell_id",
                  "barcode", "barcodes", "obs", "obs_names", "cid", "profile", "gsm"}


def orientation(path, delimiter, fields, *, lines=50):
    """``"rows"`` (one sample per line), ``"columns"`` (one gene per line), or an error
    naming ``--samples-as`` when the table does not make it certain.

    Certain: the header's ids are gene ids (nine in ten) and the first column of the
    first ``lines`` data lines holds none, or the other way round; a symbol column
    after the first (genes per line); a first header field that names genes or
    samples.
    """
    ids = fields[1:]
    firsts = [unquote(line.split(delimiter, 1)[0]) for _, line in head(path, lines + 1)[1:]]
    header_genes = sum(bool(GENE_ID.match(i)) for i in ids)
    column_genes = sum(bool(GENE_ID.match(f)) for f in firsts)
    corner = fields[0].strip().lower()
    if ids and header_genes >= 0.9 * len(ids) and firsts and not column_genes:
        return "rows"
    if column_genes and not header_genes:
        return "columns"
    if len(fields) > 2 and fields[1].lower() in SYMBOL_COLUMNS or corner in GENE_CORNERS:
        return "columns"
    if corner in SAMPLE_CORNERS:
        return "rows"
    raise StreamgexError(
        f"{path}:1: cannot tell whether this table has a gene or a sample per line (no "
        f"Ensembl or probe ids on either side, first header field {fields[0]!r}); pass "
        f"--samples-as columns (a gene per line, samples across) or --samples-as rows (a "
        f"sample per line, genes across)")


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
