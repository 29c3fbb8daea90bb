"""Diagnostics of fitted generators and of the data: what the chapters measure beyond the scores.

- **The CVAE** (chapter 02): posterior-mean reconstruction, how much the latent code is used
  (:func:`latent_usage`, :func:`collapse_diagnostics`), the decoder variance the paper's loss
  weights imply (:func:`decoder_variance`), the spectrum of what the condition leaves unexplained
  (:func:`residual_spectrum`), per-feature errors (:func:`feature_errors`).
- **Unit-token cross-attention** (chapter 03): the four scalars that govern a head
  (:func:`attention_scalars`), the layers of a model and what they read for given rows
  (:func:`attention_layers`, :func:`attention_inputs`), the check of the factorised attention
  against the textbook one (:func:`attention_agreement`), summaries of attention maps
  (:func:`attention_stats`, :func:`attention_logit_range`, :func:`attention_sweep`), their
  departure from uniform and how much they move with the condition (:func:`attention_departure`,
  :func:`attention_shift`, :func:`attention_sweep_shifts`).
- **The data**: how far apart batteries are at one SOC level (:func:`between_battery_spread_mv`),
  two tables of the same rows (:func:`paired_difference_mv`), and how much of an extrapolation
  case lies outside the training range (:func:`outside_training_range`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from battgen.data import FEATURES
from battgen.model import CVAE, CVAEConfig, UnitCrossAttention
from battgen.protocol import CASES, soc_percent
from battgen.train import FittedCVAE

__all__ = [
    "reconstruct",
    "latent_usage",
    "collapse_diagnostics",
    "decoder_variance",
    "residual_spectrum",
    "feature_errors",
    "between_battery_spread_mv",
    "paired_difference_mv",
    "outside_training_range",
    "soc_cap",
    "u1_soh_correlation",
    "attention_scalars",
    "attention_agreement",
    "attention_stats",
    "attention_slopes",
    "attention_logit_range",
    "attention_sweep",
    "attention_layers",
    "attention_inputs",
    "attention_departure",
    "attention_shift",
    "attention_sweep_shifts",
]

_QUERIES = {"encoder": "h_enc", "decoder": "h_dec"}  # CVAE.hidden key of each attention layer's query


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
    """Mean and largest absolute difference (mV) of U1..U21 between two tables of the same rows,
    and how their SOH labels differ.

    Rows are paired on ``battery_id`` and SOC (e.g. the 3 s and the 5 s features of one battery
    type); ``n`` is the number of pairs, ``soh_max`` the largest absolute difference of the SOH
    labels and ``soh_n_differ`` the number of pairs whose labels are not bit for bit equal.
    """
    keys = ["battery_id", "_soc"]
    columns = [*FEATURES, "soh"]
    left = a.assign(_soc=soc_percent(a)).set_index(keys)[columns]
    right = b.assign(_soc=soc_percent(b)).set_index(keys)[columns]
    both = left.add_suffix("_a").join(right.add_suffix("_b"), how="inner")
    if both.empty:
        raise ValueError("the two tables share no (battery_id, SOC) rows")
    diff = np.abs(both[[f"{f}_a" for f in FEATURES]].to_numpy(float) - both[[f"{f}_b" for f in FEATURES]].to_numpy(float))
    soh = np.abs(both["soh_a"].to_numpy(float) - both["soh_b"].to_numpy(float))
    return {"mean_mv": 1000.0 * float(diff.mean()), "max_mv": 1000.0 * float(diff.max()), "n": int(len(both)),
            "soh_max": float(soh.max()), "soh_n_differ": int((soh != 0).sum())}


def outside_training_range(df: pd.DataFrame, case: int) -> dict[str, float]:
    """Share of the feature values at a case's unseen levels that lie outside the per-feature
    [min, max] of its training levels (all batteries of ``df``): what a sigmoid output mapped
    back through a MinMax scaler fitted on the training rows can never produce."""
    socs = soc_percent(df)
    train = df[np.isin(socs, CASES[case])][FEATURES].to_numpy(float)
    test = df[~np.isin(socs, CASES[case])][FEATURES].to_numpy(float)
    lo, hi = train.min(axis=0), train.max(axis=0)
    outside = (test < lo) | (test > hi)
    return {"share": float(outside.mean()), "rows_with_any": float(outside.any(axis=1).mean())}


def collapse_diagnostics(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Signs of latent collapse in a fitted generator: the KL of its last epoch, the spread of the
    posterior means over the training rows, and how much decoding the posterior means instead of
    z = 0 changes the output (RMS, mV): near 0 means the decoder ignores z."""
    mu, logvar = fitted.encode(features, conditions)
    with_z = fitted.decode(mu, conditions)
    without = fitted.decode(np.zeros_like(mu), conditions)
    return {"kl_last_epoch": float(fitted.history["kl"][-1]), "z_mean_abs": float(np.abs(mu).mean()),
            "z_mean_std": float(mu.std(axis=0).mean()), "posterior_var": float(np.exp(logvar).mean()),
            "decoder_uses_z_mv": float(1000 * np.sqrt(np.mean((with_z - without) ** 2)))}


