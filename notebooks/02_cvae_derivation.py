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
# # The conditional variational autoencoder
#
# ## Overview
#
# The paper generates the pulse response U1-U21 of a battery at an SOC level that was never
# measured with a conditional variational autoencoder (CVAE) {cite}`tao2024generative`. This
# chapter derives the objective it trains, from the evidence lower bound (ELBO) of the
# variational autoencoder {cite}`kingma2014auto` to its conditional form
# {cite}`sohn2015learning`, with the reparameterisation trick that makes it trainable; it reads
# the paper's loss, `0.5 * 21 * MSE + 0.5 * KL`, as such an objective and says what the 21 and
# the two weights mean, showing the code of `battgen.model` that implements each piece. Then it
# trains the generator of case 0 (measured at 5, 15, 25, 35, 45 and 50 % SOC) for every battery
# type and looks at what training does: the curves of the reconstruction and KL terms, the
# collapse of the latent space that those curves reveal, and the reconstruction of U1 at 35 %
# and 50 % SOC and of U1-U21 at every measured level (the paper's Fig. 3a and 3b).
#
# On the way it draws the model with the shape of every tensor, derives the ELBO and the KL
# divergence of two Gaussians step by step, and explains the collapse with a one-dimensional toy
# that can be solved by hand. Exercises (with solutions folded away) close the derivations.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup
#
# `battgen.book.setup_chapter` resolves the profile in one place: the paper's 50 epochs for the
# `full` profile, a few for `smoke` (whose numbers only check that the chapter runs). The
# generators of this chapter are the paper's CVAE on the split of case 0
# (`battgen.evaluation.split.paper_split`), one per battery type and seed, all trained by one
# `battgen.evaluation.generators.fit_models` call (one stack; each fit keeps its own seed, data
# and optimiser state), the same fits as the case-0 generators of chapters 3 and 4.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from battgen import plotting
from battgen.book import percent, put, put_many, readable, setup_chapter, source_block, table
from battgen.config import TrainConfig
from battgen.data import BATTERIES, FEATURES
from battgen.diagnostics import (between_battery_spread_mv, decoder_variance, feature_errors, latent_usage,
                                 reconstruct, residual_spectrum)
from battgen.evaluation.generators import GeneratorSettings, fit_models
from battgen.evaluation.split import paper_split
from battgen.io import write_json, write_table
from battgen.model import CVAE, CVAEConfig, count_parameters, loss_terms
from battgen.protocol import CASES, soc_percent

ctx = setup_chapter("02_cvae_derivation", profile=profile, data_dir=data_dir, results_dir=results_dir, seeds=seeds)
CASE = 0  # measured at 5, 15, 25, 35, 45 and 50 % SOC
config, train = CVAEConfig(), ctx.profile.train_config()
frames = ctx.frames(pulse_width_s=5)

# %% tags=["hide-input"]
plan = [(b, seed) for seed in ctx.profile.seeds for b in BATTERIES]
requests = [(paper_split(frames[b], CASE, seed), "paper") for b, seed in plan]
fits = dict(zip(plan, fit_models(requests, GeneratorSettings(config, train), progress)))
first = ctx.profile.seeds[0]
rows = {b: (df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)) for b, df in frames.items()}
put_many({"epochs": train.epochs, "n_seeds": len(ctx.profile.seeds), "n_params": count_parameters(CVAE(config)),
          "batch_size": train.batch_size, "lr": train.lr, "case": CASE})
paper_epochs = TrainConfig().epochs  # the defaults are the paper's settings
put("epochs_phrase", f"{train.epochs} epochs, as in the paper" if train.epochs == paper_epochs
    else f"{train.epochs} epochs (the paper trains for {paper_epochs})")
print(f"profile {ctx.profile.name}: {train.epochs} epochs, seeds {list(ctx.profile.seeds)}, case {CASE} "
      f"(training SOC {', '.join(map(str, CASES[CASE]))} %), {len(fits)} generators")

# %% [markdown]
# ## The model at a glance
#
# Every box below is a tensor of the paper's CVAE with its shape ($B$ rows of a mini-batch); the
# arrows are the layers. The encoder (top) maps the 21 scaled voltages $x$ and the condition
# $c = [\mathrm{SOC}, \mathrm{SOH}]$ to the mean and log-variance of a two-dimensional code $z$;
# the decoder (bottom) maps $z$ and $c$ back to 21 voltages. Both halves read the condition
# through its 64-unit embedding $C$ with a cross-attention layer (chapter 3). The figure is drawn
# by `battgen.plotting.plot_architecture` from the same `CVAEConfig` the chapter trains, so its
# sizes are the model's.

# %% tags=["hide-input"]
plotting.plot_architecture(config);

