"""Several raw files of one format read as one source: a GEO compendium built from series.

``streamgex ingest A B C --out geo.zarr`` puts the samples of A, then B, then C
into one store. The files must be of one format and one platform, list the same
genes in the same order, and share no sample id. Sample-major files (GCTX,
AnnData, sample-per-line tables) are read as one ``SampleMajorSource`` whose
``read`` crosses from one file to the next; gene-major text files (series
matrices, GCT, TSV) stay a list, which ingest transposes side by side.
"""

import numpy as np

from ..errors import StreamgexError
from .source import SampleMajorSource
from .text import check_unique


def check_together(sources):
    """An error unless ``sources`` (opened, in order) can go into one store: one format
    and orientation, one platform, no sample id twice."""
    first = sources[0]
    for src in sources[1:]:
        if src.format != first.format or type(src) is not type(first):
            raise StreamgexError(
                f"{src.path}: is a {_kind(src)} but {first.path} is a {_kind(first)}; "
                f"ingest files of one format together")
        platform = getattr(src, "platform", None)
        if platform != getattr(first, "platform", None):
            raise StreamgexError(
                f"{src.path}: platform {platform} but {first.path} is "
                f"{getattr(first, 'platform', None)}; one store holds one platform: ingest "
                f"each platform into its own store")
    owners = [(k, i) for k, src in enumerate(sources) for i in range(len(src.sample_ids))]
    ids = np.concatenate([np.asarray(src.sample_ids, dtype=object) for src in sources])
    check_unique(ids, what="sample", path=", ".join(src.path for src in sources),
                 where=lambda n: f"{sources[owners[n][0]].path} sample {owners[n][1] + 1}")


def _kind(src):
    by = " (a sample per line)" if src.format == "tsv" and isinstance(src, SampleMajorSource) \
        else ""
    return f"{src.format} file{by}"


def concatenated(sources):
    """One ``SampleMajorSource`` of several with the same genes: their samples in order."""
    first = sources[0]
    for src in sources[1:]:
        if len(src.gene_ids) != len(first.gene_ids) or (src.gene_ids != first.gene_ids).any():
            differ = np.flatnonzero(src.gene_ids[:len(first.gene_ids)]
                                    != first.gene_ids[:len(src.gene_ids)])
            j = int(differ[0]) if differ.size else min(len(src.gene_ids), len(first.gene_ids))
            raise StreamgexError(
                f"{src.path}: its genes differ from {first.path}'s at gene {j + 1} "
                f"({len(src.gene_ids)} genes against {len(first.gene_ids)}); files ingested "
                f"into one store must list the same genes in the same order")
    starts = np.cumsum([0] + [len(src.sample_ids) for src in sources])

    def owner(i):
        k = int(np.searchsorted(starts, i, side="right") - 1)
        return sources[k], i - starts[k]

    def read(start, stop):
        parts = []
        for k, src in enumerate(sources):
            lo, hi = max(start, starts[k]), min(stop, starts[k + 1])
            if lo < hi:
                parts.append(src.read(lo - starts[k], hi - starts[k]))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def position(i, j):
        src, local = owner(i)
        return src.position(local, j)

    def close():
        for src in sources:
            src.close()

    return SampleMajorSource(
        format=first.format, path=first.path,
        sample_ids=np.concatenate([np.asarray(s.sample_ids, dtype=object) for s in sources]),
        gene_ids=first.gene_ids, read=read, position=position,
        gene_position=first.gene_position, close=close, gene_coords=first.gene_coords,
        gene_fields=first.gene_fields)
