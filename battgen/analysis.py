"""What the book's chapters 2-4 compute beyond the core package: diagnostics and result tables.

- **Profiles**: :func:`train_config` turns the book's ``profile`` (``smoke`` or ``full``) into the
  training settings, in one place.
- **The CVAE (chapter 2)**: posterior-mean reconstruction, how much the latent code is used
  (:func:`latent_usage`), the decoder variance the paper's loss weights imply
  (:func:`decoder_variance`) and the spectrum of what the condition leaves unexplained
  (:func:`residual_spectrum`), per-feature errors (:func:`feature_errors`).
- **Unit-token cross-attention (chapter 3)**: the four scalars that govern a head
  (:func:`attention_scalars`), the check of the factorised attention against the textbook one
  (:func:`attention_agreement`) and summaries of attention maps (:func:`attention_stats`).
- **The eight-case grid (chapter 4)**: :func:`run_grids` runs several pulse widths and seeds with
  one stacked :func:`battgen.train.fit_generators` call and keeps the fitted generators;
  :func:`generation_errors`, :func:`case_means`, :func:`kind_means`, :func:`claim_cells`;
  the authors' released-code numbers (:func:`reference_path`, :func:`load_reference`,
  :func:`compare_with_reference`).
"""

from __future__ import annotations

import inspect
import math
import os
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from battgen.data import BATTERIES, FEATURES, battery_type, load_pulsebat
from battgen.experiments import (
    CASES,
    RESULT_COLUMNS,
    case_kind,
    evaluate_case,
    generate_for_case,
    make_fit_job,
    soc_percent,
)
from battgen.model import CVAEConfig, UnitCrossAttention
from battgen.train import FittedCVAE, TrainConfig, fit_generators

__all__ = [
    "PROFILE_EPOCHS",
    "PAPER_METHODS",
    "PAPER_PHASE2",
    "AUTHORS_PHASE2",
    "CLAIM_MAPE",
    "train_config",
    "glue_key",
    "source_block",
    "reconstruct",
    "latent_usage",
    "decoder_variance",
    "residual_spectrum",
    "feature_errors",
    "between_battery_spread_mv",
    "paired_difference_mv",
    "attention_scalars",
    "attention_agreement",
    "attention_stats",
    "attention_logit_range",
    "attention_sweep",
    "GridRun",
    "run_grids",
    "generation_errors",
    "phase2_rule",
    "case_means",
    "kind_means",
    "claim_cells",
    "reference_path",
    "load_reference",
    "compare_with_reference",
]

PROFILE_EPOCHS: dict[str, int] = {"smoke": 5, "full": 50}
"""Training epochs per book profile: ``full`` is the paper's 50, ``smoke`` a few for CI."""

PAPER_METHODS: tuple[str, ...] = ("phase1", "phase2_sample", "phase2_latent_scaling", "phase2_authors_shift")
"""The methods of the paper and of the authors' code in :func:`battgen.experiments.run_grid` results."""

PAPER_PHASE2: dict[str, str] = {"interpolation": "phase2_sample", "extrapolation": "phase2_latent_scaling"}
"""The paper's Phase 2 per case kind: sampling for interpolation, latent-space scaling for extrapolation."""

AUTHORS_PHASE2: dict[str, str] = {"interpolation": "phase2_sample", "extrapolation": "phase2_authors_shift"}
"""What the authors' released code runs as Phase 2: sampling, and the voltage shift for extrapolation."""

CLAIM_MAPE = 6.0
"""The paper's headline: Phase-2 MAPE below 6 %."""


# --------------------------------------------------------------------------- profiles and helpers


def train_config(profile: str, *, threads: int | None = 1, **overrides: Any) -> TrainConfig:
    """The paper's training settings with the epochs of ``profile`` (:data:`PROFILE_EPOCHS`).

    ``threads=1`` by default: the model is tiny, and on a shared machine one torch thread per
    process is several times faster than competing for cores.
    """
    if profile not in PROFILE_EPOCHS:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILE_EPOCHS)}")
    return replace(TrainConfig(epochs=PROFILE_EPOCHS[profile], threads=threads), **overrides)