# %% [markdown]
# ## From the evidence lower bound to the conditional one
#
# ### The variational autoencoder
#
# A latent-variable model explains a sample $x$ (here the 21 scaled voltages) by a code $z$ drawn
# from a prior $p(z)$ and a decoder $p_\theta(x \mid z)$. Its likelihood
# $p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz$ cannot be computed, so an encoder
# $q_\phi(z \mid x)$ approximates the posterior $p_\theta(z \mid x)$. The bound follows in four
# steps, for any such $q_\phi$.
#
# **Step 1.** $\log p_\theta(x)$ does not depend on $z$, so it equals its own average over any
# distribution of $z$:
# $\log p_\theta(x) = \mathbb{E}_{q_\phi(z \mid x)}\big[\log p_\theta(x)\big]$.
#
# **Step 2.** Bayes' rule, $p_\theta(x) = p_\theta(x, z) / p_\theta(z \mid x)$, holds for every $z$:
#
# $$
# \log p_\theta(x) = \mathbb{E}_{q_\phi}\big[\log p_\theta(x, z) - \log p_\theta(z \mid x)\big].
# $$
#
# **Step 3.** Add and subtract $\log q_\phi(z \mid x)$ inside the average and regroup:
#
# $$
# \log p_\theta(x)
#   = \underbrace{\mathbb{E}_{q_\phi}\Big[\log \frac{p_\theta(x, z)}{q_\phi(z \mid x)}\Big]}_{\mathcal{L}(\theta, \phi; x)}
#   + \underbrace{\mathbb{E}_{q_\phi}\Big[\log \frac{q_\phi(z \mid x)}{p_\theta(z \mid x)}\Big]}_{\mathrm{KL}(q_\phi(z \mid x)\,\|\,p_\theta(z \mid x))} .
# $$
#
# **Step 4.** Write the joint as $p_\theta(x, z) = p_\theta(x \mid z)\, p(z)$ and split the
# logarithm of the first term:
#
# $$
# \mathcal{L}(\theta, \phi; x)
#   = \mathbb{E}_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]
#     - \mathrm{KL}\big(q_\phi(z \mid x)\,\|\,p(z)\big).
# $$
#
# A KL divergence is never negative (Jensen's inequality for the concave logarithm:
# $-\mathrm{KL}(q \,\|\, p) = \mathbb{E}_q[\log (p/q)] \le \log \mathbb{E}_q[p/q] = \log 1 = 0$), so
# the second term of step 3 is at least zero and $\mathcal{L} \le \log p_\theta(x)$:
# $\mathcal{L}$ is the evidence lower bound (ELBO), tight when the encoder matches the true
# posterior. Maximising it over
# $\theta$ and $\phi$ fits the decoder and the encoder together {cite}`kingma2014auto`. The first
# term rewards reconstructing $x$ from its code; the second keeps the codes close to the prior,
# and it is what lets one *generate* by decoding draws from $p(z)$.
#
# ### The conditional ELBO
#
# A CVAE conditions every distribution on an observed $c$ {cite}`sohn2015learning`; here
# $c = [\mathrm{SOC}, \mathrm{SOH}]$. The same identity, conditioned on $c$, gives
#
# $$
# \log p_\theta(x \mid c) \;\ge\;
#   \mathbb{E}_{q_\phi(z \mid x, c)}\big[\log p_\theta(x \mid z, c)\big]
#   - \mathrm{KL}\big(q_\phi(z \mid x, c)\,\|\,p(z \mid c)\big).
# $$
#
# Sohn et al. learn the prior $p(z \mid c)$ with a network; the paper, and battgen, fix it to
# $\mathcal{N}(0, I)$ for every condition, so generation at a new condition decodes
# $z \sim \mathcal{N}(0, I)$ at that condition. With a Gaussian encoder
# $q_\phi(z \mid x, c) = \mathcal{N}(\mu, \operatorname{diag} \sigma^2)$ (the network outputs
# $\mu$ and $\log \sigma^2$, two numbers each since the latent space has two dimensions) the
# KL term has a closed form. Both distributions factorise over the $L$ coordinates, so the KL
# divergence is a sum of one-dimensional ones; for one coordinate, with $q = \mathcal{N}(\mu, \sigma^2)$
# and $p = \mathcal{N}(0, 1)$:
#
# 1. the log-densities are $\log q(z) = -\tfrac12 \log(2\pi\sigma^2) - \frac{(z - \mu)^2}{2\sigma^2}$ and
#    $\log p(z) = -\tfrac12 \log(2\pi) - \frac{z^2}{2}$;
# 2. their difference is $\log q(z) - \log p(z) = -\tfrac12 \log \sigma^2 - \frac{(z - \mu)^2}{2\sigma^2} + \frac{z^2}{2}$;
# 3. under $z \sim q$, $\mathbb{E}[(z - \mu)^2] = \sigma^2$ and $\mathbb{E}[z^2] = \mu^2 + \sigma^2$;
# 4. so $\mathrm{KL}(q \,\|\, p) = \mathbb{E}_q[\log q - \log p] = -\tfrac12 \log \sigma^2 - \tfrac12 + \tfrac12(\mu^2 + \sigma^2)$.
#
# Summed over the coordinates,
#
# $$
# \mathrm{KL}\big(\mathcal{N}(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal{N}(0, I)\big)
#   = \tfrac{1}{2} \sum_{l=1}^{L} \big(\mu_l^2 + \sigma_l^2 - \log \sigma_l^2 - 1\big),
# $$
#
# which is zero only when $\mu = 0$ and $\sigma = 1$: when the code carries no information about
# the sample. A check by simulation: the average of $\log q(z) - \log p(z)$ over draws from $q$
# must approach the closed form.

# %% tags=["teach"]
rng = np.random.default_rng(0)
mu, sigma = np.array([0.8, -0.3]), np.array([0.5, 1.4])  # one two-dimensional posterior
z = mu + sigma * rng.standard_normal((200_000, 2))  # draws from q, (200000, 2)
log_q = (-0.5 * np.log(2 * np.pi * sigma**2) - (z - mu) ** 2 / (2 * sigma**2)).sum(axis=1)  # (200000,)
log_p = (-0.5 * np.log(2 * np.pi) - z**2 / 2).sum(axis=1)  # (200000,)
closed_form = 0.5 * np.sum(mu**2 + sigma**2 - np.log(sigma**2) - 1)
print(f"Monte Carlo: {np.mean(log_q - log_p):.4f} nats; closed form: {closed_form:.4f} nats")

# %% [markdown]
# ### The reparameterisation trick
#
# The reconstruction term is an expectation over $z \sim q_\phi$, whose parameters are being
# learnt; a sample drawn from it has no gradient with respect to $\phi$. Writing the draw as a
# deterministic function of the encoder's outputs and independent noise,
#
# $$
# z = \mu_\phi(x, c) + \sigma_\phi(x, c) \odot \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I),
# $$
#
# moves the randomness out of the parameters: $\nabla_\phi \mathbb{E}_{\varepsilon}[f(z)] =
# \mathbb{E}_{\varepsilon}[\nabla_\phi f(\mu_\phi + \sigma_\phi \odot \varepsilon)]$, estimated
# with one $\varepsilon$ per sample and step {cite}`kingma2014auto`. In `battgen.model` this is
# one line (the trainer draws the noise in advance from each fit's own seeded generator and
# applies the same formula):

