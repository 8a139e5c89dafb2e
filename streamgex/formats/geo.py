"""GEO series-matrix files (``GSE*_series_matrix.txt.gz``), gene-major text.

GEO's layout::

    !Series_title\t"..."
    !Series_geo_accession\t"GSE2034"
    !Sample_title\t"tumor 1"\t"tumor 2"
    !Sample_geo_accession\t"GSM36777"\t"GSM36778"
    !Sample_platform_id\t"GPL96"\t"GPL96"
    !Sample_characteristics_ch1\t"ER: +"\t"ER: -"
    !Sample_characteristics_ch1\t"age: 51"\t"age: 63"
    !series_matrix_table_begin
    "ID_REF"\t"GSM36777"\t"GSM36778"
    "1007_s_at"\t3848.1\t1887.6
    !series_matrix_table_end

Each ``!Sample_*`` line becomes a sample coordinate ``sample_<field>`` (lower
case); a repeated one is numbered as GEOquery numbers it
(``sample_characteristics_ch1``, ``sample_characteristics_ch1_1``, ...). The
table between the two markers is read as any gene-per-line table; a file
that ends before ``!series_matrix_table_end`` is incomplete.
"""

import numpy as np

from ..errors import StreamgexError
from .source import GeneMajorSource
from .text import TableLayout, check_unique, numbered_lines, split_fields

TABLE_BEGIN = "!series_matrix_table_begin"
TABLE_END = "!series_matrix_table_end"
SAMPLE = "!Sample_"


def is_series_matrix(line):
    """Whether a first line is a series matrix's (``!Series_title ...``)."""
    return line.startswith("!Series_") or line.strip() == TABLE_BEGIN


def open_series_matrix(path):
    """Read a series matrix's sample lines and table header; return its gene-major source."""
    fields, where = {}, {}
    header = None
    for number, line in numbered_lines(path):
        if header is not None:
            header = (number, line)
            break
        if line.strip() == TABLE_BEGIN:
            header = ()
        elif line.startswith(SAMPLE):
            key, *values = split_fields(line, "\t", path=path, number=number)
            name = sample_field(key, fields)
            fields[name], where[name] = values, number
    if header is None:
        raise StreamgexError(f"{path}: no {TABLE_BEGIN} line; is this a GEO series matrix? "
                             f"(download the GSE*_series_matrix.txt.gz file)")
    if not header:
        raise StreamgexError(f"{path}: ends after {TABLE_BEGIN}; the file is incomplete, "
                             f"download it again")
    number, line = header
    samples = split_fields(line, "\t", path=path, number=number)[1:]
    if not samples:
        raise StreamgexError(f"{path}:{number}: the table header names no samples")
    check_unique(samples, what="sample", path=path,
                 where=lambda i: f"line {number}, column {i + 2}")
    for name, values in fields.items():
        if len(values) != len(samples):
            raise StreamgexError(
                f"{path}:{where[name]}: {len(values)} values for the table's {len(samples)} "
                f"samples; every !Sample_ line has one value per sample")
    accessions = fields.get("sample_geo_accession")
    if accessions is not None and accessions != samples:
        raise StreamgexError(
            f"{path}:{number}: the table's columns are not the !Sample_geo_accession samples "
            f"(line {where['sample_geo_accession']}) in order; the file was edited: download "
            f"it again")
    platforms = sorted(set(fields.get("sample_platform_id", [])))
    if len(platforms) > 1:
        raise StreamgexError(
            f"{path}:{where['sample_platform_id']}: samples of several platforms "
            f"({', '.join(platforms)}); GEO writes one series matrix per platform "
            f"(GSE...-GPL..._series_matrix.txt.gz): ingest each on its own")
    layout = TableLayout(path=str(path), delimiter="\t", sample_ids=samples, n_meta=1,
                         first_data_line=number + 1, end_marker=TABLE_END)
    return GeneMajorSource(
        format="series-matrix", layout=layout, meta_names=[None],
        sample_fields={name: np.array(values, dtype=object) for name, values in fields.items()},
        platform=platforms[0] if platforms else None)


def sample_field(key, taken):
    """``!Sample_characteristics_ch1`` -> ``sample_characteristics_ch1``, or
    ``sample_characteristics_ch1_1``, ``_2``, ... when ``taken`` holds it already."""
    name = "sample_" + key[len(SAMPLE):].strip().lower()
    unique, k = name, 1
    while unique in taken:
        unique, k = f"{name}_{k}", k + 1
    return unique
