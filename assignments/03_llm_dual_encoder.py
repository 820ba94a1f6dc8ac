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
# name: 03_llm_dual_encoder
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 03 · InfoNCE with hard negatives
#
# Chapter 03 trains an LLM dual encoder with `llmrec_lib.losses.InfoNCE`. Here you write that
# loss yourself, with **k hard negatives per row**, and check it against the library.

# %%
import math

import torch
import torch.nn.functional as F

from llmrec_lib import losses

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1.** Write InfoNCE for a batch of B (member, item) pairs plus k hard negatives per
# member. `users` and `items` are (B, d), `hard` is (B, k, d), all L2-normalised. For row i:
#
# $$\ell_i = -\log \frac{e^{s(u_i, v_i)/t}}{\sum_{j=1}^{B} e^{s(u_i, v_j)/t} + \sum_{h=1}^{k} e^{s(u_i, h_{ih})/t}}$$
#
# with $s$ the dot product, and the loss is the mean of $\ell_i$. Row i's hard negatives are
# its own; the in-batch negatives are the other rows' positives. Use `F.cross_entropy` or
# `torch.logsumexp`, no Python loop over rows.

# %% [raw]
# # BEGIN SOLUTION

# %%
def info_nce(users, items, hard, temperature=0.05):
    # BEGIN SOLUTION
    in_batch = users @ items.T  # (B, B): column i is row i's positive
    hard_logits = torch.einsum("bd,bkd->bk", users, hard)  # (B, k): row i's own negatives
    logits = torch.cat([in_batch, hard_logits], dim=1) / temperature
    labels = torch.arange(users.shape[0])
    return F.cross_entropy(logits, labels)
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
g = torch.Generator().manual_seed(0)
u = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
v = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
h = F.normalize(torch.randn(4, 2, 8, generator=g), dim=-1)
ours = info_nce(u, v, h, temperature=0.1)
assert isinstance(ours, torch.Tensor) and ours.ndim == 0, "return a scalar tensor"
assert torch.allclose(ours, losses.InfoNCE(temperature=0.1)(u, v, hard=h), atol=1e-5)

# %%
# HIDDEN
for seed, (B, k, d, t) in enumerate([(1, 1, 3, 0.05), (16, 3, 32, 0.05), (9, 5, 16, 0.7)]):
    g = torch.Generator().manual_seed(100 + seed)
    u = F.normalize(torch.randn(B, d, generator=g), dim=-1).requires_grad_()
    v = F.normalize(torch.randn(B, d, generator=g), dim=-1)
    h = F.normalize(torch.randn(B, k, d, generator=g), dim=-1)
    ours, ref = info_nce(u, v, h, temperature=t), losses.InfoNCE(temperature=t)(u, v, hard=h)
    assert torch.allclose(ours, ref, atol=1e-4), (B, k, d, t, float(ours), float(ref))
    grad_ours, = torch.autograd.grad(ours, u)
    grad_ref, = torch.autograd.grad(ref, u)
    assert torch.allclose(grad_ours, grad_ref, atol=1e-4), "same value but different gradients"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · Where the loss starts.** Before training, a member's vector is about as similar
# to its positive as to any negative. Then every logit is about the same and the loss is the
# log of the number of candidates each row chooses among. Write `start_loss(B, k)`, that number
# for a batch of B pairs with k hard negatives each, and check it against the library: with
# random unit vectors in 4,096 dimensions (cosines near 0) and temperature 1, the loss should
# be within 0.05 of `start_loss(B, k)`. Store the library's loss for B = 32, k = 2 in
# `lib_start`. This is why chapter 03 reads its first training losses against log B.

# %% [raw]
# # BEGIN SOLUTION

# %%
def start_loss(B, k):
    return math.log(B + k)  # SOLUTION


g = torch.Generator().manual_seed(1)
u = F.normalize(torch.randn(32, 4096, generator=g), dim=-1)
v = F.normalize(torch.randn(32, 4096, generator=g), dim=-1)
h = F.normalize(torch.randn(32, 2, 4096, generator=g), dim=-1)
lib_start = float(losses.InfoNCE(temperature=1.0)(u, v, hard=h))  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(lib_start - start_loss(32, 2)) < 0.05

# %%
# HIDDEN
assert abs(start_loss(32, 2) - math.log(34)) < 1e-12 and abs(start_loss(1, 0)) < 1e-12
assert abs(start_loss(256, 1) - math.log(257)) < 1e-12

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