# %% tags=["remove-input"]
display(Markdown(source_block(CVAE.reparameterize)))

# %% [markdown]
# :::{exercise}
# :label: ex-02-kl-general
#
# Repeat steps 1-4 for two arbitrary one-dimensional Gaussians and show that
# $\mathrm{KL}\big(\mathcal{N}(\mu_1, \sigma_1^2)\,\|\,\mathcal{N}(\mu_2, \sigma_2^2)\big)
# = \log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1 - \mu_2)^2}{2\sigma_2^2} - \frac12$.
# Check that it reduces to the formula above for $\mu_2 = 0$, $\sigma_2 = 1$.
# :::
#
# :::{solution} ex-02-kl-general
# :class: dropdown
#
# $\log q - \log p = \log\frac{\sigma_2}{\sigma_1} - \frac{(z - \mu_1)^2}{2\sigma_1^2} + \frac{(z - \mu_2)^2}{2\sigma_2^2}$.
# Under $z \sim \mathcal{N}(\mu_1, \sigma_1^2)$, $\mathbb{E}[(z - \mu_1)^2] = \sigma_1^2$ and
# $\mathbb{E}[(z - \mu_2)^2] = \sigma_1^2 + (\mu_1 - \mu_2)^2$ (variance plus squared bias), which gives
# the result. With $\mu_2 = 0$, $\sigma_2 = 1$: $-\log\sigma_1 + \frac{\sigma_1^2 + \mu_1^2}{2} - \frac12
# = \frac12(\mu_1^2 + \sigma_1^2 - \log\sigma_1^2 - 1)$.
# :::
#
# :::{exercise}
# :label: ex-02-tight
#
# When is the ELBO equal to $\log p_\theta(x)$? Why can a Gaussian encoder
# $q_\phi(z \mid x) = \mathcal{N}(\mu, \operatorname{diag}\sigma^2)$ not always reach that point?
# :::
#
# :::{solution} ex-02-tight
# :class: dropdown
#
# By step 3, exactly when $\mathrm{KL}(q_\phi(z \mid x)\,\|\,p_\theta(z \mid x)) = 0$, that is when the
# encoder's distribution is the true posterior. A Gaussian with a diagonal covariance can only
# match a posterior of that family; a multimodal or correlated posterior leaves a gap, and
# maximising the ELBO then also pushes the decoder towards models whose posterior is easy to
# approximate.
# :::

# %% [markdown]
# ## The paper's loss and its weights
#
# The authors' Keras code minimises, averaged over a mini-batch,
#
# $$
# \ell = w_\text{recon} \cdot F \cdot \mathrm{MSE}(x, \hat{x}) + w_\text{KL} \cdot \mathrm{KL},
# \qquad F = 21,\quad w_\text{recon} = w_\text{KL} = 0.5 .
# $$
#
# **The 21.** Keras' `mse` averages the squared error over the last axis, the 21 features. The
# log-likelihood of 21 features that are independent given $z$ and $c$ is a *sum* over the
# features, so multiplying the mean by $F = 21$ (as the Keras VAE example multiplies its
# cross-entropy by `original_dim`; the authors even kept the name `xent_loss`) turns it back
# into the sum of squared errors: $F \cdot \mathrm{MSE} = \lVert x - \hat{x} \rVert^2$. Without
# it, the reconstruction would be under-weighted 21-fold against the KL term.
#
# **The weights.** With a Gaussian decoder $p_\theta(x \mid z, c) = \mathcal{N}(\hat{x}, s^2 I)$,
# $-\log p_\theta(x \mid z, c) = \lVert x - \hat{x} \rVert^2 / (2 s^2) + \text{const}$, so
#
# $$
# \ell = w_\text{KL}\left(\frac{\lVert x - \hat{x}\rVert^2}{2 s^2} + \mathrm{KL}\right),
# \qquad s^2 = \frac{w_\text{KL}}{2\, w_\text{recon}} ,
# $$
#
# which is $w_\text{KL}$ times the negative conditional ELBO (up to a constant). Only the
# *ratio* of the weights matters: it fixes the noise variance the decoder assumes,
# $s^2$ = {glue:text}`sigma2:.2f` for the paper's 0.5 and 0.5, in the units of the scaled
# features (each MinMax-scaled to [0, 1] on the training rows). The common factor rescales the
# gradients, which Adam all but cancels. So the paper's loss is, up to that factor and a
# constant, the negative conditional ELBO of a decoder whose noise has a standard deviation of {glue:text}`sigma_std:.2f`, about
# {glue:text}`sigma_pct:.0f` % of each feature's whole training range. Equivalently, it is a
# $\beta$-VAE with $\beta = 1$ at that noise level; a smaller $s^2$ would weight the
# reconstruction more. The next sections show what this choice does.
#
# The loss battgen trains with is `battgen.loss.loss_terms`, below: the trainer
# (`battgen.train.fit_generators`) records exactly this function on every mini-batch of every fit,
# with a weight $w$ per row that is 1 for a real row and 0 for the padding of a fit whose last
# mini-batch is short, so that the mean runs over the real rows only. It steps along the
# gradient of this function written out in closed form (`battgen.loss.loss_grads`, because
# automatic differentiation of the loss alone costs more than the network's whole step). The
# tests check that gradient against automatic differentiation of `loss_terms`, and every
# training run first checks it against finite differences of `loss_terms` and stops if they
# differ. The trainer runs in NumPy, so the same function takes NumPy arrays as well as torch tensors. `CVAE.loss` is the same function with every row weighted 1. Its first branch is the paper's loss; the second (a KL
# weight `beta` and a floor of `free_bits` nats) serves the improved generators of chapter 6 and
# is never taken here. The encoder and decoder follow.

