# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 10_scaling_out
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 10 · A projection on paper
#
# Chapter 10 projects what a LinkedIn-size encoder would cost to keep item and user vectors
# fresh, and how much memory its index needs (`llmrec_lib.scaling`). Here you redo that
# arithmetic yourself, for the chapter's assumptions (below), and check it against the library.
# Nothing here loads a model or the data.

# %%
import math

import numpy as np

from llmrec_lib import scaling

gpu_peak_tflops = 989.0  # H100 SXM, dense bf16
gpu_memory_gb = 80.0
assumed_mfu = 0.4
items_per_day = 50_000_000
users_per_day = 200_000_000
index_items = 300_000_000
prod_params = 3.2e9  # weights a token multiplies through
prod_layers = 28
prod_hidden = 3072
prod_item_tokens = 256
prod_user_tokens = 1024

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · FLOPs of one forward pass.** Write `forward_flops(n_params, n_tokens,
# n_layers, hidden, seq_len)`: the FLOPs of one forward pass over `n_tokens` tokens in
# sequences of `seq_len` tokens. Count 2 FLOPs per weight per token (a multiply and an add),
# plus attention: per token and layer, the scores against `seq_len` keys and the weighted sum
# of `seq_len` values, each `seq_len * hidden` multiply-adds. Then store the FLOPs of embedding
# one item (`prod_item_tokens` tokens) and one user (`prod_user_tokens`) with the 3B encoder in
# `flops_item` and `flops_user`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def forward_flops(n_params, n_tokens, n_layers, hidden, seq_len):
    # BEGIN SOLUTION
    weights = 2.0 * n_params * n_tokens
    attention = 2 * 2.0 * n_layers * seq_len * hidden * n_tokens
    return weights + attention
    # END SOLUTION


flops_item = forward_flops(prod_params, prod_item_tokens, prod_layers, prod_hidden, prod_item_tokens)  # SOLUTION
flops_user = forward_flops(prod_params, prod_user_tokens, prod_layers, prod_hidden, prod_user_tokens)  # SOLUTION
print(f"{flops_item / 1e12:.2f} TFLOPs per item, {flops_user / 1e12:.2f} per user")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 1e12 < flops_item < flops_user < 1e14
assert math.isclose(forward_flops(1e6, 10, 2, 64, 10), 2e7 + 4 * 2 * 10 * 64 * 10)

# %%
# HIDDEN
rng = np.random.default_rng(0)
for _ in range(50):
    P, L, H, S = float(rng.integers(1e6, 1e10)), int(rng.integers(1, 80)), int(rng.integers(64, 8192)), int(rng.integers(1, 4096))
    T = float(S * rng.integers(1, 100))
    assert math.isclose(forward_flops(P, T, L, H, S), scaling.forward_flops(P, T, L, H, S), rel_tol=1e-9)
assert math.isclose(flops_user, scaling.forward_flops(prod_params, prod_user_tokens, prod_layers, prod_hidden, prod_user_tokens), rel_tol=1e-9)
assert math.isclose(flops_item, scaling.forward_flops(prod_params, prod_item_tokens, prod_layers, prod_hidden, prod_item_tokens), rel_tol=1e-9)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · GPUs all day.** Write `gpus_all_day(flops_per_item, flops_per_user,
# items_per_day, users_per_day, peak_flops, mfu)`: how many GPUs, each running all day at
# `mfu` of its `peak_flops` (FLOP/s), it takes to embed a day's items and users. Store the
# number for the 3B encoder and the chapter's assumptions in `gpus_3b`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def gpus_all_day(flops_per_item, flops_per_user, items_per_day, users_per_day, peak_flops, mfu):
    # BEGIN SOLUTION
    flops_per_day = flops_per_item * items_per_day + flops_per_user * users_per_day
    return flops_per_day / (peak_flops * mfu) / 86400
    # END SOLUTION


gpus_3b = gpus_all_day(flops_item, flops_user, items_per_day, users_per_day, gpu_peak_tflops * 1e12, assumed_mfu)  # SOLUTION
print(f"{gpus_3b:,.0f} GPUs running all day")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert math.isclose(gpus_all_day(1.0, 2.0, 86400, 0, 1.0, 1.0), 1.0)
assert 10 < gpus_3b < 1_000

# %%
# HIDDEN
rng = np.random.default_rng(1)
for _ in range(30):
    fi, fu, ni, nu = rng.random() * 1e12, rng.random() * 1e13, rng.integers(1, 1e9), rng.integers(1, 1e9)
    peak, mfu = rng.random() * 1e15 + 1e12, rng.uniform(0.05, 1)
    ref = scaling.project(fi, fu, items_per_day=ni, users_per_day=nu, gpu_peak_flops=peak, mfu=mfu)
    assert math.isclose(gpus_all_day(fi, fu, ni, nu, peak, mfu), ref["gpus_all_day"], rel_tol=1e-9)
ref = scaling.project(scaling.forward_flops(prod_params, prod_item_tokens, prod_layers, prod_hidden, prod_item_tokens),
                      scaling.forward_flops(prod_params, prod_user_tokens, prod_layers, prod_hidden, prod_user_tokens),
                      items_per_day=items_per_day, users_per_day=users_per_day,
                      gpu_peak_flops=gpu_peak_tflops * 1e12, mfu=assumed_mfu)
assert math.isclose(gpus_3b, ref["gpus_all_day"], rel_tol=1e-9)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# **Question 3 · The index in memory.** Write `index_gb(n_items, dim, bytes_per_value)`: the
# size in GB (10^9 bytes) of `n_items` vectors of `dim` values. Then, for `index_items` items,
# store the share of memory LinkedIn's 512-d Matryoshka prefix saves against full 3072-d
# vectors in the same dtype in `saving`, and in `gpus_to_hold` the smallest whole number of
# 80-GB GPUs (`gpu_memory_gb`) that hold the full 3072-d vectors in float32.

# %% [raw]
# # BEGIN SOLUTION

# %%
def index_gb(n_items, dim, bytes_per_value):
    return n_items * dim * bytes_per_value / 1e9  # SOLUTION


saving = 1 - index_gb(index_items, 512, 2) / index_gb(index_items, 3072, 2)  # SOLUTION
gpus_to_hold = math.ceil(index_gb(index_items, 3072, 4) / gpu_memory_gb)  # SOLUTION
print(f"512-d saves {saving:.1%}; 3072-d float32 needs {gpus_to_hold} GPUs of {gpu_memory_gb:g} GB")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert math.isclose(index_gb(1e6, 1000, 4), 4.0)
assert 0 < saving < 1 and isinstance(gpus_to_hold, int)

# %%
# HIDDEN
for n, d, b in [(1, 1, 1), (300e6, 3072, 4), (1e9, 512, 1 / 8), (12345, 576, 2)]:
    assert math.isclose(index_gb(n, d, b), scaling.index_bytes(n, d, b) / 1e9, rel_tol=1e-12)
assert abs(saving - (1 - 512 / 3072)) < 1e-12
assert gpus_to_hold == math.ceil(scaling.index_bytes(index_items, 3072, 4) / (gpu_memory_gb * 1e9)) == 47

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
