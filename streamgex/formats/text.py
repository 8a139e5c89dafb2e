"""Reading gene-major text tables (GCT, GEUVADIS, TSV/CSV), plain or gzip.

Every text format the field uses stores one gene per line and one sample per
column. This module turns such lines into ``(n_genes, n_samples) float32``
blocks, with every error pinned to its line and column.
"""

import csv
import gzip
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import StreamgexError

GZIP_MAGIC = b"\x1f\x8b"

#: Cells read as a missing value (NaN), compared case-insensitively. What
#: happens to them is the ingest's ``allow_missing`` policy.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


def is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def numbered_lines(path):
    """Yield ``(line_number, line)`` from a plain or gzip text file, 1-based.

    Line ends are stripped. A truncated or corrupt gzip stream and bytes that
    are not UTF-8 raise StreamgexError naming the line reached.
    """
    opener = gzip.open if is_gzip(path) else open
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline=None) as f:
            for number, line in enumerate(f, 1):
                yield number, line.rstrip("\r\n")
    except EOFError:
        raise StreamgexError(
            f"{path}: truncated gzip stream after line {number}; the file is incomplete, "
            f"download or copy it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise StreamgexError(
            f"{path}: corrupt gzip data after line {number} ({exc}); obtain the file again"
        ) from None
    except UnicodeDecodeError:
        raise StreamgexError(
            f"{path}:{number + 1}: not UTF-8 text; is this the right file and --format?"
        ) from None


def first_line(path):
    """The first line of a text file, or None when the file has none."""
    for _, line in numbered_lines(path):
        return line
    return None


@dataclass
class GeneRows:
    """A block of consecutive gene rows of a gene-major table.

    Attributes
    ----------
    lines : list of int
        File line number of each row.
    meta : list of list of str
        The leading non-numeric fields of each row (id first).
    values : numpy.ndarray or None
        ``(n_rows, n_samples) float32``; None when the caller asked to skip
        parsing (rows already ingested before an interruption).
    """

    lines: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    values: object = None


@dataclass(frozen=True)
class TableLayout:
    """Where the numbers are in a gene-major table.

    Attributes
    ----------
    path : str
        The file.
    delimiter : str
        Field separator.
    sample_ids : list of str
        One per numeric column, in file order.
    n_meta : int
        Leading non-numeric fields per row (the gene id is the first).
    first_data_line : int
        Line number of the first gene row.
    declared_rows : int or None
        Row count the header promises (GCT), checked at the end.
    n_tail : int
        Trailing non-numeric fields per row (annotation columns after the samples).
    end_marker : str or None
        The line that ends the table (a GEO series matrix's
        ``!series_matrix_table_end``); a file that ends without it is incomplete.
    """

    path: str
    delimiter: str
    sample_ids: list
    n_meta: int
    first_data_line: int
    declared_rows: int = None
    n_tail: int = 0
    end_marker: str = None

    @property
    def width(self):
        return self.n_meta + len(self.sample_ids) + self.n_tail


def gene_rows(layout, *, block_rows, parse_from=0):
    """Yield the table's gene rows in blocks of at most ``block_rows``.

    Rows before index ``parse_from`` (a multiple of ``block_rows``) are checked
    for shape and their fields returned, but their numbers are not parsed
    (``values`` is None), which is how an interrupted ingest resumes without
    parsing again what it already stored. Blank lines at the end are ignored,
    as pandas and R ignore them; one with rows after it is an error.
    """
    block = GeneRows()
    rests = []
    index, blank, ended = 0, None, layout.end_marker is None
    for number, line in numbered_lines(layout.path):
        if number < layout.first_data_line:
            continue
        if layout.end_marker is not None and line.strip() == layout.end_marker:
            ended = True
            break
        if not line.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise StreamgexError(
                f"{layout.path}:{blank}: empty line inside the table; remove it"
            )
        if layout.declared_rows is not None and index >= layout.declared_rows:
            raise StreamgexError(
                f"{layout.path}:{number}: more gene rows than the {layout.declared_rows} "
                f"the header declares; fix the dimensions line"
            )
        meta, rest = split_row(line, layout, number)
        block.lines.append(number)
        block.meta.append(meta)
        if index >= parse_from:
            rests.append(rest)
        index += 1
        if len(block.lines) == block_rows:
            yield _finish_block(layout, block, rests)
            block, rests = GeneRows(), []
    if not ended:
        raise StreamgexError(
            f"{layout.path}: ends without its {layout.end_marker} line; the file is "
            f"incomplete, download or copy it again"
        )
    if block.lines:
        yield _finish_block(layout, block, rests)
    if layout.declared_rows is not None and index != layout.declared_rows:
        raise StreamgexError(
            f"{layout.path}: the header declares {layout.declared_rows} gene rows but the "
            f"table has {index}; fix the dimensions line or the table"
        )


