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
# # The PulseBat data: pulse responses of retired batteries at random SOC
#
# ## Overview
#
# Every model in this book reads the same 21 numbers per sample: the voltages U1-U21 that a
# retired battery shows while a short sequence of current pulses is injected. This chapter
# describes the data set the paper uses {cite}`tao2024generative,pulsebat2024`, shows what
# U1-U21 are on one real battery, how the state of health (SOH) is distributed per battery type,
# and how the features move with the state of charge (SOC) and with SOH. The last section
# measures why SOC is a confounder: it moves the features far more than SOH does, and a retired
# battery arrives at an unknown, random SOC.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup
#
# The data are read with `battgen.data.load_pulsebat`, which checks every file against
# its published sha256 and returns one tidy table per battery type. This chapter trains
# nothing, so `profile` and `seeds` do not change its output.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from battgen import plotting
from battgen.book import glue_key, percent, put, put_many, setup_chapter, table
from battgen.data import BATTERIES, FEATURES, fetch
from battgen.features import pulse_points
from battgen.invariant import relaxation_differences, variance_shares
from battgen.io import write_json, write_table

ctx = setup_chapter("01_data_exploration", profile=profile, data_dir=data_dir, results_dir=results_dir)
df = pd.concat(ctx.frames(pulse_width_s=5).values(), ignore_index=True)
df["soc_pct"] = (df["soc"] * 100).round().astype(int)
batteries = df.drop_duplicates("battery_id")[["battery", "cathode", "cell", "battery_id", "qn_ah", "q_ah", "soh"]]

# %% [markdown]
# ## The data set
#
# PulseBat holds retired lithium-ion batteries of four designs: NMC 2.1 Ah cylindrical cells aged
# in the laboratory, LMO 10 Ah and NMC 21 Ah pouch cells retired from hybrid and battery electric
# vehicles, and LFP 35 Ah prismatic (aluminium-shell) cells retired from hybrid vehicles, so three
# cathode chemistries in three physical formats. Each battery's capacity was calibrated by a
# full CC-CV charge and CC discharge (SOH = calibrated / nominal capacity, which can slightly
# exceed 1 when a cell holds a little more than its nominal capacity); it was then brought to
# 5 %, 10 %, ... SOC, and at each level the pulse sequence was injected. The paper uses the 5 s
# pulses at 5-50 % SOC: one sample is one battery at one SOC level.

# %% tags=["nbval-check-output", "hide-cell"]
overview = (
    df.groupby("battery", sort=False)
    .agg(cathode=("cathode", "first"), nominal_ah=("qn_ah", "first"), batteries=("battery_id", "nunique"),
         cells=("cell", "nunique"), soc_levels=("soc", "nunique"), samples=("soh", "size"))
    .join(batteries.groupby("battery").soh.agg(soh_min="min", soh_mean="mean", soh_max="max"))
    .round(3)
)
overview.index = overview.index.map(plotting.label)
print(f"{len(df)} samples, {df.battery_id.nunique()} batteries, {df.battery.nunique()} types, "
      f"{df.cathode.nunique()} cathodes, {df.soc.nunique()} SOC levels "
      f"({df.soc_pct.min()}-{df.soc_pct.max()} %)")
print(overview.to_string())

# %% tags=["hide-input"]
table(overview.reset_index(names="battery type").rename(columns={
          "nominal_ah": "nominal capacity (Ah)", "soc_levels": "SOC levels", "soh_min": "SOH min", "soh_mean": "SOH mean",
          "soh_max": "SOH max"}),
      "The four battery types of PulseBat (5 s pulses, 5-50 % SOC)", formats={"nominal capacity (Ah)": "{:g}"})

# %% [markdown]
# The {glue:text}`n_batteries:d` tested batteries are {glue:text}`n_cells:d` physical cells: the
# NMC 2.1 Ah rows are {glue:text}`n_cells_nmc2_1:d` laboratory-aged cells, each measured at several
# ageing checkpoints (the `cell` column); any train/test split must keep one cell's checkpoints
# together.

# %% tags=["hide-input"]
summary = {
    "n_samples": len(df),
    "n_batteries": int(df.battery_id.nunique()),
    "n_cells": int(df.groupby("battery").cell.nunique().sum()),
    "n_cells_nmc2_1": int(df.loc[df.battery == "NMC2.1", "cell"].nunique()),
    "n_types": int(df.battery.nunique()),
    "n_cathodes": int(df.cathode.nunique()),
    "n_soc_levels": int(df.soc.nunique()),
    "soc_min_pct": int(df.soc_pct.min()),
    "soc_max_pct": int(df.soc_pct.max()),
    "soh_min": float(batteries.soh.min()),
    "soh_max": float(batteries.soh.max()),
}
write_table(overview.reset_index(names="battery"), ctx.out_dir / "dataset_overview.csv")
put_many(summary)

