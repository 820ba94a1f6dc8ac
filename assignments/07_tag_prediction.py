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
# name: 07_tag_prediction
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 07 · HR@K of predicted tags
#
# Chapter 07 scores predicted tags by **HR@K**: a tag names a category (`recgpt.tag_category`,
# the last category word of the phrase), a movie has one category (its most specific genre,
# `facts.primary[item]`), and a movie the user liked next is a *hit* when its category is the
# category of one of the first K tags. Here you compute HR@K yourself on the tags the book
# committed for every test user (`artifacts/recgpt/tags_test.jsonl`: the rule-based predictor
# for all 602 users, the fine-tuned SmolLM2 for 120 of them; no model runs here), and compare
# the chapter's window average with the paper's next-item version.

# %%
import numpy as np

from llmrec_lib import data, metrics, recgpt, text

ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
facts = recgpt.ItemFacts.build(ml.movies, text.training_tags(ml.tags, split.train))
targets = split.targets("test").sort_values(["user_id", "timestamp", "item_id"])
future = {int(u): g["item_id"].tolist() for u, g in targets.groupby("user_id")}  # liked in the test window, in order
tags = {src: recgpt.load_predicted_tags(source=src) for src in ("rule-based", "fine-tuned")}
u0 = sorted(tags["fine-tuned"])[0]
print(f"user {u0}: fine-tuned tags {tags['fine-tuned'][u0]}; liked next: "
      f"{[facts.primary[i] for i in future[u0]]}")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · HR@K for one user.** Write `hit_rate(user_tags, future_items, k, facts)`: the
# share of `future_items` whose category `facts.primary[item]` is the category of one of the
# **first k** tags (`recgpt.UNMAPPED` is no category), `np.nan` when `future_items` is empty.
# Then store the mean over users (NaNs left out) of HR@3 for the rule-based tags in `hr3_rule`
# and for the fine-tuned tags in `hr3_tuned`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def hit_rate(user_tags, future_items, k, facts):
    # BEGIN SOLUTION
    future_items = list(future_items)
    if not future_items:
        return np.nan
    heads = {recgpt.tag_category(t) for t in user_tags[:k]} - {recgpt.UNMAPPED}
    return float(np.mean([facts.primary.get(i) in heads for i in future_items]))
    # END SOLUTION


# BEGIN SOLUTION
hr3_rule = float(np.nanmean([hit_rate(t, future.get(u, []), 3, facts) for u, t in tags["rule-based"].items()]))
hr3_tuned = float(np.nanmean([hit_rate(t, future.get(u, []), 3, facts) for u, t in tags["fine-tuned"].items()]))
# END SOLUTION
print(f"HR@3: rule-based {hr3_rule:.3f}, fine-tuned {hr3_tuned:.3f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 0 < hr3_rule < 1 and 0 < hr3_tuned < 1
assert hit_rate(["90s comedy", "dark thriller"], [], 3, facts) != hit_rate(["90s comedy"], [], 3, facts)  # NaN

# %%
# HIDDEN
for src, ours in (("rule-based", hr3_rule), ("fine-tuned", hr3_tuned)):
    ref = recgpt.judge_tags(tags[src], future, {}, facts, k=3, n_requested=6)
    assert abs(ours - ref["hr@3"].mean()) < 1e-9, (src, ours, ref["hr@3"].mean())
for k in (1, 2, 6):
    ref = recgpt.judge_tags(tags["rule-based"], future, {}, facts, k=k, n_requested=6)
    for u in list(tags["rule-based"])[:100]:
        a, b = hit_rate(tags["rule-based"][u], future.get(u, []), k, facts), ref.loc[u, f"hr@{k}"]
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-12, (k, u)
assert hit_rate(["cozy autumn vibes"], future[u0], 3, facts) == 0.0

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · The next item only.** RecGPT scores only the **next** item a user engaged
# with; the chapter averages over every film liked in the test window, claiming this is less
# noisy. For the rule-based tags, compute per user the next-item HR@3 (the hit for the first
# film of `future[u]`, 1.0 or 0.0) and the window HR@3 (question 1), as two arrays over the same
# users in the same order, `next_hits` and `window_hits`. Then store the 95% bootstrap
# intervals of their means (`metrics.bootstrap_ci(values, seed=0)`) in `ci_next` and
# `ci_window`. Is the chapter's claim true here?

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
users = [u for u in tags["rule-based"] if future.get(u)]
next_hits = np.array([hit_rate(tags["rule-based"][u], future[u][:1], 3, facts) for u in users])
window_hits = np.array([hit_rate(tags["rule-based"][u], future[u], 3, facts) for u in users])
ci_next = metrics.bootstrap_ci(next_hits, seed=0)
ci_window = metrics.bootstrap_ci(window_hits, seed=0)
# END SOLUTION
print(f"next item: {ci_next.mean:.3f} [{ci_next.lo:.3f}, {ci_next.hi:.3f}]; "
      f"window: {ci_window.mean:.3f} [{ci_window.lo:.3f}, {ci_window.hi:.3f}]")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert len(next_hits) == len(window_hits) > 500 and set(np.unique(next_hits)) <= {0.0, 1.0}
assert ci_next.hi - ci_next.lo > ci_window.hi - ci_window.lo  # the window average is less noisy

# %%
# HIDDEN
first = {u: f[:1] for u, f in future.items()}
ref_next = recgpt.judge_tags(tags["rule-based"], first, {}, facts, k=3, n_requested=6)["hr@3"].dropna()
ref_win = recgpt.judge_tags(tags["rule-based"], future, {}, facts, k=3, n_requested=6)["hr@3"].dropna()
assert len(next_hits) == len(ref_next) and abs(np.mean(next_hits) - ref_next.mean()) < 1e-9
assert abs(np.mean(window_hits) - ref_win.mean()) < 1e-9
assert abs(ci_next.mean - ref_next.mean()) < 1e-9 and abs(ci_window.mean - ref_win.mean()) < 1e-9

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
