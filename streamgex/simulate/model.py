"""The generative model behind the simulated GEO and 1000G datasets.

Genes
    Three kinds of genes, each with an Ensembl id (versioned in the RNA-Seq
    table, unversioned in the maps, as in the real files) and a symbol:
    landmarks, targets, and "other" genes measured by GEO-only probes or only
    in the RNA-Seq table. ``shared`` landmark genes are also listed as targets
    with different probes, as 445 genes are in the real D-GEX maps: their
    target value is their landmark value.

Profiles (log2 expression, paper section 2.1: "normalized into the range 4-15")
    A profile comes from one of ``groups`` tissue / cell-type groups with
    unequal sizes: a latent state ``z = mu_group + 0.6 * N(0, I)`` in 12
    dimensions.

    - landmark ``l``: ``u_l = sqrt(1 - r_l^2) * (z A)_l + r_l * eps``, with
      gene-specific noise ``r_l ~ U(0.3, 0.6)``, so landmarks carry more than
      the 12 latent factors;
    - target ``t``: a function of the landmarks with a linear and a
      non-linear part, ``f_t = sqrt(1 - v_t) (u B)_t + sqrt(v_t) g_t``, plus
      gene-specific noise ``n_t ~ U(0.2, 0.6)``: ``u_t = sqrt(1 - n_t^2) f_t +
      n_t eps``. The non-linear part comes from 64 "programs", projections
      ``s = u W1`` of the landmarks through a saturating response: ``h =
      tanh(2 s + b)`` minus its best linear fit on ``s`` (fitted on the pilot
      sample), ``g = h W2``. So ``g`` is uncorrelated with every linear
      function of the landmarks and ``v_t`` is the share of the target's
      signal variance that no linear model can explain (to within a few
      hundredths per gene on fresh samples): the *non-linearity* of gene
      ``t``. ``v_t = nonlinearity * U(0.5, 1.5)`` (capped at 1), with
      ``nonlinearity`` the preset's (calibrated to the real data, see
      ``NONLINEARITY``) or ``streamgex simulate --nonlinearity``;
    - other genes: like landmarks, noisier (``r ~ U(0.4, 0.9)``).

    Each standardized ``u`` becomes ``x = mean + sd * u`` with gene means
    ``U(6, 11)`` and sds ``U(0.4, 1.2)``. Every intermediate is standardized
    with statistics of a fixed pilot sample, so any block of profiles is
    generated independently and identically.

Probes (Affymetrix, GCTX)
    A probe reads its gene plus a probe affinity offset ``N(0, 0.4)`` and its
    own noise ``N(0, s_p)``, ``s_p ~ U(0.1, 0.3)``: probes of one gene are
    correlated, not identical. Values are clipped to [4, 15]. Target genes have
    1 to 8 probes (61% one, 23% two, 10% three, ... as in the real target map).

Near-duplicates
    2% of GEO profiles copy another profile of the same block plus noise of
    Euclidean norm about 0.4, below D-GEX's de-duplication distance of 1.0.

RNA-Seq (1000G, GEUVADIS RPKM)
    One cell type (lymphoblastoid lines): ``z = mu_LCL + 0.35 N(0, I)`` with
    ``mu_LCL`` near one GEO group. The same gene values ``x`` go through a
    monotone non-linear platform distortion with a gene-specific bias,
    ``log2 r = 1.3 y + 0.5 tanh(y) + c_g + N(0, 0.3)``, ``y = x - 7``,
    ``c_g ~ N(0, 0.8)``, and ``RPKM = max(2^(log2 r) - 0.3, 0)``: non-negative,
    exact zeros for weakly expressed genes, a heavy upper tail.
"""

from dataclasses import dataclass

import numpy as np

LATENT = 12
HIDDEN = 64
GAIN = 2.0
#: The mean non-linear share of a target's signal variance (``v_t``), calibrated to the
#: one real-data fact there is (paper Table 3; D-GEX): at the full GEO size, ~90
#: training profiles per landmark, D-GEX beat least squares by 15.3% MAE (0.847x). At
#: 0.3 and that ratio (the ``bench`` preset, ``tools/bench_accuracy.py``) D-GEX as one
#: network reaches 0.868x; the best possible predictor 0.614x
#: (``tools/calibrate_simulator.py``). tools/README.md, "Simulator calibration".
NONLINEARITY = 0.3
DUPLICATE_FRACTION = 0.02
DUPLICATE_DISTANCE = 0.4
CLIP = (4.0, 15.0)
#: Probes per target gene in the real D-GEX target map (counts 1..8).
PROBES_PER_TARGET = np.array([0.606, 0.231, 0.102, 0.040, 0.013, 0.005, 0.0015, 0.0015])
PILOT = 4096
SYMBOL_PREFIXES = (
    "ZNF SLC TMEM CCDC FAM KLHL RBM ANKRD LRRC WDR PPP1R ARHGAP DNAJ TRIM ZBTB KIF "
    "MAP3K ABC ADAM ATP CDK CHD DDX EIF FBXO GPR HOX IL KCN LAMA MYO NDUF PCDH PLEK "
    "PRSS RAB RPL RPS SEMA SNX SOX STK SYT TBC1D TNF TTC UBE2 USP VPS"
).split()
CHROMOSOMES = [str(c) for c in range(1, 23)] + ["X"]


