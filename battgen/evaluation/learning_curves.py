"""New-design learning curves: how many measured batteries and SOC levels does a new battery design need?

For each battery design in turn (the *new* design), every method trains on the other three designs
(their physical cells at all ten SOC levels; at most ``max_other_cells`` cells each, drawn per
draw) plus ``k`` cells of the new design measured at ``m`` SOC levels, and predicts the SOH of the
new design's remaining cells at all ten levels without their SOC (:func:`new_design_draws` draws
which cells and which levels, seeded with :func:`~battgen.evaluation.split.derive_seed`; the
``k`` cells of a draw contain those of every smaller ``k``, and likewise the ``m`` levels).

**Across designs the pulses are compared relative to their own rest voltage**
(:func:`relative_pulses`): ``U_k - U1`` replaces ``U_k`` and ``U1`` becomes the constant
:data:`V_REF`. The open-circuit voltage differs between chemistries (LFP ~3.3 V, NMC ~3.7 V) and
carries SOC, not SOH; the pulse relative to it is the response to a current of so many C, i.e. a
resistance times the capacity, which designs of different size share. It needs no statistic of a
design, so it works with ``k = 0``; it is linear, so interpolating relative pulses is the same as
relative interpolated pulses; every generator of the registry runs on it unchanged (the values
stay volts inside 1.5-5 V).

Methods (:data:`METHODS`): ``constant`` (the mean SOH of the new design's ``k`` training cells, or
of the other designs when ``k = 0``); ``none`` (the paper's forest on the training rows);
``interpolation`` (the new design's ``k`` cells interpolated to their unmeasured levels, needs
``m >= 2``); the generators ``cvae`` (the paper's), ``cvae_plus`` and ``residual`` (``m >= 2``) of
:mod:`battgen.evaluation.generators`, each *fitted on all training rows* (other designs and the new
design's rows, conditioned on (SOC, SOH) as in the paper: nothing tells the network the design, so
whatever it knows of the new design comes from its ``k x m`` rows) and *generating for the new
design only*, at its unmeasured levels on an SOH grid spanning its ``k`` cells; each generator's
rows join the training rows of a paper forest. ``invariant`` is
:class:`~battgen.evaluation.unknown_soc.InvariantEstimator` on the invariant features alone
(ohm Ah and volts, comparable between designs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from battgen.data import FEATURES
from battgen.evaluation.generators import GENERATORS, GeneratorSettings, fit_models, generate
from battgen.evaluation.split import Split, derive_seed, grid_conditions, soh_grid
from battgen.evaluation.unknown_soc import InvariantEstimator, paired_difference
from battgen.io import progress_bar
from battgen.protocol import ALL_SOC, soc_percent
from battgen.soh import fit_forest
from battgen.train import TrainConfig

__all__ = [
    "V_REF",
    "METHODS",
    "PREDICTION_COLUMNS",
    "relative_pulses",
    "Draw",
    "new_design_draws",
    "draw_split",
    "LearningCurveConfig",
    "run_learning_curves",
    "curve_summary",
    "crossing_points",
    "best_generator",
    "generator_savings",
]

V_REF = 3.5
"""The constant that stands for ``U1`` in relative pulses (V): any value inside 1.5-5 V would do."""
METHODS = ("constant", "none", "interpolation", "cvae", "cvae_plus", "residual", "invariant")
NEEDS_TWO_LEVELS = ("interpolation", "residual")
PREDICTION_COLUMNS = ["design", "k", "m", "draw", "seed", "cell", "battery_id", "soc", "method", "soh", "prediction"]


def relative_pulses(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with ``U_k`` replaced by ``V_REF + U_k - U1`` (so ``U1`` becomes ``V_REF``)."""
    out = df.copy()
    u1 = df["U1"].to_numpy(float)
    for c in FEATURES:
        out[c] = V_REF + df[c].to_numpy(float) - u1
    return out


