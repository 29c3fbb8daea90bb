"""The paper's unseen-SOC experiment: eight cases, Phase 1 vs Phase 2, on every battery type.

For a case, the *training* SOC levels are the ones measured; the rest of 5..50 % are *test*
levels (:func:`battgen.evaluation.split.paper_split`). Phase 1 trains the forest on the measured
rows and tests it on each unseen level. Phase 2 trains a forest per unseen level on rows the CVAE
generated there and tests it on the measured rows at that level. As in the paper (and the
authors' code), generation is conditioned on the test batteries' true SOH and the same physical
batteries appear in training and test: :mod:`battgen.evaluation.leakfree` asks the leak-free
question. The scoring is :func:`battgen.evaluation.core.evaluate_known_soc`.

Methods in the results table (:data:`METHODS`); with ``baselines=True`` also
``baseline_constant``, ``baseline_interpolation`` and ``baseline_soc_input``, on the same rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from battgen.data import BATTERIES, battery_type, load_pulsebat
from battgen.evaluation.core import evaluate_known_soc
from battgen.evaluation.generators import GENERATORS, GeneratorSettings, applies, generate
from battgen.evaluation.split import Split, paper_split
from battgen.io import write_table
from battgen.config import CVAEConfig
from battgen.protocol import CASES, case_kind
from battgen.train import FittedCVAE, TrainConfig

__all__ = [
    "METHODS",
    "PAPER_METHODS",
    "PAPER_GENERATORS",
    "RESULT_COLUMNS",
    "PAPER_PHASE2",
    "AUTHORS_PHASE2",
    "CLAIM_MAPE",
    "ExperimentConfig",
    "GridRun",
    "run_grid",
    "run_grid_with_models",
    "summarize",
    "kind_means",
    "phase2_rule",
    "with_phase2",
    "claim_cells",
    "write_results",
    "generation_errors",
    "REFERENCE_SHA256",
    "reference_path",
    "load_reference",
    "compare_with_reference",
]

PAPER_GENERATORS = ("cvae", "cvae_latent_scaling", "cvae_authors_shift")
"""The paper's Phase 2 (sampling; latent scaling) and what the authors' code runs (the shift)."""

METHODS: dict[str, str] = {
    "phase1": "forest on measured rows at the training SOC levels",
    **{GENERATORS[g].label: GENERATORS[g].description for g in PAPER_GENERATORS},
}
PAPER_METHODS: tuple[str, ...] = tuple(METHODS)
"""The methods of the paper and of the authors' code in :func:`run_grid` results."""
RESULT_COLUMNS = ["battery", "pulse_width_s", "case", "kind", "seed", "test_soc", "method", "mape", "ape_std", "n_train", "n_test"]

PAPER_PHASE2: dict[str, str] = {"interpolation": "phase2_sample", "extrapolation": "phase2_latent_scaling"}
"""The paper's Phase 2 per case kind: sampling for interpolation, latent-space scaling for extrapolation."""
AUTHORS_PHASE2: dict[str, str] = {"interpolation": "phase2_sample", "extrapolation": "phase2_authors_shift"}
"""What the authors' released code runs as Phase 2: sampling, and the voltage shift for extrapolation."""
CLAIM_MAPE = 6.0
"""The paper's headline: Phase-2 MAPE below 6 %."""


@dataclass
class ExperimentConfig:
    """What :func:`run_grid` runs; defaults are the paper's."""

    batteries: Sequence[str] = tuple(BATTERIES)
    pulse_width_s: int | Sequence[int] = 5  # one width, or several trained in the same stack
    cases: Sequence[int] = tuple(CASES)
    seeds: Sequence[int] = (0,)
    model: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data_dir: str | None = None
    progress: bool | None = None
    baselines: bool = False  # also score the constant, interpolation and SOC-input baselines on the same rows

    @property
    def pulse_widths(self) -> tuple[int, ...]:
        pw = self.pulse_width_s
        return (int(pw),) if isinstance(pw, (int, float)) else tuple(int(w) for w in pw)