def split_fields(line, delimiter, *, path, number):
    """A delimited line's fields as pandas' and R's readers see them: RFC 4180 double
    quotes around a field (which may hold the delimiter), ``""`` for a quote inside one."""
    if '"' not in line:
        return line.split(delimiter)
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise StreamgexError(f"{path}:{number}: badly quoted field ({exc}); a quoted field "
                             f"starts and ends with \" and doubles any \" inside it") from None


def split_row(line, layout, number):
    """``(meta fields, number text)`` of one row: the leading and trailing non-numeric
    fields, unquoted, and the delimited numbers between them for ``parse_numbers``.

    Rows without a double quote (nearly all rows of a large table) are cut by
    ``str.split`` alone; the ``csv`` module reads the others.
    """
    delimiter, n_meta, n_tail, width = layout.delimiter, layout.n_meta, layout.n_tail, layout.width
    parts = line.split(delimiter, n_meta)
    plain = '"' not in parts[-1] and all(
        '"' not in p or (len(p) >= 2 and p[0] == p[-1] == '"' and '"' not in p[1:-1])
        for p in parts[:-1])
    if plain:
        fields = line.count(delimiter) + 1
        if fields == width:
            rest, *tail = parts[n_meta].rsplit(delimiter, n_tail) if n_tail else parts[n_meta:]
            return [unquote(p) for p in parts[:n_meta]] + tail, rest
    else:
        fields = split_fields(line, delimiter, path=layout.path, number=number)
        if len(fields) == width:
            values = fields[n_meta:width - n_tail]
            for c, value in enumerate(values):
                if delimiter in value:
                    raise StreamgexError(f"{layout.path}:{number}:{n_meta + 1 + c}: non-numeric "
                                         f"value {value!r}")
            return fields[:n_meta] + fields[width - n_tail:], delimiter.join(values)
        fields = len(fields)
    raise StreamgexError(
        f"{layout.path}:{number}: ragged row with {fields} fields, expected {width} "
        f"({layout.n_meta} leading + {len(layout.sample_ids)} values"
        + (f" + {n_tail} trailing" if n_tail else "") + ")"
    )


def unquote(text):
    """``"abc"`` -> ``abc``; anything else unchanged."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _finish_block(layout, block, rests):
    if not rests:
        return block
    if len(rests) != len(block.lines):
        raise ValueError("parse_from must fall on a block boundary")
    block.values = parse_numbers(
        rests,
        delimiter=layout.delimiter,
        path=layout.path,
        lines=block.lines,
        first_column=layout.n_meta + 1,
    )
    return block


def parse_numbers(rows, *, delimiter, path, lines, first_column):
    """Parse delimited number rows into ``(len(rows), n) float32``.

    numpy's C parser does the work; when it refuses a row, the rows are parsed
    again in Python to find the cell: a missing-value token becomes NaN, any
    other non-number is an error naming its line and column.
    """
    if not any("_" in row for row in rows):  # numpy reads "1_000" as 1000: not a value here
        try:
            return np.loadtxt(
                rows, delimiter=delimiter, dtype=np.float32, ndmin=2, comments=None,
                quotechar=None
            )
        except ValueError:
            pass
    out = np.empty((len(rows), rows[0].count(delimiter) + 1), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, token in enumerate(row.split(delimiter)):
            try:
                if "_" in token:
                    raise ValueError(token)
                out[r, c] = float(token)
            except ValueError:
                if token.strip().lower() not in MISSING_TOKENS:
                    raise StreamgexError(
                        f"{path}:{lines[r]}:{first_column + c}: non-numeric value {token!r}"
                    ) from None
                out[r, c] = np.nan
    return out


def head(path, count):
    """The first ``count`` lines of a text file as ``(line_number, line)`` pairs."""
    out = []
    for item in numbered_lines(path):
        out.append(item)
        if len(out) == count:
            break
    return out


def check_unique(ids, *, what, path, where):
    """Raise on the first empty, space-padded or repeated id; ``where(i)`` names the position
    of id ``i``."""
    seen = {}
    for i, value in enumerate(ids):
        if not value.strip() or value != value.strip():
            raise StreamgexError(f"{path}: {what} id {value!r} at {where(i)} is "
                                 f"{'empty' if not value.strip() else 'padded with spaces'}; "
                                 f"ids must be non-empty, without leading or trailing spaces")
        if value in seen:
            raise StreamgexError(
                f"{path}: duplicate {what} id {value!r} at {where(i)} "
                f"(first at {where(seen[value])}); ids must be unique"
            )
        seen[value] = i