@dataclass(frozen=True)
class Draw:
    """Which cells and SOC levels one point of a learning curve trains and tests on."""

    design: str  # the new design
    k: int  # its cells in training
    m: int  # SOC levels they are measured at (0 when k = 0)
    draw: int
    seed: int
    train_cells: tuple[str, ...]  # of the new design
    levels: tuple[int, ...]  # measured SOC levels (%), ascending
    test_cells: tuple[str, ...]  # of the new design: every cell not in train_cells
    other_cells: tuple[tuple[str, tuple[str, ...]], ...]  # (design, its training cells) for each other design


def _cells(df: pd.DataFrame, group: str) -> list[str]:
    return sorted(set(df[group].astype(str).tolist()))


def new_design_draws(frames: dict[str, pd.DataFrame], design: str, ks: Sequence[int], ms: Sequence[int], draws: int,
                     seed: int = 0, *, group: str = "cell", max_other_cells: int | None = None) -> list[Draw]:
    """The draws of one new design: per draw a permutation of its cells and of the ten SOC levels
    (``numpy.random.default_rng(derive_seed(design, seed, draw, "new design"))``); point (k, m)
    trains on the first k cells at the first m levels and tests on the other cells. The other
    designs' cells (all, or ``max_other_cells`` drawn with ``derive_seed(other, design, seed, draw,
    "other cells")``) are the same for every (k, m) of a draw. ``k = 0`` is one point (``m = 0``)
    of draw 0; a ``k`` that would leave no test cell is skipped. Different seeds give independent draws."""
    if design not in frames:
        raise ValueError(f"unknown design {design!r}; expected one of {list(frames)}")
    cells = _cells(frames[design], group)
    out = []
    for d in range(int(draws)):
        rng = np.random.default_rng(derive_seed(design, seed, d, "new design"))
        order, levels = [str(c) for c in rng.permutation(cells)], [int(v) for v in rng.permutation(ALL_SOC)]
        others = []
        for o in (o for o in frames if o != design):
            pool = _cells(frames[o], group)
            if max_other_cells is not None and len(pool) > max_other_cells:
                pick = np.random.default_rng(derive_seed(o, design, seed, d, "other cells")).choice(len(pool), max_other_cells, replace=False)
                pool = sorted(pool[i] for i in pick)
            others.append((o, tuple(pool)))
        for k in ks:
            if k >= len(cells) or (k == 0 and d > 0):
                continue
            for m in ([0] if k == 0 else ms):
                out.append(Draw(design, int(k), int(m), d, int(seed), tuple(order[:k]), tuple(sorted(levels[:m])),
                                tuple(order[k:]), tuple(others)))
    return out


def draw_split(frames: dict[str, pd.DataFrame], d: Draw, group: str = "cell") -> Split:
    """The :class:`~battgen.evaluation.split.Split` of a draw, in relative pulses: ``train`` = the
    other designs' cells at every level + the new design's ``k`` cells at the ``m`` levels;
    ``test`` = the new design's other cells at every level; ``levels`` and ``conditions`` = where
    to generate for the new design (its unmeasured levels x an SOH grid spanning its k cells)."""
    new = frames[d.design]
    in_train = new[group].astype(str).isin(d.train_cells).to_numpy()
    new_rows = new[in_train & np.isin(soc_percent(new), d.levels)]
    others = [frames[o][frames[o][group].astype(str).isin(cells)] for o, cells in d.other_cells]
    train = relative_pulses(pd.concat(others + [new_rows], ignore_index=True))
    test = relative_pulses(new[new[group].astype(str).isin(d.test_cells)].reset_index(drop=True))
    unmeasured = tuple(lv for lv in ALL_SOC if lv not in d.levels) if d.k else ()
    grid = soh_grid(new_rows["soh"].to_numpy(), new_rows["battery_id"].nunique()) if d.k else np.zeros(0)
    return Split(key=(d.design, d.k, d.m, d.draw, d.seed), train=train, test=test, levels=unmeasured,
                 conditions=grid_conditions(unmeasured, grid), labels={"design": d.design, "k": d.k, "m": d.m,
                                                                         "draw": d.draw, "seed": d.seed})


