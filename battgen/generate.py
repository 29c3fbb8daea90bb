"""Generating pulse features at unseen SOC levels from a fitted CVAE.

Three ways, so the book can set them side by side:

- :func:`sample` (the paper, interpolation): decode ``z ~ N(0, I)`` at the target conditions.
- :func:`latent_scaling` (the paper, extrapolation): scale the training posteriors' latent
  statistics by ratios of the SOC distributions, then decode at the target conditions.
- :func:`authors_shift` (the authors' released code, extrapolation): decode at the second
  training SOC and shift every voltage by a hand-set amount per 5 % SOC.

All take and return physical units: conditions are ``[SOC as a fraction, SOH]``, features volts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from battgen.data import battery_type

if TYPE_CHECKING:
    from battgen.train import FittedCVAE

__all__ = ["sample", "latent_scaling", "latent_scale_factors", "authors_shift", "AUTHORS_SHIFT_GAIN"]

AUTHORS_SHIFT_GAIN = 20.0
"""The authors' "proportional coefficient": volts per unit SOC fraction per unit physic_weight."""


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def sample(fitted: FittedCVAE, conditions: np.ndarray, n_per_condition: int = 1, seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``z ~ N(0, I)`` at each condition, ``n_per_condition`` times.

    Returns ``(features, conditions)``, both repeated row-wise: ``(n * k, 21)`` volts and
    ``(n * k, 2)``.
    """
    cond = np.repeat(np.atleast_2d(np.asarray(conditions, dtype=float)), n_per_condition, axis=0)
    z = _rng(seed).standard_normal((len(cond), fitted.config.latent_dim))
    return fitted.decode(z, cond), cond


def latent_scale_factors(train_soc: np.ndarray, target_soc: np.ndarray) -> tuple[float, float]:
    """``(T_mean, T_logvar)`` for the paper's latent-space scaling.

    Our reading of the paper (its Methods give the idea, the authors' code does not implement
    it): the training SOC distribution is the SOC of the training rows, the test distribution the
    SOC of the rows to be generated (all the unseen levels of a case), both as fractions;
    ``T_mean = mean(test) / mean(train)`` and ``T_logvar = var(test) / var(train)``.
    """
    train_soc, target_soc = np.asarray(train_soc, float), np.asarray(target_soc, float)
    if train_soc.var() == 0:
        raise ValueError("latent scaling needs at least two training SOC levels (the training SOC variance is 0)")
    return float(target_soc.mean() / train_soc.mean()), float(target_soc.var() / train_soc.var())


def latent_scaling(
    fitted: FittedCVAE,
    train_features: np.ndarray,
    train_conditions: np.ndarray,
    target_conditions: np.ndarray,
    *,
    train_groups: np.ndarray | None = None,
    target_groups: np.ndarray | None = None,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's extrapolation: ``z'_mean = T_mean z_mean``, ``z'_logvar = T_logvar z_logvar``.

    Each target row borrows the posterior ``(z_mean, z_logvar)`` of one training row (one of the
    same battery when ``train_groups`` / ``target_groups`` are given and the battery has training
    rows, otherwise any training row, drawn at random), scales it with
    :func:`latent_scale_factors`, draws ``z' = z'_mean + exp(z'_logvar / 2) * eps`` and decodes
    at the target condition. Returns ``(features, target_conditions)``.
    """
    rng = _rng(seed)
    target_conditions = np.atleast_2d(np.asarray(target_conditions, dtype=float))
    mu, logvar = fitted.encode(train_features, train_conditions)  # (n, L) each
    t_mean, t_logvar = latent_scale_factors(np.asarray(train_conditions)[:, 0], target_conditions[:, 0])
    pick = rng.integers(0, len(mu), size=len(target_conditions))
    if train_groups is not None and target_groups is not None:
        rows_of: dict = {}
        for i, g in enumerate(np.asarray(train_groups)):
            rows_of.setdefault(g, []).append(i)
        for i, g in enumerate(np.asarray(target_groups)):
            if g in rows_of:
                pick[i] = rows_of[g][rng.integers(len(rows_of[g]))]
    z_mean, z_logvar = t_mean * mu[pick], t_logvar * logvar[pick]  # (m, L) each
    z = z_mean + np.exp(0.5 * z_logvar) * rng.standard_normal(z_mean.shape)
    return fitted.decode(z, target_conditions), target_conditions


def authors_shift(
    fitted: FittedCVAE,
    target_conditions: np.ndarray,
    anchor_soc: float,
    battery: str | None = None,
    *,
    physic_weight: float | None = None,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' released-code extrapolation (not the method the paper describes).

    For each target ``(SOC, SOH)``, decode ``z ~ N(0, I)`` at ``(anchor_soc, SOH)`` (the authors
    use the second training SOC level) and add ``(SOC - anchor_soc) * physic_weight * 20`` volts
    to all 21 features. ``physic_weight`` defaults to the authors' value for ``battery``.
    """
    if physic_weight is None:
        if battery is None:
            raise ValueError("give battery= (for the authors' physic_weight) or physic_weight=")
        physic_weight = battery_type(battery).physic_weight
    target_conditions = np.atleast_2d(np.asarray(target_conditions, dtype=float))
    anchor = target_conditions.copy()
    anchor[:, 0] = anchor_soc
    features, _ = sample(fitted, anchor, 1, seed)
    shift = (target_conditions[:, 0] - anchor_soc) * physic_weight * AUTHORS_SHIFT_GAIN  # (m,) volts
    return features + shift[:, None], target_conditions
