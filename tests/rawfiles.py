"""Writers of small raw files in each input format, for the tests.

Values are written as the shortest text that reads back as the same float32,
so a correct ingest must reproduce them exactly.
"""

import gzip

import h5py
import numpy as np

from streamgex.simulate.writers import write_series_matrix  # noqa: F401 (the tests' writer too)


def text(value):
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(float(value))


def _open(path, gz):
    return gzip.open(path, "wt") if gz else open(path, "w")


def _rows(values):
    """Gene-major rows of tab-free number text from ``(n_samples, n_genes)``."""
    return [[text(v) for v in column] for column in np.asarray(values).T]


def write_gct12(path, values, samples, genes, descriptions=None, gz=False):
    descriptions = descriptions if descriptions is not None else ["na"] * len(genes)
    with _open(path, gz) as f:
        f.write(f"#1.2\n{len(genes)}\t{len(samples)}\n")
        f.write("\t".join(["Name", "Description", *samples]) + "\n")
        for gene, desc, row in zip(genes, descriptions, _rows(values)):
            f.write("\t".join([gene, desc, *row]) + "\n")


def write_gct13(path, values, samples, genes, symbols, gz=False):
    with _open(path, gz) as f:
        f.write(f"#1.3\n{len(genes)}\t{len(samples)}\t2\t1\n")
        f.write("\t".join(["id", "pr_gene_symbol", "pr_is_lm", *samples]) + "\n")
        f.write("\t".join(["cell_id", "-666", "-666", *["A375"] * len(samples)]) + "\n")
        for gene, symbol, row in zip(genes, symbols, _rows(values)):
            f.write("\t".join([gene, symbol, "0", *row]) + "\n")


def write_geuvadis(path, values, samples, genes, symbols, gz=True):
    with _open(path, gz) as f:
        f.write("\t".join(["TargetID", "Gene_Symbol", "Chr", "Coord", *samples]) + "\n")
        for i, (gene, symbol, row) in enumerate(zip(genes, symbols, _rows(values))):
            f.write("\t".join([gene, symbol, str(1 + i % 22), str(1000 + 17 * i), *row]) + "\n")


def write_table(path, values, samples, genes, delimiter="\t", symbols=None, gz=False):
    with _open(path, gz) as f:
        head = ["gene_id", *(["gene_symbol"] if symbols is not None else []), *samples]
        f.write(delimiter.join(head) + "\n")
        for i, (gene, row) in enumerate(zip(genes, _rows(values))):
            lead = [gene, *([symbols[i]] if symbols is not None else [])]
            f.write(delimiter.join([*lead, *row]) + "\n")


def write_gctx(path, values, samples, genes, symbols=None, chunks=True):
    with h5py.File(path, "w") as f:
        f.create_dataset("0/DATA/0/matrix", data=np.asarray(values, dtype=np.float32), chunks=chunks)
        f["0/META/ROW/id"] = np.array(genes, dtype="S")
        f["0/META/COL/id"] = np.array(samples, dtype="S")
        if symbols is not None:
            f["0/META/ROW/pr_gene_symbol"] = np.array(symbols, dtype="S")


def small_matrix(n_samples, n_genes, seed=0, low=4.0, high=15.0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, size=(n_samples, n_genes)).astype(np.float32)
    samples = [f"GSM{1000 + i}" for i in range(n_samples)]
    genes = [f"{200000 + 3 * j}_at" for j in range(n_genes)]
    return values, samples, genes