# %% tags=["remove-input"]
s2 = decoder_variance(config)
put_many({"sigma2": s2, "sigma_std": np.sqrt(s2), "sigma_pct": 100 * np.sqrt(s2)})
display(Markdown(source_block(loss_terms)))

# %% tags=["remove-input"]
display(Markdown(source_block(CVAE.encode)))
display(Markdown(source_block(CVAE.decode)))

# %% [markdown]
# The condition $[\mathrm{SOC}, \mathrm{SOH}]$ enters both halves through the same embedding
# $C = \mathrm{ReLU}(W c + b)$ of 64 units, and each half mixes it into its 64 hidden units with
# a cross-attention layer (chapter 3 takes it apart). The whole model has
# {glue:text}`n_params:,.0f` parameters.
#
# ## Training curves
#
# Each generator is trained on the rows of case {glue:text}`case:.0f` (all batteries of one type
# at the measured SOC levels) for {glue:text}`epochs_phrase`, on mini-batches of
# {glue:text}`batch_size:.0f` with Adam at a learning rate of {glue:text}`lr:g` (the paper's
# settings). Below, the per-epoch means of the two terms of the loss, the reconstruction
# $F \cdot \mathrm{MSE}$ and the KL divergence (log scale), one line per battery type (the band
# spans the seeds when there are several).

# %% tags=["hide-input"]
history = pd.concat(
    [pd.DataFrame(fit.history).assign(battery=b, seed=seed, epoch=np.arange(1, train.epochs + 1))
     for (b, seed), fit in fits.items()],
    ignore_index=True,
)
write_table(history, ctx.out_dir / "training_history.csv")
fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0))
for ax, term, title in ((axes[0], "recon", "reconstruction term $F \\cdot$ MSE"), (axes[1], "kl", "KL term (nats)")):
    sns.lineplot(data=history, x="epoch", y=term, errorbar=("pi", 100), ax=ax, **plotting.hue_battery())
    plotting.relabel_legend(ax)
    ax.set(yscale="log", xlabel="epoch", ylabel=term, title=title)
axes[1].get_legend().remove();

# %% tags=["nbval-check-output", "hide-cell"]
ends = history.sort_values("epoch").groupby(["battery", "seed"])[["recon", "kl"]].agg(["first", "last"])  # per fit
final_recon, final_kl = ends[("recon", "last")], ends[("kl", "last")]
put_many({"recon_final_min": final_recon.min(), "recon_final_max": final_recon.max(),
          "kl_final_max_text": readable(final_kl.max()), "kl_first_max_text": readable(ends[("kl", "first")].max())})
recon_fall = ends[("recon", "first")] / final_recon  # per fit: first-epoch over last-epoch mean
put_many({"recon_fall_min": recon_fall.min(), "recon_fall_max": recon_fall.max(),
          "kl_trend": "falls further" if (final_kl < ends[("kl", "first")]).all()
          else "does not fall in every fit"})
print(f"after {train.epochs} epochs, over all {len(fits)} fits:")
print(f"  reconstruction term F*MSE: {final_recon.min():.3f} to {final_recon.max():.3f}")
print(f"  KL term below 1e-3 nats in every fit: {bool(final_kl.max() < 1e-3)}")

# %% [markdown]
# From the first to the last epoch the reconstruction term falls by a factor of
# {glue:text}`recon_fall_min:.2f` to {glue:text}`recon_fall_max:.2f` (over the fits) and ends
# between {glue:text}`recon_final_min:.3f` and {glue:text}`recon_final_max:.3f` (a sum over 21 scaled
# features). The KL term is small from the start (at most {glue:text}`kl_first_max_text` nats,
# averaged over the first epoch: the initial encoder outputs are close to the prior) and
# {glue:text}`kl_trend`: after the last epoch it is at most
# {glue:text}`kl_final_max_text` nats in every fit. A KL divergence of practically zero means
# that the encoder's posterior $q_\phi(z \mid x, c)$ is the prior $\mathcal{N}(0, I)$ for every
# sample: the code $z$ carries no information about $x$.
#
# ## The latent space collapses
#
# The table checks this directly on every fit, using all the rows of its battery type: the
# KL divergence per sample, how much the posterior means move between samples, the posterior
# standard deviation (1 is the prior's), the number of *active* latent units (posterior mean
# varying with variance above 0.01), and how far any decoded voltage moves, in mV, when one
# latent coordinate sweeps from -3 to +3 (three prior standard deviations) at fixed condition.

# %% tags=["hide-input"]
usage = pd.DataFrame([{"battery": b, "seed": seed, **latent_usage(fit, *rows[b])}
                      for (b, seed), fit in fits.items()])
write_table(usage, ctx.out_dir / "latent_usage.csv")
table(usage.assign(battery=usage.battery.map(plotting.label)).rename(columns={
          "kl": "KL per sample (nats)", "mu_std_max": "spread of posterior means", "sigma_mean": "posterior std",
          "active_units": "active units", "decoder_range_mv": "decoded change, z from -3 to 3 (mV)"}),
      "Latent usage of every fit (all rows of its battery type)",
      formats={"KL per sample (nats)": "{:.1e}", "spread of posterior means": "{:.1e}", "posterior std": "{:.4f}"})

# %% tags=["nbval-check-output", "hide-cell"]
n_active = int(usage["active_units"].sum())
put_many({"decoder_range_mv_max": usage["decoder_range_mv"].max(),
          "sigma_mean_min": usage["sigma_mean"].min(),
          "active_units_text": "no latent unit is" if n_active == 0 else "1 latent unit is" if n_active == 1
          else f"{n_active} latent units are"})
