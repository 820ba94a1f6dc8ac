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
# name: 00_introduction
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 00 · Ranking metrics by hand
#
# Every number in this book is a ranking metric computed by `llmrec_lib.metrics` on the full
# catalogue (chapter 00). Before trusting a library with your conclusions, compute its metrics
# yourself: on paper-sized examples, then on a real system's top-K lists.
#
# Run the cells in order. `grader.check("q1")` runs the public tests of question 1; the teacher
# grades with more (hidden) tests, so make your functions correct in general, not just on the
# examples shown.

# %%
import math

import numpy as np

from llmrec_lib import baselines, data, evaluate, metrics

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# **Question 1 · NDCG@k.** Write `ndcg_by_hand(ranked, targets, k)`: `ranked` is a list of item
# ids, best first; `targets` the set of relevant ids. With binary relevance,
# DCG@k = sum over ranks r = 1..k of hit_r / log2(r + 1), and NDCG@k = DCG@k / IDCG@k, where
# IDCG@k is the DCG of a perfect list: min(k, |targets|) hits at the top. Return a Python float.
#
# Check yourself on paper first: a user has 2 targets and a system puts them at ranks 1 and 4, so
# NDCG@4 = (1 + 1/log2 5) / (1 + 1/log2 3).

# %% [raw]
# # BEGIN SOLUTION

# %%
def ndcg_by_hand(ranked, targets, k):
    # BEGIN SOLUTION
    targets = set(targets)
    dcg = sum(1 / math.log2(r + 1) for r, item in enumerate(ranked[:k], start=1) if item in targets)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, len(targets)) + 1))
    return float(dcg / idcg)
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert abs(ndcg_by_hand([7, 3, 5, 9], {7, 9}, k=4) - (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))) < 1e-12

# %%
assert ndcg_by_hand([1, 2, 3], {1}, k=3) == 1.0 and ndcg_by_hand([1, 2, 3], {4}, k=3) == 0.0

# %%
# HIDDEN
rng = np.random.default_rng(0)
for _ in range(200):
    n_items, k = int(rng.integers(10, 30)), int(rng.integers(1, 5))
    ranked = rng.choice(n_items, size=k + 3, replace=False)
    targets = rng.choice(n_items, size=int(rng.integers(1, 8)), replace=False)
    ours = ndcg_by_hand(list(ranked), set(targets.tolist()), k)
    ref = metrics.ndcg_at_k(ranked[None, :], [targets], k=k)[0]
    assert abs(ours - ref) < 1e-9, (list(ranked), set(targets.tolist()), k, ours, ref)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · Recall, and why the book caps it.** Plain Recall@k = hits / |targets| cannot
# reach 1 when a user has more targets than k. Write `recall_capped_by_hand(ranked, targets, k)` =
# hits@k / min(k, |targets|) (Liang et al. 2018), which can.

# %% [raw]
# # BEGIN SOLUTION

# %%
def recall_capped_by_hand(ranked, targets, k):
    # BEGIN SOLUTION
    targets = set(targets)
    hits = sum(1 for item in ranked[:k] if item in targets)
    return float(hits / min(k, len(targets)))
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert recall_capped_by_hand([1, 2, 3], {1, 2, 3, 4, 5}, k=3) == 1.0  # plain recall: 0.6

# %%
# HIDDEN
rng = np.random.default_rng(1)
for _ in range(200):
    n_items, k = int(rng.integers(10, 30)), int(rng.integers(1, 5))
    ranked = rng.choice(n_items, size=k, replace=False)
    targets = rng.choice(n_items, size=int(rng.integers(1, 8)), replace=False)
    ours = recall_capped_by_hand(list(ranked), set(targets.tolist()), k)
    ref = metrics.recall_capped_at_k(ranked[None, :], [targets], k=k)[0]
    assert abs(ours - ref) < 1e-12, (ours, ref)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 2

# %% [markdown]
# **Question 3 · A real system.** Evaluate the most-popular baseline on the **validation** stage
# of the book's per-user split, exactly as chapter 02 does, then recompute its mean NDCG@10
# yourself from `result.topk` (one row of catalogue columns per user, seen items already
# removed) and `valid.targets` (each user's relevant columns, same user order). Store the
# library's number in `lib_ndcg10` and yours in `my_ndcg10`.

# %%
ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
valid = evaluate.EvalData.from_split(split, "valid", ml.item_ids)
popular = baselines.MostPopular(ml.item_ids).fit(split.train)
result = baselines.evaluate_stages(popular, split, {"valid": valid}, ks=(10, 50))["valid"]

# %% [raw]
# # BEGIN SOLUTION

# %%
lib_ndcg10 = result.mean("ndcg@10")  # SOLUTION
# BEGIN SOLUTION
my_ndcg10 = float(np.mean([ndcg_by_hand(list(row), set(t.tolist()), 10) for row, t in zip(result.topk, valid.targets)]))
# END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 0.0 < my_ndcg10 < 1.0 and abs(my_ndcg10 - lib_ndcg10) < 1e-9

# %%
# HIDDEN
assert abs(lib_ndcg10 - baselines.evaluate_stages(baselines.MostPopular(ml.item_ids).fit(split.train), split, {"valid": valid}, ks=(10,))["valid"].mean("ndcg@10")) < 1e-12
assert abs(my_ndcg10 - lib_ndcg10) < 1e-9

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