@dataclass
class Universe:
    """Genes, probes and maps of one simulated dataset.

    Attributes (``n`` = latent genes, ``p`` = GEO probes)
    ---------------------------------------------------
    kind : (n,) int8
        0 landmark, 1 target, 2 other.
    ensembl, version, symbol : (n,)
    probe_ids : (p,) str, in GCTX order
    probe_gene : (p,) int, the gene each probe reads
    landmark_rows, target_rows : list of (gene index, list of probe indices)
    probe_offset, probe_noise : (p,) float32, affinity offset and noise sd
    rnaseq_genes : (m,) int, genes of the 1000G table in table order
    chromosome, coordinate : (n,) for the table's Chr and Coord columns
    """

    kind: np.ndarray
    ensembl: np.ndarray
    version: np.ndarray
    symbol: np.ndarray
    probe_ids: np.ndarray
    probe_gene: np.ndarray
    probe_offset: np.ndarray
    probe_noise: np.ndarray
    landmark_rows: list
    target_rows: list
    rnaseq_genes: np.ndarray
    chromosome: np.ndarray
    coordinate: np.ndarray


def build_universe(preset, seed):
    """Draw the genes, probes and maps of ``preset`` (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 0])
    n_lm = preset.landmarks
    counts_p = PROBES_PER_TARGET / PROBES_PER_TARGET.sum()

    # Target genes and their probe counts.
    if preset.probe_level_targets:
        left = preset.target_rows - preset.shared  # one target probe per shared gene
        per_gene = []
        while left > 0:
            k = min(int(rng.choice(8, p=counts_p)) + 1, left)
            per_gene.append(k)
            left -= k
    else:
        per_gene = list(rng.choice(8, size=preset.target_rows - preset.shared, p=counts_p) + 1)
    n_tg = len(per_gene)
    mapped_probes = n_lm + preset.shared + sum(per_gene)
    n_geo_other = preset.geo_probes - mapped_probes
    if n_geo_other < 0:
        raise ValueError(f"preset {preset.name}: maps need {mapped_probes} probes > geo_probes")
    n_mapped_genes = n_lm + n_tg
    n_rna_other = max(preset.rnaseq_genes - n_mapped_genes, 0)
    # GEO-only probes read genes that are also in the RNA-Seq table for half of them.
    n_other = n_rna_other + n_geo_other // 2
    n = n_lm + n_tg + n_other
    kind = np.concatenate(
        [np.zeros(n_lm, np.int8), np.ones(n_tg, np.int8), np.full(n_other, 2, np.int8)]
    )

    ensembl = np.array(
        [f"ENSG{x:011d}" for x in rng.choice(np.arange(1000, 300_000), size=n, replace=False)],
        dtype=object,
    )
    version = rng.integers(1, 16, size=n)
    symbol = _symbols(rng, n)

    # Probes: landmark probe, shared genes' target probe, target probes, GEO-only probes.
    probe_gene = [np.arange(n_lm)]
    shared = rng.choice(n_lm, size=preset.shared, replace=False)
    probe_gene.append(shared)
    probe_gene.append(np.repeat(np.arange(n_lm, n_lm + n_tg), per_gene))
    geo_other_genes = np.concatenate(
        [
            np.arange(n_lm + n_tg + n_rna_other, n),
            rng.choice(np.arange(n_lm + n_tg, n), size=n_geo_other - (n - n_lm - n_tg - n_rna_other)),
        ]
    )
    probe_gene.append(geo_other_genes)
    probe_gene = np.concatenate(probe_gene)
    p = len(probe_gene)
    numbers = rng.choice(np.arange(200_000, 200_000 + 4 * p), size=p, replace=False)
    suffixes = rng.choice(["_at", "_s_at", "_x_at", "_a_at"], size=p, p=[0.5, 0.38, 0.1, 0.02])
    probe_ids = np.array([f"{a}{b}" for a, b in zip(numbers, suffixes)], dtype=object)

    landmark_rows = [(g, [g]) for g in range(n_lm)]
    shared_probe = {int(g): n_lm + i for i, g in enumerate(shared)}
    first = n_lm + preset.shared
    target_probes = {}
    for probe in range(first, first + sum(per_gene)):
        target_probes.setdefault(int(probe_gene[probe]), []).append(probe)
    if preset.probe_level_targets:
        target_rows = [(g, [pr]) for g, pr in shared_probe.items()]
        target_rows += [(g, [pr]) for g, probes in target_probes.items() for pr in probes]
    else:
        target_rows = [(g, [pr]) for g, pr in shared_probe.items()]
        target_rows += list(target_probes.items())
    order = rng.permutation(len(target_rows))
    target_rows = [target_rows[i] for i in order]
    landmark_rows = [landmark_rows[i] for i in rng.permutation(n_lm)]

    # GCTX probe order: shuffled, so maps must really be used to find probes.
    gctx_order = rng.permutation(p)
    position = np.empty(p, dtype=np.int64)
    position[gctx_order] = np.arange(p)
    probe_ids = probe_ids[gctx_order]
    probe_gene = probe_gene[gctx_order]
    landmark_rows = [(g, [int(position[x]) for x in probes]) for g, probes in landmark_rows]
    target_rows = [(g, [int(position[x]) for x in probes]) for g, probes in target_rows]

    rnaseq = np.arange(min(n, n_mapped_genes + n_rna_other))
    rnaseq_genes = rnaseq[rng.permutation(len(rnaseq))]
    chromosome = rng.choice(CHROMOSOMES, size=n)
    coordinate = rng.integers(100_000, 240_000_000, size=n)
    return Universe(
        kind=kind,
        ensembl=ensembl,
        version=version,
        symbol=symbol,
        probe_ids=probe_ids,
        probe_gene=probe_gene,
        probe_offset=rng.normal(0.0, 0.4, size=p).astype(np.float32),
        probe_noise=rng.uniform(0.1, 0.3, size=p).astype(np.float32),
        landmark_rows=landmark_rows,
        target_rows=target_rows,
        rnaseq_genes=rnaseq_genes,
        chromosome=chromosome,
        coordinate=coordinate,
    )


def _symbols(rng, n):
    out, seen = [], set()
    while len(out) < n:
        name = f"{SYMBOL_PREFIXES[rng.integers(len(SYMBOL_PREFIXES))]}{rng.integers(1, 1000)}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return np.array(out, dtype=object)


class _Standardize:
    """Per-column affine map fitted once on the pilot sample."""

    def __init__(self, pilot):
        self.mean = pilot.mean(axis=0).astype(np.float32)
        self.scale = (1.0 / (pilot.std(axis=0) + 1e-6)).astype(np.float32)

    def __call__(self, values):
        values = values.astype(np.float32, copy=False)
        values -= self.mean
        values *= self.scale
        return values


class ExpressionModel:
    """Gene values (log2) for profiles drawn from the GEO groups or the LCL type."""

    def __init__(self, universe, preset, seed):
        rng = np.random.default_rng([seed, 1])
        kind = universe.kind
        n, n_lm, n_tg = len(kind), int((kind == 0).sum()), int((kind == 1).sum())
        if not (np.diff(kind) >= 0).all():
            raise ValueError("genes must be ordered landmarks, targets, others")
        # Column ranges, not index arrays: slicing a block is 20x faster than fancy indexing.
        self.landmark = slice(0, n_lm)
        self.target = slice(n_lm, n_lm + n_tg)
        self.other = slice(n_lm + n_tg, n)
        self.n_genes = n
        self.centers = rng.normal(0.0, 1.2, size=(preset.groups, LATENT))
        self.weights = rng.dirichlet(np.full(preset.groups, 2.0))
        self.lcl_center = self.centers[0] + rng.normal(0.0, 0.5, size=LATENT)
        self.mean = rng.uniform(6.0, 11.0, size=n).astype(np.float32)
        self.sd = rng.uniform(0.4, 1.2, size=n).astype(np.float32)
        self.a_landmark = rng.normal(size=(LATENT, n_lm))
        self.a_other = rng.normal(size=(LATENT, n - n_lm - n_tg))
        self.r_landmark = rng.uniform(0.3, 0.6, size=n_lm)
        self.r_other = rng.uniform(0.4, 0.9, size=n - n_lm - n_tg)
        self.w1 = rng.normal(size=(n_lm, HIDDEN)) / np.sqrt(n_lm)
        self.b1 = rng.normal(0.0, 0.5, size=HIDDEN)
        self.w2 = (rng.normal(size=(HIDDEN, n_tg)) / np.sqrt(HIDDEN)).astype(np.float32)
        self.b_linear = (rng.normal(size=(n_lm, n_tg)) / np.sqrt(n_lm)).astype(np.float32)
        share = preset.nonlinearity * rng.uniform(0.5, 1.5, size=n_tg)
        self.v_target = np.minimum(share, 1.0).astype(np.float32)
        self.n_target = rng.uniform(0.2, 0.6, size=n_tg).astype(np.float32)
        self._linear_part = None  # (HIDDEN + 1, HIDDEN): h's least-squares fit on [s, 1]
        self.platform_bias = rng.normal(0.0, 0.8, size=n).astype(np.float32)

        pilot = self._latent(np.random.default_rng([seed, 3]), PILOT, self.centers, self.weights, 0.6)
        self._fit = True
        self._std = {}
        self._standardized(pilot, np.random.default_rng([seed, 4]))
        self._fit = False

    def _latent(self, rng, count, centers, weights, spread):
        group = rng.choice(len(centers), size=count, p=weights)
        return centers[group] + spread * rng.normal(size=(count, LATENT))

    def _std_map(self, name, values):
        if self._fit:
            self._std[name] = _Standardize(values)
        return self._std[name](values)

    def _standardized(self, z, rng):
        """Standardized gene values ``(len(z), n_genes) float32`` for latent states ``z``."""
        count = len(z)
        out = np.empty((count, self.n_genes), dtype=np.float32)
        u_lm = self._std_map("landmark", z @ self.a_landmark)
        u_lm = np.sqrt(1 - self.r_landmark**2) * u_lm + self.r_landmark * rng.normal(size=u_lm.shape)
        out[:, self.landmark] = u_lm
        u_lm = u_lm.astype(np.float32)
        f = self.signal(u_lm)
        noise = rng.standard_normal(size=f.shape, dtype=np.float32)
        out[:, self.target] = np.sqrt(1 - self.n_target**2) * f + self.n_target * noise
        u_other = self._std_map("other", z @ self.a_other)
        noise = rng.standard_normal(size=u_other.shape, dtype=np.float32)
        out[:, self.other] = np.sqrt(1 - self.r_other**2) * u_other + self.r_other * noise
        return out

    def signal(self, u_lm):
        """The targets' standardized signal ``f`` for standardized landmark values ``u_lm``
        (``sqrt(1 - n_t^2) f_t`` is the best possible prediction of target ``t``)."""
        s = self._std_map("hidden", u_lm @ self.w1)
        h = np.tanh(GAIN * s + self.b1)
        design = np.c_[s, np.ones(len(s), np.float32)]
        if self._fit:
            self._linear_part = np.linalg.lstsq(design, h, rcond=None)[0].astype(np.float32)
        nonlinear = self._std_map("nonlinear", (h - design @ self._linear_part) @ self.w2)
        linear = self._std_map("linear", u_lm @ self.b_linear)
        f = np.sqrt(1 - self.v_target) * linear + np.sqrt(self.v_target) * nonlinear
        return self._std_map("target", f)

    def geo_genes(self, rng, count):
        """Log2 gene values of ``count`` GEO profiles, ``(count, n_genes) float32``."""
        z = self._latent(rng, count, self.centers, self.weights, 0.6)
        return self.mean + self.sd * self._standardized(z, rng)

    def lcl_genes(self, rng, count):
        """Log2 gene values of ``count`` lymphoblastoid (1000G-like) samples."""
        z = self.lcl_center + 0.35 * rng.normal(size=(count, LATENT))
        return self.mean + self.sd * self._standardized(z, rng)

    def rpkm(self, rng, genes, values):
        """RNA-Seq RPKM of log2 ``values`` ``(count, len(genes))`` (monotone distortion)."""
        y = values - 7.0
        log_rpkm = 1.3 * y + 0.5 * np.tanh(y) + self.platform_bias[genes]
        log_rpkm = log_rpkm + 0.3 * rng.standard_normal(size=values.shape, dtype=np.float32)
        return np.maximum(np.exp2(log_rpkm) - 0.3, 0.0).astype(np.float32)


def probe_values(rng, genes, probe_gene, offsets, noise_sd):
    """GEO probe log2 values from gene values: ``(count, n_probes) float32`` in [4, 15]."""
    values = genes[:, probe_gene] + offsets
    values += noise_sd * rng.standard_normal(size=values.shape, dtype=np.float32)
    return np.clip(values, *CLIP, out=values)


def add_near_duplicates(rng, block):
    """Replace 2% of the rows by noisy copies of other rows (distance ~0.4)."""
    count = len(block)
    n_dup = int(round(DUPLICATE_FRACTION * count))
    if n_dup == 0 or count < 2:
        return block
    rows = rng.choice(count, size=2 * n_dup, replace=False)
    copies, originals = rows[:n_dup], rows[n_dup:]
    scale = DUPLICATE_DISTANCE / np.sqrt(block.shape[1])
    noise = scale * rng.standard_normal(size=(n_dup, block.shape[1]), dtype=np.float32)
    block[copies] = np.clip(block[originals] + noise, *CLIP)  # copies stay on the scale too
    return block