# yardsticks in mV: how far the measured features move across the SOC levels (per type, the range over the
# levels of each feature's mean over the batteries; the smallest over features and types), and how much
# they differ between the batteries at one level (standard deviation, as in chapter 4)
soc_means = {b: df.groupby(soc_percent(df))[FEATURES].mean() for b, df in frames.items()}  # (levels, 21) each
soc_span = min((m.max() - m.min()).min() for m in soc_means.values())
between_mv = between_battery_spread_mv(frames.values())
put_many({"soc_span_mv_min": 1000 * soc_span, "between_battery_mv": between_mv,
          "z_vs_batteries_pct": percent(usage["decoder_range_mv"].max() / between_mv)})
print(f"active latent units over all {len(usage)} fits: {n_active}")
print(f"largest decoded change for z from -3 to +3: below 50 mV in every fit: {bool(usage['decoder_range_mv'].max() < 50)}")

# %% [markdown]
# In these fits {glue:text}`active_units_text` active, the posterior standard
# deviation is at least {glue:text}`sigma_mean_min:.4f` (the prior's is 1), and sweeping a latent
# coordinate over six prior standard deviations moves a decoded voltage by at most
# {glue:text}`decoder_range_mv_max:.1f` mV. For scale, the mean of every measured feature over the
# batteries of a type moves by at least {glue:text}`soc_span_mv_min:.0f` mV across the SOC levels,
# and the measured features of different batteries at one SOC level differ by
# {glue:text}`between_battery_mv:.0f` mV (standard deviation over the batteries of a type,
# averaged over features, levels and types). This is posterior collapse: the code carries no
# information about the pulse. The decoder still responds to it, over six prior standard deviations
# by at most {glue:text}`z_vs_batteries_pct` of the spread between batteries at one level, but that
# variation says nothing about the battery: what the generator knows of a pulse is its condition,
# $\hat{x} = f(\mathrm{SOC}, \mathrm{SOH})$ plus noise from the code. Decoding
# $z \sim \mathcal{N}(0, I)$ at a condition gives one voltage profile per
# $(\mathrm{SOC}, \mathrm{SOH})$, with at most that much spread; the reconstruction below is, to
# that precision, the same profile.
#
# **Why.** The loss weights decide whether a code is worth using. By the argument above, the
# decoder assumes noise of variance $s^2$ = {glue:text}`sigma2:.2f` on each scaled feature. A code is worth its KL cost
# only if it explains variation that the condition does not. For a decoder linear in $z$ the
# optimum is known in closed form {cite}`lucas2019dont`: a latent direction is used only where
# the data's variance exceeds $s^2$, and otherwise its posterior is the prior (the toy below
# shows it in one dimension). Here, what the condition leaves unexplained (the scaled features
# minus the decoder's output at $z = 0$) has a covariance whose *total* variance (its trace) is
# at most {glue:text}`resid_trace_max:.3f` and whose largest eigenvalue is at most
# {glue:text}`resid_top_max:.3f`; that eigenvalue exceeds $s^2$ in
# {glue:text}`resid_above_fits:.0f` of the {glue:text}`n_fits:.0f` fits. {glue:text}`collapse_verdict`
# A smaller $s^2$ (more weight on the reconstruction) would let the code
# carry the battery-to-battery variation that SOC and SOH do not explain.

# %% tags=["nbval-check-output", "hide-cell"]
spectra = {(b, seed): residual_spectrum(fit, *rows[b]) for (b, seed), fit in fits.items()}
resid = pd.DataFrame([{"battery": b, "seed": seed, "top_eigenvalue": ev[0], "trace": ev.sum()}
                      for (b, seed), ev in spectra.items()])
write_table(resid, ctx.out_dir / "residual_spectrum.csv")
put_many({"resid_top_max": resid["top_eigenvalue"].max(), "resid_trace_max": resid["trace"].max(),
          "resid_top_min": resid["top_eigenvalue"].min(), "n_fits": len(resid)})
n_above = int((resid["top_eigenvalue"] > s2).sum())  # fits where the linear theory says a code pays
put("resid_above_fits", n_above)
if n_above == 0:
    verdict = ("SOC and SOH already determine the pulse response to within a residual that is small against "
               "the noise the loss assumes, so the ELBO's optimum is to ignore the code. The collapse is not a "
               "training failure; it follows from the paper's loss weights.")
    summary = "the collapse is what the ELBO asks for"
elif n_active == 0:
    verdict = ("Where the residual exceeds the noise the loss assumes, the ELBO's optimum (for a decoder linear "
               "in the code) uses a latent direction, yet no unit is active: those fits have not reached that "
               "optimum, and their collapse does not follow from the loss weights alone.")
    summary = "in those fits the collapse is not what the ELBO asks for: they have not reached its optimum"
else:
    verdict = ("Where the residual exceeds the noise the loss assumes, the ELBO's optimum (for a decoder linear "
               "in the code) uses a latent direction, and some latent units are active.")
    summary = "in those fits the ELBO's optimum uses the code"
put_many({"collapse_verdict": verdict, "collapse_summary": summary})
n_above_001 = int((resid["top_eigenvalue"] > 0.01).sum())  # exercise ex-02-weights: s^2 = 0.01
put_many({"resid_above_001": n_above_001,
          "ex_weights_answer": "no: by the toy's criterion every fit would use a latent direction" if n_above_001 == len(resid)
          else "yes: by the toy's criterion no fit would use a latent direction" if n_above_001 == 0
          else "only for some fits: by the toy's criterion the others would use a latent direction"})
print(f"decoder variance s^2 = {s2:.2f}; residual variance below it in every fit: {bool(resid['trace'].max() < s2)}")

