"""The generators behind one interface: fit on a split's training rows, generate rows at its targets.

Every protocol (the paper's grid, the leak-free benchmark, :class:`battgen.estimator.SOHEstimator`)
takes its generators from :data:`GENERATORS`. A generator may need a trained model (its ``fit``:
one of :data:`FITS`); generators that share a fit share the model (the paper's CVAE serves
sampling, latent scaling and the authors' shift). :func:`fit_models` trains every model that a
list of splits needs as few stacks as possible (one per network and training configuration), and
:func:`generate` turns a split and its fitted model into :class:`Rows`.

=========================  =========================  ==========================================
name                       label in result tables     rows it generates at the split's targets
=========================  =========================  ==========================================
``none``                   ``phase1`` (SOC unknown)   none: the forest sees the measured rows only
``interpolation``          ``baseline_interpolation`` per training battery, U1..U21 linearly
                                                      interpolated / extrapolated in SOC
``cvae``                   ``phase2_sample``          the paper's CVAE, ``z ~ N(0, I)``
``cvae_latent_scaling``    ``phase2_latent_scaling``  the paper's CVAE, latent-space scaling
                                                      (extrapolation cases)
``cvae_authors_shift``     ``phase2_authors_shift``   the paper's CVAE at the 2nd measured level,
                                                      shifted by the authors' physic_weight
``cvae_plus``              ``phase2_cvae_plus``       improved CVAE: linear output, fixed
                                                      physical scaler, KL annealing, free bits
``residual``               ``phase2_residual``        interpolated pulses + a CVAE residual
=========================  =========================  ==========================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from battgen.config import CVAEConfig, TrainConfig
from battgen.data import FEATURES, VOLTAGE_RANGE_V
from battgen.evaluation.split import Split
from battgen.generate import authors_shift, latent_scaling, sample
from battgen.interpolation import interpolate_features, loo_interpolation_residuals
from battgen.train import FitJob, FittedCVAE, fit_generators

__all__ = [
    "Rows",
    "Fit",
    "Generator",
    "FITS",
    "GENERATORS",
    "IMPROVED_MODEL",
    "IMPROVED_TRAIN",
    "GeneratorSettings",
    "generator",
    "applies",
    "fit_models",
    "generate",
    "residual_generation",
]

IMPROVED_MODEL = CVAEConfig(conditioning="concat", output="linear")
"""The improved generators' network: no attention (6x cheaper to train), unbounded output."""
IMPROVED_TRAIN = TrainConfig(free_bits=0.1, kl_anneal_epochs=10)
"""The improved generators' training: the paper's optimiser plus free bits and KL annealing."""


@dataclass(frozen=True)
class Rows:
    """Generated pulses: features with the SOC and the SOH label of each row."""

    X: np.ndarray  # (m, 21) volts
    soc: np.ndarray  # (m,) SOC, fraction
    soh: np.ndarray  # (m,) SOH label

    @classmethod
    def empty(cls) -> "Rows":
        return cls(np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0))

    def at(self, level_pct: int) -> "Rows":
        """The rows at one SOC level (%)."""
        keep = np.rint(self.soc * 100).astype(int) == level_pct
        return Rows(self.X[keep], self.soc[keep], self.soh[keep])


@dataclass(frozen=True)
class Fit:
    """A model some generators need: what it is trained on, and with which settings."""

    name: str  # "paper", "plus", "residual"; also its seed stream ("fit", name)
    improved: bool  # trained with GeneratorSettings.improved_* (else the paper's network and training)
    bounded: bool  # feature scaler fixed on the physical voltage range instead of the training rows
    residuals: bool  # trained on leave-one-level-out interpolation residuals instead of the pulses

    def job(self, split: Split, feature_bounds: tuple[float, float]) -> FitJob:
        """The training job on ``split``; the condition scaler also sees the conditions to generate at."""
        rows = loo_interpolation_residuals(split.train) if self.residuals else split.train
        return FitJob(rows[FEATURES].to_numpy(float), rows[["soc", "soh"]].to_numpy(float), split.seed("fit", self.name),
                      extra_conditions=split.conditions if len(split.conditions) else None,
                      provenance={**{("split_seed" if k == "seed" else k): v for k, v in split.labels.items()}, "generator": self.name},
                      feature_bounds=tuple(feature_bounds) if self.bounded else None)


FITS: dict[str, Fit] = {
    "paper": Fit("paper", improved=False, bounded=False, residuals=False),
    "plus": Fit("plus", improved=True, bounded=True, residuals=False),
    "residual": Fit("residual", improved=True, bounded=False, residuals=True),
}


@dataclass
class GeneratorSettings:
    """How the trainable generators are trained: the paper's CVAE, and the improved ones."""

    model: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    improved_model: CVAEConfig = field(default_factory=lambda: CVAEConfig(**IMPROVED_MODEL.to_dict()))
    improved_train: TrainConfig | None = None  # None: IMPROVED_TRAIN with train's epochs, batch size, lr, threads
    feature_bounds: tuple[float, float] = VOLTAGE_RANGE_V  # the "plus" fit's fixed feature scaler (V)

    def improved_train_config(self) -> TrainConfig:
        if self.improved_train is not None:
            return self.improved_train
        return TrainConfig(**{**asdict(IMPROVED_TRAIN), "epochs": self.train.epochs, "batch_size": self.train.batch_size,
                              "lr": self.train.lr, "threads": self.train.threads})

    def configs(self, fit: Fit) -> tuple[CVAEConfig, TrainConfig]:
        """The network and training settings of one fit."""
        return (self.improved_model, self.improved_train_config()) if fit.improved else (self.model, self.train)


