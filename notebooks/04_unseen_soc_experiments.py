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
# This chapter is in progress. It will reproduce the paper's experiments: generate pulse
# responses at SOC levels held out of training, train the SOH regressor on the generated data,
# and report its errors per battery type and seed.

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