@torch.no_grad()
def attention_scalars(attn: UnitCrossAttention) -> pd.DataFrame:
    """The four scalars per head that fix a unit-token attention layer (:meth:`UnitCrossAttention.scalars`).

    With size-1 tokens the logit of query unit ``i`` on context unit ``j`` is
    ``C_j (a h_i + c)`` plus terms that are constant along ``j`` (they cancel in the softmax),
    and the output is ``alpha * sum_j att_ij C_j + beta``. Returns one row per head with ``a``,
    ``c``, ``alpha`` and ``beta`` (``beta`` is the layer's total offset, shared by the heads).
    """
    a, c, alpha, beta = attn.scalars()
    return pd.DataFrame({"head": np.arange(attn.num_heads), "a": a.numpy(), "c": c.numpy(), "alpha": alpha.numpy(),
                         "beta": float(beta)})


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
    logits = attn.logits(query, context)  # (B, H, Tq, Tk)
    a, c, _, _ = attn.scalars()  # (H,) each
    factored = context[:, None, None, :] * (a[None, :, None, None] * query[:, None, :, None] + c[None, :, None, None])
    centred = (logits - logits.mean(-1, keepdim=True)) - (factored - factored.mean(-1, keepdim=True))  # (B, H, Tq, Tk)
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
    dev = attention_departure(maps)
    sv = np.linalg.svd(dev, compute_uv=False)
    share = np.divide(sv[:, 0] ** 2, (sv**2).sum(-1), out=np.ones(len(sv)), where=(sv**2).sum(-1) > 0)
    return {
        "entropy_ratio": float(ent.mean() / math.log(Tk)),
        "max_weight_x_tk": float(Tk * maps.max(-1).mean()),
        "deviation": float(np.abs(dev).mean()),
        "rank1_share": float(share.mean()),
    }


def _slopes(attn: UnitCrossAttention, h: torch.Tensor) -> torch.Tensor:
    """``s_i = a h_i + c`` of a one-head layer for the query units ``h`` (n, Tq): the logit of unit
    ``i`` on context unit ``j`` is ``s_i C_j`` up to a constant along ``j``; (n, Tq)."""
    s = attention_scalars(attn).iloc[0]
    return s["a"] * h + s["c"]


