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
# # Trusting an estimate: what the test design tells, intervals, and pulses unlike any seen
#
# ## Overview
#
# A recycler sorts batteries into reuse and recycling from one number, the estimated SOH. This
# chapter asks what stands behind that number:
#
# 1. **What does the test protocol itself tell the model?** PulseBat's SOC is a fraction of the
#    *nominal* capacity, so a worn battery charged to "25 %" is fuller than a new one, and the
#    highest SOC each battery was tested at was capped below its actual capacity. The first puts
#    SOH into the pulses, the second into which SOC levels a battery has: both through the design
#    of the test, not through ageing physics.
# 2. **How wide is the honest uncertainty?** `SOHEstimator.predict(X, interval=0.9)` returns a
#    split-conformal interval calibrated on held-out batteries (`battgen.uncertainty`); here its
#    coverage and width are measured on batteries the estimator never saw, per battery type, SOC
#    level and SOH tercile.
# 3. **Does the estimator notice a pulse it should not answer?** The novelty score
#    (`SOHEstimator.novelty_score`) is the distance of a pulse's shape to the training pulses; its
#    threshold is set on the training batteries. Measured: the false alarms on new batteries of
#    the same design, and the share of another design's pulses (and of the same design's 3 s
#    pulses) it flags.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup
#
# The estimator is the default `SOHEstimator` (interpolation generator, five calibration folds),
# trained on the training batteries measured at 5, 25 and 50 % SOC, exactly as in chapter 06;
# the folds and seeds come from the book profile.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from battgen import plotting
from battgen.book import and_join, glue_key, percent, put, setup_chapter, table, type_list
from battgen.data import BATTERIES, load_pulsebat
from battgen.diagnostics import paired_difference_mv, soc_cap, u1_soh_correlation
from battgen.evaluation.trust import coverage_summary, covered, recalibrated, run_ood_matrix, run_trust_benchmark, soh_terciles
from battgen.io import write_table

ctx = setup_chapter("08_trustworthy_estimates", profile=profile, data_dir=data_dir, results_dir=results_dir, seeds=seeds)
prof, out_dir, frames = ctx.profile, ctx.out_dir, ctx.frames()
COVERAGE = 0.9
colors = plotting.battery_colors()
put("coverage_nominal", 100 * COVERAGE)

# %% [markdown]
# ## What the test design encodes
#
# Left: the highest SOC level each battery was tested at, against its SOH (the 3 s files go up
# to {glue:text}`top_soc_max:.0f` %). Right: U1, the rest voltage before the pulses, at 25 %
# nominal SOC, against SOH.

# %% tags=["hide-input"]
caps = pd.concat([soc_cap(load_pulsebat(b, 3, data_dir=ctx.data_dir, max_soc=1.0)) for b in BATTERIES], ignore_index=True)
u1 = pd.concat([u1_soh_correlation(frames[b]) for b in BATTERIES], ignore_index=True)
write_table(caps, out_dir / "soc_cap.csv")
write_table(u1, out_dir / "u1_soh_correlation.csv")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
for b in BATTERIES:
    c = caps[caps["battery"] == b]
    ax1.scatter(c["soh"], c["top_soc"], s=12, alpha=0.7, color=colors[b], label=plotting.label(b))
    at = frames[b][np.rint(frames[b]["soc"] * 100) == 25]
    ax2.scatter(at["soh"], at["U1"], s=10, alpha=0.7, color=colors[b], label=plotting.label(b))
ax1.set(xlabel="SOH", ylabel="highest SOC tested (% of nominal)", title="the SOC ladder stops below the actual capacity")
ax2.set(xlabel="SOH", ylabel="U1 at 25 % nominal SOC (V)", title="a worn battery at '25 %' is fuller")
ax1.legend(fontsize=8)
fig.tight_layout();

# %% tags=["nbval-check-output", "hide-cell"]
varied = {b: c for b, c in caps.groupby("battery", sort=False) if c["top_soc"].nunique() > 1}
cap_r = {b: float(np.corrcoef(c["top_soc"], c["soh"])[0, 1]) for b, c in varied.items()}
u1_r = u1.groupby("battery")["r"].median()
U1_WEAK = 0.5  # |median correlation| below which U1 is said to carry SOH only weakly


