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
# name: 02_baselines
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 02 · Popularity, counted and decayed
#
# Chapter 02 shows that "what is popular" is a hard baseline, and that *recent* popularity is
# subtle on a per-user split: a user's "now" is the time of their own latest rating. Here you
# count popularity yourself, then build a better variant: every positive counts, but an old one
# counts less, `exp(-(t_u - t) / tau)`, and only ratings made before the user's "now" count.
#
# Everything is measured with the book's protocol (`evaluate.evaluate`: full catalogue, seen
# items excluded) on the **validation** stage; the test stage stays untouched.

# %%
import numpy as np
import pandas as pd

from llmrec_lib import baselines, data, evaluate

ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
valid = evaluate.EvalData.from_split(split, "valid", ml.item_ids)
popular = baselines.MostPopular(ml.item_ids).fit(split.train)
popular_result = baselines.evaluate_stages(popular, split, {"valid": valid}, ks=(10, 50))["valid"]
print(f"MostPopular (all time) validation Recall@50: {popular_result.mean('recall@50'):.4f}")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 2

# %% [markdown]
# **Question 1 · Popularity by hand.** A positive is a rating of at least `data.POSITIVE_MIN`
# (4.0). Compute `pop_counts`: a NumPy array with one entry per catalogue column (the order of
# `ml.item_ids`), the number of positive ratings each movie has in `split.train`. Movies with no
# positive get 0.

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
positives = split.train[split.train["rating"] >= data.POSITIVE_MIN]
pop_counts = positives["item_id"].value_counts().reindex(ml.item_ids, fill_value=0).to_numpy()
# END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert isinstance(pop_counts, np.ndarray) and pop_counts.shape == ml.item_ids.shape
assert pop_counts.sum() == int((split.train["rating"] >= 4.0).sum())

# %%
# HIDDEN
assert (np.asarray(pop_counts, dtype=np.float64) == popular.global_scores.astype(np.float64)).all()

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# **Question 2 · Time-decayed popularity.** Write a class `DecayedPopularity(tau_days)` with a
# method `score(user_ids) -> np.ndarray` of shape (len(user_ids), number of movies) that the
# book's `evaluate.evaluate` can call. For a user u with "now" `t_u` (the time of u's latest
# rating in `split.history("valid")`), a movie's score is the sum, over positive training
# ratings made at `t <= t_u`, of `exp(-(t_u - t) / (tau_days * 86400))`. Then evaluate
# `DecayedPopularity(tau)` on `valid` for `tau` in (90, 365, 1095) days, store the best
# validation Recall@50 in `best_recall50` and its `tau` in `best_tau`.
#
# *Hint:* sort nothing; for each user, one boolean mask over the positives and one
# `np.bincount(columns, weights=..., minlength=n_items)` is fast enough (about a second for all
# users).

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
column = pd.Series(np.arange(ml.item_ids.size), index=ml.item_ids)


class DecayedPopularity:
    def __init__(self, tau_days):
        self.tau = tau_days * 86_400
        pos = split.train[split.train["rating"] >= data.POSITIVE_MIN]
        self.cols = column[pos["item_id"]].to_numpy()
        self.times = pos["timestamp"].to_numpy(np.float64)
        self.now = split.history("valid").groupby("user_id")["timestamp"].max()

    def score(self, user_ids):
        out = np.zeros((len(user_ids), ml.item_ids.size), dtype=np.float64)
        for row, user in enumerate(user_ids):
            t_u = self.now[user]
            past = self.times <= t_u
            weights = np.exp(-(t_u - self.times[past]) / self.tau)
            out[row] = np.bincount(self.cols[past], weights=weights, minlength=ml.item_ids.size)
        return out


recall50 = {tau: evaluate.evaluate(DecayedPopularity(tau), valid, ks=(10, 50)).mean("recall@50") for tau in (90, 365, 1095)}
best_tau = max(recall50, key=recall50.get)
best_recall50 = recall50[best_tau]
# END SOLUTION
print(f"best tau {best_tau} days: validation Recall@50 {best_recall50:.4f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert best_tau in (90, 365, 1095) and 0 < best_recall50 <= 1

# %%
assert best_recall50 > popular_result.mean("recall@50"), "decayed popularity should beat all-time popularity"

# %%
# HIDDEN
users = valid.user_ids[:40]
mine = np.asarray(DecayedPopularity(365).score(users), dtype=np.float64)
pos = split.train[split.train["rating"] >= 4.0]
cols = pd.Series(np.arange(ml.item_ids.size), index=ml.item_ids)[pos["item_id"]].to_numpy()
times = pos["timestamp"].to_numpy(np.float64)
now = split.history("valid").groupby("user_id")["timestamp"].max()
for row, user in enumerate(users):
    keep = times <= now[user]
    ref = np.bincount(cols[keep], weights=np.exp(-(now[user] - times[keep]) / (365 * 86400)), minlength=ml.item_ids.size)
    assert np.allclose(mine[row], ref, rtol=1e-5, atol=1e-9), f"user {user}: scores differ (is the future excluded?)"

# %%
# HIDDEN
again = evaluate.evaluate(DecayedPopularity(best_tau), valid, ks=(50,)).mean("recall@50")
assert abs(again - best_recall50) < 1e-12 and best_recall50 > popular_result.mean("recall@50") + 0.02

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
