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
# # Conditioning on SOC with cross-attention
#
# ## Overview
#
# The paper injects the condition $[\mathrm{SOC}, \mathrm{SOH}]$ into both halves of its CVAE
# with cross-attention {cite}`tao2024generative,vaswani2017attention`: the hidden units of the
# encoder (and of the decoder) attend to the units of a condition embedding. The attention has
# an unusual shape: its tokens are the 64 *units* of a vector, each a token of size 1. This
# chapter works out what that means: with size-1 tokens the attention logits reduce to
# $C_j (a h_i + c)$, so the whole layer is governed by four scalars per head, which battgen
# exploits for an exact, faster implementation that is checked here against the textbook
# computation. It starts with ordinary cross-attention, over a few tokens of several features
# each, on numbers small enough to follow by hand. It then shows the encoder and decoder attention maps of the trained generators
# and how they change with SOC and SOH, and it measures what the attention buys: an ablation
# that concatenates the condition embedding instead of attending to it, scored on the eight-case
# grid of chapter 4 with the same seeds.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup
#
# Two grids are trained on the 5 s features, all four battery types, the eight cases and the
# seeds of the profile: the paper's model (`conditioning="attention"`) and the ablation
# (`conditioning="concat"`). Each grid is one `battgen.evaluation.paper.run_grid_with_models`
# call (all its generators trained in one stack, the fitted models kept); the epochs come from
# the profile that `battgen.book.setup_chapter` resolves (the paper's 50 for `full`, a few for
# `smoke`, whose numbers only check that the chapter runs).

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from battgen import plotting
from battgen.book import percent, put, put_many, readable, setup_chapter, source_block, table
from battgen.data import BATTERIES, FEATURES
from battgen.diagnostics import (attention_agreement, attention_departure, attention_inputs, attention_layers,
                                 attention_logit_range, attention_scalars, attention_slopes, attention_stats,
                                 attention_sweep, attention_sweep_shifts)
from battgen.evaluation.paper import (CLAIM_MAPE, PAPER_METHODS, ExperimentConfig, kind_means, phase2_rule,
                                      run_grid_with_models, summarize)
from battgen.io import write_json, write_table
from battgen.model import CVAE, CVAEConfig, UnitCrossAttention, count_parameters, set_seed
from battgen.protocol import CASES

ctx = setup_chapter("03_cross_attention", profile=profile, data_dir=data_dir, results_dir=results_dir, seeds=seeds)
configs = {"attention": CVAEConfig(conditioning="attention"), "concat": CVAEConfig(conditioning="concat")}
MAP_BATTERY = "NMC2.1"  # the generator whose attention maps are drawn
ACTIVE_KL = 0.01  # nats: a fit whose last-epoch KL term is above this uses its latent code

# %% tags=["hide-input"]
train, frames, first = ctx.profile.train_config(), ctx.frames(pulse_width_s=5), ctx.profile.seeds[0]
runs = {name: run_grid_with_models(ExperimentConfig(seeds=ctx.profile.seeds, model=cfg, train=train, data_dir=ctx.data_dir,
                                                    progress=progress), frames)
        for name, cfg in configs.items()}
attn_run = runs["attention"]
by_split = {(s.labels["battery"], s.labels["case"], s.labels["seed"]): m for s, m in zip(attn_run.splits, attn_run.models)}
fit0 = {b: by_split[(b, 0, first)] for b in BATTERIES}  # case 0, first seed
rows = {b: (df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)) for b, df in frames.items()}
put_many({"epochs": train.epochs, "n_seeds": len(ctx.profile.seeds), "n_batteries": len(fit0)})
print(f"profile {ctx.profile.name}: {train.epochs} epochs, seeds {list(ctx.profile.seeds)}; "
      + ", ".join(f"{name}: {len(run.models)} generators" for name, run in runs.items()))

