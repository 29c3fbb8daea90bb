# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SOH estimation at unseen SOC
#
# ## Overview
#
# This chapter runs the paper's central experiment {cite}`tao2024generative`. A retired battery
# arrives at an SOC level at which no battery was measured for training. Phase 1 trains the SOH
# regressor (the paper's random forest) on the measured levels and applies it at the unseen
# level anyway; Phase 2 generates pulse responses at the unseen level with the CVAE of chapters
# 2 and 3 and trains the regressor on them. The paper runs eight cases of measured levels
# (Fig. 3c), four in which the unseen levels lie between measured ones (interpolation) and four
# in which they lie outside (extrapolation), and reports Phase-2 errors below 6 %.
#
# battgen runs the eight cases on all four battery types with the 5 s pulse features the paper
# describes (the main result), over several seeds, and again with the 3 s features that the
# authors' released code reads, so that its numbers can be set beside what that code produced.
# The chapter shows the generation error per feature and SOC (Fig. 3d), Phase 1 against Phase 2
# per battery type, case and SOC, the three ways of extrapolating (sampling, the paper's
# latent-space scaling, the voltage shift of the authors' code), the comparison with the
# authors' code, and in which battery x case cells the 6 % claim holds. It ends with what the
# authors' code does differently from the paper.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup
#
# `battgen.evaluation.paper.run_grid_with_models` trains every generator of the chapter (two
# pulse widths x four battery types x eight cases x the seeds) in one stacked fit, then scores
# each split with the evaluation core (`battgen.evaluation.core.evaluate_known_soc`); a fit does
# not depend on the others in its stack. The epochs come from the book profile
# (`battgen.book.profiles`): the paper's 50 for `full`, a few for `smoke`, whose numbers only
# check that the chapter runs. The authors' released-code numbers ship with the repository
# (`data/reference/`, with how they were produced).

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from battgen import plotting
from battgen.book import counted, glue_key, glued, put, readable, setup_chapter, table
from battgen.data import BATTERIES
from battgen.diagnostics import between_battery_spread_mv, paired_difference_mv
from battgen.evaluation import core, paper
from battgen.evaluation.stats import paired_differences
from battgen.evaluation.split import paper_split
from battgen.io import write_json, write_table
from battgen.protocol import ALL_SOC, CASES, case_kind

ctx = setup_chapter("04_unseen_soc_experiments", profile=profile, data_dir=data_dir, results_dir=results_dir, seeds=seeds)
out_dir, train = ctx.out_dir, ctx.profile.train_config()
frames = {(pw, b): df for pw in (5, 3) for b, df in ctx.frames(pw).items()}
run = paper.run_grid_with_models(paper.ExperimentConfig(pulse_width_s=(5, 3), seeds=seeds, train=train,
                                                        progress=progress), frames)
results = run.results
res5 = results[results.pulse_width_s == 5].drop(columns="pulse_width_s")
res3 = results[results.pulse_width_s == 3].drop(columns="pulse_width_s")
written = {pw: paper.write_results(res, out_dir / f"pulse_width_{pw}s") for pw, res in ((5, res5), (3, res3))}
reference = paper.load_reference()
KIND_LABEL = {"interpolation": "interpolation (cases 0-3)", "extrapolation": "extrapolation (cases 4-7)"}
METHOD_LABEL = {"phase1": "Phase 1 (measured levels)", "phase2": "Phase 2 (paper)",
                "phase2_sample": "Phase 2: sample z ~ N(0, I)", "phase2_latent_scaling": "Phase 2: latent scaling (paper)",
                "phase2_authors_shift": "Phase 2: authors' voltage shift"}
put("epochs", train.epochs)
put("seeds_text", counted(len(seeds), "seed"))
print(f"profile {profile}: {train.epochs} epochs, seeds {list(seeds)}, {len(run.models)} generators; "
      f"{len(res5)} result rows at 5 s, {len(res3)} at 3 s")

# %% [markdown]
# ## The eight cases
#
# In each case the measured (training) SOC levels are the dark cells; every other level of
# 5-50 % is unseen and has to be generated (the paper's Fig. 3c). Cases 0-3 interpolate: the
# unseen levels lie between measured ones. Cases 4-7 extrapolate: the measured levels form one
# block and the unseen ones lie beyond it, on one side of it or on both.

# %% tags=["hide-input"]
design = np.array([[1 if s in CASES[c] else 0 for s in ALL_SOC] for c in CASES])
fig, ax = plt.subplots(figsize=(8.0, 4.2))
ax.imshow(design, cmap=ListedColormap(["#DDE7F0", "#1F4E79"]), aspect="auto")
for i, c in enumerate(CASES):
    for j, s in enumerate(ALL_SOC):
        ax.text(j, i, "M" if design[i, j] else "G", ha="center", va="center", fontsize=8,
                color="white" if design[i, j] else "#1F4E79")
ax.axhline(3.5, color="white", lw=3)
ax.set_xticks(range(len(ALL_SOC)), [f"{s}" for s in ALL_SOC])
ax.set_yticks(range(len(CASES)), [f"case {c} ({case_kind(c)[:6]}.)" for c in CASES])
ax.set(xlabel="SOC level (%)", title="measured (M) and generated (G) SOC levels per case")
ax.grid(False)
ax.legend(handles=[Patch(color="#1F4E79", label="measured: training data"), Patch(color="#DDE7F0", label="unseen: generated")],
          loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8);

# %% [markdown]
# ## The protocol
#
# For one battery type, one case and one seed (`battgen.evaluation.core.score_known_soc` on a `battgen.evaluation.split.paper_split`):
#
# - **Phase 1.** A forest (the paper's: 20 trees, depth 64, no bootstrap) is trained on all
#   measured rows at the training levels, SOC ignored, and tested on the measured rows at each
#   unseen level.
# - **Phase 2.** A CVAE is trained on the rows at the training levels (chapter 2). At each
#   unseen level it generates one row per battery, conditioned on that battery's SOC and its
#   true SOH; a forest is trained on the generated rows, labelled with the SOH they were
#   conditioned on, and tested on the measured rows at that level.
#
# The paper generates by sampling $z \sim \mathcal{N}(0, I)$ for interpolation and by a
# *latent-space scaling* for extrapolation. The authors' released code does not implement the
# latter: for extrapolation it decodes at the second training level and shifts all 21 voltages
# by a hand-set amount per SOC step. battgen runs all three for the extrapolation cases
# (`battgen.generate`):
#
# - `phase2_sample`: decode $z \sim \mathcal{N}(0, I)$ at the target condition;
# - `phase2_latent_scaling`: battgen's reading of the paper, stated in
#   `generate.latent_scale_factors`: borrow the posterior $(\mu, \log\sigma^2)$ of a training
#   row of the same battery, scale them by $T_\mu$ = mean(target SOC) / mean(training SOC) and
#   $T_{\log\sigma^2}$ = var(target SOC) / var(training SOC), draw and decode at the target;
# - `phase2_authors_shift`: decode at the second training SOC and add
#   (target SOC - that SOC) x `physic_weight` x 20 V to every feature, with the authors'
#   per-type `physic_weight`.
#
# "Phase 2 (paper)" below means sampling for cases 0-3 and latent scaling for cases 4-7.