def residual_generation(fitted: FittedCVAE, measured, levels: Sequence[float], seed: int):
    """Interpolated pulses of the ``measured`` batteries at ``levels`` (fractions) plus a residual
    decoded from ``z ~ N(0, I)`` at each row's (SOC, SOH): the residual generator's rows."""
    rows = interpolate_features(measured, levels)
    noise, _ = sample(fitted, rows[["soc", "soh"]].to_numpy(float), 1, seed=seed)
    rows[FEATURES] = rows[FEATURES].to_numpy(float) + noise
    return rows


def _frame_rows(df) -> Rows:
    return Rows(df[FEATURES].to_numpy(float), df["soc"].to_numpy(float), df["soh"].to_numpy(float))


def _decoded(X: np.ndarray, conditions: np.ndarray) -> Rows:
    return Rows(X, conditions[:, 0].copy(), conditions[:, 1].copy())


def _none(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    return Rows.empty()


def _interpolation(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    return _frame_rows(interpolate_features(split.train, [lv / 100 for lv in split.levels]))


def _cvae(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    return _decoded(sample(fitted, split.conditions, 1, seed=seed)[0], split.conditions)


def _cvae_latent_scaling(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    groups = split.condition_groups
    X, _ = latent_scaling(fitted, split.train[FEATURES].to_numpy(float), split.train[["soc", "soh"]].to_numpy(float),
                          split.conditions, train_groups=None if groups is None else split.train["battery_id"].to_numpy(),
                          target_groups=groups, seed=seed)
    return _decoded(X, split.conditions)


def _cvae_authors_shift(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    anchor = split.train_levels[1] / 100  # the authors decode at the second measured level
    return _decoded(authors_shift(fitted, split.conditions, anchor_soc=anchor, battery=split.battery, seed=seed)[0],
                    split.conditions)


def _residual(split: Split, fitted: FittedCVAE | None, seed: int) -> Rows:
    return _frame_rows(residual_generation(fitted, split.train, [lv / 100 for lv in split.levels], seed))


@dataclass(frozen=True)
class Generator:
    """One way of producing pulses at SOC levels nobody measured."""

    name: str  # registry key; also its sampling stream
    label: str  # method name in the SOC-known result tables
    description: str
    fit: str | None  # the model it needs (a key of FITS), or None
    extrapolation_only: bool  # offered only in extrapolation cases (it needs a level range to extend)
    make: Callable[[Split, FittedCVAE | None, int], Rows] = field(repr=False)


GENERATORS: dict[str, Generator] = {g.name: g for g in (
    Generator("none", "phase1", "no generation: the measured rows only", None, False, _none),
    Generator("interpolation", "baseline_interpolation", "per-battery linear interpolation / extrapolation in SOC",
              None, False, _interpolation),
    Generator("cvae", "phase2_sample", "paper CVAE, z ~ N(0, I) at the target (SOC, SOH)", "paper", False, _cvae),
    Generator("cvae_latent_scaling", "phase2_latent_scaling", "paper CVAE, latent-space scaling (the paper's extrapolation)",
              "paper", True, _cvae_latent_scaling),
    Generator("cvae_authors_shift", "phase2_authors_shift", "paper CVAE at the 2nd measured level + the authors' voltage shift",
              "paper", True, _cvae_authors_shift),
    Generator("cvae_plus", "phase2_cvae_plus", "improved CVAE: linear output, physical scaler, KL annealing, free bits",
              "plus", False, _cvae),
    Generator("residual", "phase2_residual", "interpolated pulses + CVAE residual", "residual", False, _residual),
)}
"""The registry, in the order the result tables list them."""


def generator(name: str) -> Generator:
    """Look up a generator by name, with an error that lists the registry."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; expected one of {list(GENERATORS)}")
    return GENERATORS[name]


def applies(gen: Generator, split: Split) -> bool:
    """Whether ``gen`` is run on ``split`` (extrapolation-only generators need an extrapolation case)."""
    return not gen.extrapolation_only or split.labels.get("kind") == "extrapolation"


def fit_models(requests: Sequence[tuple[Split, str]], settings: GeneratorSettings | None = None,
               progress: bool | None = None) -> list[FittedCVAE]:
    """Train one model per ``(split, fit name)`` request; returns them in request order.

    Requests with the same network and training settings train together as one stack
    (:func:`battgen.train.fit_generators`), in request order; a fit does not depend on its
    stack mates.
    """
    settings = settings or GeneratorSettings()
    groups: dict[str, list[int]] = {}
    configs: dict[str, tuple[CVAEConfig, TrainConfig]] = {}
    for i, (_, name) in enumerate(requests):
        mc, tc = settings.configs(FITS[name])
        key = json.dumps([mc.to_dict(), asdict(tc)], sort_keys=True)
        groups.setdefault(key, []).append(i)
        configs[key] = (mc, tc)
    out: list[FittedCVAE | None] = [None] * len(requests)
    for key, idx in groups.items():
        jobs = [FITS[requests[i][1]].job(requests[i][0], settings.feature_bounds) for i in idx]
        for i, fitted in zip(idx, fit_generators(jobs, *configs[key], progress)):
            out[i] = fitted
    return out  # type: ignore[return-value]


def generate(split: Split, name: str, fitted: FittedCVAE | None = None) -> Rows:
    """Rows of generator ``name`` at the split's targets, from its fitted model (if it needs one)."""
    gen = generator(name)
    if gen.fit is not None and fitted is None:
        raise ValueError(f"generator {name!r} needs a fitted {gen.fit!r} model (fit_models)")
    return gen.make(split, fitted, split.seed(name))
