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
# This chapter is in progress. It will explain how the paper's model injects the SOC condition
# into the latent space with cross-attention {cite}`vaswani2017attention`, and check the
# implementation in battgen against it.

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