put("top_soc_max", caps["top_soc"].max())
put("u1_r_text", and_join(f"{u1_r[b]:.2f} for {plotting.label(b)}" for b in BATTERIES))
put("u1_weak_text", type_list(b for b in BATTERIES if abs(u1_r[b]) < U1_WEAK) or "none of the types")
put("u1_lfp_but", "but only" if abs(u1_r["LFP35"]) < abs(u1_r["LMO10"]) else "and")
put("cap_r_text", ", ".join(f"{cap_r[b]:.2f} for {plotting.label(b)}" for b in cap_r))
put("cap_same_text", ", ".join(plotting.label(b) for b in BATTERIES if b not in cap_r) or "none")
for b in ("LMO10", "LFP35"):  # the two the summary names
    put(f"u1_r_{glue_key(b)}", u1_r[b])
print("corr(highest SOC, SOH):", {b: round(r, 2) for b, r in cap_r.items()})
print("median over levels of corr(U1, SOH):", {b: round(float(u1_r[b]), 2) for b in BATTERIES})

# %% [markdown]
# The highest SOC level tested rises with SOH (correlation {glue:text}`cap_r_text`; every
# battery of {glue:text}`cap_same_text` was tested to the same level), and at a fixed nominal SOC
# the rest voltage U1 tracks SOH
# (median correlation over the ten levels {glue:text}`u1_r_text`): a battery of SOH $h$ charged
# to a nominal SOC $s$ holds $s / h$ of its own capacity, so its open-circuit voltage is higher the
# more worn it is wherever the voltage rises with charge; on a flat voltage plateau such as LFP's
# it barely moves. The median correlation is weaker than 0.5 in magnitude for
# {glue:text}`u1_weak_text`.
#
# What this means for each protocol in this book:
#
# - **The paper's protocol (chapters 02-04) and the leak-free protocol with SOC known
#   (chapter 06)** score pulses taken at nominal SOC levels and compare them with pulses of the
#   same nominal level. A forest can read SOH there from the SOC / SOH ratio in U1 (how much of
#   its accuracy comes from it is not measured here): real signal for a tester that charges every
#   battery to a nominal fraction, but not ageing physics, and weak for {glue:text}`u1_weak_text`.
# - **The SOC-unknown estimator (chapter 06 and this chapter)** still meets only pulses taken at
#   nominal levels 5-50 %. A recycler who measures a battery at whatever charge it arrived with
#   breaks that link; the scores here hold for pulses taken the PulseBat way (charge to a nominal
#   fraction, then pulse).
# - **The levels above 50 %** (3 s files) exist only for healthier batteries: an experiment that
#   used them would learn SOH from which levels are present. battgen keeps to 5-50 %, where every
#   battery has all ten levels.

# %% [markdown]
# ## Prediction intervals on held-out batteries
#
# Every held-out pulse gets an estimate and a {glue:text}`coverage_nominal:.0f` % interval;
# coverage is the share of pulses whose true SOH lies inside, width the interval's length in SOH
# points (1 point = 1 % of the nominal capacity). A coverage has its own uncertainty: the
# `low` and `high` columns are a 95 % interval that resamples physical batteries (a battery's
# pulses at every level, seed and fold drawn together), so a shortfall counts only where that
# interval lies wholly below the nominal level.

# %% tags=["hide-input"]
pulses = run_trust_benchmark(seeds=prof.leakfree_seeds, n_folds=prof.folds, coverage=COVERAGE, frames=frames,
                             progress=progress)
pulses["tercile"] = soh_terciles(pulses)
write_table(pulses, out_dir / "trust_pulses.csv")
by_type = coverage_summary(pulses, by=("battery",))
write_table(by_type, out_dir / "coverage_by_type.csv")
table(by_type.rename(columns={"battery": "battery type", "coverage_low": "low", "coverage_high": "high",
                              "width_pts": "mean width (SOH points)", "flagged": "flagged as novel", "n": "pulses",
                              "n_batteries": "batteries"}),
      f"Coverage of the {percent(COVERAGE)} interval (with a 95 % interval over batteries) and its width, held-out "
      "batteries at all ten SOC levels",
      formats={"coverage": "{:.1%}", "low": "{:.1%}", "high": "{:.1%}", "flagged as novel": "{:.1%}"})

