"""Writing simulated data in the real files' formats: GCTX, GEUVADIS, GEO series matrices,
D-GEX maps."""

import gzip

import h5py
import numpy as np

from ..atomic import atomic_path
from ..formats.gctx import create_gctx
from ..progress import progress
from .model import add_near_duplicates, probe_values

#: GEO profiles generated per step; each block has its own random stream, so
#: memory is one block whatever the profile count.
BLOCK = 1024


def geo_sample_ids(count):
    """GEO-like sample ids, ``GSM100001`` ... (unique, increasing)."""
    return np.array([f"GSM{100_000 + 3 * i + (i * 7919) % 3}" for i in range(count)], dtype=object)


def write_gctx(path, *, universe, model, samples, seed):
    """Write ``samples`` GEO profiles over the universe's probes as CMap GCTX 1.0.

    The matrix is ``(samples, probes) float32`` at ``/0/DATA/0/matrix`` in
    ~1 MiB HDF5 chunks (like cmapPy's default), ids at ``/0/META/{ROW,COL}/id``
    and probe symbols at ``/0/META/ROW/pr_gene_symbol``.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        matrix = create_gctx(f, sample_ids=geo_sample_ids(samples), gene_ids=universe.probe_ids,
                             gene_symbols=universe.symbol[universe.probe_gene])
        bar = progress(total=samples, desc="simulating GEO", unit="profile")
        for b, start in enumerate(range(0, samples, BLOCK)):
            stop = min(start + BLOCK, samples)
            rng = np.random.default_rng([seed, 10, b])
            genes = model.geo_genes(rng, stop - start)
            values = probe_values(
                rng, genes, universe.probe_gene, universe.probe_offset, universe.probe_noise
            )
            matrix[start:stop] = add_near_duplicates(rng, values)
            bar.update(stop - start)
        bar.close()


def write_geuvadis(path, *, universe, model, samples, seed):
    """Write the 1000G-like RPKM table in the GEUVADIS GD462 layout, gzip-compressed."""
    rng = np.random.default_rng([seed, 20])
    genes = universe.rnaseq_genes
    rpkm = model.rpkm(rng, genes, model.lcl_genes(rng, samples)[:, genes])
    ids = [f"HG{i:05d}" if i % 2 else f"NA{i + 6984:05d}" for i in range(96, 96 + samples)]
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", compresslevel=6) as f:
        f.write("\t".join(["TargetID", "Gene_Symbol", "Chr", "Coord", *ids]) + "\n")
        for row, gene in enumerate(genes):
            lead = (
                f"{universe.ensembl[gene]}.{universe.version[gene]}\t{universe.symbol[gene]}\t"
                f"{universe.chromosome[gene]}\t{universe.coordinate[gene]}\t"
            )
            f.write(lead + "\t".join(f"{v:g}" for v in rpkm[:, row].tolist()) + "\n")


def write_map(path, rows, universe):
    """Write a D-GEX gene map: ``SYMBOL<TAB>ENSEMBL<TAB>PROBE[,PROBE...]`` per row."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for gene, probes in rows:
            probe_list = ",".join(universe.probe_ids[p] for p in probes)
            f.write(f"{universe.symbol[gene]}\t{universe.ensembl[gene]}\t{probe_list}\n")


def write_series_matrix(path, values, sample_ids, probe_ids, *, series, platform,
                        characteristics=(), gz=True):
    """Write profiles as GEO writes a series matrix (``GSE*_series_matrix.txt.gz``).

    ``values``: ``(n_samples, n_probes) float32``, written one probe per line as the
    shortest text that reads back as the same float32; ids in double quotes, as GEO
    quotes them. ``characteristics``: ``(key, values)`` pairs, one
    ``!Sample_characteristics_ch1`` line each (``"key: value"`` per sample).
    """
    def quoted(items):
        return "\t".join(f'"{item}"' for item in items)

    n = len(sample_ids)
    with atomic_path(path) as tmp, (gzip.open(tmp, "wt") if gz else open(tmp, "w")) as f:
        f.write(f'!Series_title\t"Simulated series {series}"\n'
                f'!Series_geo_accession\t"{series}"\n!Series_platform_id\t"{platform}"\n\n')
        f.write(f"!Sample_title\t{quoted(f'{series} profile {i + 1}' for i in range(n))}\n")
        f.write(f"!Sample_geo_accession\t{quoted(sample_ids)}\n")
        f.write(f"!Sample_platform_id\t{quoted([platform] * n)}\n")
        for key, column in characteristics:
            f.write(f"!Sample_characteristics_ch1\t{quoted(f'{key}: {v}' for v in column)}\n")
        f.write(f"!Sample_data_row_count\t{quoted([len(probe_ids)] * n)}\n")
        f.write(f'!series_matrix_table_begin\n"ID_REF"\t{quoted(sample_ids)}\n')
        for probe, row in zip(probe_ids, np.asarray(values, dtype=np.float32).T):
            f.write(f'"{probe}"\t' + "\t".join(repr(float(v)) for v in row.tolist()) + "\n")
        f.write("!series_matrix_table_end\n")