# %% tags=["hide-input"]
table(pd.DataFrame({"method": list(paper.METHODS), "what it does": list(paper.METHODS.values())}),
      "The methods of the result tables (battgen.evaluation.paper.METHODS)")

# %% [markdown]
# ## Generation error per feature and SOC
#
# How close are the generated pulse responses to the measured ones they stand for? Each
# generated row has a measured twin: the same battery (same SOH) at the same unseen level. The
# maps give the mean absolute percentage error of each feature (rows) at each unseen level
# (columns), averaged over the cases in which that level is unseen and over the seeds, for the
# paper's Phase 2 (the paper's Fig. 3d), at 5 s. Each panel has its own colour scale.

# %% tags=["hide-input"]
gen_err = paper.generation_errors(run)
gen_err = gen_err[gen_err.method.isin(paper.PAPER_METHODS)]
write_table(gen_err, out_dir / "generation_errors.csv")
paper_gen = paper.phase2_rule(gen_err[gen_err.pulse_width_s == 5])
fig, axes = plt.subplots(2, 4, figsize=(14.0, 9.0))
for r, kind in enumerate(("interpolation", "extrapolation")):
    for ax, b in zip(axes[r], BATTERIES):
        d = paper_gen[(paper_gen.kind == kind) & (paper_gen.battery == b)]
        grid = d.groupby(["k", "test_soc"])["mape"].mean().unstack("test_soc")
        sns.heatmap(grid, ax=ax, cmap="rocket_r", vmin=0, cbar_kws={"label": "MAPE (%)", "shrink": 0.8},
                    yticklabels=[f"U{k}" for k in grid.index])
        ax.set(title=f"{plotting.label(b)}, {kind}", xlabel="unseen SOC (%)", ylabel="feature" if b == "NMC2.1" else "")
        ax.tick_params(axis="y", labelsize=6)
fig.tight_layout();

# %% tags=["nbval-check-output", "hide-cell"]
gen_means = (gen_err[gen_err.pulse_width_s == 5].groupby(["battery", "kind", "method"], sort=False)["mape"].mean()
             .unstack("method")[["phase2_sample", "phase2_latent_scaling", "phase2_authors_shift"]])
gen_means = gen_means.reindex(pd.MultiIndex.from_product([list(BATTERIES), ["interpolation", "extrapolation"]]))
gen_means.index = [f"{plotting.label(b)}, {k}" for b, k in gen_means.index]
paper_gen_mean = paper_gen.groupby("kind")["mape"].mean()
put("gen_mape_interp", paper_gen_mean["interpolation"])
put("gen_mape_extrap", paper_gen_mean["extrapolation"])
paper_gen_mv = paper_gen.groupby("kind")["mae_mv"].mean()
put("gen_mae_mv_interp", paper_gen_mv["interpolation"])
put("gen_mae_mv_extrap", paper_gen_mv["extrapolation"])
put("between_battery_mv", between_battery_spread_mv(frames[(5, b)] for b in BATTERIES))
worst_gen = paper_gen.groupby(["battery", "kind", "test_soc"])["mape"].mean().idxmax()
put("gen_worst", f"{plotting.label(worst_gen[0])} at {worst_gen[2]} % SOC ({worst_gen[1]})")
print("mean generation MAPE (%) over features, unseen levels, cases and seeds, 5 s:")
print(gen_means.round(2).to_string())

# %% tags=["hide-input"]
table(gen_means.reset_index(names="battery type, kind of case").rename(columns=METHOD_LABEL),
      "Mean generation MAPE (%) over features, unseen levels, cases and seeds (5 s)")

# %% [markdown]
# Averaged over features, unseen levels, battery types and seeds, the generated features are
# off by {glue:text}`gen_mape_interp:.2f` % in the interpolation cases and by
# {glue:text}`gen_mape_extrap:.2f` % in the extrapolation cases (paper's Phase 2); the worst
# level is {glue:text}`gen_worst`. In volts, the mean absolute error is
# {glue:text}`gen_mae_mv_interp:.0f` mV (interpolation) and {glue:text}`gen_mae_mv_extrap:.0f` mV
# (extrapolation), while the measured features of different batteries at one SOC level differ
# by {glue:text}`between_battery_mv:.0f` mV (standard deviation over the batteries of a type,
# averaged over features, levels and types): the regressor has to read SOH from differences of
# that size.
#
# ## Phase 1 against Phase 2
#
# The main result, at 5 s: MAPE of SOH per battery type (rows), case (columns) and unseen SOC
# level (x), for Phase 1 and the paper's Phase 2; the band spans the seeds (min to max). The
# dotted line is the paper's 6 %.

# %% tags=["hide-input"]
paper5 = pd.concat([res5[res5.method == "phase1"], paper.phase2_rule(res5)], ignore_index=True)
paper5["method"] = paper5["method"].map(METHOD_LABEL)
grid = sns.relplot(data=paper5, x="test_soc", y="mape", hue="method", row="battery", col="case",
                   row_order=list(BATTERIES), col_order=list(CASES), kind="line", marker="o", markersize=3,
                   errorbar=("pi", 100), height=1.7, aspect=0.95, facet_kws={"sharey": "row", "margin_titles": True},
                   palette={METHOD_LABEL["phase1"]: "0.45", METHOD_LABEL["phase2"]: "#D55E00"})
for (b, case), ax in grid.axes_dict.items():
    ax.axhline(paper.CLAIM_MAPE, color="0.3", ls=":", lw=0.8)
    ax.set_xlim(2, 53)
    ax.set_xticks([10, 30, 50])