@dataclass
class GridRun:
    """The outcome of :func:`run_grid_with_models`: the tidy results and what produced them."""

    results: pd.DataFrame  # columns RESULT_COLUMNS
    splits: list[Split] = field(repr=False)
    models: list[FittedCVAE] = field(repr=False)  # the paper CVAE of each split


def run_grid_with_models(config: ExperimentConfig | None = None,
                         frames: Mapping[tuple[int, str], pd.DataFrame] | Mapping[str, pd.DataFrame] | None = None) -> GridRun:
    """Every pulse width x seed x battery x case; all generators trained in one stack.

    ``frames`` maps ``(pulse width, battery)`` (or, for one pulse width, the battery) to its
    PulseBat table; missing ones are loaded. The fitted generators are kept.
    """
    cfg = config or ExperimentConfig()
    keys = [battery_type(b).key for b in cfg.batteries]
    given = dict(frames or {})
    tables = {}
    for pw in cfg.pulse_widths:
        for b in keys:
            tables[(pw, b)] = given.get((pw, b), given.get(b) if len(cfg.pulse_widths) == 1 else None)
            if tables[(pw, b)] is None:
                tables[(pw, b)] = load_pulsebat(b, pw, data_dir=cfg.data_dir)
    splits = [paper_split(tables[(pw, b)], case, seed)
              for pw in cfg.pulse_widths for seed in cfg.seeds for b in keys for case in cfg.cases]
    predictors = ("baseline_constant", "phase1", "baseline_soc_input") if cfg.baselines else ("phase1",)
    generators = PAPER_GENERATORS + (("interpolation",) if cfg.baselines else ())
    results, models = evaluate_known_soc(splits, generators, predictors, GeneratorSettings(cfg.model, cfg.train),
                                         cfg.progress)
    return GridRun(results[RESULT_COLUMNS], splits, [m["paper"] for m in models])


