"""Which of a model's genes each input row is: by id, by gene symbol or by a named field.

An input row names a gene by its id (a probe, an Ensembl id, the pipeline's
gene key) or, in files keyed otherwise, by a gene symbol: L1000 GCTX files key
rows by probe or Entrez id and carry ``pr_gene_symbol`` as row metadata, and
tables exported from scanpy/AnnData are keyed by symbol. ``genes_by``:

- ``"id"``: the row ids, matched as the pipeline matches (gene key, Ensembl id,
  or all of a gene's probes averaged: ``transform.match_genes``);
- ``"ensembl"``: the input's Ensembl field (``pr_ensembl_id``, ``gene_ensembl``,
  AnnData's ``gene_ids``) where it has one, else its ids, as Ensembl ids;
- ``"probe"``: the row ids as probe ids (an error when the model has none);
- ``"symbol"``: gene symbols (the input's symbol field, or its ids when it has
  none) translated to the model's Ensembl ids; a symbol naming several Ensembl
  genes of the model, or on several input rows, is ambiguous and an error
  listing them (when it names a landmark);
- a field name (``pr_gene_id``, ``gene_ensembl``, ...): that row-metadata field
  of a GCTX, or gene coordinate of a store, matched as ids (as symbols if it is
  a symbol field; a symbol field by any of its names, since ingest keeps GCT's
  ``pr_gene_symbol`` as ``gene_symbol``);
- ``"auto"``: ids; where they miss landmarks and the input has gene symbols,
  symbols, if those find more (ambiguous symbols counted as not found): an
  input whose ids are right but miss a few landmarks is told what is missing,
  not that its symbols (several probes each) are ambiguous.
"""

import logging
from collections import defaultdict

import numpy as np

from ..errors import StreamgexError
from ..formats.gctx import SYMBOL_FIELDS

log = logging.getLogger(__name__)

SYMBOLS = ("gene_symbol", *SYMBOL_FIELDS)
ENSEMBL_FIELDS = ("pr_ensembl_id", "gene_ensembl", "ensembl_id", "gene_ids")
CHOICES = ("auto", "id", "ensembl", "probe", "symbol")
UNMATCHED = ""  # an id no model gene has


def symbols_of(fields):
    """The input's gene-symbol field, or None."""
    return next((fields[name] for name in SYMBOLS if name in fields), None)


def from_symbols(state, symbols, wanted, *, strict=True):
    """Input rows' symbols as the model's Ensembl ids (``UNMATCHED`` where none); an error
    listing the symbols of ``wanted`` genes that are ambiguous (without ``strict``: those
    rows ``UNMATCHED``).

    A probe-level model (the D-GEX maps) has several genes per symbol, one per
    probe of one Ensembl gene: one input row of that symbol feeds them all. A
    symbol is ambiguous when it names model genes of different Ensembl ids, or
    several input rows.
    """
    ensembl_of = defaultdict(set)
    for symbol, ensembl in zip(state.symbols, state.ensembl):
        ensembl_of[str(symbol)].add(str(ensembl))
    rows_of = defaultdict(list)
    for row, symbol in enumerate(symbols):
        rows_of[str(symbol)].append(row)
    needed = {str(state.symbols[g]) for g in wanted}
    ambiguous = sorted(s for s in needed & set(rows_of)
                       if len(ensembl_of[s]) > 1 or len(rows_of[s]) > 1)
    if ambiguous and strict:
        details = "; ".join(
            f"{s}: model genes {', '.join(sorted(ensembl_of[s]))}, input rows "
            f"{', '.join(str(r) for r in rows_of[s][:5])}" for s in ambiguous[:10])
        raise StreamgexError(f"{len(ambiguous)} gene symbols are ambiguous (each must name one "
                             f"Ensembl gene of the model and one input row): {details}; match "
                             f"by id instead (--genes-by id or a field of unique ids)")
    ambiguous = set(ambiguous)
    return np.array([next(iter(ensembl_of[str(s)])) if len(ensembl_of.get(str(s), ())) == 1
                     and str(s) not in ambiguous else UNMATCHED for s in symbols], dtype=object)


def input_ids(state, ids, fields, genes_by, wanted):
    """``(keys, how)``: per input row, the id ``transform.match_genes`` matches by, and in
    words how the rows were matched.

    Parameters
    ----------
    state : transform.PipelineState
    ids : (n_genes,) str
        The input's row ids.
    fields : dict of str -> (n_genes,) str
        The input's row metadata (GCTX) or gene coordinates (store).
    genes_by : "auto", "id", "ensembl", "probe", "symbol" or a field name
    wanted : sequence of int
        The model genes that must be found (its landmarks).
    """
    from .transform import match_genes

    ids = np.asarray(ids, dtype=object)
    if genes_by == "id":
        return ids, "by id"
    if genes_by == "ensembl":
        field = next((name for name in ENSEMBL_FIELDS if name in fields), None)
        return (ids, "by Ensembl id") if field is None else \
            (np.asarray(fields[field], dtype=object), f"by Ensembl id ({field})")
    if genes_by == "probe":
        if not any(probe for probes in state.probes for probe in probes):
            raise StreamgexError("--genes-by probe: the model was trained on genes, not "
                                 "probes; match by ensembl, symbol or id")
        return ids, "by probe id"
    if genes_by == "symbol":
        symbols = symbols_of(fields)
        return from_symbols(state, ids if symbols is None else symbols, wanted), "by gene symbol"
    if genes_by != "auto":
        values = fields.get(genes_by)
        if values is None and genes_by in SYMBOLS:
            values = symbols_of(fields)
        if values is None:
            raise StreamgexError(
                f"--genes-by {genes_by}: the input has no such row field; it has "
                f"{', '.join(sorted(fields)) or 'none'} (or use {', '.join(CHOICES)})")
        values = np.asarray(values, dtype=object)
        if genes_by in SYMBOLS:
            return from_symbols(state, values, wanted), f"by {genes_by}"
        return values, f"by {genes_by}"
    missing = len(match_genes(state, ids, wanted)[1])
    symbols = symbols_of(fields)
    if not missing:
        return ids, "by id"
    candidates = [symbols] if symbols is not None else []
    if symbols is None:
        candidates.append(ids)  # ids that are symbols (an AnnData table's var_names)
    for values in candidates:
        keys = from_symbols(state, values, wanted, strict=False)
        if len(match_genes(state, keys, wanted)[1]) < missing:
            # the input names its genes by symbol: an ambiguous one is an error naming it
            return from_symbols(state, values, wanted), "by gene symbol (the ids missed landmarks)"
    return ids, "by id"