grid.set_titles(row_template="{row_name}", col_template="case {col_name}")
for ax, b in zip(grid.axes[:, -1], BATTERIES):  # margin titles: battery labels instead of keys
    for text in ax.texts:
        text.set_text(plotting.label(b))
grid.set_axis_labels("unseen SOC (%)", "MAPE (%)")
sns.move_legend(grid, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, title=None, frameon=False);

# %% [markdown]
# The same, averaged over the unseen levels of each case: mean over seeds, with the spread
# over seeds (standard deviation) in brackets.

# %% tags=["hide-input"]
cells5 = paper.summarize(pd.concat([res5[res5.method == "phase1"], paper.phase2_rule(res5)], ignore_index=True))
write_table(cells5, out_dir / "pulse_width_5s" / "phase1_vs_phase2_cells.csv")
cells5["text"] = [f"{m:.2f} ({s:.2f})" for m, s in zip(cells5["mape"], cells5["mape_seed_std"])]
by_case = cells5.pivot(index=["battery", "method"], columns="case", values="text").reindex(
    pd.MultiIndex.from_product([list(BATTERIES), ["phase1", "phase2"]]))
by_case.index = [f"{plotting.label(b)}, {METHOD_LABEL[m]}" for b, m in by_case.index]
by_case.columns = [f"case {c}" for c in by_case.columns]
table(by_case.reset_index(names="battery type, method"),
      "MAPE (%) per case at 5 s: mean over seeds (standard deviation over seeds)")

# %% tags=["nbval-check-output", "hide-cell"]
kinds5 = paper.kind_means(pd.concat([res5[res5.method == "phase1"], paper.phase2_rule(res5),
                                        paper.phase2_rule(res5, paper.AUTHORS_PHASE2, "phase2_authors")]))
write_table(kinds5, out_dir / "pulse_width_5s" / "kind_means.csv")
TAG = {"phase1": "p1", "phase2": "p2", "phase2_authors": "p2authors"}
for _, r in kinds5.iterrows():  # e.g. p2_interp_nmc2_1: paper's Phase 2, interpolation cases, NMC 2.1 Ah, 5 s
    put(f"{TAG[r['method']]}_{r['kind'][:6]}_{glue_key(r['battery'])}", r["mape"])
wide5 = cells5.pivot_table(index=["battery", "case", "kind"], columns="method", values="mape").reset_index()
wide5 = wide5.sort_values("battery", key=lambda b: b.map(list(BATTERIES).index), kind="stable").reset_index(drop=True)
better = wide5["phase2"] < wide5["phase1"]
put("p2_beats_p1", better.sum())
put("p2_beats_p1_interp", (better & (wide5["kind"] == "interpolation")).sum())
put("p2_beats_p1_extrap", (better & (wide5["kind"] == "extrapolation")).sum())
put("p1_better_list", "; ".join(f"{plotting.label(b)} case {c}" for b, c in zip(wide5.loc[~better, "battery"], wide5.loc[~better, "case"])) or "none")
put("cells_interp", (wide5["kind"] == "interpolation").sum())
put("cells_extrap", (wide5["kind"] == "extrapolation").sum())
# what a MAPE is read against: the training batteries' mean SOH for every pulse, scored on the same test rows
const5 = paper.summarize(core.evaluate_known_soc([s for s in run.splits if s.labels["pulse_width_s"] == 5], (),
                                                  ("baseline_constant",))[0])
write_table(const5, out_dir / "pulse_width_5s" / "constant_predictor_cells.csv")
wide5 = wide5.merge(const5[["battery", "case", "mape"]].rename(columns={"mape": "constant"}), on=["battery", "case"])
for b, value in wide5.groupby("battery")["constant"].mean().items():  # e.g. const_lfp35: mean over the cases
    put(f"const_{glue_key(b)}", value)
p1_beats_const = int((wide5["phase1"] < wide5["constant"]).sum())
put("p1_beats_const", p1_beats_const)
put("p2_beats_const", (wide5["phase2"] < wide5["constant"]).sum())
put("p1_const_verdict", f"in {'every cell' if p1_beats_const == 0 else 'most cells'}, then, Phase 1 at an unseen level does no "
    "better than ignoring the features: it reads the SOC shift of the features as a change in SOH (chapter 1)"
    if 2 * p1_beats_const < len(wide5) else
    "in at least half of the cells, then, Phase 1 reads some SOH from the features even at an unseen level")
by_type = wide5.groupby("battery")[["phase1", "constant"]].mean()
p1_best = by_type["phase1"].idxmin()
put("p1_best_type", plotting.label(p1_best))
put("p1_best_mape", by_type.loc[p1_best, "phase1"])
put("p1_best_const", by_type.loc[p1_best, "constant"])
put("p1_best_verdict", "is no lower than that type's constant predictor: it reflects the narrow spread of that "
    "type's SOH, not SOH read from the features" if by_type.loc[p1_best, "phase1"] >= by_type.loc[p1_best, "constant"]
    else "is below that type's constant predictor: there Phase 1 reads some SOH from the features")
overall = kinds5.groupby(["method", "kind"])["mape"].mean()
for (method, kind), value in overall.items():  # e.g. p2_extrap_mean: mean over the four battery types
    put(f"{TAG[method]}_{kind[:6]}_mean", value)
summary5 = kinds5.pivot_table(index=["battery"], columns=["kind", "method"], values="mape").reindex(list(BATTERIES))
summary5.index = summary5.index.map(plotting.label)
print("mean MAPE (%) over the cases of each kind, 5 s (p2 = paper's Phase 2, p2authors = authors' code's):")
print(summary5.round(2).to_string())

# %% tags=["hide-input"]
KIND_METHOD = {"phase1": "Phase 1", "phase2": "Phase 2 (paper)", "phase2_authors": "Phase 2 (authors' code)"}
table(summary5.rename(columns=KIND_METHOD, level="method").reset_index(names="battery type"),
      "Mean MAPE (%) over the cases of each kind, 5 s")