# %% [markdown]
# ## Cross-attention over several tokens
#
# In its ordinary form {cite}`vaswani2017attention`, cross-attention lets each of $n_q$ *query
# tokens* read from $n_k$ *context tokens*; every token is a vector of features. With the
# queries' features stacked in $X_q \in \mathbb{R}^{n_q \times d_q}$ and the context's in
# $X_k \in \mathbb{R}^{n_k \times d_k}$, three learnt matrices project them to queries, keys and
# values of a common size $D$,
#
# $$
# Q = X_q W_q, \qquad K = X_k W_k, \qquad V = X_k W_v ,
# $$
#
# every query is compared with every key by a scaled dot product, a softmax over the keys turns
# each row of comparisons into weights that sum to one, and each query token's output is the
# weighted mean of the values:
#
# $$
# \mathrm{att} = \operatorname{softmax}_{\text{rows}}\Big(\frac{Q K^\top}{\sqrt{D}}\Big) \in \mathbb{R}^{n_q \times n_k},
# \qquad Y = \mathrm{att}\, V \in \mathbb{R}^{n_q \times D}.
# $$
#
# A small example, with two query tokens of two features, three context tokens of two features
# and $D = 2$ (so the projections are $2 \times 2$ matrices), computed step by step and checked
# against PyTorch's own attention:

# %% tags=["teach"]
X_q = np.array([[1.0, 0.0],
                [0.0, 2.0]])  # 2 query tokens x 2 features
X_k = np.array([[1.0, 1.0],
                [2.0, 0.0],
                [0.0, 1.0]])  # 3 context tokens x 2 features
W_q = np.array([[1.0, 0.0], [0.0, 1.0]])  # (2, D=2)
W_k = np.array([[1.0, 1.0], [0.0, 1.0]])  # (2, 2)
W_v = np.array([[1.0, 0.0], [1.0, 2.0]])  # (2, 2)
Q, K, V = X_q @ W_q, X_k @ W_k, X_k @ W_v  # (2, 2), (3, 2), (3, 2)
logits = Q @ K.T / np.sqrt(2)  # (2, 3): query i against key j
weights = np.exp(logits - logits.max(axis=1, keepdims=True))
weights /= weights.sum(axis=1, keepdims=True)  # (2, 3), each row sums to 1
Y = weights @ V  # (2, 2): each query token's weighted mean of the values
torch_Y = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(m)[None] for m in (Q, K, V)))[0]
np.set_printoptions(precision=3, suppress=True)
print("Q =", Q.tolist(), " K =", K.tolist(), " V =", V.tolist())
print("logits Q K^T / sqrt(2) =\n", logits)
print("attention weights (rows sum to 1) =\n", weights)
print("output Y = att V =\n", Y)
print("same as torch.nn.functional.scaled_dot_product_attention:", bool(np.allclose(Y, torch_Y.numpy())))

# %% tags=["hide-cell"]
sharp = np.exp(3 * logits[0] - (3 * logits[0]).max())
sharp /= sharp.sum()  # first query's weights with W_q tripled (exercise below)
put_many({"toy_w12_pct": percent(weights[0, 1]), "toy_sharp_1": sharp[0], "toy_sharp_2": sharp[1], "toy_sharp_3": sharp[2]})

# %% [markdown]
# The first query token, $q_1 = (1, 0)$, matches the key of the second context token best
# ($q_1 \cdot k_2 = 2$) and takes {glue:text}`toy_w12_pct` of its read-out from it; the second,
# $q_2 = (0, 2)$, matches the first and second keys equally. Each output row is a mix of the three
# value rows.
#
# :::{exercise}
# :label: ex-03-temperature
#
# Multiply $W_q$ by 3 and recompute the weights of the first query token. What happens to the
# attention as the scale of the logits grows, and what does the division by $\sqrt{D}$ protect
# against?
# :::
#
# :::{solution} ex-03-temperature
# :class: dropdown
#
# The logits of the first row become $3 \times (1, 2, 0)/\sqrt{2}$ and the weights
# ({glue:text}`toy_sharp_1:.2f`, {glue:text}`toy_sharp_2:.2f`, {glue:text}`toy_sharp_3:.2f`): the softmax sharpens towards the best-matching key, and in the limit
# picks it alone (a hard maximum). Without the $1/\sqrt{D}$, dot products of $D$-dimensional vectors
# with unit-variance entries grow like $\sqrt{D}$, which would push the softmax into that saturated
# regime, where its gradients vanish.
# :::
#
# ## The 64 embedding units as tokens
#
# The paper's layer is the same computation with an unusual choice of tokens.
# In the authors' Keras model the condition embedding $C = \mathrm{ReLU}(W c + b) \in
# \mathbb{R}^{64}$ and the encoder's hidden layer $h = \mathrm{ReLU}(W' x + b') \in
# \mathbb{R}^{64}$ are reshaped to tensors of shape (batch, 64, 1) and passed to
# `MultiHeadAttention(num_heads=1, key_dim=64)` as query ($h$) and key and value ($C$). A
# Keras attention layer reads a (batch, tokens, features) tensor, so each of the 64 *units*
# becomes a token, and each token has a single feature: its scalar value. The layer projects
# every scalar to a 64-vector,
#
# $$
# q_i = h_i\, w_q + b_q, \qquad k_j = C_j\, w_k + b_k, \qquad v_j = C_j\, w_v + b_v
# \qquad (w_\cdot, b_\cdot \in \mathbb{R}^{64}),
# $$
#
# computes the 64 x 64 map $\mathrm{att}_{ij} = \operatorname{softmax}_j(q_i \cdot k_j / \sqrt{D})$
# with $D = 64$, and projects each query token's read-out back to one scalar,
# $y_i = \big(\sum_j \mathrm{att}_{ij} v_j\big) \cdot w_o + b_o$. The map says how much hidden
# unit $i$ reads from embedding unit $j$. The decoder does the same with its own hidden layer
# (computed from $z$) as the query and the same $C$. battgen's textbook version, written as
# Keras computes it:

