"""Predictions kept gene-block-wise on disk, for statistics that need a gene's every value.

A per-gene Spearman rho ranks each gene over all profiles, which a single
streamed pass over profile chunks cannot do. ``Columns`` writes the predicted
and true values of each streamed chunk into a temporary Zarr store chunked by
(profiles, gene block), then reads one gene block at a time: memory is one
block, ``rows x block`` values, with the block sized to stay under ``BUDGET``
whatever the number of genes. Predictions may arrive a range of genes at a
time (D-GEX's partitions, one network loaded at a time); rows read back whole
give the per-profile statistics.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import zarr

from .metrics import pearson_columns, spearman_columns

BUDGET = 256 * 2**20  # bytes of one gene block (two float32 arrays and their float64 ranks)


class Columns:
    """A temporary on-disk ``(rows, genes)`` pair of arrays under ``folder``; a context manager
    that removes what it made."""

    def __init__(self, folder, rows, genes, chunk_rows):
        self.rows, self.genes = rows, genes
        self.block = int(np.clip(BUDGET // max(rows * 24, 1), 1, genes))
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="columns.partial.", dir=folder))
        group = zarr.open_group(self.path, mode="w")
        chunks = (max(min(chunk_rows, rows), 1), self.block)
        self.arrays = [group.create_array(name, shape=(rows, genes), chunks=chunks,
                                          dtype="float32")
                       for name in ("predicted", "true")]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)

    def write(self, start, *, true=None, predicted=None, column=0):
        """Rows from ``start`` of the true values, and of the predictions for the genes
        from ``column`` (a model that predicts the genes piece by piece)."""
        if true is not None:
            self.arrays[1][start:start + len(true)] = np.asarray(true, np.float32)
        if predicted is not None:
            predicted = np.asarray(predicted, np.float32)
            self.arrays[0][start:start + len(predicted),
                           column:column + predicted.shape[1]] = predicted

    def read_rows(self, start, stop):
        """``(predicted, true)`` of rows ``start:stop``, every gene."""
        return self.arrays[0][start:stop], self.arrays[1][start:stop]

    def per_gene(self):
        """``(pearson, spearman)``: ``(genes,)`` float64 each, one gene block at a time."""
        pearson = np.empty(self.genes)
        spearman = np.empty(self.genes)
        for a in range(0, self.genes, self.block):
            predicted, true = (x[:, a:a + self.block] for x in self.arrays)
            pearson[a:a + self.block] = pearson_columns(predicted, true)
            spearman[a:a + self.block] = spearman_columns(predicted, true)
        return pearson, spearman