# %% [markdown]
# Averaged over the four battery types, Phase 2 (paper) reaches
# {glue:text}`p2_interp_mean:.2f` % in the interpolation cases and
# {glue:text}`p2_extrap_mean:.2f` % in the extrapolation cases, against
# {glue:text}`p1_interp_mean:.2f` % and {glue:text}`p1_extrap_mean:.2f` % for Phase 1. Phase 2
# beats Phase 1 in {glue:text}`p2_beats_p1:.0f` of the {glue:text}`cells_total:.0f` battery x
# case cells ({glue:text}`p2_beats_p1_interp:.0f` of {glue:text}`cells_interp:.0f` interpolation cells,
# {glue:text}`p2_beats_p1_extrap:.0f` of {glue:text}`cells_extrap:.0f` extrapolation cells). Where
# Phase 1 is better: {glue:text}`p1_better_list`.
#
# A MAPE has to be read against the spread of SOH of its battery type. Predicting the training
# batteries' mean SOH for every pulse, whatever its features (`baseline_constant` in
# `battgen.evaluation.core`), scores {glue:text}`const_nmc2_1:.2f` % for NMC 2.1 Ah,
# {glue:text}`const_lmo10:.2f` % for LMO 10 Ah, {glue:text}`const_nmc21:.2f` % for NMC 21 Ah and
# {glue:text}`const_lfp35:.2f` % for LFP 35 Ah on the same test rows (mean over the cases).
# Phase 1 beats this constant predictor in {glue:text}`p1_beats_const:.0f` of the
# {glue:text}`cells_total:.0f` cells and the paper's Phase 2 in {glue:text}`p2_beats_const:.0f`;
# {glue:text}`p1_const_verdict`. The type with the lowest Phase-1 error,
# {glue:text}`p1_best_type` ({glue:text}`p1_best_mape:.2f` % over the eight cases, against
# {glue:text}`p1_best_const:.2f` % for the constant predictor), {glue:text}`p1_best_verdict`.
#
# ## Three ways to extrapolate
#
# For the extrapolation cases, the three generation methods side by side at 5 s (mean over the
# unseen levels of the case; error bars: min to max over seeds), with Phase 1 as a black tick.

# %% tags=["hide-input"]
ext = paper.summarize(res5[res5.kind == "extrapolation"])
variants = ["phase2_sample", "phase2_latent_scaling", "phase2_authors_shift"]
colors = dict(zip(variants, ["#56B4E9", "#D55E00", "#009E73"]))
fig, axes = plt.subplots(1, 4, figsize=(14.0, 3.8))
width = 0.26
ext_cases = [c for c in CASES if case_kind(c) == "extrapolation"]
for ax, b in zip(axes, BATTERIES):
    for k, method in enumerate(variants):
        d = ext[(ext.battery == b) & (ext.method == method)].set_index("case").loc[ext_cases]
        xs = np.arange(len(ext_cases)) + (k - 1) * width
        ax.bar(xs, d["mape"], width, color=colors[method], label=METHOD_LABEL[method])
        ax.errorbar(xs, d["mape"], yerr=[d["mape"] - d["mape_seed_min"], d["mape_seed_max"] - d["mape"]],
                    fmt="none", ecolor="0.2", lw=0.8, capsize=2)
    p1 = ext[(ext.battery == b) & (ext.method == "phase1")].set_index("case").loc[ext_cases]
    ax.plot(np.arange(len(ext_cases)), p1["mape"], "k_", ms=14, mew=1.5, label=METHOD_LABEL["phase1"])
    ax.axhline(paper.CLAIM_MAPE, color="0.3", ls=":", lw=1)
    ax.set(title=plotting.label(b), xticks=np.arange(len(ext_cases)), xticklabels=[f"case {c}" for c in ext_cases],
           ylabel="MAPE (%)" if b == "NMC2.1" else "")
axes[0].legend(fontsize=7, loc="upper left");

# %% tags=["nbval-check-output", "hide-cell"]
wide_ext = ext.pivot_table(index=["battery", "case"], columns="method", values="mape")
diff = (wide_ext["phase2_latent_scaling"] - wide_ext["phase2_sample"]).abs()
put("latent_vs_sample_mean_diff", diff.mean())
put("latent_vs_sample_max_diff", diff.max())
# paired over the seeds: both methods decode from the same fitted CVAE of a seed, so compare them seed by seed
paired = paired_differences(res5[res5.kind == "extrapolation"], "phase2_latent_scaling", "phase2_sample",
                            by=["battery", "case"])  # mean difference over the levels per seed; t interval over seeds
if len(seeds) < 2:
    put("latent_verdict", "With one seed this run cannot say whether these differences exceed what a new run changes: "
        "that needs at least two.")
    put("latent_verdict_short", "one seed cannot say whether that exceeds run noise")
else:
    n_above = int(((paired["ci_low"] > 0) | (paired["ci_high"] < 0)).sum())  # the 95 % interval excludes zero
    put("latent_verdict", f"Compared seed by seed (both methods decode from the same fitted CVAE of a seed), the "
        f"difference is distinguishable from zero at 95 % in {n_above} of the {len(paired)} cells with "
        f"{len(seeds)} seeds.")
    put("latent_verdict_short", f"distinguishable from run noise (paired over {len(seeds)} seeds, 95 %) in {n_above} of "
        f"{len(paired)} cells")
put("shift_best_cells", (wide_ext["phase2_authors_shift"] < wide_ext[["phase2_sample", "phase2_latent_scaling"]].min(axis=1)).sum())
put("ext_cells", len(wide_ext))
print(f"latent scaling vs sampling: mean |difference| {diff.mean():.2f} points of MAPE over {len(wide_ext)} cells")

# %% [markdown]
# **Latent scaling against sampling.** The latent-space scaling differs from plain sampling by
# {glue:text}`latent_vs_sample_mean_diff:.2f` points of MAPE on average (at most
# {glue:text}`latent_vs_sample_max_diff:.2f`) over the {glue:text}`ext_cells:.0f` battery x case
# cells. Chapter 2 predicts no difference: the latent space collapses, every posterior is
# practically $\mathcal{N}(0, I)$, so scaling its mean and log-variance yields
# $z' \approx \varepsilon \sim \mathcal{N}(0, I)$, the distribution plain sampling draws from;
# what the generator produces at an unseen level is then decided by the condition, up to the small
# variation the code adds (chapter 2), and the extrapolation is done by the condition embedding and
# the decoder, outside the SOC range they were trained on. {glue:text}`latent_verdict`
#
# **The authors' shift** is a different kind of method: it does not ask the CVAE about the
# target level at all, it decodes at a measured level and adds a voltage offset proportional to
# the SOC distance, with a slope set by hand per battery type. It beats both CVAE variants in
# {glue:text}`shift_best_cells:.0f` of the {glue:text}`ext_cells:.0f` cells. Where it wins, the
# credit goes to the hand-set slope, which encodes how the voltage of each chemistry moves with
# SOC, rather than to the generative model.
#
# ## Ours beside the authors' released code
#
# The authors' code reads the 3 s pulse features. Run unmodified (single run, TensorFlow CPU;
# see `data/reference/README.md`), it gives the numbers in the `authors` columns, per
# battery type and case kind as the mean over cases of the per-case mean over unseen levels.
# battgen's 3 s grid is aggregated the same way (mean over seeds): Phase 1; Phase 2 as the
# authors' code runs it (sampling, and the voltage shift for cases 4-7); and Phase 2 as the
# paper describes it (latent scaling for cases 4-7). The 5 s results are repeated for
# comparison.

