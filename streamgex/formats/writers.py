"""A store written out in the formats other tools read, a chunk of profiles at a time.

``export_store(store, out)`` picks the format by ``out``'s suffix:

- ``.h5ad``: AnnData (scanpy), obs = samples with their coordinates, var =
  genes with theirs, ``uns["streamgex"]`` the store's provenance (JSON), ``X``
  dense float32 written chunk by chunk (``anndata.read_h5ad(..., backed="r")``
  reads it without loading it);
- ``.zarr``: the same AnnData as an AnnData-Zarr store (``anndata.read_zarr``),
  Zarr format 2, which every anndata release that reads Zarr opens;
- ``.gctx``: GCTX 1.0 (cmapPy's layout), gene coordinates as row metadata
  (``gene_symbol`` as ``pr_gene_symbol``), sample coordinates as column
  metadata;
- ``.csv`` / ``.tsv``: one sample per row, genes across (``AnnData.to_df()``'s
  orientation), which ``streamgex ingest`` reads back.

Every file is written under a partial name and renamed when complete.
"""

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import zarr

from .. import storage, store
from ..atomic import atomic_path
from ..errors import StreamgexError
from ..progress import progress
from ..steps import coords_along
from .gctx import create_gctx

SUFFIXES = (".h5ad", ".zarr", ".gctx", ".csv", ".tsv")


def export_store(path, out, *, overwrite=False):
    """Write the store ``path`` (a path or URL) to the file ``out`` (format by suffix; a URL:
    written locally, then uploaded in one piece); returns ``out``."""
    if storage.is_url(str(out)):
        return _export_to_url(path, str(out), overwrite=overwrite)
    out = Path(out)
    writer = {".h5ad": write_h5ad, ".zarr": write_anndata_zarr, ".gctx": write_gctx,
              ".csv": write_table, ".tsv": write_table}.get(out.suffix.lower())
    if writer is None:
        raise StreamgexError(f"--out {out}: choose a file ending in {', '.join(SUFFIXES)}")
    if out.exists() and not overwrite:
        raise StreamgexError(f"--out {out}: exists; pass --overwrite to replace it")
    if out.is_dir() and not _exported_here(out):
        raise StreamgexError(f"--out {out}: is a folder that export-store did not write; "
                             f"give a new name")
    if not storage.is_url(str(path)) and \
            Path(path).resolve() in (out.resolve(), *out.resolve().parents):
        raise StreamgexError(f"--out {out}: lies inside the store it exports; choose another")
    ds = store.open_store(path)
    with atomic_path(out) as tmp:
        writer(path, ds, tmp)
    return out


def _export_to_url(path, url, *, overwrite):
    """``export_store`` to an object: one file, written in the local scratch folder, then
    uploaded (a reader sees the old object or the new one whole)."""
    name = storage.name(url)
    if name.lower().endswith(".zarr"):
        raise StreamgexError(f"--out {url}: an AnnData-Zarr folder is written to a local "
                             f"path only; the store itself is Zarr a reader opens by URL, or "
                             f"give a .h5ad, .gctx, .csv or .tsv name")
    if storage.place(url).exists() and not overwrite:
        raise StreamgexError(f"--out {url}: exists; pass --overwrite to replace it")
    scratch = storage.scratch_for(url, ".export")
    scratch.mkdir(parents=True, exist_ok=True)
    local = export_store(path, scratch / name, overwrite=True)
    fs, key = storage.filesystem(url)
    fs.put_file(str(local), key)
    local.unlink()
    return url


def _blocks(path, desc):
    """``(start, block)`` over the store's chunks, with a progress bar."""
    array = store.open_group(path)[store.EXPRESSION]
    bar = progress(total=array.shape[0], desc=desc, unit="sample")
    for start in range(0, array.shape[0], array.chunks[0]):
        block = array[start:start + array.chunks[0]]
        yield start, block
        bar.update(len(block))
    bar.close()