# %% tags=["remove-input"]
put("n_params_layer", count_parameters(UnitCrossAttention(configs["attention"].embedding_dim, configs["attention"].num_heads)))
display(Markdown(source_block(UnitCrossAttention.forward_naive)))

# %% [markdown]
# ### Four scalars per head
#
# Expand the logit with the projections above:
#
# $$
# \frac{q_i \cdot k_j}{\sqrt{D}}
#   = C_j \,\Big(\underbrace{\tfrac{w_q \cdot w_k}{\sqrt{D}}}_{a}\, h_i
#            + \underbrace{\tfrac{b_q \cdot w_k}{\sqrt{D}}}_{c}\Big)
#   + \underbrace{\tfrac{h_i\, w_q \cdot b_k + b_q \cdot b_k}{\sqrt{D}}}_{\text{constant in } j} .
# $$
#
# A softmax over $j$ ignores terms that do not depend on $j$, so the map is
# $\mathrm{att}_{ij} = \operatorname{softmax}_j\big(C_j\, s_i\big)$ with $s_i = a h_i + c$, and
# the key bias $b_k$ has no effect at all. Because each row sums to one, the output is
#
# $$
# y_i = \alpha \sum_j \mathrm{att}_{ij}\, C_j + \beta,
# \qquad \alpha = w_v \cdot w_o, \qquad \beta = b_v \cdot w_o + b_o .
# $$
#
# Of the layer's {glue:text}`n_params_layer:,.0f` parameters, only four numbers per head, $a$, $c$, $\alpha$ and $\beta$,
# determine what it computes; the 64-dimensional projections are a redundant
# parameterisation of them. `UnitCrossAttention.forward` computes exactly this, with the
# softmax read in a few passes over the (64, 64) logits instead of building the
# (64, 64, 64) products (its docstring repeats the derivation):

# %% tags=["remove-input"]
display(Markdown(source_block(UnitCrossAttention.forward)))

# %% [markdown]
# :::{exercise}
# :label: ex-03-key-bias
#
# Show from the expansion above that the key bias $b_k$ cannot change the attention map, and that
# the query bias $b_q$ can. Which of the four scalars would change if $w_o$ were doubled?
# :::
#
# :::{solution} ex-03-key-bias
# :class: dropdown
#
# $b_k$ enters the logit only through $q_i \cdot b_k / \sqrt{D} = (h_i w_q + b_q) \cdot b_k / \sqrt{D}$,
# which is the same for every key $j$ of row $i$; a softmax is unchanged by adding a constant to a
# row. $b_q$ enters through $c = b_q \cdot w_k / \sqrt{D}$, which multiplies $C_j$ and so differs
# between keys. Doubling $w_o$ doubles $\alpha = w_v \cdot w_o$ and changes
# $\beta = b_v \cdot w_o + b_o$; $a$ and $c$, hence the map, stay the same.
# :::

# %% [markdown]
# ### Checking forward against forward_naive
#
# The two computations must agree to floating-point precision: on a freshly initialised layer
# (random inputs), and on the trained encoder and decoder layers of every battery type (case 0,
# first seed) fed with the real hidden units and condition embeddings of every row. The table
# gives the largest absolute differences of the outputs and of the attention maps, and of the
# textbook logits against $C_j (a h_i + c)$ once each row's constant is removed; its last column,
# the largest absolute output, gives the scale they compare with. (The unit tests
# also check the gradients, with `torch.autograd.gradcheck`.)

