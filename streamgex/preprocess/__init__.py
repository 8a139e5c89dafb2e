"""Preprocessing: from ingested stores to train/validation/test stores.

D-GEX's steps (Chen et al. 2016, as in ``shared/reference/FACTS.md``) and the
paper's split (section 2.4), one module each; every step is ``store -> store``
over Dask, resumable, with its fitted state saved in its output:

``genes`` (probes -> genes) -> ``dedup`` -> ``normalize`` (quantiles) ->
``standardize`` -> ``split`` (train / val / test); ``pca`` reports the
explained variance of the targets (paper Figure 1).
"""