def _exported_here(folder):
    """Whether a folder is an AnnData-Zarr store export-store wrote (the one kind of folder
    ``--overwrite`` may replace)."""
    try:
        return "streamgex" in zarr.open_group(str(folder), mode="r")["uns"]
    except (KeyError, FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return False


def _annotations(ds):
    """An X-less AnnData of the store's samples (obs), genes (var) and provenance (uns)."""
    import anndata
    import pandas as pd

    def frame(dim):
        columns = {name: (store.strings(v) if np.asarray(v).dtype.kind in "USOT" else v)
                   for name, v in coords_along(ds, dim).items()}
        return pd.DataFrame(columns, index=pd.Index(store.strings(ds[dim].values), name=None))

    provenance = {"streamgex": dict(ds.attrs.get(store.ATTR, {})),
                  "source": dict(ds.attrs.get("source", {})),
                  "units": ds.attrs.get("units")}
    return anndata.AnnData(obs=frame("sample"), var=frame("gene"),
                           uns={"streamgex": json.dumps(provenance, default=str)})


def _x_chunks(ds):
    return (max(1, min(256, ds.sizes["sample"])), max(1, ds.sizes["gene"]))


def write_h5ad(path, ds, out):
    _annotations(ds).write_h5ad(out)
    with h5py.File(out, "a") as handle:
        if "X" in handle:
            del handle["X"]
        n_samples, n_genes = ds.sizes["sample"], ds.sizes["gene"]
        x = handle.create_dataset("X", shape=(n_samples, n_genes), dtype="float32",
                                  chunks=_x_chunks(ds))
        x.attrs.update(X_ENCODING)
        for start, block in _blocks(path, "writing h5ad"):
            x[start:start + len(block)] = block


X_ENCODING = {"encoding-type": "array", "encoding-version": "0.2.0"}


def write_anndata_zarr(path, ds, out):
    import anndata

    with warnings.catch_warnings():  # format 2 is chosen: older anndata releases read it
        warnings.filterwarnings("ignore", message=".*zarr v2", category=UserWarning)
        with anndata.settings.override(zarr_write_format=2):
            _annotations(ds).write_zarr(out)
    group = zarr.open_group(str(out), mode="a")
    if "X" in group:
        del group["X"]
    x = group.create_array("X", shape=(ds.sizes["sample"], ds.sizes["gene"]), dtype="float32",
                           chunks=_x_chunks(ds))
    x.attrs.update(X_ENCODING)
    for start, block in _blocks(path, "writing AnnData-Zarr"):
        x[start:start + len(block)] = block
    zarr.consolidate_metadata(str(out))  # anndata reads the consolidated listing


#: Gene coordinates under CMap's row-metadata names in a GCTX (``predict``'s per-gene
#: trust: well inferred as CMap's BING flag, with the validation r and MAE it rests on).
CMAP_NAMES = {"gene_symbol": "pr_gene_symbol", "gene_ensembl": "pr_ensembl_id",
              "gene_is_landmark": "pr_is_lm", "gene_is_well_inferred": "pr_is_bing",
              "gene_val_pearson": "pr_val_r", "gene_val_mae": "pr_val_mae"}


def write_gctx(path, ds, out, *, row_meta=None):
    """``row_meta``: further row fields (``predict``'s ``pr_is_inferred``)."""
    genes = {CMAP_NAMES.get(name, name): _row_field(v)
             for name, v in coords_along(ds, "gene").items()}
    samples = {name: store.strings(v) for name, v in coords_along(ds, "sample").items()}
    with h5py.File(out, "w") as handle:
        matrix = create_gctx(handle, sample_ids=store.strings(ds.sample.values),
                             gene_ids=store.strings(ds.gene.values),
                             row_meta={**genes, **(row_meta or {})}, col_meta=samples)
        for start, block in _blocks(path, "writing GCTX"):
            matrix[start:start + len(block)] = block


def _row_field(values):
    """A gene coordinate as GCTX row metadata: flags as 0/1 integers (``pr_is_lm``),
    numbers as numbers (``pr_val_r``), anything else as strings."""
    values = np.asarray(values)
    if values.dtype.kind == "b":
        return values.astype(np.int32)
    return values if values.dtype.kind in "iuf" else store.strings(values)


def write_table(path, ds, out):
    """Ids quoted as RFC 4180 says where they need it (``"liver, rep1"``), so pandas, R and
    ``streamgex ingest`` read every value under its own column."""
    delimiter = "\t" if Path(out).suffix.lower() == ".tsv" else ","
    samples = [quoted(s, delimiter) for s in store.strings(ds.sample.values)]
    genes = [quoted(g, delimiter) for g in store.strings(ds.gene.values)]
    with open(out, "w", newline="") as f:
        f.write("sample" + delimiter + delimiter.join(genes) + "\n")
        for start, block in _blocks(path, "writing table"):
            for sample, row in zip(samples[start:start + len(block)], block):
                f.write(sample + delimiter + delimiter.join(map(repr, row.tolist())) + "\n")


def quoted(field, delimiter):
    """``field`` in double quotes (inner quotes doubled) when it holds the delimiter, a
    quote or a line break; else as it is."""
    if any(c in field for c in (delimiter, '"', "\n", "\r")):
        return '"' + field.replace('"', '""') + '"'
    return field