# %% tags=["hide-input"]
checks = []
set_seed(0)
fresh = UnitCrossAttention(64, 1)
for bias in (fresh.query.bias, fresh.key.bias, fresh.value.bias):
    torch.nn.init.normal_(bias)  # non-zero biases, so that c and beta are exercised
checks.append({"layer": "fresh (random biases)", **attention_agreement(fresh, torch.rand(256, 64), torch.rand(256, 64))})
for b, fit in fit0.items():  # each trained layer fed with what it reads for every row (FittedCVAE.hidden)
    for half, (attn, h, C) in attention_inputs(fit, *rows[b]).items():
        checks.append({"layer": f"{plotting.label(b)} {half}", **attention_agreement(attn, h, C)})
checks = pd.DataFrame(checks)
write_table(checks, ctx.out_dir / "forward_vs_naive.csv")
table(checks.rename(columns={"output_scale": "largest |output| (scale)"}),
      "Largest absolute differences between forward and forward_naive",
      formats={k: "{:.1e}" for k in ("output", "attention", "logits", "largest |output| (scale)")})

# %% tags=["nbval-check-output", "hide-cell"]
worst = checks[["output", "attention", "logits"]].max()
put_many({f"check_{k}_max_text": readable(worst[k]) for k in ("output", "attention", "logits")})
print(f"forward == forward_naive to 1e-5 on all {len(checks)} layers: {bool(worst.max() < 1e-5)}")

# %% [markdown]
# Over all layers the outputs differ by at most {glue:text}`check_output_max_text`, the maps by
# {glue:text}`check_attention_max_text`, and the centred logits by
# {glue:text}`check_logits_max_text`: single-precision rounding. The factorised form is the
# same function.
#
# ## What the attention reads
#
# Row $i$ of the map is a Gibbs distribution over the 64 values $C_j$ at inverse temperature
# $s_i$, and the read-out $g_i = \sum_j \mathrm{att}_{ij} C_j$ is the derivative of
# $\log \sum_j e^{s C_j}$ at $s = s_i$: the mean of the embedding's values for $s_i = 0$, a soft
# maximum for large positive $s_i$, a soft minimum for large negative $s_i$. So the layer does
# not route information from particular embedding units to particular hidden units. It
# evaluates one monotone curve $g(s; C)$ at 64 points; the hidden unit $h_i$ only picks the
# point, and the condition enters only through the *multiset* of the values $C_j$ (permuting
# the embedding units changes nothing; exercise below). For small $|s_i|$,
# $g(s_i; C) \approx \bar{C} + s_i \operatorname{Var}_j(C_j)$: the layer passes the mean and the
# variance of the embedding's values, and the hidden unit scales the second.
#
# The four scalars of the trained layers (case 0, first seed), as `UnitCrossAttention.scalars()`
# computes them, and the largest spread of the logits along a row,
# $\max_i |s_i| (\max_j C_j - \min_j C_j)$, over all rows of the type:

# %% tags=["hide-input"]
scalars = []
for b, fit in fit0.items():
    spread = attention_logit_range(fit, *rows[b])
    for half, attn in attention_layers(fit.model).items():
        row = attention_scalars(attn).iloc[0]  # UnitCrossAttention.scalars() of the one head
        scalars.append({"battery": plotting.label(b), "layer": half, **row[["a", "c", "alpha", "beta"]],
                        "logit_spread": spread[half]})
scalars = pd.DataFrame(scalars)
write_table(scalars, ctx.out_dir / "attention_scalars.csv")
put("logit_spread_max", scalars["logit_spread"].max())
table(scalars.rename(columns={"logit_spread": "largest logit spread"}),
      "The four scalars of each trained attention layer (case 0, first seed)", digits=3)