# %% [markdown]
# ### A one-dimensional toy of posterior collapse
#
# Strip the model down to one dimension: data $x \sim \mathcal{N}(0, v)$ and no condition, a prior
# $p(z) = \mathcal{N}(0, 1)$, a linear decoder $p(x \mid z) = \mathcal{N}(w z, s^2)$ whose noise
# variance $s^2$ is fixed (as the loss weights fix it above), and a linear Gaussian encoder
# $q(z \mid x) = \mathcal{N}(a x, \tau^2)$. Every expectation in the ELBO is then a closed form;
# averaged over the data,
#
# $$
# \mathcal{L}(w, a, \tau) = -\tfrac12 \log(2\pi s^2)
#   - \frac{(1 - w a)^2\, v + w^2 \tau^2}{2 s^2}
#   - \tfrac12\big(a^2 v + \tau^2 - \log\tau^2 - 1\big),
# $$
#
# the reconstruction term (with $z = a x + \tau\varepsilon$) minus the KL term of the Gaussian
# formula above. The model's marginal is $p(x) = \mathcal{N}(0, w^2 + s^2)$: its likelihood is
# largest at $w^2 = v - s^2$ when $v > s^2$, and at $w = 0$ otherwise. Its posterior is Gaussian,
# so the encoder can match it and the ELBO reaches that optimum, where the KL term is
# $\tfrac12 \max\big(0, \log(v / s^2)\big)$. **When the data vary less than the noise the decoder
# assumes, the best decoder ignores $z$ ($w = 0$), the best encoder returns the prior
# ($a = 0$, $\tau = 1$), and the KL term is zero**: posterior collapse, with nothing going wrong in
# training. The code below maximises this ELBO by gradient ascent for a range of data variances
# at the paper's $s^2$, all at once.

# %% tags=["teach"]
def toy_elbo(w, a, log_tau2, v, s2):
    """ELBO and KL term of the one-dimensional linear VAE, averaged over x ~ N(0, v) (closed form)."""
    tau2 = log_tau2.exp()
    recon = -0.5 * np.log(2 * np.pi * s2) - ((1 - w * a) ** 2 * v + w**2 * tau2) / (2 * s2)
    kl = 0.5 * (a**2 * v + tau2 - log_tau2 - 1)
    return recon - kl, kl


torch.manual_seed(0)
v = s2 * torch.linspace(0.1, 3.0, 30)  # data variances, (30,)
w, a = torch.full_like(v, 0.5).requires_grad_(), torch.full_like(v, 0.5).requires_grad_()  # (30,) each
log_tau2 = torch.zeros_like(v).requires_grad_()  # (30,)
optimiser = torch.optim.Adam([w, a, log_tau2], lr=0.05)
for step in range(3000):
    elbo, kl = toy_elbo(w, a, log_tau2, v, s2)  # (30,), (30,)
    optimiser.zero_grad()
    (-elbo.sum()).backward()
    optimiser.step()
w_best = np.sqrt(np.clip(v.numpy() - s2, 0, None))  # closed form, (30,)
kl_best = 0.5 * np.log(np.clip(v.numpy() / s2, 1, None))  # (30,)
print(f"largest gap to the closed form: |w| {np.abs(np.abs(w.detach().numpy()) - w_best).max():.3f}, "
      f"KL {np.abs(kl.detach().numpy() - kl_best).max():.3f} nats")

# %% tags=["hide-input"]
ratio = v.numpy() / s2
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10.0, 3.6))
ax0.plot(ratio, w_best, color="0.3", label="closed form")
ax0.plot(ratio, np.abs(w.detach().numpy()), "o", ms=4, color=plotting.PALETTE["NMC2.1"], label="gradient ascent")
ax0.set(xlabel="data variance / decoder noise variance ($v / s^2$)", ylabel="$|w|$ (how much the decoder uses $z$)")
ax1.plot(ratio, kl_best, color="0.3", label="closed form")
ax1.plot(ratio, kl.detach().numpy(), "o", ms=4, color=plotting.PALETTE["NMC2.1"], label="gradient ascent")
ax1.set(xlabel="data variance / decoder noise variance ($v / s^2$)", ylabel="KL term (nats)")
for ax in (ax0, ax1):
    ax.axvline(1, color="0.5", ls=":", lw=1)
    ax.axvspan(0, resid["top_eigenvalue"].max() / s2, color=plotting.PALETTE["LMO10"], alpha=0.25,
               label="the CVAE's fits (largest residual variance)")
ax0.legend(fontsize=8);

# %% tags=["hide-cell"]
put("toy_ratio_max", resid["top_eigenvalue"].max() / s2)
put("toy_region", "inside the collapsed region" if resid["top_eigenvalue"].max() < s2
    else "past the threshold, where the toy uses its code")