# %% tags=["hide-input"]
compare3 = paper.compare_with_reference(res3, reference).assign(pulse_width="3 s")
compare5 = paper.compare_with_reference(res5, reference).assign(pulse_width="5 s")
compare = pd.concat([compare3, compare5], ignore_index=True)
write_table(compare, out_dir / "comparison_with_authors_code.csv")
for _, r in compare3.iterrows():
    key, k = glue_key(r["battery"]), r["kind"][:6]
    put(f"ref_p1_{k}_{key}", r["ref_phase1"])
    put(f"ref_p2_{k}_{key}", r["ref_phase2"])
    put(f"p1_{k}_{key}_3s", r["phase1"])
    put(f"p2authors_{k}_{key}_3s", r["phase2_authors"])
    put(f"p2_{k}_{key}_3s", r["phase2_paper"])
shown = compare3[["battery", "kind", "phase1", "phase2_authors", "phase2_paper", "ref_phase1", "ref_phase2"]].copy()
shown = shown.merge(compare5[["battery", "kind", "phase1", "phase2_paper"]].rename(
    columns={"phase1": "phase1_5s", "phase2_paper": "phase2_paper_5s"}), on=["battery", "kind"])
shown["battery"] = shown["battery"].map(plotting.label)
shown.columns = pd.MultiIndex.from_tuples([("", "battery"), ("", "kind"),
                                           ("battgen 3 s", "Phase 1"), ("battgen 3 s", "Phase 2 (authors' code)"),
                                           ("battgen 3 s", "Phase 2 (paper)"),
                                           ("authors' code 3 s", "Phase 1"), ("authors' code 3 s", "Phase 2"),
                                           ("battgen 5 s", "Phase 1"), ("battgen 5 s", "Phase 2 (paper)")])
table(shown, "Mean MAPE (%) per battery type and kind of case: battgen beside the authors' released code")

# %% tags=["hide-input"]
long = compare3.melt(id_vars=["battery", "kind"], value_vars=["phase1", "ref_phase1", "phase2_authors", "ref_phase2"],
                     var_name="series", value_name="mape")
names = {"phase1": "Phase 1, battgen", "ref_phase1": "Phase 1, authors' code",
         "phase2_authors": "Phase 2, battgen (authors' method)", "ref_phase2": "Phase 2, authors' code"}
long["series"] = long["series"].map(names)
long["battery"] = long["battery"].map(plotting.label)
g = sns.catplot(data=long, x="battery", y="mape", hue="series", col="kind", kind="bar", height=3.6, aspect=1.5,
                palette=["0.55", "0.8", "#D55E00", "#F0B890"], hue_order=list(names.values()))
for ax in g.axes.flat:
    ax.axhline(paper.CLAIM_MAPE, color="0.3", ls=":", lw=1)
g.set_titles(col_template="3 s, {col_name}")
g.set_axis_labels("", "mean MAPE (%)")
g.legend.set_title(None);

# %% tags=["nbval-check-output", "hide-cell"]
p1_gap = (compare3["phase1"] - compare3["ref_phase1"]).abs()
p2_gap = (compare3["phase2_authors"] - compare3["ref_phase2"])
put("p1_gap_max", p1_gap.max())
p1_seed_range = paper.kind_means(res3[res3.method == "phase1"]).eval("mape_seed_max - mape_seed_min").max()
if len(seeds) < 2:
    put("p1_gap_note", "how much another forest seed moves Phase 1 needs at least two seeds to show, and this run has one")
else:
    put("p1_gap_note", f"battgen's own Phase 1 moves by up to {p1_seed_range:.2f} points between forest seeds (range over "
        "the seeds of a battery x kind cell), " + ("so a gap of that size is what another forest seed gives"
        if p1_gap.max() <= p1_seed_range else "less than the gap: the forest's random state does not account for all of it"))
put("p2_gap_mean", p2_gap.mean())
put("p2_ours_lower", (p2_gap < 0).sum())
put("p2_gap_cells", len(p2_gap))
put("p2_gap_absmax", p2_gap.abs().max())
ext3 = compare3[compare3.kind == "extrapolation"]
n_worse = int((ext3["phase2_paper"] > ext3["ref_phase2"]).sum())
put("paper_worse_extrap", n_worse)
put("ext_types", len(ext3))
put("paper_worse_verdict", "in every type, then, what the released code reports for extrapolation is carried by the voltage "
    "shift, not by the generative model" if n_worse == len(ext3) else
    "in most types, then, what the released code reports for extrapolation owes more to the voltage shift than to "
    "the generative model" if 2 * n_worse > len(ext3) else
    "in at least half of the types, then, the paper's latent scaling alone does no worse than the released code's "
    "voltage shift")
seed_std_3s = paper.summarize(res3)["mape_seed_std"].max()
put("seed_std_max", seed_std_3s)
put("seed_spread_3s", f"which in battgen's runs at 3 s reaches {seed_std_3s:.2f} points (standard deviation) in a single "
    "battery x case cell" if len(seeds) > 1 else "which battgen's run here cannot show either: it has one seed, and a "
    "spread needs at least two")


def phase1_cells(res: pd.DataFrame, b: str) -> pd.Series:
    return res[(res.battery == b) & (res.method == "phase1")].set_index(["case", "seed", "test_soc"])["mape"].sort_index()