@dataclass
class LearningCurveConfig:
    """What :func:`run_learning_curves` runs."""

    ks: Sequence[int] = (0, 1, 2, 4, 8)
    ms: Sequence[int] = (1, 2, 3)
    seeds: Sequence[int] = (0, 1, 2)
    draws: int = 1  # per seed
    methods: Sequence[str] = METHODS
    epochs: int = 50
    max_other_cells: int | None = 6
    invariant_method: str = "invariant_ensemble"
    n_trees: int = 100
    group: str = "cell"
    progress: bool | None = None

    def applies(self, method: str, d: Draw) -> bool:
        """Whether ``method`` runs at a draw: generators need k >= 1, interpolation and residual m >= 2."""
        if method in GENERATORS and method != "none" and d.k == 0:
            return False
        return not (method in NEEDS_TWO_LEVELS and d.m < 2)


def _rows(split: Split, method: str, pred: np.ndarray) -> pd.DataFrame:
    out = split.test[["cell", "battery_id", "soc", "soh"]].assign(**split.labels, method=method)
    out["prediction"] = np.asarray(pred, dtype=float)
    return out[PREDICTION_COLUMNS]


def run_learning_curves(frames: dict[str, pd.DataFrame], config: LearningCurveConfig | None = None) -> pd.DataFrame:
    """Every design x draw x (k, m) x method: one row per test pulse (:data:`PREDICTION_COLUMNS`).

    All generator fits of the run train first, as stacks (one per network); then per draw the
    forests and the invariant estimator.
    """
    cfg = config or LearningCurveConfig()
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; expected some of {list(METHODS)}")
    draws = [d for seed in cfg.seeds for design in frames for d in new_design_draws(
        frames, design, cfg.ks, cfg.ms, cfg.draws, seed, group=cfg.group, max_other_cells=cfg.max_other_cells)]
    splits = [draw_split(frames, d, cfg.group) for d in draws]
    gens = [g for g in cfg.methods if g in GENERATORS and GENERATORS[g].fit is not None]
    requests = [(i, g) for g in gens for i, d in enumerate(draws) if cfg.applies(g, d)]
    settings = GeneratorSettings(train=TrainConfig(epochs=cfg.epochs))  # threads from the machine: same numbers
    fitted = dict(zip(requests, fit_models([(splits[i], GENERATORS[g].fit) for i, g in requests], settings, cfg.progress)))
    out = []
    for i, (d, split) in enumerate(progress_bar(list(zip(draws, splits)), progress=cfg.progress, desc="learning curves",
                                                unit="point")):
        new_only = replace(split, train=split.train[split.train["battery"] == d.design])
        X, y = split.train[FEATURES].to_numpy(float), split.train["soh"].to_numpy(float)
        X_test = split.test[FEATURES].to_numpy(float)
        for method in cfg.methods:
            if not cfg.applies(method, d):
                continue
            if method == "constant":
                pred = np.full(len(X_test), float((new_only.train if d.k else split.train)["soh"].mean()))
            elif method == "invariant":
                est = InvariantEstimator(cfg.invariant_method, voltages=False, n_trees=cfg.n_trees, group=cfg.group,
                                         random_state=split.seed("invariant"))
                pred = est.fit(split.train).predict(split.test)
            else:
                rows = generate(new_only, method, fitted.get((i, method))) if method != "none" else None
                if rows is not None:  # back into the representation: a decoder gives U1 = V_REF only approximately
                    gen_X = rows.X.copy()  # (n_generated, 21)
                    gen_X[:, 0] = V_REF
                Xg, yg = (X, y) if rows is None else (np.vstack([X, gen_X]), np.concatenate([y, rows.soh]))
                pred = fit_forest(Xg, yg, split.seed("forest")).predict(X_test)
            out.append(_rows(split, method, pred))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------- reading the curves

_POINT = ["design", "k", "m"]
_PULSE = ["design", "k", "m", "draw", "seed", "cell", "battery_id", "soc"]