# %% [markdown]
# ## What U1-U21 are
#
# At each SOC level the tester injects, for each pulse width, current pulses of 0.5, 1, 1.5, 2
# and 2.5 C, each as a charging pulse, a rest, a discharging pulse and a rest; rests last 15
# times the pulse width (75 s for 5 s pulses). U1 is the voltage at the end of the rest before
# the first pulse, close to the open-circuit voltage; U2-U21 are the start and end voltages of the
# ten steps after it: the 0.5 C and 1 C pulse pairs and the +1.5 C pulse with its rest. The jump
# at a pulse's start is the ohmic response, the drift during the pulse the polarisation, and the
# rests show the relaxation back towards equilibrium.
#
# The battery drawn below is the NMC 21 Ah battery whose raw tester file (workstep layer: one
# row per tester step) is part of PulseBat's processing example (ID `...0052124`), at 25 % SOC.
# `battgen.features.pulse_points` reads the steps behind U1-U21 from that file. The tester
# records each step's start and end voltage only: the plot joins them by straight lines, and
# draws the 75 s rests compressed so that the 5 s pulses stay readable (tick labels are true
# seconds).

# %% tags=["nbval-check-output", "hide-cell"]
example_id = "02LCC02100101A87Y0052124"
workstep = fetch("workstep/NMC_C_21_B_6_SOC_5-90_Part_1-2_ID_02LCC02100101A87Y0052124.xlsx", data_dir)
steps = pulse_points(workstep, 25, pulse_width_s=5)
example = df[(df.battery_id == example_id) & (df.soc_pct == 25)].iloc[0]
points = plotting.turning_points(steps).set_index("feature")["voltage_v"]
print(f"{len(steps)} tester steps, {len(points)} turning points; largest difference from the published "
      f"features of this battery: {(points - example[FEATURES]).abs().max():.4f} V")

# %% tags=["hide-input"]
plotting.plot_pulse_sequence(
    steps, color=plotting.PALETTE["NMC21"],
    title=f"{plotting.label('NMC21')} battery {example_id[-7:]}, SOH {example.soh:.3f}, 25 % SOC",
);

# %% [markdown]
# ## SOH per battery type
#
# One point per battery: SOH is a property of the battery, not of the sample. The NMC 2.1 Ah cells
# were aged in the laboratory, the three other types retired from vehicles. From the widest SOH
# range to the narrowest: {glue:text}`soh_ranges_text:s`.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7.0, 3.6))
order = list(BATTERIES)
sns.boxplot(data=batteries, x="soh", y="battery", order=order, hue="battery", hue_order=order,
            palette=plotting.battery_colors(), width=0.5, fliersize=0, legend=False, ax=ax)
sns.stripplot(data=batteries, x="soh", y="battery", order=order, color="0.15", size=2.5, alpha=0.6,
              jitter=0.2, ax=ax)
ax.set_yticks(range(len(order)), [plotting.label(k) for k in order])
ax.set(xlabel="SOH (calibrated / nominal capacity)", ylabel="");

# %% tags=["hide-input"]
soh_range = batteries.groupby("battery").soh.agg(["min", "max"]).assign(span=lambda d: d["max"] - d["min"])
put("soh_ranges_text", ", ".join(f"{plotting.label(b)} {r['min']:.2f}-{r['max']:.2f}"
                                 for b, r in soh_range.sort_values("span", ascending=False).iterrows()))

# %% [markdown]
# ## How the features move with SOC
#
# U1 follows the open-circuit voltage curve of each chemistry: it rises steadily with SOC for
# the NMC cells, steeply for LMO, and hardly moves above 25 % SOC for LFP, whose voltage plateau
# is notoriously flat. The whole U1-U21 profile shifts with SOC (right, LMO 10 Ah): the pulse
# responses ride on top of the SOC-dependent equilibrium voltage.