def same_features_text(b: str, diff: dict) -> tuple[str, str]:
    """For a 3 s file with the 5 s file's U1-U21: what it differs in and what that does to Phase 1 (the
    3 s table scored again with the 5 s file's SOH labels put on it), for the text and for the summary."""
    p3, p5 = phase1_cells(res3, b), phase1_cells(res5, b)
    moved = (p3 - p5).abs().max()
    moved_case = (p3.groupby(level="case").mean() - p5.groupby(level="case").mean()).abs().max()
    if diff["soh_n_differ"] == 0:
        return (f"holds exactly the same U1-U21 and SOH labels as the 5 s file (Phase 1 moves by {moved:.2f} points)",
                f"The 3 s and 5 s files of {plotting.label(b)} hold the same rows, and Phase 1 moves by {moved:.2f} "
                "points between them.")
    keys = ["battery_id", "soc"]
    t3, t5 = frames[(3, b)], frames[(5, b)]
    relabelled = t3.drop(columns="soh").merge(t5[keys + ["soh"]], on=keys, how="left", validate="one_to_one")[t3.columns]
    again, _ = core.evaluate_known_soc([paper_split(relabelled, c, s) for s in seeds for c in CASES], (), ("phase1",))
    same = np.array_equal(phase1_cells(again, b).to_numpy(), p5.to_numpy())
    text = (f"holds exactly the same U1-U21 as the 5 s file; only its SOH labels differ, by at most "
            f"{readable(diff['soh_max'])} (the last bits of a float) in {diff['soh_n_differ']} of its {diff['n']} rows. "
            f"Yet its Phase 1 moves by up to {moved:.2f} points of MAPE at one unseen level ({moved_case:.2f} on "
            f"the mean of a case)")
    summary = (f"The 3 s and 5 s files of {plotting.label(b)} differ only in the last bits of their SOH labels, and "
               f"{'that alone' if same else 'that, with something else,'} moves Phase 1 by up to {moved:.2f} points at "
               "one level: one seed's forest is fragile.")
    if same:
        return text + (": with the 5 s file's labels on the 3 s rows, every Phase-1 number equals the 5 s run's, so "
                       "the last bits of the labels alone move it. A tree's splits turn on near-ties that such bits "
                       "can break; a difference of this size between two single runs says nothing about the data"), summary
    return text + (", and not only because of the labels: with the 5 s file's labels on the 3 s rows, Phase 1 still "
                   "differs from the 5 s run"), summary


pw_gap = compare3.merge(compare5, on=["battery", "kind"], suffixes=("_3s", "_5s"))
put("pw_p1_gap_max", (pw_gap["phase1_3s"] - pw_gap["phase1_5s"]).abs().max())
put("pw_p2_gap_max", (pw_gap["phase2_paper_3s"] - pw_gap["phase2_paper_5s"]).abs().max())
for b in BATTERIES:
    pw_diff = paired_difference_mv(frames[(3, b)], frames[(5, b)])
    put(f"pw_diff_{glue_key(b)}", pw_diff["mean_mv"])
    same_text, label_bits = (same_features_text(b, pw_diff) if pw_diff["max_mv"] == 0 else
                             (f"holds U1-U21 that differ from the 5 s file by up to {pw_diff['max_mv']:.1f} mV", ""))
    put(f"pw_same_{glue_key(b)}", same_text)
    put(f"label_bits_{glue_key(b)}", label_bits)  # the summary's sentence, where the features are the same
print(f"Phase 1, battgen vs authors' code (3 s): largest |difference| {p1_gap.max():.1f} points")
print(f"Phase 2 (authors' method), battgen minus authors' code: mean {p2_gap.mean():+.1f} points; "
      f"battgen lower in {(p2_gap < 0).sum()} of {len(p2_gap)}")

# %% [markdown]
# **Phase 1** differs from the authors' code by at most {glue:text}`p1_gap_max:.2f` points of
# MAPE over the battery x kind cells, with the same data and the same forest settings; the
# authors leave the forest's random state unset, so their trees differ from battgen's;
# {glue:text}`p1_gap_note`. **Phase 2**, run the authors' way, is on average
# {glue:text}`p2_gap_mean:+.2f` points from theirs, with differences of up to
# {glue:text}`p2_gap_absmax:.2f` points in single cells (battgen lower in
# {glue:text}`p2_ours_lower:.0f` of the {glue:text}`p2_gap_cells:.0f`). The CVAE is stochastic in
# both implementations (initialisation, shuffling, reparameterisation noise) and a single run of
# theirs cannot show its seed-to-seed spread, {glue:text}`seed_spread_3s`. The paper's own
# Phase 2 (latent scaling for cases 4-7) is worse than the authors' code in extrapolation for
# {glue:text}`paper_worse_extrap:.0f` of the {glue:text}`ext_types:.0f` types:
# {glue:text}`paper_worse_verdict` (see above).
#
# Between 3 s and 5 s, the mean MAPE of a battery type and kind of case moves by at most
# {glue:text}`pw_p1_gap_max:.2f` points for Phase 1 and {glue:text}`pw_p2_gap_max:.2f` points for
# the paper's Phase 2. Paired battery by battery and level, the 3 s features differ from the 5 s
# ones by {glue:text}`pw_diff_lmo10:.1f` mV on average for LMO 10 Ah,
# {glue:text}`pw_diff_nmc21:.1f` mV for NMC 21 Ah and {glue:text}`pw_diff_lfp35:.1f` mV for
# LFP 35 Ah, and the NMC 2.1 Ah file of the authors' repository {glue:text}`pw_same_nmc2_1`.
#
# ## Where the 6 % claim holds
#
# The paper reports Phase-2 errors below 6 %. The table lists every battery x case cell of the
# 5 s grid (paper's Phase 2, mean over the unseen levels and the seeds), marks the cells below
# 6 % (and whether every seed is below it), and gives Phase 1 for reference.

# %% tags=["hide-input"]
claims = {
    "5 s, paper's Phase 2": paper.claim_cells(res5),
    "5 s, authors' Phase 2": paper.claim_cells(res5, paper.AUTHORS_PHASE2),
    "3 s, paper's Phase 2": paper.claim_cells(res3),
    "3 s, authors' Phase 2": paper.claim_cells(res3, paper.AUTHORS_PHASE2),
    "3 s, authors' code": paper.claim_cells(reference, {"interpolation": "phase2", "extrapolation": "phase2"}),
}
p1_cells = paper.summarize(res5[res5.method == "phase1"])
main = claims["5 s, paper's Phase 2"].merge(p1_cells[["battery", "case", "mape"]].rename(columns={"mape": "phase1"}),
                                             on=["battery", "case"])
write_table(main, out_dir / "pulse_width_5s" / "claim_cells.csv")
claim_table = pd.DataFrame({
    "battery": main["battery"].map(plotting.label), "case": main["case"], "kind": main["kind"],
    "Phase 2 (paper)": main["mape"].round(2), "seed std": main["mape_seed_std"].round(2),
    "below 6 %": np.where(main["below"], "yes", "no"), "every seed below 6 %": np.where(main["all_seeds_below"], "yes", "no"),
    "Phase 1": main["phase1"].round(2),
})
table(claim_table, "Every battery x case cell of the 5 s grid against the paper's 6 % (paper's Phase 2)")