@torch.no_grad()
def attention_slopes(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> dict[str, np.ndarray]:
    """The slopes ``s_i = a h_i + c`` of every row and query unit, ``{"encoder": (n, 64), "decoder": (n, 64)}``
    for one-head layers (the decoder reads at the posterior mean): row ``i`` of a row's attention
    map is ``softmax_j(s_i C_j)``, so the slopes set how the rows of the map differ."""
    return {name: _slopes(attn, h).numpy() for name, (attn, h, _) in attention_inputs(fitted, features, conditions).items()}


@torch.no_grad()
def attention_logit_range(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Largest spread along ``j`` of the logits ``s_i C_j`` (``s_i = a h_i + c``) over rows and query units.

    A spread well below 1 means every row of the map is close to uniform. Returns
    ``{"encoder": ..., "decoder": ...}`` for one-head layers (the decoder reads at the posterior mean).
    """
    out = {}
    for name, (attn, h, C) in attention_inputs(fitted, features, conditions).items():
        spread = (C.amax(-1) - C.amin(-1))[:, None]  # (n, 1)
        out[name] = float((_slopes(attn, h).abs() * spread).max())
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


def attention_layers(model: CVAE) -> dict[str, UnitCrossAttention]:
    """The cross-attention layers of a CVAE: ``{"encoder": ..., "decoder": ...}`` (empty for
    ``conditioning="concat"``, which has none)."""
    return {half: layer for half, layer in (("encoder", getattr(model, "enc_attn", None)),
                                            ("decoder", getattr(model, "dec_attn", None))) if layer is not None}


@torch.no_grad()
def attention_inputs(fitted: FittedCVAE, features: np.ndarray,
                     conditions: np.ndarray) -> dict[str, tuple[UnitCrossAttention, torch.Tensor, torch.Tensor]]:
    """What each attention layer reads for rows in physical units: ``{half: (layer, query, context)}``.

    The query is the layer's hidden units (the encoder's from ``x``, the decoder's from the
    posterior mean), the context the condition embedding ``C``; both (n, 64), from
    :meth:`battgen.train.FittedCVAE.hidden`. Feed them to :func:`attention_agreement` or to the
    layer itself.
    """
    hid = fitted.hidden(features, conditions)
    return {half: (layer, hid[_QUERIES[half]], hid["C"]) for half, layer in attention_layers(fitted.model).items()}


def attention_departure(maps: np.ndarray) -> np.ndarray:
    """``Tk * att - 1``: the relative departure of attention maps (..., Tq, Tk) from uniform
    attention (0 where a weight is the uniform ``1 / Tk``, positive where it is larger)."""
    maps = np.asarray(maps, dtype=float)
    return maps.shape[-1] * maps - 1.0


def attention_shift(before: np.ndarray, after: np.ndarray) -> float:
    """How much an attention map moves: the mean of ``|Tk * (after - before)|``, in units of the
    uniform weight ``1 / Tk`` (the mean absolute change of :func:`attention_departure`)."""
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape:
        raise ValueError(f"maps of different shapes: {before.shape} and {after.shape}")
    return float(np.abs(attention_departure(after) - attention_departure(before)).mean())


def attention_sweep_shifts(sweep: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """How much the maps of an :func:`attention_sweep` move, per layer: ``change_soc`` from the
    lowest to the highest SOC of the SOC sweep (at the median SOH), ``change_soh`` from the
    lowest to the highest SOH of the SOH sweep (:func:`attention_shift`)."""
    def ends(kind: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        entries = sorted((e for e in sweep if e["sweep"] == kind), key=lambda e: e[key])
        if len(entries) < 2:
            raise ValueError(f"the sweep needs two {kind} entries, got {len(entries)}")
        return entries[0], entries[-1]

    (soc_lo, soc_hi), (soh_lo, soh_hi) = ends("SOC", "soc_pct"), ends("SOH", "soh")
    return {half: {"change_soc": attention_shift(soc_lo[half], soc_hi[half]),
                   "change_soh": attention_shift(soh_lo[half], soh_hi[half])}
            for half in ("encoder", "decoder")}


# --------------------------------------------------------------------------- what the test design encodes


def soc_cap(frame: pd.DataFrame) -> pd.DataFrame:
    """Per tested battery: its SOH and the highest SOC level (%) it was tested at.

    PulseBat's SOC is a fraction of the *nominal* capacity, and the testers stopped each battery's
    SOC ladder below its (estimated) actual capacity, so the highest level reached rises with SOH.
    Pass a table loaded with every level (``load_pulsebat(b, 3, max_soc=1.0)``: the 3 s files go
    up to 90 %). Columns: ``battery``, ``battery_id``, ``soh``, ``top_soc``, ``n_levels``.
    """
    socs = frame.assign(_soc=soc_percent(frame))
    out = socs.groupby(["battery", "battery_id"], sort=False).agg(soh=("soh", "first"), top_soc=("_soc", "max"),
                                                                  n_levels=("_soc", "nunique"))
    return out.reset_index()


def u1_soh_correlation(frame: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of U1 (the rest voltage before the pulses) with SOH, per SOC level.

    At a fixed *nominal* SOC a battery with SOH ``h`` holds ``SOC / h`` of its own capacity, so its
    open-circuit voltage is higher the lower its SOH: U1 alone ranks batteries by SOH wherever the
    open-circuit voltage rises with SOC (not on LFP's plateau). Columns: ``battery``, ``soc``
    (%), ``r``, ``n``.
    """
    rows = []
    for (battery, soc), g in frame.assign(_soc=soc_percent(frame)).groupby(["battery", "_soc"], sort=False):
        r = float(np.corrcoef(g["U1"], g["soh"])[0, 1]) if len(g) > 2 and g["soh"].std() > 0 else np.nan
        rows.append({"battery": battery, "soc": int(soc), "r": r, "n": len(g)})
    return pd.DataFrame(rows)