# %% tags=["hide-input"]
by_level = coverage_summary(pulses, by=("battery", "soc"))
by_tercile = coverage_summary(pulses, by=("battery", "tercile"))
write_table(by_level, out_dir / "coverage_by_level.csv")
write_table(by_tercile, out_dir / "coverage_by_tercile.csv")
TERCILES = ["low", "middle", "high"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for b in BATTERIES:
    s = by_level[by_level["battery"] == b]
    ax1.plot(s["soc"], s["coverage"], "o-", ms=3, color=colors[b], label=plotting.label(b))
    t = by_tercile[by_tercile["battery"] == b].set_index("tercile").reindex(TERCILES)
    ax2.plot(range(3), t["coverage"], "o-", ms=4, color=colors[b], label=plotting.label(b))
for ax in (ax1, ax2):
    ax.axhline(COVERAGE, color="0.3", ls=":", lw=1)
    ax.set(ylabel=f"coverage of the {percent(COVERAGE)} interval", ylim=(0, 1.02))
for lv in (5, 25, 50):
    ax1.axvline(lv, color="0.85", lw=3, zorder=0)
ax1.set(xlabel="SOC of the held-out pulse (%)", title="by SOC level (grey: measured levels)")
ax2.set_xticks(range(3), TERCILES)
ax2.set(xlabel="SOH tercile of the battery", title="by SOH tercile")
ax1.legend(fontsize=8)
fig.tight_layout();

# %% tags=["nbval-check-output", "hide-cell"]
cov = by_type.set_index("battery")
for b in BATTERIES:
    put(f"cov_{glue_key(b)}", 100 * cov.loc[b, "coverage"])
    put(f"width_{glue_key(b)}", cov.loc[b, "width_pts"])
    put(f"fa_{glue_key(b)}", 100 * cov.loc[b, "flagged"])
t_cov = by_tercile.groupby("tercile")["coverage"].agg(["mean", "min", "max"]).reindex(TERCILES)
bias = (100 * (pulses["estimate"] - pulses["soh"])).groupby(pulses["tercile"]).mean()  # SOH points
for t in TERCILES:
    put(f"tcov_{t}", 100 * t_cov.loc[t, "mean"])
    put(f"tcov_{t}_min", 100 * t_cov.loc[t, "min"])
    put(f"tcov_{t}_max", 100 * t_cov.loc[t, "max"])
short = sorted((t for t in TERCILES if t_cov.loc[t, "mean"] < COVERAGE), key=lambda t: t_cov.loc[t, "mean"])
put("tercile_short_text", "no SOH tercile" if not short else f"{short[0]}-SOH batteries" if len(short) == 1 else
    " and ".join(f"{t}-SOH" for t in short) + f" batteries, most for the {short[0]}-SOH ones")
for t in ("low", "high"):
    put(f"bias_{t}_abs", abs(bias[t]))
    put(f"bias_{t}_dir", "too high" if bias[t] > 0 else "too low")
put("pull_text", "a pull towards the middle" if bias["low"] > 0 > bias["high"] else "no pull towards the middle")
put("worst_tercile_cov", 100 * float(by_tercile["coverage"].min()))
put("worst_tercile", f"{plotting.label(by_tercile.loc[by_tercile['coverage'].idxmin(), 'battery'])}, "
                     f"{by_tercile.loc[by_tercile['coverage'].idxmin(), 'tercile']} SOH")
n_under = int((cov["coverage"] < COVERAGE).sum())
put("n_under", n_under)
short_types = [b for b in BATTERIES if cov.loc[b, "coverage_high"] < COVERAGE]
put("short_types_text", "" if n_under == 0 else
    "; in none of them does the interval over batteries lie wholly below it" if not short_types else
    f"; the interval over batteries lies wholly below it for {type_list(short_types)}")
put("short_types_summary", "for no type" if not short_types else f"only for {type_list(short_types)}"
    if len(short_types) < len(BATTERIES) else "for every type")
short_cells = by_tercile[by_tercile["coverage_high"] < COVERAGE]
put("short_cells_text", "In no type x tercile cell does the 95 % interval over batteries lie wholly below the nominal "
    "level." if short_cells.empty else
    f"The 95 % interval over batteries lies wholly below the nominal level in {len(short_cells)} of the "
    f"{len(by_tercile)} type x tercile cells: " + and_join(
        f"{plotting.label(r.battery)}, {r.tercile} SOH ({100 * r.coverage:.1f} %, at most {100 * r.coverage_high:.1f} %)"
        for r in short_cells.itertuples()) + ".")
print({b: (round(100 * cov.loc[b, "coverage"], 1), round(cov.loc[b, "width_pts"], 1)) for b in BATTERIES})
print("coverage by SOH tercile (mean, min, max over types):", t_cov.round(3).to_dict("index"))
print("mean error by SOH tercile (SOH points):", bias.round(2).to_dict())

# %% [markdown]
# The {glue:text}`coverage_nominal:.0f` % interval covers {glue:text}`cov_nmc2_1:.1f` % of the
# held-out pulses for NMC 2.1 Ah, {glue:text}`cov_lmo10:.1f` % for LMO 10 Ah,
# {glue:text}`cov_nmc21:.1f` % for NMC 21 Ah and {glue:text}`cov_lfp35:.1f` % for LFP 35 Ah, with
# mean widths of {glue:text}`width_nmc2_1:.1f`, {glue:text}`width_lmo10:.1f`,
# {glue:text}`width_nmc21:.1f` and {glue:text}`width_lfp35:.1f` SOH points. Coverage is below the
# nominal {glue:text}`coverage_nominal:.0f` % in {glue:text}`n_under:.0f` of the 4
# types{glue:text}`short_types_text`. By SOH
# tercile (mean over the types, range in parentheses) it is {glue:text}`tcov_low:.1f` %
# ({glue:text}`tcov_low_min:.0f`-{glue:text}`tcov_low_max:.0f` %) for the low tercile,
# {glue:text}`tcov_middle:.1f` % ({glue:text}`tcov_middle_min:.0f`-{glue:text}`tcov_middle_max:.0f` %)
# for the middle and {glue:text}`tcov_high:.1f` %
# ({glue:text}`tcov_high_min:.0f`-{glue:text}`tcov_high_max:.0f` %) for the high; the worst cell
# is {glue:text}`worst_tercile` ({glue:text}`worst_tercile_cov:.1f` %). The interval has one width
# for every pulse (the absolute error of held-out batteries is exchangeable, not its size per
# pulse), so on average it falls short of the nominal level for {glue:text}`tercile_short_text`.
# {glue:text}`short_cells_text`
# Over all held-out pulses, the estimate is {glue:text}`bias_low_abs:.1f` SOH points
# {glue:text}`bias_low_dir` on average for the low tercile and {glue:text}`bias_high_abs:.1f`
# points {glue:text}`bias_high_dir` for the high one: {glue:text}`pull_text`.

# %% [markdown]
# Would an interval whose width follows the estimate cover the weak batteries better? A
# Mondrian split-conformal interval splits the calibration errors at the terciles of their
# estimates and gives each third its own width. To compare like with like, both kinds are
# recalibrated here, fold by fold, on the held-out pulses of the other folds
# (`battgen.evaluation.trust.recalibrated`).

# %% tags=["nbval-check-output", "hide-cell"]
BINS = 3
again = {n: recalibrated(pulses, COVERAGE, bins=n) for n in (1, BINS)}  # one width; BINS widths by the estimate
recal = {n: coverage_summary(r, by=("battery", "tercile")) for n, r in again.items()}
write_table(pd.concat([t.assign(bins=n) for n, t in recal.items()]), out_dir / "coverage_recalibrated.csv")
low = {n: t[t["tercile"] == "low"].set_index("battery").reindex(list(BATTERIES)) for n, t in recal.items()}
change = 100 * (low[BINS]["coverage"].mean() - low[1]["coverage"].mean())  # points of coverage
weak = (pulses["tercile"] == "low").to_numpy()
lowest = (pulses.groupby("battery")["estimate"].transform(lambda e: pd.qcut(e.rank(method="first"), BINS, labels=False))
          == 0).to_numpy()  # the pulse's estimate is in the lowest third of its type's estimates
held = {(n, where): float(covered(r)[weak & at].mean())
        for n, r in again.items() for where, at in (("lowest", lowest), ("rest", ~lowest))}  # low tercile's coverage
put("mondrian_bins", BINS)
put("recal_low_one", 100 * low[1]["coverage"].mean())
put("recal_low_bins", 100 * low[BINS]["coverage"].mean())
put("recal_change_text", f"{'up' if change > 0 else 'down'} {abs(change):.1f} points" if round(abs(change), 1) else "unchanged")
put("recal_width_low_one", low[1]["width_pts"].mean())
put("recal_width_low_bins", low[BINS]["width_pts"].mean())
put("recal_low_types_under", int((low[BINS]["coverage"] < COVERAGE).sum()))
put("low_in_lowest_pct", percent(lowest[weak].mean()))
for where in ("lowest", "rest"):
    put(f"low_{where}_cov_one", 100 * held[(1, where)])
    put(f"low_{where}_cov_bins", 100 * held[(BINS, where)])
    put(f"low_{where}_more", "more" if held[(BINS, where)] > held[(1, where)] else "less")
pulled = held[(BINS, "lowest")] > held[(1, "lowest")] and held[(BINS, "rest")] < held[(1, "rest")]
# pulled: the binned widths help the weak batteries estimated low and hurt those estimated higher
reached = bool((low[BINS]["coverage"] >= COVERAGE).all())  # every type's low tercile at the nominal level
put("recal_gap_text", "close that gap in every type" if reached else "do not close that gap")
put("recal_why", "The pull towards the middle is why" if pulled else "Where the estimates fall shows how")
put("recal_summary", "enough to reach the nominal level in every type" if reached else
    "not enough; the estimate's pull towards the middle keeps the weak batteries from the widths meant for them"
    if pulled else "not enough")
put("recal_verdict", "Binning by the estimate brings every type's weak batteries to the nominal level."
    if reached else
    "Binning by the estimate does not bring the weak batteries to the nominal level: an interval that knows "
    "which batteries are weak needs an estimate that tells them apart.")
print(f"low SOH tercile, mean over the types: coverage {100 * low[1]['coverage'].mean():.1f} % with one width, "
      f"{100 * low[BINS]['coverage'].mean():.1f} % with {BINS} bins")

# %% [markdown]
# For the low-SOH tercile (mean over the types) the recalibrated interval with one width covers
# {glue:text}`recal_low_one:.1f` % of the pulses ({glue:text}`recal_width_low_one:.1f` SOH
# points wide); with {glue:text}`mondrian_bins:.0f` bins by the estimate it covers
# {glue:text}`recal_low_bins:.1f` % ({glue:text}`recal_width_low_bins:.1f` points wide),
# {glue:text}`recal_change_text`, and stays below the nominal level in
# {glue:text}`recal_low_types_under:.0f` of the 4 types. {glue:text}`recal_why`:
# {glue:text}`low_in_lowest_pct` of the low tercile's pulses have an estimate in the lowest third
# of their type's estimates, and there the binned interval covers {glue:text}`low_lowest_more`
# ({glue:text}`low_lowest_cov_one:.1f` % with one width, {glue:text}`low_lowest_cov_bins:.1f` %
# binned); the others are estimated high enough to get the width of the upper thirds, and
# there it covers {glue:text}`low_rest_more` ({glue:text}`low_rest_cov_one:.1f` % against
# {glue:text}`low_rest_cov_bins:.1f` %). {glue:text}`recal_verdict`

# %% [markdown]
# ## Pulses unlike any seen
#
# On the held-out batteries of the same design (above), the share flagged is the false-alarm
# rate. Below, each design's estimator (trained on all its batteries at 5, 25 and 50 %) scores the
# pulses of the other designs at all ten levels, and its own design's 3 s pulses.

# %% tags=["hide-input"]
frames_3s = ctx.frames(3)
ood = run_ood_matrix(frames=frames, frames_3s=frames_3s, progress=progress)
write_table(ood, out_dir / "ood_matrix.csv")
names = plotting.labels()
own = ood["scored"].str.endswith("(3 s pulses)")
matrix = ood[~own].pivot_table(index="trained_on", columns="scored", values="flagged", sort=False)
matrix = matrix.reindex(index=list(BATTERIES), columns=list(BATTERIES))
matrix["its own 3 s pulses"] = ood[own].set_index("trained_on")["flagged"]
table(matrix.rename(index=names, columns=names).reset_index(names="trained on"),
      "Share of pulses flagged as novel (rows: the design the estimator was trained on; the diagonal is the "
      "false-alarm table above)", formats={c: "{:.0%}" for c in [*names.values(), "its own 3 s pulses"]})

# %% tags=["nbval-check-output", "hide-cell"]
other = ood[~ood["scored"].str.contains("3 s")]
width = ood[ood["scored"].str.contains("3 s")].set_index("trained_on")["flagged"]
OOD_MOST = 0.9  # share of a foreign design's pulses counted as flagged almost entirely
put("ood_most", 100 * OOD_MOST)
put("ood_min", 100 * other["flagged"].min())
put("ood_median", 100 * other["flagged"].median())
n_most = int((other["flagged"] >= OOD_MOST).sum())
put("ood_pairs_90", n_most)
put("ood_pairs", len(other))
put("ood_pairs_qual", "not in all" if n_most < len(other) else "that is, in all")
foreign = matrix[list(BATTERIES)]  # rows: trained on; columns: scored; the diagonal is empty
per_model = foreign.mean(axis=1)
put("ood_loosest", plotting.label(per_model.idxmin()))
put("ood_loosest_mean", 100 * per_model.min())
pairs = [(a, b) for i, a in enumerate(BATTERIES) for b in list(BATTERIES)[i + 1:]]
a, b = max(pairs, key=lambda p: abs(foreign.loc[p[0], p[1]] - foreign.loc[p[1], p[0]]))
lo, hi = (a, b) if foreign.loc[a, b] <= foreign.loc[b, a] else (b, a)  # lo's model flags less of hi than hi's of lo
gap = foreign.loc[hi, lo] - foreign.loc[lo, hi]
put("asym_lo", plotting.label(lo))
put("asym_hi", plotting.label(hi))
put("asym_lo_share", 100 * foreign.loc[lo, hi])
put("asym_hi_share", 100 * foreign.loc[hi, lo])
put("ood_asym_text", "Pulse shapes that overlapped would pass both ways; a gap this wide points instead to "
                     "how far each model's threshold reaches around its own training pulses." if gap >= 0.5 else
                     "The two directions differ little, as they would for pulse shapes that overlapped.")
put("ood_3s_median", 100 * width.median())
mostly_pass = width.median() < 0.5
put("ood_3s_mostly", "mostly pass unflagged" if mostly_pass else "are mostly flagged")
passed, caught = width[width < 0.5].index, width[width >= 0.5].index
odd = width[caught if mostly_pass else passed]  # the designs against the majority
many = len(odd) > 1
put("ood_3s_exception", f"the exception{'s are' if many else ' is'} {type_list(odd.index)}, "
                        f"whose model{'s flag' if many else ' flags'} {and_join(f'{100 * v:.0f} %' for v in odd)} "
                        f"of {'their' if many else 'its'} own 3 s pulses" if len(odd) else "there is no exception")
pw = {d: paired_difference_mv(frames_3s[d], frames[d])["mean_mv"] for d in BATTERIES}
put("pw_diff_text", and_join(f"{pw[d]:.1f} mV for {plotting.label(d)}" for d in BATTERIES))


def models(ds):
    return f"{type_list(ds)} model{'s' if len(ds) > 1 else ''}"


explain = []
if len(passed):
    many = len(passed) > 1
    explain.append(f"The {models(passed)} let{'' if many else 's'} {'their' if many else 'its'} own 3 s pulses pass "
                   f"and answer{'' if many else 's'} them without a warning")
if len(caught):
    pron = "their" if len(caught) > 1 else "its"
    text = f"the {models(caught)} flag{'' if len(caught) > 1 else 's'} most of {pron} own"
    if len(passed):
        top = max(passed, key=pw.get)  # the passing design whose 3 s pulses differ most from its 5 s ones
        no_larger = max(pw[d] for d in caught) <= pw[top]
        text += (f", although {pron} 3 s pulses differ from the 5 s ones no more than {plotting.label(top)}'s do: "
                 "the mean difference alone does not decide it" if no_larger else
                 f", whose 3 s pulses differ from the 5 s ones more than {plotting.label(top)}'s do")
    explain.append(text)
put("ood_3s_explain", "; ".join(explain))
put("fa_max", 100 * by_type["flagged"].max())
print(f"other designs flagged: median {100 * other['flagged'].median():.0f} %, "
      f"{n_most} of {len(other)} pairs at >= {percent(OOD_MOST)}")
print("own 3 s pulses flagged:", width.round(3).to_dict(), "| 3 s - 5 s (mV):", {d: round(v, 1) for d, v in pw.items()})

# %% [markdown]
# Of the {glue:text}`ood_pairs:.0f` (trained on, scored) pairs of designs,
# {glue:text}`ood_pairs_90:.0f` have at least {glue:text}`ood_most:.0f` % of the other design's
# pulses flagged; the median share is {glue:text}`ood_median:.0f` % and the smallest
# {glue:text}`ood_min:.0f` %. The model that flags least of the other designs' pulses is that of
# {glue:text}`ood_loosest` ({glue:text}`ood_loosest_mean:.0f` % on average). The largest
# asymmetry is between {glue:text}`asym_lo` and {glue:text}`asym_hi`: the {glue:text}`asym_lo`
# model flags {glue:text}`asym_lo_share:.0f` % of the {glue:text}`asym_hi` pulses, the
# {glue:text}`asym_hi` model {glue:text}`asym_hi_share:.0f` % of the {glue:text}`asym_lo` ones.
# {glue:text}`ood_asym_text`
#
# The same design's 3 s pulses {glue:text}`ood_3s_mostly` (median share
# {glue:text}`ood_3s_median:.0f` %); {glue:text}`ood_3s_exception`. Paired battery by battery and
# level, the 3 s features differ from the 5 s ones by {glue:text}`pw_diff_text` on average.
# {glue:text}`ood_3s_explain`. Because the score need not notice another design or pulse width,
# the model file records its design and pulse width and the estimator refuses input that
# *declares* another (`battery` and `pulse_width_s` columns); the data-driven score is the second
# line, for input that declares nothing. The false alarms on new
# batteries of the same design reach {glue:text}`fa_max:.1f` % of pulses (table above).
#
# ## Summary
#
# - PulseBat's nominal-capacity SOC carries SOH into U1 by the design of the test (median
#   correlation of U1 with SOH at a fixed nominal SOC: {glue:text}`u1_r_lmo10:.2f` for LMO 10 Ah,
#   {glue:text}`u1_lfp_but` {glue:text}`u1_r_lfp35:.2f` on LFP 35 Ah's plateau); its SOC cap
#   decides only which levels above 50 % a battery has, which battgen leaves out. Every score in
#   this book holds for pulses taken that way.
# - The {glue:text}`coverage_nominal:.0f` % interval covers {glue:text}`cov_nmc2_1:.1f` /
#   {glue:text}`cov_lmo10:.1f` / {glue:text}`cov_nmc21:.1f` / {glue:text}`cov_lfp35:.1f` % of
#   held-out pulses (NMC 2.1 / LMO 10 / NMC 21 / LFP 35 Ah) at a width of
#   {glue:text}`width_nmc2_1:.1f` / {glue:text}`width_lmo10:.1f` / {glue:text}`width_nmc21:.1f` /
#   {glue:text}`width_lfp35:.1f` SOH points; averaged over the types it falls short for
#   {glue:text}`tercile_short_text`. The 95 % interval of a type's coverage, resampling its
#   batteries, lies wholly below the nominal level {glue:text}`short_types_summary`.
#   Widths by the estimate (a Mondrian interval, {glue:text}`mondrian_bins:.0f` bins) move the low
#   tercile's coverage from {glue:text}`recal_low_one:.1f` to {glue:text}`recal_low_bins:.1f` %
#   (both recalibrated on the other folds): {glue:text}`recal_summary`.
# - The novelty score flags a foreign design almost entirely (at least {glue:text}`ood_most:.0f` %
#   of its pulses) in {glue:text}`ood_pairs_90:.0f` of the {glue:text}`ood_pairs:.0f` (trained on,
#   scored) pairs of designs, {glue:text}`ood_pairs_qual`; declared designs and pulse widths are
#   checked first.
