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
# name: 04_hard_negatives_ablations
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 04 · False negatives in the denominator
#
# Chapter 04 adds hard negatives to the denominator of InfoNCE. Its batches also hold
# **false negatives**: an in-batch column that holds the same movie as row i's positive (the
# same film twice in one batch), or a movie row i's user already liked. Pushing a user away
# from a film they like is wrong, so `llmrec_lib.losses.InfoNCE` removes those columns from row
# i's denominator (`losses.false_negative_mask`). Here you write the mask and the masked loss
# yourself and check both against the library.

# %%
import torch
import torch.nn.functional as F

from llmrec_lib import losses

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · The mask.** Write `fn_mask(item_ids, user_positives)`: a (B, B) bool tensor,
# True at (i, j) when column j must not count as a negative for row i. `item_ids` (B,) holds
# each row's positive item; `user_positives` is a list of B sets, the items each row's user
# liked. Column j is masked for row i when `item_ids[j] == item_ids[i]` or `item_ids[j]` is in
# `user_positives[i]`, **except** row i's own positive (column i), which is never masked.

# %% [raw]
# # BEGIN SOLUTION

# %%
def fn_mask(item_ids, user_positives):
    # BEGIN SOLUTION
    same = item_ids[:, None] == item_ids[None, :]
    liked = torch.tensor([[int(c) in s for c in item_ids] for s in user_positives], dtype=torch.bool)
    mask = same | liked
    mask.fill_diagonal_(False)
    return mask
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
ids = torch.tensor([7, 3, 7, 5])
pos = [{3}, set(), {5, 9}, set()]
m = fn_mask(ids, pos)
assert isinstance(m, torch.Tensor) and m.dtype == torch.bool and tuple(m.shape) == (4, 4)
assert m.tolist() == [[False, True, True, False], [False, False, False, False],
                      [True, False, False, True], [False, False, False, False]]

# %%
# HIDDEN
for seed, (B, n_items) in enumerate([(1, 3), (12, 5), (32, 20), (64, 400)]):
    g = torch.Generator().manual_seed(200 + seed)
    ids = torch.randint(0, n_items, (B,), generator=g)
    pos = [set(torch.randint(0, n_items, (3,), generator=g).tolist()) | {int(ids[i])} for i in range(B)]
    ref = losses.false_negative_mask(ids, ids, user_positives=pos)
    assert torch.equal(fn_mask(ids, pos), ref), (B, n_items)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Question 2 · The masked loss.** Write `masked_info_nce(users, items, hard, mask,
# temperature)`: InfoNCE with in-batch and k hard negatives per row (as in assignment 03), where
# every masked in-batch column is **left out** of row i's denominator (its term is not there at
# all, so it contributes nothing, not even a logit of 0). `users` and `items` are (B, d),
# `hard` is (B, k, d), `mask` is (B, B) as in question 1. Check it against
# `losses.InfoNCE(temperature)(users, items, hard=hard, mask=mask)`. Then store in
# `masking_lowers_loss` whether masking lowered the loss on the batch below (it only removes
# terms from each denominator).

# %% [raw]
# # BEGIN SOLUTION

# %%
def masked_info_nce(users, items, hard, mask, temperature=0.05):
    # BEGIN SOLUTION
    in_batch = (users @ items.T).masked_fill(mask, float("-inf"))
    hard_logits = torch.einsum("bd,bkd->bk", users, hard)
    logits = torch.cat([in_batch / temperature, hard_logits / temperature], dim=1)
    return F.cross_entropy(logits, torch.arange(users.shape[0]))
    # END SOLUTION


g = torch.Generator().manual_seed(0)
u = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
v = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
h = F.normalize(torch.randn(8, 2, 16, generator=g), dim=-1)
ids = torch.tensor([1, 2, 1, 3, 4, 2, 5, 6])
mask = fn_mask(ids, [{3}, set(), set(), set(), {6}, set(), set(), set()])
masking_lowers_loss = bool(masked_info_nce(u, v, h, mask, 0.1) < masked_info_nce(u, v, h, torch.zeros_like(mask), 0.1))  # SOLUTION
print("masked columns:", int(mask.sum()), "| masking lowered the loss:", masking_lowers_loss)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
ours = masked_info_nce(u, v, h, mask, 0.1)
assert isinstance(ours, torch.Tensor) and ours.ndim == 0, "return a scalar tensor"
assert torch.allclose(ours, losses.InfoNCE(temperature=0.1)(u, v, hard=h, mask=mask), atol=1e-5)
assert masking_lowers_loss is True

# %%
# HIDDEN
for seed, (B, k, d, t, n_items) in enumerate([(2, 1, 3, 0.05, 1), (16, 3, 32, 0.05, 6), (24, 2, 16, 0.7, 10)]):
    g = torch.Generator().manual_seed(300 + seed)
    u = F.normalize(torch.randn(B, d, generator=g), dim=-1).requires_grad_()
    v = F.normalize(torch.randn(B, d, generator=g), dim=-1)
    h = F.normalize(torch.randn(B, k, d, generator=g), dim=-1)
    ids = torch.randint(0, n_items, (B,), generator=g)
    liked = [set(torch.randint(0, n_items, (2,), generator=g).tolist()) for _ in range(B)]
    m = losses.false_negative_mask(ids, ids, user_positives=liked)
    assert m.any()
    ours = masked_info_nce(u, v, h, m, t)
    ref = losses.InfoNCE(temperature=t)(u, v, hard=h, item_ids=ids, user_positives=liked)
    assert torch.allclose(ours, ref, atol=1e-4), (B, k, d, t, float(ours), float(ref))
    grad_ours, = torch.autograd.grad(ours, u)
    grad_ref, = torch.autograd.grad(ref, u)
    assert torch.allclose(grad_ours, grad_ref, atol=1e-4), "same value but different gradients"

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
