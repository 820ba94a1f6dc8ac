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
# name: 06_interest_mining
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 06 · Judge mined interests
#
# Chapter 06 judges the interests SmolLM2 mined for each test user with rules
# (`recgpt.judge_interests`). Here you write three of the basic rates yourself, from a user's
# history and future, and apply them to the interests the book's committed run mined (zero-shot
# and after LoRA fine-tuning, `artifacts/recgpt/generations.jsonl`; no model runs here). The
# chapter builds its judges on these: *grounding* is support that is also specific to the user
# (above the population's base rate), and predictiveness is reported as precision, recall and
# their lift over the population's base rates.
#
# What the judges read, per test user: `liked[u]`, the movies the user rated 4 or more before
# the test window (what the model could see, oldest first); `future[u]`, the movies the user
# liked in the test window (never shown to any model); and `facts`, what is known about each
# movie (`facts.primary[item]` is its one category, `recgpt.supports(phrase, item, facts)`
# says whether a movie has what a phrase names).

# %%
import numpy as np

from llmrec_lib import data, recgpt, text

ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
facts = recgpt.ItemFacts.build(ml.movies, text.training_tags(ml.tags, split.train))
hist = recgpt.reliable_behaviours(split.history("test"))
liked = {int(u): g["item_id"].tolist() for u, g in hist[hist["liked"]].groupby("user_id")}
future = {int(u): g["item_id"].tolist() for u, g in split.targets("test").groupby("user_id")}
gens = recgpt.read_generations()
mined = {src: recgpt.phrases_from_generations(gens, src, "interests") for src in ("zero-shot", "fine-tuned")}
u0 = sorted(mined["fine-tuned"])[0]
print(f"{len(mined['fine-tuned'])} users; user {u0}'s fine-tuned interests: {mined['fine-tuned'][u0]}")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · Support and hallucination.** Write `support_and_hallucination(phrases,
# history, facts, min_support=3)` returning a pair of floats for one user:
#
# - *support* (the judge's `supported` column): the share of the phrases supported (`recgpt.supports`) by at least `need` of
#   the user's liked history movies, where `need = max(1, min(min_support, n))` and n is the
#   number of **distinct** movies in `history` (a short history asks for less support);
# - *hallucination*: the share of the phrases supported by **no** history movie.
#
# An empty list of phrases is a failed answer: support 0.0, hallucination 1.0.

# %% [raw]
# # BEGIN SOLUTION

# %%
def support_and_hallucination(phrases, history, facts, min_support=3):
    # BEGIN SOLUTION
    items = list(dict.fromkeys(history))
    if not phrases:
        return 0.0, 1.0
    need = max(1, min(min_support, len(items)))
    support = [sum(recgpt.supports(p, i, facts) for i in items) for p in phrases]
    return float(np.mean([s >= need for s in support])), float(np.mean([s == 0 for s in support]))
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
g, h = support_and_hallucination(mined["fine-tuned"][u0], liked[u0], facts)
ref = recgpt.judge_interests({u0: mined["fine-tuned"][u0]}, liked, future, facts, n_requested=5)
assert abs(g - ref.loc[u0, "supported"]) < 1e-12 and abs(h - ref.loc[u0, "hallucination"]) < 1e-12

# %%
# HIDDEN
for src in ("zero-shot", "fine-tuned"):
    ref = recgpt.judge_interests(mined[src], liked, future, facts, n_requested=5)
    for u, phrases in mined[src].items():
        assert np.allclose(support_and_hallucination(phrases, liked.get(u, []), facts),
                           ref.loc[u, ["supported", "hallucination"]].to_numpy(float)), (src, u)
short = {u: liked[u][:2] + liked[u][:1] for u in list(mined["fine-tuned"])[:20]}  # 2 distinct films
ref = recgpt.judge_interests({u: mined["fine-tuned"][u] for u in short}, short, future, facts, n_requested=5, min_support=3)
for u in short:
    assert np.allclose(support_and_hallucination(mined["fine-tuned"][u], short[u], facts),
                       ref.loc[u, ["supported", "hallucination"]].to_numpy(float)), ("short history", u)
assert support_and_hallucination([], liked[u0], facts) == (0.0, 1.0)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Question 2 · Predictiveness (recall), on real users.** Write `predictiveness(phrases,
# future_items, facts)`: the judge's `recall` column, the share of the user's future liked movies whose one category
# (`facts.primary[item]`) is the category of one of the phrases (`recgpt.tag_category`; a
# phrase mapped to `recgpt.UNMAPPED` names no category). It is `np.nan` for a user with no
# future movie and 0.0 for an empty list of phrases. Then store the mean over the committed
# users (leaving NaNs out) for the zero-shot interests in `pred_zero` and for the fine-tuned
# ones in `pred_tuned`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def predictiveness(phrases, future_items, facts):
    # BEGIN SOLUTION
    if not list(future_items):
        return np.nan
    if not phrases:
        return 0.0
    heads = {recgpt.tag_category(p) for p in phrases} - {recgpt.UNMAPPED}
    return float(np.mean([facts.primary.get(i) in heads for i in future_items]))
    # END SOLUTION


# BEGIN SOLUTION
pred_zero = float(np.nanmean([predictiveness(p, future.get(u, []), facts) for u, p in mined["zero-shot"].items()]))
pred_tuned = float(np.nanmean([predictiveness(p, future.get(u, []), facts) for u, p in mined["fine-tuned"].items()]))
# END SOLUTION
print(f"predictiveness: zero-shot {pred_zero:.3f}, fine-tuned {pred_tuned:.3f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 0 <= pred_zero < pred_tuned <= 1
assert predictiveness(["90s comedy"], [], facts) != predictiveness(["90s comedy"], [], facts)  # NaN

# %%
# HIDDEN
for src, ours in (("zero-shot", pred_zero), ("fine-tuned", pred_tuned)):
    ref = recgpt.judge_interests(mined[src], liked, future, facts, n_requested=5)
    assert abs(ours - ref["recall"].mean()) < 1e-9, (src, ours)
    for u, phrases in list(mined[src].items())[:60]:
        a, b = predictiveness(phrases, future.get(u, []), facts), ref.loc[u, "recall"]
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-12, (src, u)
assert predictiveness([], future[u0], facts) == 0.0

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