# %% tags=["nbval-check-output", "hide-cell"]
counts = pd.DataFrame({name: {"interpolation": int(c.loc[c.kind == "interpolation", "below"].sum()),
                              "extrapolation": int(c.loc[c.kind == "extrapolation", "below"].sum()),
                              "all": int(c["below"].sum()), "cells": len(c)} for name, c in claims.items()}).T
write_table(counts.reset_index(names="setting"), out_dir / "claim_counts.csv")
put("cells_total", counts.loc["5 s, paper's Phase 2", "cells"])
put("cells_below_6", counts.loc["5 s, paper's Phase 2", "all"])
put("cells_below_6_interp", counts.loc["5 s, paper's Phase 2", "interpolation"])
put("cells_below_6_extrap", counts.loc["5 s, paper's Phase 2", "extrapolation"])
n_all_seeds = int(claims["5 s, paper's Phase 2"]["all_seeds_below"].sum())
put("cells_below_6_all_seeds", n_all_seeds)
put("cells_below_6_all_seeds_text", counted(n_all_seeds, "cell"))
put("cells_below_6_authors_5s", counts.loc["5 s, authors' Phase 2", "all"])
put("cells_below_6_3s", counts.loc["3 s, paper's Phase 2", "all"])
put("cells_below_6_authors_3s", counts.loc["3 s, authors' Phase 2", "all"])
put("ref_cells_below_6", counts.loc["3 s, authors' code", "all"])
n_phase1 = int((p1_cells["mape"] < paper.CLAIM_MAPE).sum())
put("cells_below_6_phase1", n_phase1)
put("cells_below_6_phase1_text", counted(n_phase1, "cell"))
n_below, n_cells = int(counts.loc["5 s, paper's Phase 2", "all"]), int(counts.loc["5 s, paper's Phase 2", "cells"])
put("claim_verdict", "The paper's \"below 6 %\" therefore holds in every battery x case cell here." if n_below == n_cells
    else "The paper's \"below 6 %\" therefore holds in none of the battery x case cells here." if n_below == 0
    else "The paper's \"below 6 %\" is therefore not a property of every battery type and case; it holds in the "
    "cells listed here.")
below = main[main["below"]]
below_const = below.merge(wide5[["battery", "case", "constant"]], on=["battery", "case"])
put("cells_below_6_beat_const", int((below_const["mape"] < below_const["constant"]).sum()))
put("cells_below_6_list", "; ".join(f"{plotting.label(b)} case {c}" for b, c in zip(below["battery"], below["case"])) or "none")
write_json({"profile": profile, "epochs": train.epochs, "seeds": list(seeds), "glue": glued()},
           out_dir / "headline.json")
print("battery x case cells with mean Phase-2 MAPE below 6 %:")
print(counts.to_string())

# %% tags=["hide-input"]
table(counts.reset_index(names="setting"), "Battery x case cells with a mean Phase-2 MAPE below 6 %")

# %% [markdown]
# At 5 s, with the paper's Phase 2, the mean MAPE is below 6 % in
# {glue:text}`cells_below_6:.0f` of the {glue:text}`cells_total:.0f` battery x case cells
# ({glue:text}`cells_below_6_interp:.0f` of {glue:text}`cells_interp:.0f` interpolation cells,
# {glue:text}`cells_below_6_extrap:.0f` of {glue:text}`cells_extrap:.0f` extrapolation cells; in
# {glue:text}`cells_below_6_all_seeds_text` every seed is below it). The cells are:
# {glue:text}`cells_below_6_list`; {glue:text}`cells_below_6_beat_const:.0f` of them are also better than the
# constant predictor (above). Phase 1 is below 6 % in
# {glue:text}`cells_below_6_phase1_text`. With the authors' Phase 2 (voltage shift for cases 4-7)
# the count at 5 s is {glue:text}`cells_below_6_authors_5s:.0f`; at 3 s it is
# {glue:text}`cells_below_6_3s:.0f` (paper's Phase 2) and {glue:text}`cells_below_6_authors_3s:.0f`
# (authors'), and the authors' own code reaches {glue:text}`ref_cells_below_6:.0f`.
# {glue:text}`claim_verdict`
#
# ## What the authors' code does differently
#
# The numbers above follow the paper's protocol as the authors' code implements it, including
# its shortcuts; battgen's leak-free benchmark (`battgen.evaluation.leakfree`, chapter 6) asks
# the same question without them. The differences between the paper's description and the released code, and the weaknesses of the
# protocol itself:
#
# 1. **The published latent-space scaling is not in the code.** For extrapolation the code
#    decodes at the second training SOC and shifts every feature by a hand-set voltage per SOC
#    step (`physic_weight`). battgen implements both, and states its reading of the scaling in
#    `battgen.generate.latent_scale_factors`; with a collapsed latent space the scaling would
#    change nothing (chapter 2), and above it moves the MAPE of a cell by at most
#    {glue:text}`latent_vs_sample_max_diff:.2f` points.
# 2. **Generation is conditioned on the test batteries' true SOH.** Phase 2 generates, for each
#    test battery, a row at its own SOH and trains the forest on it: the regressor is handed
#    the answer's neighbourhood. A deployed estimator would not know the SOH of the battery it
#    is asked about.
# 3. **The same physical batteries are in training and test.** The test rows at an unseen
#    level belong to batteries whose rows at the measured levels trained both the CVAE and the
#    Phase-1 forest.
# 4. **A single seed.** The code fixes TensorFlow's sampling seed but not the forest's, and
#    reports one run; {glue:text}`seed_spread_note`.
# 5. **No baselines.** Nothing is compared with methods that use the same information without a
#    generative model, such as interpolating each battery's features between measured levels or
#    a forest that takes SOC as an input.
#
# ## Exercises
#
# :::{exercise}
# :label: ex-04-distance
#
# For each extrapolation case, how far (in points of SOC) is the farthest unseen level from the
# nearest measured one? Use `battgen.protocol.CASES`. Does the Phase-2 error of the paper's method
# grow with that distance in the figure "Phase 1 against Phase 2"?
# :::
#
# :::{solution} ex-04-distance
# :class: dropdown
#
# ```python
# from battgen.protocol import ALL_SOC, CASES, case_kind
# {c: max(min(abs(s - m) for m in CASES[c]) for s in ALL_SOC if s not in CASES[c])
#  for c in CASES if case_kind(c) == "extrapolation"}
# ```
#
# gives {glue:text}`ex_distances`. Within a case, rank the unseen levels by their distance to the
# nearest measured one: the error of the generated features rises with it (a positive rank
# correlation over the levels) in {glue:text}`ex_gen_rises:.0f` of the
# {glue:text}`ex_cells:.0f` battery x case cells of the extrapolation cases (the generation maps
# above), and the paper's Phase-2 MAPE in {glue:text}`ex_forest_rises:.0f`:
# {glue:text}`ex_forest_answer`.
# :::
#
# :::{exercise}
# :label: ex-04-leak
#
# Phase 2 generates, for each test battery, a row at that battery's *true* SOH. Design a
# Phase 2 that a recycler could run on a battery it has never seen, and say which two changes to
# the protocol it needs.
# :::
#
# :::{solution} ex-04-leak
# :class: dropdown
#
# (1) Generate on a grid of SOH values that spans the *training* batteries' SOH, not at the test
# batteries' own SOH, so that the regressor learns the whole SOH range at the unseen level.
# (2) Hold out whole physical batteries: split by battery (by cell for NMC 2.1 Ah, whose rows are
# ageing checkpoints of a few cells), so that no test battery contributes rows at the measured
# levels to the generator or the forest. Chapter 6 runs exactly this leak-free protocol.
# :::
#
# :::{exercise}
# :label: ex-04-seeds
#
# A single run of the authors' code gives one number per cell. If the seed-to-seed standard
# deviation of a cell is $\sigma$, how many seeds $n$ make the standard error of the cell's mean
# smaller than 0.5 points of MAPE? Apply it to the largest spread in the table of MAPE per case
# at 5 s.
# :::
#
# :::{solution} ex-04-seeds
# :class: dropdown
#
# The standard error of a mean of $n$ independent runs is $\sigma / \sqrt{n}$, so
# $n \ge (\sigma / 0.5)^2$. {glue:text}`ex_seeds_text` The seeds of one fit are the independent
# unit here; chapter 6 resamples physical batteries instead.
# :::