def curve_summary(predictions: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per design, method and (k, m): MAPE over the test pulses of every draw, with a 95 % interval
    resampling the new design's cells. Columns: design, method, k, m, mape, ci_low, ci_high, n_draws."""
    from battgen.evaluation.stats import cluster_bootstrap
    from battgen.soh import absolute_percentage_errors

    ape = absolute_percentage_errors(predictions["soh"].to_numpy(float), predictions["prediction"].to_numpy(float))
    rows = []
    for (design, method, k, m), g in predictions.assign(ape=ape).groupby(["design", "method", "k", "m"], sort=False):
        mean, lo, hi = cluster_bootstrap(g["ape"].to_numpy(), g["cell"].to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({"design": design, "method": method, "k": k, "m": m, "mape": mean, "ci_low": lo, "ci_high": hi,
                     "n_draws": int(g["draw"].nunique())})
    return pd.DataFrame(rows).sort_values(["design", "method", "k", "m"], ignore_index=True)


def _ordered_points(table: pd.DataFrame) -> pd.DataFrame:
    """Points in the order "fewest measurements first": k x m pulses per cell, then k, then m."""
    return table.assign(pulses=table["k"] * table["m"]).sort_values(["pulses", "k", "m"], kind="stable")


def crossing_points(predictions: pd.DataFrame, reference: str = "constant", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per design and method: the smallest (k, m) (fewest ``k x m`` measured pulses, then fewest
    cells) at which the method clearly beats ``reference`` (the upper end of the cell-resampled 95 %
    interval of the paired MAPE difference is below zero), with that difference; and the smallest
    (k, m) from which on it beats it at every point with at least as many cells and levels
    (``k_stable``, ``m_stable``: a small ``k`` also makes a poor constant, so a first win can be
    followed by losses). NaN where there is none. Columns: design, method, k, m, diff, diff_low,
    diff_high, k_stable, m_stable."""
    diffs = paired_difference(predictions, [m for m in predictions["method"].unique() if m != reference], reference,
                              keys=_PULSE, by=_POINT, n_boot=n_boot, seed=seed)
    rows = []
    for (design, method), g in _ordered_points(diffs).groupby(["design", "method"], sort=False):
        beats = g["diff_high"] < 0
        hit = g[beats]
        first = hit.iloc[0] if len(hit) else None
        stable = [r for r in g.itertuples() if beats[(g["k"] >= r.k) & (g["m"] >= r.m)].all()]
        rows.append({"design": design, "method": method, "k": np.nan if first is None else first["k"],
                     "m": np.nan if first is None else first["m"],
                     **{c: np.nan if first is None else first[c] for c in ("diff", "diff_low", "diff_high")},
                     "k_stable": stable[0].k if stable else np.nan, "m_stable": stable[0].m if stable else np.nan})
    return pd.DataFrame(rows)


def best_generator(summary: pd.DataFrame, candidates: Sequence[str] = ("cvae_plus", "residual")) -> pd.Series:
    """Per design, the candidate with the lowest mean MAPE over the (k, m) points where every
    candidate runs (from :func:`curve_summary`): "the best other generator" of the registry."""
    sub = summary[summary["method"].isin(candidates)]
    common = sub.groupby(["design", "k", "m"])["method"].transform("nunique") == len(candidates)
    means = sub[common].groupby(["design", "method"], sort=False)["mape"].mean()
    return means.groupby(level="design", sort=False).idxmin().map(lambda key: key[1]).rename("best_generator")


def generator_savings(predictions: pd.DataFrame, generators: Sequence[str] = ("cvae", "cvae_plus", "residual"),
                      reference: str = "interpolation", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per design, generator and (k, m) where ``reference`` runs: the paired MAPE difference
    generator - reference with its cell-resampled interval, the verdict ``saves`` (the interval
    lies below zero: the generator beats interpolation at the same measurement) and
    ``beats_constant`` (the generator also clearly beats the constant there; a saving that still
    loses to the constant saves nothing a recycler would use)."""
    present = [g for g in generators if g in set(predictions["method"])]
    out = paired_difference(predictions, present, reference, keys=_PULSE, by=_POINT, n_boot=n_boot, seed=seed)
    const = paired_difference(predictions, present, "constant", keys=_PULSE, by=_POINT, n_boot=n_boot, seed=seed)
    out = out.merge(const[_POINT + ["method", "diff_high"]].rename(columns={"diff_high": "const_high"}), on=_POINT + ["method"],
                    how="left")
    return out.assign(saves=out["diff_high"] < 0, beats_constant=out["const_high"] < 0).drop(columns="const_high")
