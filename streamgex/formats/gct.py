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

The description (1.2) is kept as ``gene_description``; of the 1.3 row
metadata, a gene-symbol field becomes ``gene_symbol``.
"""

from ..errors import StreamgexError
from .source import GeneMajorSource
from .text import TableLayout, check_unique, head

SYMBOL_FIELDS = ("pr_gene_symbol", "gene_symbol", "symbol", "gene_name")


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
    if version == "#1.2":
        names = [None, "gene_description"]
    else:
        names = [None]
        for name in header[1:n_meta]:
            is_symbol = name.lower() in SYMBOL_FIELDS and "gene_symbol" not in names
            names.append("gene_symbol" if is_symbol else None)
    layout = TableLayout(
        path=str(path),
        delimiter="\t",
        sample_ids=samples,
        n_meta=n_meta,
        first_data_line=4 + n_col_meta,
        declared_rows=n_rows,
    )
    return GeneMajorSource(format="gct", layout=layout, meta_names=names)
