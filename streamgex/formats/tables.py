"""Gene-by-sample text tables: the GEUVADIS RPKM table and generic TSV/CSV.

GEUVADIS (1000 Genomes RNA-Seq, file ``GD462.GeneQuantRPKM.50FN...txt.gz``)::

    TargetID\tGene_Symbol\tChr\tCoord\t<462 sample ids>
    ENSG00000152931.6\tPART1\t5\t59783540\t<RPKM values>

Generic table: a header row ``<id column>[,<annotations>],<sample ids>[,<annotations>]``
then one row per gene, tab- or comma-separated (whichever the header uses),
quoted as RFC 4180 says (R's ``write.csv``, pandas' ``to_csv``). Annotation
columns are known by name (``ANNOTATIONS``: ``Gene Symbol``, ``IDENTIFIER``,
``Gene Title``, ``ENTREZ_GENE_ID``, ...) and kept as gene coordinates, the
first symbol-like one as ``gene_symbol`` (``coordinate_names``).

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

import logging
import re

import numpy as np

from ..errors import StreamgexError
from .source import GeneMajorSource, SampleMajorSource
from .text import (TableLayout, check_unique, head, numbered_lines, parse_numbers,
                   split_fields, split_row)

log = logging.getLogger(__name__)

GEUVADIS_HEADER = ("TargetID", "Gene_Symbol", "Chr", "Coord")


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
    fields = split_fields(header, delimiter, path=path, number=1)
    if samples_as not in (None, *SAMPLES_AS):
        raise StreamgexError(f"--samples-as must be one of {', '.join(SAMPLES_AS)}, "
                             f"got {samples_as!r}")
    if (samples_as or orientation(path, delimiter, fields)) == "rows":
        return _sample_rows(path, delimiter, fields)
    n_meta, n_tail = annotation_columns(path, fields)
    samples = fields[n_meta:len(fields) - n_tail]
    _check_samples(path, samples, first_column=n_meta + 1)
    layout = TableLayout(path=str(path), delimiter=delimiter, sample_ids=samples, n_meta=n_meta,
                         first_data_line=2, n_tail=n_tail)
    names = [None, *coordinate_names(fields[1:n_meta] + fields[len(fields) - n_tail:])]
    return GeneMajorSource(format="tsv", layout=layout, meta_names=names)


#: Header names of per-gene annotation columns (``normal_name``): GEO's GDS value tables
#: (``IDENTIFIER``, and after the samples ``Gene title`` ... ``GO:Component ID``), GPL
#: annotation tables (``Gene Symbol``, ``Gene Title``, ``ENTREZ_GENE_ID``, ...), GEO2R and
#: R (``Gene.symbol``), GSEA (``Description``), Ensembl BioMart (``Gene name``).
ANNOTATIONS = {
    "gene_symbol", "symbol", "gene_name", "description", "identifier", "hgnc_symbol",
    "gene_title", "gene_description", "title", "entrez_gene_id", "entrez_id", "entrez",
    "gene_id", "refseq", "refseq_transcript_id", "unigene", "unigene_title", "unigene_symbol",
    "unigene_id", "nucleotide_title", "gi", "genbank_accession", "gb_acc", "spot_id",
    "platform_cloneid", "platform_orf", "platform_spotid", "chromosome", "chr",
    "chromosome_location", "chromosome_annotation", "go_function", "go_process",
    "go_component", "go_function_id", "go_process_id", "go_component_id",
    "gene_ontology_biological_process", "gene_ontology_cellular_component",
    "gene_ontology_molecular_function", "target_description", "representative_public_id",
    "sequence_type", "sequence_source", "species_scientific_name", "annotation_date",
    "gene_type", "gene_biotype", "biotype", "ensembl", "ensembl_gene_id", "ensembl_id"}
#: Annotations whose first one becomes ``gene_symbol`` (``predict --genes-by symbol``).
SYMBOLS = ("gene_symbol", "symbol", "gene_name", "identifier", "hgnc_symbol", "description")


def normal_name(name):
    """``Gene Symbol``, ``Gene.symbol``, ``GENE_SYMBOL`` -> ``gene_symbol``."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def annotation_columns(path, fields):
    """``(n_meta, n_tail)`` of a gene-per-line table: the id column and the annotation
    columns (``ANNOTATIONS``, by name) after it, and those after the samples.

    By name only: a column of text with another name is a sample with a non-numeric
    value (an error naming the cell), never silently dropped from the samples.
    """
    n_meta = 1
    while n_meta < len(fields) - 1 and normal_name(fields[n_meta]) in ANNOTATIONS:
        n_meta += 1
    n_tail = 0
    while len(fields) - n_tail - 1 > n_meta and \
            normal_name(fields[len(fields) - n_tail - 1]) in ANNOTATIONS:
        n_tail += 1
    if n_meta + n_tail > 1:
        names = fields[1:n_meta] + fields[len(fields) - n_tail:]
        log.info("%s: %s read as gene annotations, not samples", path,
                 ", ".join(repr(n) for n in names))
    return n_meta, n_tail


def coordinate_names(columns):
    """The store coordinate of each annotation column: the first symbol-like one is
    ``gene_symbol``, the others ``gene_<normal name>`` (each name once)."""
    names, taken = [], {"gene", "gene_raw"}
    for column in columns:
        base = normal_name(column) or "annotation"
        name = "gene_symbol" if base in SYMBOLS and "gene_symbol" not in taken else \
            base if base.startswith("gene_") else f"gene_{base}"
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}_{k}", k + 1
        taken.add(unique)
        names.append(unique)
    return names


#: Ids that can only be genes: Ensembl gene ids, Affymetrix probe sets.
GENE_ID = re.compile(r"^((?i:ENS[A-Z]*G)\d{6,}(\.\d+)?|\d+(_[a-z])?_at|AFFX-.+)$")


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
    firsts = [split_fields(line, delimiter, path=path, number=number)[0]
              for number, line in head(path, lines + 1)[1:]]
    header_genes = sum(bool(GENE_ID.match(i)) for i in ids)
    column_genes = sum(bool(GENE_ID.match(f)) for f in firsts)
    corner = normal_name(fields[0])
    if ids and header_genes >= 0.9 * len(ids) and firsts and not column_genes:
        return "rows"
    if column_genes and not header_genes:
        return "columns"
    if any(normal_name(f) in ANNOTATIONS for f in fields[1:]) or corner in GENE_CORNERS:
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
    layout = TableLayout(path=str(path), delimiter=delimiter, sample_ids=list(genes), n_meta=1,
                         first_data_line=2)
    samples, numbers = [], []
    for number, line in numbered_lines(path):
        if number > 1 and line.strip():
            samples.append(split_row(line, layout, number)[0][0])
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
            rows.append(split_row(line, layout, number)[1])
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
