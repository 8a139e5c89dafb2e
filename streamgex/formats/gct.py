"""GCT 1.2 and 1.3 text files (Broad Institute / CMap), gene-major.

GCT 1.2::

    #1.2
    <n_genes>\t<n_samples>
    Name\tDescription\t<sample ids...>
    <gene id>\t<description>\t<values...>

GCT 1.3 adds row and column metadata::

    #1.3
    <n_genes>\t<n_samples>\t<n_row_meta>\t<n_col_meta>
    id\t<row meta fields...>\t<sample ids...>
    <col meta field>\t<n_row_meta placeholders>\t<values...>   (n_col_meta lines)
    <gene id>\t<row meta values...>\t<values...>

The description (1.2) is kept as ``gene_description``. GCT 1.3 keeps its
metadata as GCTX does: every row field becomes a gene coordinate under its own
name (a gene-symbol field as ``gene_symbol``, as GCTX's ``pr_gene_symbol``),
every column field a sample coordinate (``cell_id``, ``pert_iname``, ...:
what ``predict`` carries to its output), values as text. A field name that is
not a plain name, or is taken (``sample``, ``gene_raw``, a row field's name),
is kept under a plain, free one (``pert dose/unit`` -> ``pert_dose_unit``,
``cell_id_2``).
"""

import re

from ..errors import StreamgexError
from .source import GeneMajorSource
from .text import TableLayout, check_unique, head, unquote

SYMBOL_FIELDS = ("pr_gene_symbol", "gene_symbol", "symbol", "gene_name")
#: Names a field cannot take in a store: its arrays and the coordinates ingest writes.
TAKEN = ("sample", "gene", "expression", "scratch", "fitted", "gene_raw")


def open_gct(path):
    """Read a GCT file's header and return its gene-major source."""
    lines = head(path, 3)
    if not lines:
        raise StreamgexError(f"{path}: empty file")
    version = lines[0][1].strip().split("\t")[0]
    if version not in ("#1.2", "#1.3"):
        raise StreamgexError(f"{path}:1: not a GCT file: first line is {version!r}, expected #1.2 or #1.3")
    expected = 2 if version == "#1.2" else 4
    if len(lines) < 3:
        raise StreamgexError(f"{path}: GCT header ends after {len(lines)} lines; the file is incomplete")
    dims = lines[1][1].split("\t")
    try:
        dims = [int(d) for d in dims[:expected]]
    except ValueError:
        dims = []
    if len(dims) != expected or min(dims) < 0:
        raise StreamgexError(
            f"{path}:2: GCT {version[1:]} dimensions line must hold {expected} non-negative "
            f"integers, found {lines[1][1]!r}"
        )
    header = lines[2][1].split("\t")
    n_rows, n_samples = dims[0], dims[1]
    n_row_meta = 1 if version == "#1.2" else dims[2]
    n_col_meta = 0 if version == "#1.2" else dims[3]
    n_meta = 1 + n_row_meta
    samples = header[n_meta:]
    if len(samples) != n_samples:
        raise StreamgexError(
            f"{path}:3: the header names {len(samples)} samples but line 2 declares {n_samples}; "
            f"fix the dimensions line"
        )
    check_unique(samples, what="sample", path=path, where=lambda i: f"line 3, column {n_meta + 1 + i}")
    taken = list(TAKEN)
    if version == "#1.2":
        names = [None, "gene_description"]
    else:
        names = [None]
        for name in header[1:n_meta]:
            is_symbol = name.lower() in SYMBOL_FIELDS and "gene_symbol" not in taken
            names.append(_free("gene_symbol" if is_symbol else name, taken))
    layout = TableLayout(
        path=str(path),
        delimiter="\t",
        sample_ids=samples,
        n_meta=n_meta,
        first_data_line=4 + n_col_meta,
        declared_rows=n_rows,
    )
    return GeneMajorSource(format="gct", layout=layout, meta_names=names,
                           sample_fields=_column_fields(path, n_meta, samples, n_col_meta, taken))


def _column_fields(path, n_meta, samples, count, taken):
    """``{field: (n_samples,) str}`` of GCT 1.3's ``count`` column-metadata lines (4 on)."""
    lines = head(path, 3 + count)[3:]
    if len(lines) < count:
        raise StreamgexError(f"{path}: the file ends inside its {count} column-metadata lines; "
                             f"it is incomplete or its dimensions line is wrong")
    fields = {}
    for number, line in lines:
        parts = line.split("\t")
        if len(parts) != n_meta + len(samples):
            raise StreamgexError(
                f"{path}:{number}: column-metadata line with {len(parts)} fields, expected "
                f"{n_meta + len(samples)} (name, {n_meta - 1} placeholders, one per sample); "
                f"fix the line or the dimensions line's metadata counts")
        values = [unquote(v.strip()) for v in parts[n_meta:]]
        fields[_free(unquote(parts[0].strip()), taken)] = values
    return fields


def _free(name, taken):
    """``name`` as a plain store name (letters, digits, ``_.-``) not in ``taken``; taken now."""
    plain = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "field"
    found, k = plain, 1
    while found in taken:
        k += 1
        found = f"{plain}_{k}"
    taken.append(found)
    return found