# %% [markdown]
# Left of $v / s^2 = 1$ both the decoder weight and the KL term are exactly zero; right of it the
# code is used, more as the data vary more. The shaded band is where this chapter's fits lie: the
# largest variance that SOC and SOH leave unexplained is at most
# {glue:text}`toy_ratio_max:.3f` times $s^2$, {glue:text}`toy_region`. Giving the
# reconstruction more weight shrinks $s^2$: the same residual variance then sits further right
# on this axis, so the band widens to the right while the threshold stays at 1.
#
# :::{exercise}
# :label: ex-02-toy
#
# Derive the threshold without the encoder: maximise the average log-likelihood of the marginal
# $p(x) = \mathcal{N}(0, w^2 + s^2)$ over $w$ when $x \sim \mathcal{N}(0, v)$. Then use the KL
# formula to show that at the optimum the KL term is $\tfrac12 \log(v / s^2)$ for $v > s^2$.
# :::
#
# :::{solution} ex-02-toy
# :class: dropdown
#
# With $u = w^2 + s^2$, the average log-likelihood is $-\tfrac12 \log(2\pi u) - v / (2u)$; its
# derivative in $u$, $-1/(2u) + v/(2u^2)$, vanishes at $u = v$. So $w^2 = v - s^2$ if $v > s^2$; otherwise
# the likelihood falls for every $u > s^2$ and the best choice is $u = s^2$, $w = 0$. At $w^2 = v - s^2$
# the posterior has variance $\tau^2 = s^2 / (w^2 + s^2) = s^2 / v$ and mean $a x$ with $a = w / v$, so
# $\mathrm{KL} = \tfrac12(a^2 v + \tau^2 - \log\tau^2 - 1) = \tfrac12\big((v - s^2)/v + s^2/v - \log(s^2/v) - 1\big)
# = \tfrac12 \log(v / s^2)$.
# :::
#
# :::{exercise}
# :label: ex-02-weights
#
# Which loss weights $w_\text{recon}$, $w_\text{KL}$ put the decoder's noise variance at
# $s^2 = 0.01$? With the residual variances measured above, would the latent space still collapse?
# :::
#
# :::{solution} ex-02-weights
# :class: dropdown
#
# $s^2 = w_\text{KL} / (2 w_\text{recon})$, so any pair with $w_\text{recon} = 50\, w_\text{KL}$, for
# example $w_\text{recon} = 25$ and $w_\text{KL} = 0.5$. The largest residual eigenvalue of these fits
# lies between {glue:text}`resid_top_min:.3f` and {glue:text}`resid_top_max:.3f` and exceeds 0.01 in
# {glue:text}`resid_above_001:.0f` of the {glue:text}`n_fits:.0f` fits, so the answer is
# {glue:text}`ex_weights_answer`. This judges the new weights by the residuals of the old fits;
# retraining changes the decoder and with it the residual (chapter 6 trains such an improved
# generator).
# :::

# %% [markdown]
# ## Reconstruction of U1 at 35 % and 50 % SOC
#
# The paper's Fig. 3a compares measured and reconstructed U1 (the rest voltage before the first
# pulse) at 35 % and 50 % SOC, two of the measured levels of case 0. Below, for every battery
# type (first seed), each training row is encoded, its posterior mean decoded at its own
# condition, and the reconstructed U1 plotted against the measured one; the diagonal is a
# perfect reconstruction.

# %% tags=["hide-input"]
recon = {b: reconstruct(fits[(b, first)], *rows[b]) for b in BATTERIES}
levels = (35, 50)
soc_colors = dict(zip(levels, plt.get_cmap(plotting.SOC_CMAP)([0.25, 0.8])))
fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.6))
parity = []
for ax, b in zip(axes, BATTERIES):
    socs = soc_percent(frames[b])
    for level in levels:
        at = socs == level
        measured, rebuilt = frames[b].loc[at, "U1"].to_numpy(), recon[b][at, 0]
        ax.scatter(measured, rebuilt, s=10, alpha=0.7, color=soc_colors[level], label=f"{level} % SOC")
        parity.append({"battery": b, "soc_pct": level,
                       "mape": float(np.mean(np.abs(rebuilt - measured) / measured) * 100),
                       "mae_mv": float(np.mean(np.abs(rebuilt - measured)) * 1000),
                       "measured_std_mv": float(measured.std() * 1000), "reconstructed_std_mv": float(rebuilt.std() * 1000)})
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
    ax.set(title=plotting.label(b), xlabel="measured U1 (V)", ylabel="reconstructed U1 (V)" if ax is axes[0] else "")
axes[0].legend(fontsize=8);

# %% tags=["nbval-check-output", "hide-cell"]
parity = pd.DataFrame(parity)
write_table(parity, ctx.out_dir / "u1_parity.csv")
put_many({f"u1_mape_{level}": mape for level, mape in parity.groupby("soc_pct")["mape"].mean().items()})
spreads = parity.groupby("battery", sort=False)[["measured_std_mv", "reconstructed_std_mv"]].mean()  # mean of the two levels
extreme = (spreads["reconstructed_std_mv"] / spreads["measured_std_mv"]).idxmin()  # least of the spread reproduced
put_many({"u1_mae_mv_max": parity["mae_mv"].max(), "extreme_u1_battery": plotting.label(extreme),
          "extreme_u1_std_measured": spreads.loc[extreme, "measured_std_mv"],
          "extreme_u1_std_rebuilt": spreads.loc[extreme, "reconstructed_std_mv"]})
print(parity.assign(battery=parity.battery.map(plotting.label)).round(1).to_string(index=False))

# %% tags=["hide-input"]
table(parity.assign(battery=parity.battery.map(plotting.label)).rename(columns={
          "soc_pct": "SOC (%)", "mape": "MAPE (%)", "mae_mv": "mean abs. error (mV)",
          "measured_std_mv": "measured spread (mV)", "reconstructed_std_mv": "reconstructed spread (mV)"}),
      "Reconstruction of U1 at 35 % and 50 % SOC, per battery type (first seed)")

# %% [markdown]
# Averaged over the four battery types, the reconstructed U1 is off by
# {glue:text}`u1_mape_35:.2f` % at 35 % SOC and {glue:text}`u1_mape_50:.2f` % at 50 % SOC (the
# mean absolute error is at most {glue:text}`u1_mae_mv_max:.0f` mV in any panel; the table
# gives the spread of the measured and the reconstructed U1 over the batteries, in mV). Because
# the latent code is ignored, the reconstruction is a function of SOC and SOH only: whatever
# makes U1 differ between batteries beyond their SOH cannot be reproduced, and points leave the
# diagonal along horizontal bands. The {glue:text}`extreme_u1_battery` panel is the extreme case
# (the smallest ratio of the two spreads): its measured U1 spreads by
# {glue:text}`extreme_u1_std_measured:.2f` mV (standard deviation over the batteries, mean of the
# two levels), the reconstruction by {glue:text}`extreme_u1_std_rebuilt:.2f` mV.
#
# ## Reconstruction error of U1-U21 at every measured level
#
# The paper's Fig. 3b maps the error over the 21 features and the SOC levels. Below, the mean
# absolute percentage error of the reconstruction of each feature (rows) at each of the six
# measured levels of case 0 (columns), per battery type (first seed). Chapter 4 draws the same
# map for the *unseen* levels, where the generator has to produce data it never saw.