def glue_key(battery: str) -> str:
    """A battery type as a glue-name fragment: ``"NMC2.1" -> "nmc2_1"``, ``"LMO10" -> "lmo10"``."""
    return battery_type(battery).key.lower().replace(".", "_")


def source_block(obj: Any, *, dedent: bool = True) -> str:
    """The real source of ``obj`` (via :func:`inspect.getsource`) as a fenced Markdown code block."""
    src = inspect.getsource(obj)
    src = textwrap.dedent(src) if dedent else src
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    try:
        line = inspect.getsourcelines(obj)[1]
        where = f"# {module}.{name}, line {line} of {Path(inspect.getsourcefile(obj)).name}\n"
    except (OSError, TypeError):
        where = f"# {module}.{name}\n"
    return f"```python\n{where}{src.rstrip()}\n```"


# --------------------------------------------------------------------------- the CVAE (chapter 2)


def reconstruct(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """Decode each row's posterior mean at its own condition: the reconstruction, in volts."""
    mu, _ = fitted.encode(features, conditions)
    return fitted.decode(mu, conditions)


def latent_usage(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray, z: float = 3.0) -> dict[str, float]:
    """How much the generator uses its latent code, on rows in physical units.

    - ``kl``: mean over rows of ``KL(q(z|x, c) || N(0, I))`` (nats);
    - ``mu_std_max``: largest standard deviation over rows of a posterior-mean coordinate;
    - ``sigma_mean``: mean posterior standard deviation (1 means the prior's);
    - ``active_units``: latent dimensions whose posterior mean varies over the rows by more than
      0.01 (variance), the usual count of active units;
    - ``decoder_range_mv``: largest change of any decoded feature, in mV, when one latent
      coordinate moves from ``-z`` to ``+z`` (the others 0), over all rows' conditions.
    """
    mu, logvar = fitted.encode(features, conditions)
    kl = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(axis=1)
    conditions = np.atleast_2d(np.asarray(conditions, dtype=float))
    L = mu.shape[1]
    span = 0.0
    for k in range(L):
        lo, hi = np.zeros((len(conditions), L)), np.zeros((len(conditions), L))
        lo[:, k], hi[:, k] = -z, z
        span = max(span, float(np.abs(fitted.decode(hi, conditions) - fitted.decode(lo, conditions)).max()))
    return {
        "kl": float(kl.mean()),
        "mu_std_max": float(mu.std(axis=0).max()),
        "sigma_mean": float(np.exp(0.5 * logvar).mean()),
        "active_units": int((mu.var(axis=0) > 0.01).sum()),
        "decoder_range_mv": 1000.0 * span,
    }


def decoder_variance(config: CVAEConfig | None = None) -> float:
    """The Gaussian decoder variance the loss weights imply: ``w_kl / (2 w_recon)``.

    ``w_recon * F * MSE + w_kl * KL`` is ``w_kl`` times ``SSE / (2 sigma^2) + KL`` (the negative
    ELBO of a decoder ``N(x_hat, sigma^2 I)`` up to a constant) with ``sigma^2 = w_kl / (2 w_recon)``,
    in the units of the scaled features. The paper's 0.5 and 0.5 give ``sigma^2 = 0.5``.
    """
    cfg = config or CVAEConfig()
    return cfg.w_kl / (2.0 * cfg.w_recon)


def residual_spectrum(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of what the condition leaves unexplained.

    The residual is the scaled features (the units the loss sees) minus the decoder's output at
    ``z = 0`` and the row's condition. A linear-Gaussian VAE uses a latent direction only when the
    residual variance along it exceeds the decoder variance (:func:`decoder_variance`).
    """
    x = fitted.feature_scaler.transform(np.atleast_2d(features))
    x0 = fitted.feature_scaler.transform(fitted.decode(np.zeros((len(x), fitted.config.latent_dim)), conditions))
    resid = x - x0
    return np.sort(np.linalg.eigvalsh(np.cov(resid, rowvar=False)))[::-1]


def feature_errors(measured: pd.DataFrame, predicted: np.ndarray, by: Sequence[str] = ("soc",)) -> pd.DataFrame:
    """Per-feature errors of ``predicted`` (rows aligned with ``measured``, volts) by group.

    Returns a tidy table: the ``by`` columns, ``feature`` (U1..U21), ``k`` (1..21), ``mape``
    (mean absolute percentage error, %), ``mae_mv`` (mean absolute error, mV), ``n``. A column
    ``soc_pct`` (integer SOC %) is added to ``measured`` on the fly when asked for in ``by``.
    """
    predicted = np.asarray(predicted, dtype=float)
    truth = measured[FEATURES].to_numpy(float)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted has shape {predicted.shape}, measured rows {truth.shape}")
    keys = measured.assign(soc_pct=soc_percent(measured))[list(by)].reset_index(drop=True)
    err = pd.DataFrame(np.abs(predicted - truth), columns=FEATURES)
    ape = pd.DataFrame(100.0 * np.abs(predicted - truth) / np.abs(truth), columns=FEATURES)
    tidy = []
    for name, frame in (("mape", ape), ("mae_mv", 1000.0 * err)):
        g = pd.concat([keys, frame], axis=1).groupby(list(by), sort=True)[FEATURES].mean().stack()
        tidy.append(g.rename(name))
    out = pd.concat(tidy, axis=1).rename_axis([*by, "feature"]).reset_index()
    out["k"] = out["feature"].str[1:].astype(int)
    n = keys.groupby(list(by), sort=True).size().rename("n").reset_index()
    return out.merge(n, on=list(by)).sort_values([*by, "k"], ignore_index=True)


def between_battery_spread_mv(frames: Any) -> float:
    """How much the measured features of different batteries differ at one SOC level, in mV.

    For each PulseBat table (one battery type), the standard deviation of each feature over the
    rows at each SOC level (one row per battery), averaged over features and levels; then the
    mean over the tables.
    """
    spreads = []
    for df in frames:
        by_level = df.assign(_soc=soc_percent(df)).groupby("_soc")[FEATURES].std(ddof=1)
        spreads.append(float(by_level.to_numpy().mean()))
    if not spreads:
        raise ValueError("no tables given")
    return 1000.0 * float(np.mean(spreads))


def paired_difference_mv(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    """Mean and largest absolute difference (mV) of U1..U21 between two tables of the same rows.

    Rows are paired on ``battery_id`` and SOC (e.g. the 3 s and the 5 s features of one battery
    type); ``n`` is the number of pairs.
    """
    keys = ["battery_id", "_soc"]
    left = a.assign(_soc=soc_percent(a)).set_index(keys)[FEATURES]
    right = b.assign(_soc=soc_percent(b)).set_index(keys)[FEATURES]
    both = left.add_suffix("_a").join(right.add_suffix("_b"), how="inner")
    if both.empty:
        raise ValueError("the two tables share no (battery_id, SOC) rows")
    diff = np.abs(both[[f"{f}_a" for f in FEATURES]].to_numpy(float) - both[[f"{f}_b" for f in FEATURES]].to_numpy(float))
    return {"mean_mv": 1000.0 * float(diff.mean()), "max_mv": 1000.0 * float(diff.max()), "n": int(len(both))}


# --------------------------------------------------------------------------- attention (chapter 3)


@torch.no_grad()
def attention_scalars(attn: UnitCrossAttention) -> pd.DataFrame:
    """The four scalars per head that fix a unit-token attention layer.

    With size-1 tokens the logit of query unit ``i`` on context unit ``j`` is
    ``C_j (a h_i + c)`` plus terms that are constant along ``j`` (they cancel in the softmax),
    and the output is ``alpha * sum_j att_ij C_j + beta``. Returns one row per head with ``a``,
    ``c``, ``alpha`` and ``beta`` (``beta`` is the layer's total offset, shared by the heads).
    """
    H, D = attn.num_heads, attn.key_dim
    wq, bq = attn.query.weight.view(H, D), attn.query.bias.view(H, D)
    wk = attn.key.weight.view(H, D)
    wv, bv = attn.value.weight.view(H, D), attn.value.bias.view(H, D)
    wo = attn.out.weight.view(H, D)
    beta = float((bv * wo).sum() + attn.out.bias)
    return pd.DataFrame({
        "head": np.arange(H),
        "a": ((wq * wk).sum(-1) / math.sqrt(D)).numpy(),
        "c": ((bq * wk).sum(-1) / math.sqrt(D)).numpy(),
        "alpha": (wv * wo).sum(-1).numpy(),
        "beta": beta,
    })


@torch.no_grad()
def attention_agreement(attn: UnitCrossAttention, query: torch.Tensor, context: torch.Tensor) -> dict[str, float]:
    """Largest differences between the factorised :meth:`~UnitCrossAttention.forward` and the
    textbook :meth:`~UnitCrossAttention.forward_naive`, and between the textbook logits and
    ``C_j (a h_i + c)`` once each row's constant is removed (both sides centred along ``j``).

    ``query`` is (B, Tq), ``context`` (B, Tk). Returns ``output``, ``attention`` and ``logits``
    (maximum absolute differences) and ``output_scale`` (largest absolute output, for scale).
    """
    y, att = attn(query, context)
    y_naive, att_naive = attn.forward_naive(query, context)
    B, Tq = query.shape
    Tk = context.shape[1]
    H, D = attn.num_heads, attn.key_dim
    q = attn.query(query.unsqueeze(-1)).view(B, Tq, H, D).transpose(1, 2)
    k = attn.key(context.unsqueeze(-1)).view(B, Tk, H, D).transpose(1, 2)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, Tq, Tk)
    s = attention_scalars(attn)
    a = torch.tensor(s["a"].to_numpy(), dtype=query.dtype)[None, :, None, None]
    c = torch.tensor(s["c"].to_numpy(), dtype=query.dtype)[None, :, None, None]
    factored = context[:, None, None, :] * (a * query[:, None, :, None] + c)  # (B, H, Tq, Tk)
    centred = (logits - logits.mean(-1, keepdim=True)) - (factored - factored.mean(-1, keepdim=True))
    return {
        "output": float((y - y_naive).abs().max()),
        "attention": float((att - att_naive).abs().max()),
        "logits": float(centred.abs().max()),
        "output_scale": float(y_naive.abs().max()),
    }


def attention_stats(maps: np.ndarray) -> dict[str, float]:
    """Summaries of attention maps (n, Tq, Tk) whose rows sum to 1.

    - ``entropy_ratio``: mean row entropy over ``log Tk`` (1 is uniform attention);
    - ``max_weight_x_tk``: mean of each row's largest weight times ``Tk`` (1 is uniform);
    - ``deviation``: mean absolute ``Tk * att - 1``, the relative departure from uniform;
    - ``rank1_share``: mean share of the squared Frobenius norm of ``Tk * att - 1`` carried by its
      first singular value (1: the departure is an outer product of a row and a column profile).
    """
    maps = np.asarray(maps, dtype=float)
    Tk = maps.shape[-1]
    ent = -(maps * np.log(np.clip(maps, 1e-300, None))).sum(-1)
    dev = Tk * maps - 1.0
    sv = np.linalg.svd(dev, compute_uv=False)
    share = np.divide(sv[:, 0] ** 2, (sv**2).sum(-1), out=np.ones(len(sv)), where=(sv**2).sum(-1) > 0)
    return {
        "entropy_ratio": float(ent.mean() / math.log(Tk)),
        "max_weight_x_tk": float(Tk * maps.max(-1).mean()),
        "deviation": float(np.abs(dev).mean()),
        "rank1_share": float(share.mean()),
    }


@torch.no_grad()
def attention_logit_range(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Largest spread along ``j`` of the logits ``s_i C_j`` (``s_i = a h_i + c``) over rows and query units.

    A spread well below 1 means every row of the map is close to uniform. Returns
    ``{"encoder": ..., "decoder": ...}`` for one-head layers (the decoder reads at the posterior mean).
    """
    m = fitted.model
    x = torch.as_tensor(fitted.feature_scaler.transform(np.atleast_2d(features)), dtype=torch.float32)
    c = fitted._cond(conditions)
    C = m.embed_condition(c)  # (n, E)
    h_enc = torch.relu(m.enc_hidden(x))  # (n, I)
    mu, _, _ = m.encode(x, c)
    h_dec = torch.relu(m.dec_hidden(mu))  # (n, I)
    spread = (C.amax(-1) - C.amin(-1))[:, None]  # (n, 1)
    out = {}
    for name, attn, h in (("encoder", m.enc_attn, h_enc), ("decoder", m.dec_attn, h_dec)):
        s = attention_scalars(attn).iloc[0]
        out[name] = float(((s["a"] * h + s["c"]).abs() * spread).max())
    return out


def attention_sweep(fitted: FittedCVAE, frame: pd.DataFrame, soc_levels: Sequence[int] = (5, 25, 50),
                    soh_soc: int = 25) -> list[dict[str, Any]]:
    """Attention maps of real rows as the condition moves: SOC at fixed SOH, then SOH at fixed SOC.

    The SOC sweep takes the battery whose SOH is the median of its type, at each of
    ``soc_levels``; the SOH sweep takes the batteries with the lowest and the highest SOH, at
    ``soh_soc``. Each entry: ``sweep`` (``"SOC"`` or ``"SOH"``), ``soc_pct``, ``soh``,
    ``battery_id``, ``encoder`` and ``decoder`` maps (64 x 64).
    """
    socs = soc_percent(frame)
    per_battery = frame.drop_duplicates("battery_id").sort_values("soh")
    median_id = per_battery["battery_id"].iloc[(len(per_battery) - 1) // 2]
    picks = [("SOC", median_id, level) for level in soc_levels]
    picks += [("SOH", per_battery["battery_id"].iloc[i], soh_soc) for i in (0, -1)]
    out = []
    for sweep, bid, level in picks:
        row = frame[(frame["battery_id"] == bid) & (socs == level)].iloc[:1]
        if row.empty:
            raise ValueError(f"battery {bid} has no row at {level} % SOC")
        maps = fitted.attention(row[FEATURES].to_numpy(float), row[["soc", "soh"]].to_numpy(float))
        out.append({"sweep": sweep, "soc_pct": int(level), "soh": float(row["soh"].iloc[0]), "battery_id": bid,
                    "encoder": maps["encoder"][0], "decoder": maps["decoder"][0]})
    return out


# --------------------------------------------------------------------------- the eight-case grid (chapter 4)


@dataclass
class GridRun:
    """The outcome of :func:`run_grids`: the tidy results and what produced them."""

    results: pd.DataFrame  # columns RESULT_COLUMNS (plus any that evaluate_case adds)
    fitted: dict[tuple[int, str, int, int], FittedCVAE] = field(repr=False)  # (pulse width, battery, case, seed)
    frames: dict[tuple[int, str], pd.DataFrame] = field(repr=False)  # (pulse width, battery) -> PulseBat rows


def run_grids(
    pulse_widths: Sequence[int] = (5,),
    seeds: Sequence[int] = (0,),
    *,
    batteries: Sequence[str] = tuple(BATTERIES),
    cases: Sequence[int] = tuple(CASES),
    model: CVAEConfig | None = None,
    train: TrainConfig | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
    frames: Mapping[tuple[int, str], pd.DataFrame] | None = None,
) -> GridRun:
    """:func:`battgen.experiments.run_grid` for several pulse widths and seeds, in one stacked fit.

    Every generator (pulse width x battery x case x seed) is trained in a single
    :func:`battgen.train.fit_generators` call; a fit does not depend on its stack mates, so the
    results equal those of one ``run_grid`` per pulse width. The fitted generators are kept, for
    the generation errors and the attention maps.
    """
    keys = [battery_type(b).key for b in batteries]
    frames = dict(frames or {})
    for pw in pulse_widths:
        for b in keys:
            if (pw, b) not in frames:
                frames[(pw, b)] = load_pulsebat(b, pw, data_dir=data_dir)
    plan = [(pw, b, case, seed) for pw in pulse_widths for seed in seeds for b in keys for case in cases]
    jobs = [make_fit_job(frames[(pw, b)], case, seed) for pw, b, case, seed in plan]
    fitted = dict(zip(plan, fit_generators(jobs, model, train, progress)))
    rows: list[dict] = []
    for (pw, b, case, seed), gen in fitted.items():
        rows.extend(evaluate_case(frames[(pw, b)], case, seed, gen))
    results = pd.DataFrame(rows)
    results = results[[c for c in RESULT_COLUMNS if c in results] + [c for c in results if c not in RESULT_COLUMNS]]
    return GridRun(results, fitted, frames)


def generation_errors(run: GridRun, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-feature error of the generated rows against the measured rows they stand for.

    For every fitted generator, the rows :func:`battgen.experiments.generate_for_case` produced
    (one per measured row at an unseen level, same battery and SOH, same random streams as the
    results) are compared with the measured rows. Columns: ``pulse_width_s``, ``battery``,
    ``case``, ``kind``, ``seed``, ``method``, ``test_soc``, ``feature``, ``k``, ``mape`` (%),
    ``mae_mv``, ``n``.
    """
    out = []
    for (pw, b, case, seed), gen in run.fitted.items():
        df = run.frames[(pw, b)]
        targets = df[~np.isin(soc_percent(df), CASES[case])]
        for method, feats in generate_for_case(df, case, seed, gen).items():
            if methods is not None and method not in methods:
                continue
            err = feature_errors(targets, feats, by=("soc_pct",)).rename(columns={"soc_pct": "test_soc"})
            out.append(err.assign(pulse_width_s=pw, battery=b, case=case, kind=case_kind(case), seed=seed, method=method))
    cols = ["pulse_width_s", "battery", "case", "kind", "seed", "method", "test_soc", "feature", "k", "mape", "mae_mv", "n"]
    return pd.concat(out, ignore_index=True)[cols]


def phase2_rule(results: pd.DataFrame, rule: Mapping[str, str] = PAPER_PHASE2, name: str = "phase2") -> pd.DataFrame:
    """The Phase-2 rows of one rule (a method per case kind), relabelled ``name``."""
    keep = results["method"] == results["kind"].map(rule)
    return results[keep].assign(method=name)


def case_means(results: pd.DataFrame) -> pd.DataFrame:
    """Mean MAPE over the test SOC levels per battery, case and method, then mean and spread over seeds.

    Columns: (``pulse_width_s`` when present), ``battery``, ``case``, ``kind``, ``method``,
    ``mape``, ``mape_seed_std`` (0 with one seed), ``mape_seed_min``, ``mape_seed_max``, ``n_seeds``.
    """
    by = [c for c in ("pulse_width_s", "battery", "case", "kind", "method") if c in results]
    per_seed = results.groupby(by + ["seed"], sort=False)["mape"].mean().reset_index()
    out = per_seed.groupby(by, sort=False)["mape"].agg(
        mape="mean", mape_seed_std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0,
        mape_seed_min="min", mape_seed_max="max", n_seeds="count")
    return out.reset_index()


def kind_means(results: pd.DataFrame) -> pd.DataFrame:
    """Per battery, case kind and method: the mean over cases of the per-case mean over test SOC
    (the aggregation of the authors' README), per seed; then mean and spread over seeds."""
    by = [c for c in ("pulse_width_s", "battery", "kind", "method") if c in results]
    per_case = results.groupby(by + ["case", "seed"], sort=False)["mape"].mean().reset_index()
    per_seed = per_case.groupby(by + ["seed"], sort=False)["mape"].mean().reset_index()
    out = per_seed.groupby(by, sort=False)["mape"].agg(
        mape="mean", mape_seed_std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0, n_seeds="count")
    return out.reset_index()


def claim_cells(results: pd.DataFrame, rule: Mapping[str, str] = PAPER_PHASE2, threshold: float = CLAIM_MAPE) -> pd.DataFrame:
    """Battery x case cells of the Phase 2 of ``rule``: mean MAPE (test SOC, then seeds), seed
    spread, and whether the mean and the worst seed are below ``threshold`` (the paper's 6 %)."""
    cells = case_means(phase2_rule(results, rule))
    cells["below"] = cells["mape"] < threshold
    cells["all_seeds_below"] = cells["mape_seed_max"] < threshold
    return cells


def reference_path(data_dir: str | os.PathLike | None = None) -> Path:
    """Where the authors' released-code numbers live: ``<data_dir>/../reference/official_code_mape.csv``.

    ``data_dir`` is the PulseBat folder (default ``$BATTGEN_DATA_DIR``).
    """
    base = data_dir if data_dir is not None else os.environ.get("BATTGEN_DATA_DIR")
    if not base:
        raise FileNotFoundError("no data_dir and BATTGEN_DATA_DIR is not set: cannot locate ../reference/")
    return Path(base).expanduser().resolve().parent / "reference" / "official_code_mape.csv"


def load_reference(path: str | os.PathLike) -> pd.DataFrame:
    """The authors' released-code MAPE (``official_code_mape.csv``) as a tidy table.

    Columns like the results of :func:`battgen.experiments.run_grid`: ``battery``, ``case``,
    ``kind``, ``seed`` (0: a single run), ``test_soc``, ``method`` (``phase1`` or ``phase2``),
    ``mape``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the authors' released-code numbers are not there")
    raw = pd.read_csv(path)
    need = {"battery", "case", "test_soc", "phase1_mape", "phase2_mape"}
    if not need <= set(raw.columns):
        raise ValueError(f"{path}: expected columns {sorted(need)}, got {list(raw.columns)}")
    raw["battery"] = raw["battery"].map(lambda b: battery_type(b).key)
    raw["kind"] = raw["case"].map(case_kind)
    tidy = raw.melt(id_vars=["battery", "case", "kind", "test_soc"], value_vars=["phase1_mape", "phase2_mape"],
                    var_name="method", value_name="mape")
    tidy["method"] = tidy["method"].str.removesuffix("_mape")
    tidy["seed"] = 0
    return tidy[["battery", "case", "kind", "seed", "test_soc", "method", "mape"]]


def compare_with_reference(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the authors' released code, per battery type and case kind.

    Means over cases of the per-case mean over test SOC (:func:`kind_means`). Columns:
    ``battery``, ``kind``; ours: ``phase1``, ``phase2_authors`` (the authors' code's Phase 2:
    sampling, and the voltage shift for extrapolation), ``phase2_paper`` (the paper's: sampling,
    and latent-space scaling for extrapolation), each with ``*_seed_std``; theirs:
    ``ref_phase1``, ``ref_phase2``.
    """
    parts = {
        "phase1": ours[ours["method"] == "phase1"],
        "phase2_authors": phase2_rule(ours, AUTHORS_PHASE2),
        "phase2_paper": phase2_rule(ours, PAPER_PHASE2),
    }
    cols = []
    for name, rows in parts.items():
        k = kind_means(rows.drop(columns=["pulse_width_s"], errors="ignore")).set_index(["battery", "kind"])
        cols += [k["mape"].rename(name), k["mape_seed_std"].rename(f"{name}_seed_std")]
    ref = kind_means(reference).set_index(["battery", "kind", "method"])["mape"].unstack("method")
    cols += [ref["phase1"].rename("ref_phase1"), ref["phase2"].rename("ref_phase2")]
    out = pd.concat(cols, axis=1).reset_index()
    order = {b: i for i, b in enumerate(BATTERIES)}
    out["_b"], out["_k"] = out["battery"].map(order), out["kind"].map({"interpolation": 0, "extrapolation": 1})
    return out.sort_values(["_b", "_k"]).drop(columns=["_b", "_k"]).reset_index(drop=True)