def run_grid(config: ExperimentConfig | None = None, frames: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Run every battery x case x seed; return the tidy results table (:data:`RESULT_COLUMNS`)."""
    return run_grid_with_models(config, frames).results


def _seed_stats(per_seed: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    out = per_seed.groupby(by, sort=False)["mape"].agg(
        mape="mean", mape_seed_std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0,
        mape_seed_min="min", mape_seed_max="max", n_seeds="count")
    return out.reset_index()


def summarize(results: pd.DataFrame, by: Iterable[str] = ("battery", "case", "kind", "method")) -> pd.DataFrame:
    """Mean MAPE over test SOC levels, then mean and spread over seeds.

    Columns: the ``by`` keys, ``mape`` (mean over seeds of the per-seed mean), ``mape_seed_std``
    (standard deviation over seeds; 0 with one seed), ``mape_seed_min``, ``mape_seed_max``, ``n_seeds``.
    """
    by = list(by)
    return _seed_stats(results.groupby(by + ["seed"], sort=False)["mape"].mean().reset_index(), by)


def kind_means(results: pd.DataFrame) -> pd.DataFrame:
    """Per battery, case kind and method: the mean over cases of the per-case mean over test SOC
    (the aggregation of the authors' README), per seed; then mean and spread over seeds."""
    by = [c for c in ("pulse_width_s", "battery", "kind", "method") if c in results]
    per_case = results.groupby(by + ["case", "seed"], sort=False)["mape"].mean().reset_index()
    return _seed_stats(per_case.groupby(by + ["seed"], sort=False)["mape"].mean().reset_index(), by)


def phase2_rule(results: pd.DataFrame, rule: Mapping[str, str] = PAPER_PHASE2, name: str = "phase2") -> pd.DataFrame:
    """The Phase-2 rows of one rule (a method per case kind), relabelled ``name``."""
    keep = results["method"] == results["kind"].map(rule)
    return results[keep].assign(method=name)


def with_phase2(results: pd.DataFrame, rule: Mapping[str, str] = PAPER_PHASE2, name: str = "phase2_paper") -> pd.DataFrame:
    """``results`` plus the Phase-2 rows of ``rule`` relabelled ``name`` (by default the paper's Phase 2:
    ``phase2_sample`` in interpolation cases, ``phase2_latent_scaling`` in extrapolation cases)."""
    return pd.concat([results, phase2_rule(results, rule, name)], ignore_index=True)


def claim_cells(results: pd.DataFrame, rule: Mapping[str, str] = PAPER_PHASE2, threshold: float = CLAIM_MAPE) -> pd.DataFrame:
    """Battery x case cells of the Phase 2 of ``rule``: mean MAPE (test SOC, then seeds), seed
    spread, and whether the mean and the worst seed are below ``threshold`` (the paper's 6 %)."""
    by = [c for c in ("pulse_width_s", "battery", "case", "kind", "method") if c in results]
    cells = summarize(phase2_rule(results, rule), by)
    cells["below"] = cells["mape"] < threshold
    cells["all_seeds_below"] = cells["mape_seed_max"] < threshold
    return cells


def write_results(results: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json`` and ``summary.csv`` into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    return {
        "csv": write_table(results, out_dir / "results.csv"),
        "json": write_table(results, out_dir / "results.json"),
        "summary": write_table(summarize(results), out_dir / "summary.csv"),
    }


def generation_errors(run: GridRun, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-feature error of the generated rows against the measured rows they stand for.

    In the paper's split each generated row is conditioned on one measured test row (same
    battery, SOC and SOH), so the two compare row by row; the random streams are the results'.
    Columns: ``pulse_width_s``, ``battery``, ``case``, ``kind``, ``seed``, ``method``,
    ``test_soc``, ``feature``, ``k``, ``mape`` (%), ``mae_mv``, ``n``.
    """
    from battgen.diagnostics import feature_errors

    out = []
    for split, model in zip(run.splits, run.models):
        for name in PAPER_GENERATORS:
            gen = GENERATORS[name]
            if not applies(gen, split) or (methods is not None and gen.label not in methods):
                continue
            rows = generate(split, name, model)
            err = feature_errors(split.test, rows.X, by=("soc_pct",)).rename(columns={"soc_pct": "test_soc"})
            out.append(err.assign(**{k: split.labels[k] for k in ("pulse_width_s", "battery", "case", "kind", "seed")},
                                  method=gen.label))
    cols = ["pulse_width_s", "battery", "case", "kind", "seed", "method", "test_soc", "feature", "k", "mape", "mae_mv", "n"]
    return pd.concat(out, ignore_index=True)[cols]


REFERENCE_SHA256 = "396789ca14117ba84ea3c9ce2e54c9f0cd47a22edaf0a884918153c9abd760dd"
"""sha256 of ``data/reference/official_code_mape.csv`` as shipped in the repository."""


def reference_path() -> Path:
    """The authors' released-code numbers shipped with battgen: ``data/reference/official_code_mape.csv``
    in the repository (its README there says how they were produced)."""
    return Path(__file__).resolve().parents[2] / "data" / "reference" / "official_code_mape.csv"


def load_reference(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The authors' released-code MAPE (``official_code_mape.csv``) as a tidy table.

    Columns like the results of :func:`battgen.experiments.run_grid`: ``battery``, ``case``,
    ``kind``, ``seed`` (0: a single run), ``test_soc``, ``method`` (``phase1`` or ``phase2``),
    ``mape``.
    """
    path = reference_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the authors' released-code numbers are not there")
    if path == reference_path():
        import hashlib

        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != REFERENCE_SHA256:
            raise ValueError(f"{path}: sha256 {digest} differs from the shipped file's {REFERENCE_SHA256}")
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
