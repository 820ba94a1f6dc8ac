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
# name: 01_text_featurization
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 01 · Numbers as tokens, histories under a budget
#
# Chapter 01 turns each movie and each user into a prompt. Two of its decisions are worth
# re-deriving yourself: how a count becomes a **percentile-bucket token** (so the model reads
# `[POP_7]` instead of `1,247`), and how many movies of a history fit a **token budget**.
#
# Run the cells in order; `grader.check("q1")` runs the public tests. The teacher grades with
# more (hidden) tests, so make your code correct in general, not only on the examples.

# %%
import numpy as np

from llmrec_lib import backbones, data, text

ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
counts = text.popularity_counts(split.train, ml.item_ids)  # training ratings per movie
edges = text.percentile_edges(counts.to_numpy(), 10)  # the 9 inner decile edges
print("decile edges of the training counts:", edges)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · A count becomes a bucket.** Write `bucket_of(value, edges)`, the bucket
# (0..len(edges)) of one number against the sorted inner edges of a training distribution.
# Most movies share a tiny count, so many edges are *equal*, and a tie must not land at an
# arbitrary end of the buckets it spans. The book's rule: let `lo` be the number of edges
# strictly below `value` and `hi` the number of edges at or below it; the bucket is the middle
# of that span, `(lo + hi) // 2`. A value with no equal edge simply gets `lo` (= `hi`).
#
# Use plain Python or `np.searchsorted`; do not call `text.percentile_buckets`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def bucket_of(value, edges):
    # BEGIN SOLUTION
    edges = np.asarray(edges, dtype=np.float64)
    lo = int(np.sum(edges < value))
    hi = int(np.sum(edges <= value))
    return (lo + hi) // 2
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert bucket_of(5, [1, 2, 3]) == 3 and bucket_of(0, [1, 2, 3]) == 0 and bucket_of(2.5, [1, 2, 3]) == 2

# %%
assert bucket_of(1, [1, 1, 1, 2]) == 1  # the tie spans buckets 0..3: the middle is 1

# %%
# HIDDEN
values = counts.to_numpy()
ours = np.array([bucket_of(v, edges) for v in values])
assert (ours == text.percentile_buckets(values, 10, edges=edges)).all()
for v in (0, 1, 40, 10_000):
    assert bucket_of(v, edges) == text.percentile_buckets([v], 10, edges=edges)[0], v

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Question 2 · What a budget holds.** Chapter 01 renders each user's positive history, newest
# first, within a token budget, with the SmolLM2 tokenizer and the book's marker tokens. Build
# the users' prompts from `split.train` at a **128-token** budget twice: with item texts of
# title and genres (`fields=("title", "genres")`), and with titles only (`fields=("title",)`).
# Store the median number of movies kept per user in `median_title_genres` and
# `median_title_only`. Use `text.item_texts` and `text.user_prompts` (its `n_items` column).
# Then say in one sentence, in the markdown cell below, what dropping genres buys and costs.

# %%
tok = backbones.load_tokenizer("smollm2-135m")
_ = text.add_markers(tok)  # [ITEM], [HISTORY], ... become single tokens, as in chapter 01

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
title_genres = text.item_texts(ml.movies, fields=("title", "genres"))
title_only = text.item_texts(ml.movies, fields=("title",))
median_title_genres = float(text.user_prompts(split.train, title_genres, tok, budget=128).n_items.median())
median_title_only = float(text.user_prompts(split.train, title_only, tok, budget=128).n_items.median())
# END SOLUTION
print(median_title_genres, median_title_only)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 1 <= median_title_genres < median_title_only, "titles alone are shorter, so more of them fit"

# %%
# HIDDEN
ref_tok = backbones.load_tokenizer("smollm2-135m")
_ = text.add_markers(ref_tok)
ref = {f: float(text.user_prompts(split.train, text.item_texts(ml.movies, fields=f), ref_tok, budget=128).n_items.median())
       for f in (("title", "genres"), ("title",))}
assert median_title_genres == ref[("title", "genres")] and median_title_only == ref[("title",)], ref

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# _Your sentence (not auto-graded; the teacher reads it): what do genres cost in history length,
# and what might the model lose without them?_
