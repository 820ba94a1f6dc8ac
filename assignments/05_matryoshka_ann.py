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
# name: 05_matryoshka_ann
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 05 · Matryoshka embeddings
#
# Chapter 05 trains the dual encoder so that the first d dimensions of its embedding are an
# embedding on their own (Kusupati et al., 2022), and measures what each prefix keeps. Here you
# write the nested loss and the truncation yourself, and check them against the library.

# %%
import torch
import torch.nn.functional as F

from llmrec_lib import losses

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · The nested loss.** Write `matryoshka_loss(users, items, dims, weights,
# temperature)`: for each prefix size d in `dims`, take the first d dimensions of `users` and
# `items`, **re-normalise** them, compute InfoNCE with in-batch negatives on them (you may call
# `losses.InfoNCE(temperature)` for that), and return the weighted mean
# sum_d w_d * L_d / sum_d w_d. `dims` and `weights` are lists of the same length, in any order.

# %% [raw]
# # BEGIN SOLUTION

# %%
def matryoshka_loss(users, items, dims, weights, temperature=0.05):
    # BEGIN SOLUTION
    base = losses.InfoNCE(temperature=temperature)
    total = sum(w * base(F.normalize(users[:, :d], dim=-1), F.normalize(items[:, :d], dim=-1))
                for d, w in zip(dims, weights))
    return total / sum(weights)
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
g = torch.Generator().manual_seed(0)
u, v = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
ours = matryoshka_loss(u, v, [16, 8, 4], [1.0, 1.0, 1.0])
ref = losses.MatryoshkaLoss(losses.InfoNCE(temperature=0.05), [16, 8, 4])(F.normalize(u, dim=-1), F.normalize(v, dim=-1))
assert isinstance(ours, torch.Tensor) and torch.allclose(ours, ref, atol=1e-5)

# %%
# HIDDEN
for seed, (B, d, dims, w, t) in enumerate([(4, 12, [12, 6, 3], [2.0, 1.0, 1.0], 0.05),
                                           (16, 32, [4, 32, 8], [1.0, 3.0, 0.5], 0.1)]):
    g = torch.Generator().manual_seed(10 + seed)
    u = torch.randn(B, d, generator=g).requires_grad_()
    v = torch.randn(B, d, generator=g)
    order = sorted(range(len(dims)), key=lambda i: -dims[i])  # the library sorts dims, largest first
    ref_fn = losses.MatryoshkaLoss(losses.InfoNCE(temperature=t), [dims[i] for i in order], [w[i] for i in order])
    ours, ref = matryoshka_loss(u, v, dims, w, temperature=t), ref_fn(u, v)
    assert torch.allclose(ours, ref, atol=1e-5), (float(ours), float(ref))
    g1, = torch.autograd.grad(ours, u)
    g2, = torch.autograd.grad(ref, u)
    assert torch.allclose(g1, g2, atol=1e-5)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · Truncate, then re-normalise.** Write `truncate(x, d)`: the first d dimensions of
# each row of `x`, scaled back to unit length, so cosine similarities stay cosines. Then show
# why re-normalising matters for retrieval: for the vectors below, store in `same_top1` whether
# the best item for user 0 by dot product is the same with and without re-normalising the
# truncated *items* (the user's own scale never changes a ranking; the items' scales do).

# %%
g = torch.Generator().manual_seed(3)
items_full = F.normalize(torch.randn(1000, 64, generator=g), dim=-1)
user_full = F.normalize(torch.randn(1, 64, generator=g), dim=-1)

# %% [raw]
# # BEGIN SOLUTION

# %%
def truncate(x, d):
    return F.normalize(x[..., :d], dim=-1)  # SOLUTION


raw_best = int((user_full[:, :8] @ items_full[:, :8].T).argmax())  # SOLUTION
renorm_best = int((truncate(user_full, 8) @ truncate(items_full, 8).T).argmax())  # SOLUTION
same_top1 = raw_best == renorm_best  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
x = torch.tensor([[3.0, 4.0, 12.0]])
assert torch.allclose(truncate(x, 2), torch.tensor([[0.6, 0.8]]))

# %%
# HIDDEN
y = torch.randn(50, 20)
for d in (1, 5, 20):
    assert torch.allclose(truncate(y, d), y[:, :d] / y[:, :d].norm(dim=-1, keepdim=True), atol=1e-6)
a = int((user_full[:, :8] @ items_full[:, :8].T).argmax())
b = int((F.normalize(user_full[:, :8], dim=-1) @ F.normalize(items_full[:, :8], dim=-1).T).argmax())
assert same_top1 == (a == b) and isinstance(same_top1, bool)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