# %% tags=["hide-cell"]
extrap = [c for c in CASES if case_kind(c) == "extrapolation"]
distances = {c: max(min(abs(s - m) for m in CASES[c]) for s in ALL_SOC if s not in CASES[c]) for c in extrap}
put("ex_distances", ", ".join(f"case {c}: {d} points" for c, d in distances.items()))
at_level = ["battery", "case", "test_soc"]  # per extrapolation cell and unseen level: the paper's Phase 2, the generation
levels = pd.concat([paper.phase2_rule(res5[res5.kind == "extrapolation"]).groupby(at_level)["mape"].mean().rename("forest"),
                    paper_gen[paper_gen.kind == "extrapolation"].groupby(at_level)["mape"].mean().rename("generated")],
                   axis=1).reset_index()
levels["distance"] = [min(abs(s - m) for m in CASES[c]) for s, c in zip(levels["test_soc"], levels["case"])]
rho = pd.DataFrame({cell: {k: d["distance"].rank().corr(d[k].rank()) for k in ("generated", "forest")}  # Spearman's
                    for cell, d in levels.groupby(["battery", "case"])}).T
n_forest = int((rho["forest"] > 0).sum())
put("ex_gen_rises", (rho["generated"] > 0).sum())
put("ex_forest_rises", n_forest)
put("ex_cells", len(rho))
put("ex_forest_answer", "the forest's error grows with the distance in every cell" if n_forest == len(rho) else
    "the forest's error grows with the distance in most cells, not in all" if 2 * n_forest > len(rho) else
    "the forest's error grows with the distance in half of the cells" if 2 * n_forest == len(rho) else
    "in most cells the forest's error does not grow with the distance")
seed_std = cells5["mape_seed_std"].max()  # the largest spread of the 5 s table of MAPE per case
if len(seeds) > 1:
    put("seed_spread_note", f"the spread over seeds above (a standard deviation of up to {seed_std:.2f} points in a 5 s "
        "cell) shows how much a single run can move")
    put("ex_seeds_text", f"With the largest spread of that table, a standard deviation of {seed_std:.2f} points, that "
        f"takes at least {np.ceil((seed_std / 0.5) ** 2):.0f} seeds.")
else:
    put("seed_spread_note", "how much a single run can move needs at least two seeds to show, and this run has one")
    put("ex_seeds_text", "This run has one seed, and a spread needs at least two: with the seeds of the full profile "
        "the table gives the spread to apply it to.")

# %% [markdown]
# ## Summary
#
# - Main result (5 s features, {glue:text}`epochs:.0f` epochs, {glue:text}`seeds_text`):
#   the paper's Phase 2 averages {glue:text}`p2_interp_mean:.2f` % MAPE in interpolation and
#   {glue:text}`p2_extrap_mean:.2f` % in extrapolation over the four battery types, against
#   {glue:text}`p1_interp_mean:.2f` % and {glue:text}`p1_extrap_mean:.2f` % for Phase 1. The mean
#   is below 6 % in {glue:text}`cells_below_6:.0f` of {glue:text}`cells_total:.0f` battery x case
#   cells ({glue:text}`cells_below_6_list`).
# - Generated features are off by {glue:text}`gen_mape_interp:.2f` % (interpolation) and
#   {glue:text}`gen_mape_extrap:.2f` % (extrapolation) from their measured twins.
# - Latent scaling differs from sampling by {glue:text}`latent_vs_sample_mean_diff:.2f` points on
#   average (at most {glue:text}`latent_vs_sample_max_diff:.2f`), {glue:text}`latent_verdict_short`.
#   The authors' voltage shift, a hand-set physical prior, is the best extrapolation variant in
#   {glue:text}`shift_best_cells:.0f` of {glue:text}`ext_cells:.0f` cells.
# - At 3 s, battgen's Phase 1 differs from the authors' released code by at most
#   {glue:text}`p1_gap_max:.2f` points; its Phase 2 (run the authors' way) is on average
#   {glue:text}`p2_gap_mean:+.2f` points from theirs. {glue:text}`label_bits_nmc2_1`
# - The protocol conditions generation on the test batteries' true SOH and reuses the same
#   batteries in training and test, and the authors' code replaces the paper's latent scaling
#   by a hand-set voltage shift; these numbers measure the protocol, not a deployable estimator.