# %% tags=["hide-input"]
errors = pd.concat(
    [feature_errors(frames[b], recon[b], by=("soc_pct",)).assign(battery=b) for b in BATTERIES],
    ignore_index=True,
)
errors = errors[errors.soc_pct.isin(CASES[CASE])]
write_table(errors, ctx.out_dir / "reconstruction_errors.csv")
fig, axes = plt.subplots(1, 4, figsize=(13.0, 5.2))
for ax, b in zip(axes, BATTERIES):
    grid = errors[errors.battery == b].pivot(index="k", columns="soc_pct", values="mape")
    sns.heatmap(grid, ax=ax, cmap="rocket_r", vmin=0, cbar_kws={"label": "MAPE (%)", "shrink": 0.8},
                yticklabels=[f"U{k}" for k in grid.index])
    ax.set(title=plotting.label(b), xlabel="SOC (%)", ylabel="feature" if ax is axes[0] else "")
    ax.tick_params(axis="y", labelsize=7);

# %% tags=["nbval-check-output", "hide-cell"]
by_battery = errors.groupby("battery", sort=False)["mape"].mean()
worst = errors.loc[errors["mape"].idxmax()]
level_means = errors.groupby(["battery", "soc_pct"], sort=False)["mape"].mean()
worst_levels = {b: int(level_means[b].idxmax()) for b in BATTERIES}
put_many({"recon_mape_mean": errors["mape"].mean(), "recon_mape_worst": worst["mape"], "recon_worst_soc": worst["soc_pct"],
          "recon_worst_battery": plotting.label(worst["battery"]),
          "recon_worst_levels": ", ".join(f"{plotting.label(b)} at {s} %" for b, s in worst_levels.items())})
lowest = min(CASES[CASE])
put_many({"lowest_level": lowest, "n_batteries": len(BATTERIES),
          "worst_lowest_n": sum(s == lowest for s in worst_levels.values())})
write_json({"profile": ctx.profile.name, "epochs": train.epochs, "seeds": list(ctx.profile.seeds), "case": CASE,
            "decoder_variance": s2,
            "latent_usage": usage.to_dict(orient="records"), "residual": resid.to_dict(orient="records"),
            "u1_parity": parity.to_dict(orient="records"),
            "reconstruction_mape_by_battery": by_battery.to_dict()}, ctx.out_dir / "summary.json")
print("mean reconstruction MAPE over U1-U21 and the measured levels (%):")
print(by_battery.rename(index=plotting.label).round(2).to_string())

# %% [markdown]
# Over all features, levels and battery types the reconstruction error is
# {glue:text}`recon_mape_mean:.2f` % on average; the worst cell, {glue:text}`recon_mape_worst:.2f` %,
# is at {glue:text}`recon_worst_soc:.0f` % SOC for {glue:text}`recon_worst_battery` (each panel
# has its own colour scale). Averaged over the features, the worst measured level is:
# {glue:text}`recon_worst_levels`. It is the lowest measured level, {glue:text}`lowest_level:.0f` %,
# for {glue:text}`worst_lowest_n:.0f` of the {glue:text}`n_batteries:.0f` battery types. A
# plausible reason for those: the pulse response changes fastest with SOC at low SOC
# (chapter 1), and one smooth function of the condition has to fit the steep end and the flat
# middle at once.
#
# ## Summary
#
# - The paper's loss, `0.5 * 21 * MSE + 0.5 * KL`, is half the negative conditional ELBO of a
#   Gaussian decoder, up to a constant: the 21 turns Keras' per-feature mean into the sum over features that
#   the log-likelihood needs, and the equal weights set the decoder's noise variance to
#   $s^2$ = {glue:text}`sigma2:.2f` in scaled units, a standard deviation of
#   {glue:text}`sigma_pct:.0f` % of each feature's range.
# - Trained for {glue:text}`epochs_phrase`, the reconstruction term
#   ends between {glue:text}`recon_final_min:.3f` and {glue:text}`recon_final_max:.3f` and the
#   KL term at most {glue:text}`kl_final_max_text` nats: the latent space collapses. Over all fits
#   {glue:text}`active_units_text` active, and moving $z$ over six prior
#   standard deviations moves a decoded voltage by at most
#   {glue:text}`decoder_range_mv_max:.1f` mV, {glue:text}`z_vs_batteries_pct` of the spread between
#   batteries at one SOC level ({glue:text}`between_battery_mv:.0f` mV). The code carries no
#   information about the pulse, and sampling it adds at most that much variation.
# - Whether the collapse is what the ELBO asks for depends on the variance that SOC and SOH leave
#   unexplained (at most {glue:text}`resid_trace_max:.3f` in total): its largest eigenvalue exceeds
#   the assumed noise variance $s^2$ in {glue:text}`resid_above_fits:.0f` of the
#   {glue:text}`n_fits:.0f` fits, so {glue:text}`collapse_summary`.
# - U1 is reconstructed to within {glue:text}`u1_mape_35:.2f` % at 35 % SOC and
#   {glue:text}`u1_mape_50:.2f` % at 50 % SOC, and U1-U21 to {glue:text}`recon_mape_mean:.2f` %
#   on average over the measured levels (means over the battery types).
# - In the one-dimensional toy a latent code is used only where the data vary more than the
#   decoder's noise variance; the variance these fits leave to the code is at most
#   {glue:text}`toy_ratio_max:.3f` times that threshold.
