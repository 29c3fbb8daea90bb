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
# This chapter is in progress. It will derive the conditional variational autoencoder (CVAE)
# that the paper uses to generate pulse responses: the evidence lower bound of the variational
# autoencoder {cite}`kingma2014auto`, its conditional form {cite}`sohn2015learning`, and the
# loss battgen trains.

# %% tags=["parameters"]
profile = "smoke"
seeds = [0]
data_dir = None
results_dir = "../results"
progress = False

# %% [markdown]
# ## Setup

# %%
import battgen

print(f"battgen {battgen.__version__}, profile {profile}")

# %% [markdown]
# ## Summary
#
# In progress: see the Overview for what this chapter will hold.