# %% [markdown]
# In the trained layers the logits of a row never spread by more than
# {glue:text}`logit_spread_max:.2f` (nats), so every row is close to uniform: each hidden unit
# reads close to the mean of the condition embedding, tilted towards its large or small values
# by the sign of $s_i$.
#
# :::{exercise}
# :label: ex-03-permutation
#
# Permute the 64 embedding units, $C_j \to C_{\pi(j)}$, for some permutation $\pi$. Show that the
# output $y_i$ of every hidden unit is unchanged, and say what that implies for reading the
# attention map column by column.
# :::
#
# :::{solution} ex-03-permutation
# :class: dropdown
#
# $y_i = \alpha \sum_j \operatorname{softmax}_j(C_j s_i)\, C_j + \beta$ is a sum over $j$ of a term that
# depends on $j$ only through $C_j$; reordering the terms of a sum does not change it. So the
# layer sees the *multiset* of embedding values, and a column of the map has no meaning of its
# own: which embedding unit sits in which column is arbitrary.
# :::
#
# ## The attention maps
#
# Below, the encoder (top) and decoder (bottom) maps of the {glue:text}`map_battery` generator
# (case 0, first seed) for real rows: the battery with the median SOH of its type at 5, 25 and
# 50 % SOC, then the batteries with the lowest and the highest SOH at 25 % SOC. Since the maps
# are nearly uniform ($1/64$ everywhere), the colour shows the relative departure from uniform,
# $64\, \mathrm{att}_{ij} - 1$: red where hidden unit $i$ (row) reads more than its share from
# embedding unit $j$ (column), blue where less. The encoder and the decoder have their own colour
# scales.