# %% tags=["hide-input"]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10.0, 4.0))
sns.lineplot(data=df, x="soc_pct", y="U1", errorbar=("pi", 50), marker="o", ax=ax0, **plotting.hue_battery())
plotting.relabel_legend(ax0)
ax0.set(xlabel="SOC (%)", ylabel="U1 (V)", title="U1 against SOC (median, 25-75 % band)")
profile_lmo = (
    df[df.battery == "LMO10"].melt(id_vars=["soc_pct"], value_vars=FEATURES, var_name="feature", value_name="voltage")
    .assign(k=lambda d: d.feature.str[1:].astype(int))
)
sns.lineplot(data=profile_lmo, x="k", y="voltage", hue="soc_pct", palette=plotting.SOC_CMAP, legend="full", errorbar=None, ax=ax1)
ax1.legend(title="SOC (%)", fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
ax1.set(xlabel="Feature k (U_k)", ylabel="Voltage (V)", title=f"Mean U1-U21 profile, {plotting.label('LMO10')}")
ax1.set_xticks(range(1, 22, 2));

# %% [markdown]
# ## How the features move with SOH
#
# The step at the start of a pulse is the ohmic response, so one expects it to grow with the
# battery's internal resistance, which grows with ageing. Below, the step at the start of the
# +1.5 C pulse (U18 - U17) against SOH, one colour per SOC level. The step
# {glue:text}`step_dir_nmc21:s` for NMC 21 Ah (correlation with SOH per level between
# {glue:text}`step_r_lo_nmc21:.2f` and {glue:text}`step_r_hi_nmc21:.2f`),
# {glue:text}`step_dir_lmo10:s` for LMO 10 Ah ({glue:text}`step_r_lo_lmo10:.2f` to
# {glue:text}`step_r_hi_lmo10:.2f`), {glue:text}`step_dir_lfp35:s` for LFP 35 Ah
# ({glue:text}`step_r_lo_lfp35:.2f` to {glue:text}`step_r_hi_lfp35:.2f`) and
# {glue:text}`step_dir_nmc2_1:s` for NMC 2.1 Ah ({glue:text}`step_r_lo_nmc2_1:.2f` to
# {glue:text}`step_r_hi_nmc2_1:.2f`). Over all levels, SOC explains
# {glue:text}`step_soc_nmc2_1_pct` of the step's variance for NMC 2.1 Ah,
# {glue:text}`step_soc_lmo10_pct` for LMO 10 Ah, {glue:text}`step_soc_nmc21_pct` for NMC 21 Ah and
# {glue:text}`step_soc_lfp35_pct` for LFP 35 Ah; SOH explains {glue:text}`step_soh_nmc2_1_pct`,
# {glue:text}`step_soh_lmo10_pct`, {glue:text}`step_soh_nmc21_pct` and
# {glue:text}`step_soh_lfp35_pct` (the decomposition of the next section). The ohmic step has to
# be checked per design before it is read as a sign of ageing.

# %% tags=["hide-input"]
df["ohmic_1p5C"] = df["U18"] - df["U17"]
grid = sns.relplot(data=df, x="soh", y="ohmic_1p5C", hue="soc_pct", col="battery", col_order=list(BATTERIES),
                   palette=plotting.SOC_CMAP, legend="full", s=10, alpha=0.7, height=2.6, aspect=0.95,
                   facet_kws={"sharex": False, "sharey": False})
grid.set_titles(template="{col_name}")
for ax, key in zip(grid.axes.flat, BATTERIES):
    ax.set_title(plotting.label(key))
grid.set_axis_labels("SOH", "U18 - U17 (V)")
grid.legend.set_title("SOC (%)");

# %% tags=["hide-input"]
step_shares = variance_shares(df, ["ohmic_1p5C"]).set_index("battery")
step_r = df.groupby(["battery", "soc_pct"])[["ohmic_1p5C", "soh"]].corr().xs("soh", level=2)["ohmic_1p5C"].unstack()
for b in BATTERIES:
    r, k = step_r.loc[b], glue_key(b)
    put(f"step_soc_{k}_pct", percent(step_shares.loc[b, "share_soc"]))
    put(f"step_soh_{k}_pct", percent(step_shares.loc[b, "share_soh"]))
    put(f"step_r_lo_{k}", r.min())
    put(f"step_r_hi_{k}", r.max())
    put(f"step_dir_{k}", "grows as SOH falls at every SOC level" if (r < 0).all() else
        "shrinks as SOH falls at every SOC level" if (r > 0).all() else
        "grows as SOH falls wherever the correlation is not negligible (|r| > 0.1)" if (r <= 0.1).all() else
        "shrinks as SOH falls wherever the correlation is not negligible (|r| > 0.1)" if (r >= -0.1).all() else
        "changes direction between SOC levels")

# %% [markdown]
# ## Why SOC confounds SOH estimation
#
# A feature is useful for SOH if it varies with SOH; it is dangerous if it varies even more with
# something else that is unknown at test time. Split each feature's variance (within one battery
# type) into the share explained by the SOC level (the between-SOC share, $\eta^2$) and compare
# it with the share explained linearly by SOH ($r^2$ with SOH); `battgen.invariant.variance_shares`
# computes both.

# %% tags=["nbval-check-output", "hide-cell"]
shares = variance_shares(df, FEATURES).rename(columns={"share_soc": "SOC (eta^2)", "share_soh": "SOH (r^2)"})
confounding = shares.groupby("battery", sort=False)[["SOC (eta^2)", "SOH (r^2)"]].median().round(2)
confounding.index = confounding.index.map(plotting.label)
print("median over U1-U21 of the variance share explained by SOC and by SOH")
print(confounding.to_string())

# %% tags=["hide-input"]
table(confounding.reset_index(names="battery type").rename(columns={
          "SOC (eta^2)": "share explained by SOC (eta squared)", "SOH (r^2)": "share explained by SOH (r squared)"}),
      "Median over U1-U21 of the share of a feature's variance explained by SOC and by SOH",
      formats={"share explained by SOC (eta squared)": "{:.0%}", "share explained by SOH (r squared)": "{:.0%}"})

# %% tags=["hide-input"]
long = shares.melt(id_vars=["battery", "feature"], var_name="explained by", value_name="share")
fig, ax = plt.subplots(figsize=(8.0, 3.6))
sns.boxplot(data=long, x="battery", y="share", hue="explained by", order=list(BATTERIES),
            palette={"SOC (eta^2)": "0.35", "SOH (r^2)": plotting.PALETTE["LMO10"]}, width=0.6, ax=ax)
ax.set_xticks(range(len(BATTERIES)), [plotting.label(k) for k in BATTERIES])
ax.set(xlabel="", ylabel="Share of feature variance", ylim=(0, 1),
       title="Per feature U1-U21: variance explained by SOC level vs by SOH")
ax.legend(title=None, loc="center right");

# %% tags=["hide-input"]
write_table(shares, ctx.out_dir / "variance_shares.csv")
write_json(summary | {"median_share_soc": confounding["SOC (eta^2)"].to_dict(),
                      "median_share_soh": confounding["SOH (r^2)"].to_dict()}, ctx.out_dir / "summary.json")
put("median_share_soc_pct", percent(shares["SOC (eta^2)"].median()))
put("median_share_soh_pct", percent(shares["SOH (r^2)"].median()))
put("min_share_soc_pct", percent(shares["SOC (eta^2)"].min()))
put("max_share_soh_pct", percent(shares["SOH (r^2)"].max()))
u1_by_soc = df[df.battery == "LMO10"].groupby("soc_pct").U1.mean()
put("u1_rise_lmo10", u1_by_soc.iloc[-1] - u1_by_soc.iloc[0])
differences = relaxation_differences(df)  # U_k - U1
diff_shares = variance_shares(pd.concat([df, differences], axis=1), list(differences.columns))
write_table(diff_shares, ctx.out_dir / "variance_shares_differences.csv")
put("median_share_soc_diff_pct", percent(diff_shares["share_soc"].median()))
put("diff_soc_below_half_pct", percent((diff_shares["share_soc"] < 0.5).mean()))

# %% [markdown]
# In every battery type SOC explains at least {glue:text}`min_share_soc_pct` of each feature's
# variance, SOH at most {glue:text}`max_share_soh_pct`. A regressor trained on samples from some
# SOC levels and applied at another one would read the SOC shift as a change in SOH. Measuring every retired battery at every SOC is what the
# paper avoids: its generative model produces the pulse response at SOC levels that were not
# measured (chapters 2-4).
#
# These are absolute voltages, which carry the open-circuit voltage: the mean U1 of LMO 10 Ah
# rises by {glue:text}`u1_rise_lmo10:.2f` V from {glue:text}`soc_min_pct:d` to
# {glue:text}`soc_max_pct:d` % SOC. A large SOC share of U1-U21 therefore does not show that the
# pulse response itself is governed by SOC: in the differences $U_k - U_1$, where the rest voltage
# cancels, SOC explains a median {glue:text}`median_share_soc_diff_pct` of the variance, and less
# than half of it in {glue:text}`diff_soc_below_half_pct` of the feature x type pairs. Chapter 7
# builds its SOC-invariant features on this.
#
# ## Summary
#
# - {glue:text}`n_samples:,d` samples: {glue:text}`n_batteries:d` tested batteries
#   ({glue:text}`n_cells:d` physical cells) of
#   {glue:text}`n_types:d` types and {glue:text}`n_cathodes:d` cathode chemistries, each at
#   {glue:text}`n_soc_levels:d` SOC levels from {glue:text}`soc_min_pct:d` to
#   {glue:text}`soc_max_pct:d` %; SOH from {glue:text}`soh_min:.2f` to {glue:text}`soh_max:.2f`.
# - U1-U21 are the turning-point voltages of a 5 s pulse sequence: the rest voltage, then the
#   start and end of the 0.5 C and 1 C charge/discharge pulses with their rests and of the
#   +1.5 C pulse with its rest.
# - Over all types and features, the SOC level explains a median {glue:text}`median_share_soc_pct`
#   of a feature's variance (at least {glue:text}`min_share_soc_pct`) and SOH
#   {glue:text}`median_share_soh_pct`: SOC must be accounted for, and data at unmeasured SOC levels
#   are what the generative model has to supply. In the differences $U_k - U_1$, where the rest
#   voltage cancels, SOC explains a median {glue:text}`median_share_soc_diff_pct`.