# %% tags=["hide-input"]
put("map_battery", plotting.label(MAP_BATTERY))
sweep = attention_sweep(fit0[MAP_BATTERY], frames[MAP_BATTERY])
fig, axes = plt.subplots(2, len(sweep), figsize=(15.0, 6.4), sharex=True, sharey=True, layout="constrained")
for row, half in enumerate(("encoder", "decoder")):
    limit = max(np.abs(attention_departure(entry[half])).max() for entry in sweep)  # one colour scale per layer
    for col, entry in enumerate(sweep):
        ax = axes[row, col]
        im = ax.imshow(attention_departure(entry[half]), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.grid(False)
        if row == 0:
            ax.set_title(f"SOC {entry['soc_pct']} %, SOH {entry['soh']:.3f}", fontsize=9)
        ax.set(xlabel="embedding unit j" if row == 1 else "", ylabel=f"{half}\nhidden unit i" if col == 0 else "")
    fig.colorbar(im, ax=axes[row, :], shrink=0.9, label=f"{half}: 64 att - 1");

# %% tags=["hide-cell"]
slope_spread = {}
for half, slopes in attention_slopes(fit0[MAP_BATTERY], *rows[MAP_BATTERY]).items():  # s_i = a h_i + c, (n, 64)
    rms = np.sqrt((slopes**2).mean())
    slope_spread[half] = {"units": np.mean(slopes.std(axis=1) / np.sqrt((slopes**2).mean(axis=1))),  # per data row
                          "rows": slopes.std(axis=0).mean() / rms}  # per hidden unit
for half, sp in slope_spread.items():
    # under a 10 % spread across the units the rows of the map look alike: vertical stripes
    put_many({f"{half}_slope_rows_text": readable(sp["rows"]), f"{half}_slope_units_pct": percent(sp["units"], 1), f"{half}_slope_rows_pct": percent(sp["rows"]),
              f"{half}_pattern": "a set of vertical stripes" if sp["units"] < 0.1 else "a plaid"})

# %% [markdown]
# To first order in $s_i$, $64\,\mathrm{att}_{ij} - 1 \approx s_i (C_j - \bar{C})$: the map is
# close to the outer product of a row profile (the slopes $s_i$, set by the hidden units) and a
# column profile (the embedding values around their mean, set by the condition). The rows of
# the map differ only as much as the slopes differ across the hidden units: in the
# {glue:text}`map_battery` generator by {glue:text}`encoder_slope_units_pct` in the
# encoder, whose map is {glue:text}`encoder_pattern`, and by {glue:text}`decoder_slope_units_pct`
# in the decoder, whose map is {glue:text}`decoder_pattern` (standard deviation over the units
# relative to their root mean square, averaged over the data rows). The decoder's hidden units
# are computed from $z$ alone, at a posterior mean that carries no information (chapter 2), so
# its slopes are also the same for every data row (they vary between rows by
# {glue:text}`decoder_slope_rows_text` of their root mean square, the encoder's by
# {glue:text}`encoder_slope_rows_pct`): its row profile is fixed. Columns of embedding units
# that the ReLU switches off ($C_j = 0$) share one colour. Moving the condition changes $C$, and
# so the column pattern and its contrast.
#
# For every battery type, the table summarises the maps of all rows (case 0, first seed): the
# mean row entropy relative to the uniform's $\log 64$, the mean largest weight times 64 (1 is
# uniform), the mean departure from uniform $|64\, \mathrm{att}_{ij} - 1|$ (0 is uniform), the
# share of that departure carried by its first singular value (1: an exact outer product), and
# how much the map moves (mean $|64\, \Delta\mathrm{att}|$) when
# SOC goes from 5 to 50 % at the median SOH, and when SOH goes from the lowest to the highest
# at 25 % SOC.

# %% tags=["hide-input"]
stats = []
for b, fit in fit0.items():
    maps = fit.attention(*rows[b])
    shifts = attention_sweep_shifts(attention_sweep(fit, frames[b]))  # SOC 5 -> 50 %, SOH lowest -> highest
    for half in ("encoder", "decoder"):
        stats.append({"battery": plotting.label(b), "layer": half, **attention_stats(maps[half]), **shifts[half]})
stats = pd.DataFrame(stats)
write_table(stats, ctx.out_dir / "attention_stats.csv")
dec = stats[stats.layer == "decoder"]
put_many({"entropy_gap_text": readable((1 - stats["entropy_ratio"]).abs().max()),
          "max_weight_max": stats["max_weight_x_tk"].max(), "rank1_gap_text": readable(1 - stats["rank1_share"].min()),
          "n_soc_dominates": (dec["change_soc"] > dec["change_soh"]).sum()})
table(stats.rename(columns={"entropy_ratio": "entropy / log 64", "max_weight_x_tk": "mean largest weight x 64",
                            "deviation": "mean |64 att - 1|", "rank1_share": "rank-one share",
                            "change_soc": "moves, SOC 5 to 50 %", "change_soh": "moves, SOH low to high"}),
      "Summary of the attention maps of every row (case 0, first seed)", digits=4)

# %% tags=["nbval-check-output", "hide-cell"]
print(f"every map within 1 % of the uniform entropy: {bool(stats['entropy_ratio'].min() > 0.99)}")
print(f"departure from uniform is rank one to 95 % in every layer: {bool(stats['rank1_share'].min() > 0.95)}")

# %% [markdown]
# In every layer the mean row entropy is within {glue:text}`entropy_gap_text` (relative) of the
# uniform $\log 64$, a row's largest weight is on average at most
# {glue:text}`max_weight_max:.2f` times the uniform $1/64$, and the share of each departure from
# uniform carried by one outer product is within {glue:text}`rank1_gap_text` of 1. In the decoder
# the map moves more from 5 to 50 % SOC than from the lowest to the highest SOH for
# {glue:text}`n_soc_dominates:.0f` of the {glue:text}`n_batteries:.0f` battery types. Reading the maps as hidden units that
# each attend to particular condition units would over-interpret them: the trained attention is
# an almost uniform average of the embedding with a rank-one tilt.
#
# ## Ablation: concatenating the condition
#
# If the attention is so close to an average, does it matter? The ablation
# `CVAEConfig(conditioning="concat")` removes both attention layers and concatenates the
# condition embedding $C$ to the hidden units instead: $[h, C]$ (128 units) feeds $z_\mu$ and
# $z_{\log\sigma^2}$ in the encoder and the output layer in the decoder, the textbook CVAE
# {cite}`sohn2015learning`. Everything else (data, scaling, training, seeds, the forests,
# the generation methods) is the same. Both grids run the eight cases on all four battery types;
# Phase 2 follows the paper (sampling for the interpolation cases 0-3, latent-space scaling for
# the extrapolation cases 4-7), MAPE is averaged over the unseen SOC levels of a case, and the
# error bars span the seeds.

# %% tags=["hide-input"]
put_many({f"n_params_{name}": count_parameters(CVAE(cfg)) for name, cfg in configs.items()})
results = pd.concat([run.results.assign(conditioning=name) for name, run in runs.items()], ignore_index=True)
results = results[results.method.isin(PAPER_METHODS)]
write_table(results, ctx.out_dir / "ablation_results.csv")
cells = pd.concat([summarize(phase2_rule(run.results)).assign(conditioning=name) for name, run in runs.items()],
                  ignore_index=True)
phase1 = summarize(attn_run.results[attn_run.results.method == "phase1"])
write_table(cells, ctx.out_dir / "ablation_cells.csv")
fig, axes = plt.subplots(1, 4, figsize=(14.0, 3.8), sharey=False)
width = 0.38
for ax, b in zip(axes, BATTERIES):
    for k, (name, color) in enumerate((("attention", plotting.PALETTE[b]), ("concat", "0.6"))):
        d = cells[(cells.battery == b) & (cells.conditioning == name)].set_index("case").loc[list(CASES)]
        xs = np.arange(len(CASES)) + (k - 0.5) * width
        ax.bar(xs, d["mape"], width, color=color, label=name)
        ax.errorbar(xs, d["mape"], yerr=[d["mape"] - d["mape_seed_min"], d["mape_seed_max"] - d["mape"]],
                    fmt="none", ecolor="0.2", lw=0.8, capsize=2)
    p1 = phase1[phase1.battery == b].set_index("case").loc[list(CASES)]
    ax.plot(np.arange(len(CASES)), p1["mape"], "k_", ms=12, mew=1.5, label="Phase 1")
    ax.axhline(CLAIM_MAPE, color="0.3", ls=":", lw=1)
    ax.set(title=plotting.label(b), xticks=np.arange(len(CASES)), xlabel="case", ylabel="Phase-2 MAPE (%)" if ax is axes[0] else "")
axes[0].legend(fontsize=8);

# %% tags=["nbval-check-output", "hide-cell"]
wide = cells.pivot_table(index=["battery", "kind", "case"], columns="conditioning", values="mape")
concat_better = wide["concat"] < wide["attention"]  # per battery x case cell
means = cells.groupby("conditioning")["mape"].mean()
put_many({f"ablation_{name}_mean": value for name, value in means.items()})
put_many({"ablation_concat_better": concat_better.sum(), "ablation_cells": len(wide)})
kinds = pd.concat([kind_means(phase2_rule(run.results)).assign(conditioning=name) for name, run in runs.items()])
ablation = kinds.pivot_table(index=["battery", "kind"], columns="conditioning", values="mape").reindex(
    pd.MultiIndex.from_product([list(BATTERIES), ["interpolation", "extrapolation"]]))
ablation.index = [f"{plotting.label(b)}, {k}" for b, k in ablation.index]
write_table(ablation.reset_index(names="battery_kind"), ctx.out_dir / "ablation_summary.csv")
print("mean Phase-2 MAPE (%) over the cases of each kind (paper's Phase 2):")
print(ablation.round(2).to_string())

# %% tags=["hide-input"]
table(ablation.reset_index(names="battery type, kind of case").rename(
          columns={"attention": "attention (paper)", "concat": "concatenation"}),
      "Mean Phase-2 MAPE (%) over the cases of each kind, paper's Phase 2")

# %% tags=["hide-cell"]
final_kl = {name: np.array([f.history["kl"][-1] for f in run.models]) for name, run in runs.items()}
put_many({f"{name}_active_fits": (kl > ACTIVE_KL).sum() for name, kl in final_kl.items()})
put_many({"concat_kl_max": final_kl["concat"].max(), "n_fits": len(final_kl["concat"]), "active_kl": ACTIVE_KL})
by_kind = cells.groupby(["kind", "conditioning"])["mape"].mean().unstack()  # (kind, conditioning)
put_many({f"ablation_{name}_{kind[:6]}": value for (kind, name), value in by_kind.stack().items()})
per_kind = concat_better.groupby("kind").agg(["sum", "size"])  # cells where concatenation wins, cells
put_many({f"ablation_concat_better_{kind[:6]}": n for kind, n in per_kind["sum"].items()})
put_many({f"ablation_cells_{kind[:6]}": n for kind, n in per_kind["size"].items()})
gaps = (by_kind["attention"] - by_kind["concat"]).abs()  # points of MAPE, per kind
put_many({f"ablation_winner_{kind[:6]}": "concatenation" if row["concat"] < row["attention"] else "attention"
          for kind, row in by_kind.iterrows()})
put_many({f"ablation_gap_{kind[:6]}": gap for kind, gap in gaps.items()})
put("ablation_gap_kind", gaps.idxmax())
n_concat, n_attention = ((final_kl[name] > ACTIVE_KL).sum() for name in ("concat", "attention"))
put("concat_collapse", "collapses as well" if n_concat == 0
    else "does not collapse in any fit" if n_concat == len(final_kl["concat"]) else "does not always collapse")
put("concat_active_note", "A plausible reason: the condition reaches the layers that make the posterior mean and "
    "the output directly, not only through a near-uniform average." if n_concat > n_attention
    else "Concatenation does not make the code more used than attention.")
write_json({"profile": ctx.profile.name, "epochs": train.epochs, "seeds": list(ctx.profile.seeds),
            "forward_vs_naive": worst.to_dict(), "logit_spread_max": float(scalars["logit_spread"].max()),
            "mean_phase2_mape": means.to_dict(), "concat_better_cells": int(concat_better.sum()),
            "cells": int(len(wide)), "concat_kl_max": float(final_kl["concat"].max())}, ctx.out_dir / "summary.json");

# %% [markdown]
# With the paper's Phase 2, the mean MAPE over all {glue:text}`ablation_cells:.0f` battery x
# case cells is {glue:text}`ablation_attention_mean:.2f` % with attention and
# {glue:text}`ablation_concat_mean:.2f` % with concatenation; concatenation is better in
# {glue:text}`ablation_concat_better:.0f` of the {glue:text}`ablation_cells:.0f` cells. By kind,
# attention against concatenation: {glue:text}`ablation_attention_interp:.2f` % against
# {glue:text}`ablation_concat_interp:.2f` % in interpolation
# ({glue:text}`ablation_concat_better_interp:.0f` of {glue:text}`ablation_cells_interp:.0f` cells better with
# concatenation), and
# {glue:text}`ablation_attention_extrap:.2f` % against {glue:text}`ablation_concat_extrap:.2f` % in
# extrapolation ({glue:text}`ablation_concat_better_extrap:.0f` of {glue:text}`ablation_cells_extrap:.0f`). The concatenating model
# has {glue:text}`n_params_concat:,.0f` parameters against {glue:text}`n_params_attention:,.0f`.
# Its latent space {glue:text}`concat_collapse`: {glue:text}`concat_active_fits:.0f` of its
# {glue:text}`n_fits:.0f` fits end with a KL term above {glue:text}`active_kl:.2f` nats (largest
# {glue:text}`concat_kl_max:.2f`), against {glue:text}`attention_active_fits:.0f` of the
# attention fits. {glue:text}`concat_active_note` By the mean MAPE over the cells of each kind,
# {glue:text}`ablation_winner_interp` is better in interpolation (by
# {glue:text}`ablation_gap_interp:.2f` points) and {glue:text}`ablation_winner_extrap` in
# extrapolation (by {glue:text}`ablation_gap_extrap:.2f` points): the two differ most in
# {glue:text}`ablation_gap_kind`.
#
# ## Summary
#
# - The 64 embedding units are 64 tokens of size 1. With size-1 tokens the attention logits are
#   $C_j (a h_i + c)$ plus row constants, and the output is
#   $\alpha \sum_j \mathrm{att}_{ij} C_j + \beta$: four scalars per head govern a
#   {glue:text}`n_params_layer:,.0f`-parameter layer. battgen's factorised `forward` equals the
#   textbook `forward_naive` to {glue:text}`check_output_max_text` on fresh and trained layers.
# - Each hidden unit reads a soft mean/maximum/minimum of the condition embedding's values; the
#   hidden unit only sets the temperature. In the trained generators the logits spread by at
#   most {glue:text}`logit_spread_max:.2f`, so the 64 x 64 maps are close to uniform (a row's
#   largest weight is on average at most {glue:text}`max_weight_max:.2f` times $1/64$), and their departure from uniform is an outer
#   product (its rank-one share within {glue:text}`rank1_gap_text` of 1): in the
#   {glue:text}`map_battery` generator {glue:text}`encoder_pattern` in the encoder and
#   {glue:text}`decoder_pattern` in the decoder, whose column pattern moves with the condition.
# - Replacing the attention by concatenation gives a mean Phase-2 MAPE of
#   {glue:text}`ablation_concat_mean:.2f` % against {glue:text}`ablation_attention_mean:.2f` % over
#   the {glue:text}`ablation_cells:.0f` battery x case cells, better in
#   {glue:text}`ablation_concat_better:.0f` of them: {glue:text}`ablation_concat_interp:.2f` %
#   against {glue:text}`ablation_attention_interp:.2f` % in interpolation,
#   {glue:text}`ablation_concat_extrap:.2f` % against {glue:text}`ablation_attention_extrap:.2f` %
#   in extrapolation.
