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

# %% [markdown]
# # 00 · Introduction: candidate generation, two industrial designs, and an honest yardstick
#
# A recommender cannot score a whole catalogue with its best model for every request: it first
# **generates candidates**, a few hundred or thousand items out of millions, and only those are
# ranked. This book builds, at pocket scale and for real, two ways that large language models
# now do that job in production: **LinkedIn's** single fine-tuned LLM that embeds members and
# posts (arXiv 2510.14223) and **Alibaba's RecGPT**, a chain of LLMs that writes interests and
# "tags" for a small three-tower model (arXiv 2507.22879).
#
# By the end of this chapter you will know where candidate generation sits, what the two designs
# look like, what our data (MovieLens ml-latest-small) is like, and how every later chapter is
# measured: which split, which metrics, and why.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
verify_data = None  # None: LLMREC_DATA_VERIFY (default: check the reference checksums)

# %%
from llmrec_lib import config, data, plots, show

cfg = config.settings(
    "00",
    mode,
    seed=seed,
    backbone="(none: this chapter trains no model)",
    quick={"users": "all 610", "sampled_negatives": 100},
    full={"users": "all 610", "sampled_negatives": 100},
)
cfg.show()
# claims pinned to the reference release are asserted there and reported on other data
claims = config.Claims("00", path=cfg.data_dir)
print(config.data_status(cfg.data_dir))

# %% [markdown]
# **Learning goals**
#
# - Place candidate generation in a recommender stack, and say what it must be good at.
# - Sketch LinkedIn's LLM dual encoder and RecGPT's LLM chain, and name what each fine-tunes.
# - Describe MovieLens as a recommender data set: bursts, a long tail, positives and "disliked".
# - Explain the book's split (per user, chronological) and measure its cost.
# - Explain why we rank the full catalogue and why sampled metrics can mislead.

# %% [markdown]
# ## 1. Where candidate generation sits
#
# A feed request at LinkedIn retrieves about 2,000 candidates from hundreds of millions of posts
# in a few milliseconds; a ranking model then orders those. Retrieval's job is **recall**:
# whatever it misses, no ranker can bring back. That is why every chapter reports Recall@K for
# K in the hundreds as well as the tens.

# %%
fig = plots.funnel_figure(
    [
        ("catalogue", "hundreds of millions of posts / items"),
        ("candidate generation (this book)", "~2,000 candidates in a few ms"),
        ("ranking", "a heavy model scores each candidate"),
        ("re-ranking and policy", "the ~10 items a member sees"),
    ]
)

# %% [markdown]
# ## 2. The two designs at a glance
#
# Both render items and users as **text** and hand that text to an LLM. They differ in what the
# LLM produces. LinkedIn's LLM produces the **vectors** themselves: one shared causal LLM reads a
# member prompt and a post prompt, mean-pools its token states, and is fine-tuned with a
# contrastive loss so that a member lands near the posts they engage with (chapters 03-05).
# RecGPT's LLMs produce **text**: one mines a user's interests, a second writes tags for next
# items, and a light three-tower model with collaborative signal turns user and tags into
# vectors (chapters 06-08). Chapter 09 puts both against classic baselines in one offline A/B.

# %%
fig = plots.designs_figure()

# %% [markdown]
# ## 3. The data: MovieLens ml-latest-small
#
# 610 users rated 9,742 movies between 1996 and 2018 (GroupLens, research use only; the files
# are never committed to this repository). Each rating is 0.5-5 stars. We call a rating of 4 or
# more a **positive** (an engagement) and a rating of 2 or less **seen but disliked**: the
# closest analogue here of LinkedIn's "shown but not engaged" impressions, used as hard negatives
# in chapter 04.

# %%
ml = data.load_movielens(cfg.data_dir, verify=verify_data)
overview = ml.summary()
overview

# %%
sizes = (overview["users"], overview["movies"], overview["ratings"])
claims.check(
    "610 users, 9,742 movies, 100,836 ratings",
    sizes == (610, 9742, 100836),
    detail=str(sizes),
)
claims.check(
    "45-50% of ratings are positive, 10-15% disliked",
    0.45 < overview["positive_share"] < 0.5 and 0.1 < overview["disliked_share"] < 0.15,
    detail=f"{overview['positive_share']:.3f}, {overview['disliked_share']:.3f}",
)

# %% [markdown]
# ### Activity over time, and bursts
#
# Ratings arrive unevenly across the years, and, more surprising, each user tends to rate in a
# single **burst**: many people signed up, rated dozens of films they had seen over the years in
# one sitting, and never came back. "Time" inside such a burst says little about the order in
# which the films were watched. Keep that in mind whenever a chapter talks about "the next item".

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

r = ml.ratings
when = pd.to_datetime(r["timestamp"], unit="s")
span_days = r.groupby("user_id")["timestamp"].agg(
    lambda s: (s.max() - s.min()) / 86_400
)
one_day_share = float((span_days < 1).mean())

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
when.dt.to_period("Q").value_counts().sort_index().plot(
    ax=axes[0], color=plots.COLORS["history"]
)
axes[0].set(
    title="Ratings per quarter: activity is uneven over the years",
    xlabel="quarter",
    ylabel="ratings",
)
axes[1].hist(np.log10(span_days + 1e-3), bins=40, color=plots.COLORS["valid"])
axes[1].set(
    title=f"{one_day_share:.0%} of users rated everything within one day",
    xlabel="log10(days between a user's first and last rating)",
    ylabel="users",
)
fig.tight_layout()

# %%
claims.check(
    "most users rate everything within one day",
    one_day_share > 0.5,
    detail=f"{one_day_share:.2f}",
)

# %% [markdown]
# ### History lengths and the long tail
#
# Every user has at least 20 ratings (GroupLens kept only such users), the median user about 70,
# and a few users several thousand. On the item side the tail is long: a few movies collect most
# ratings, and a third of the catalogue has a single rating. An ID-based model learns nothing
# about such items; a model that reads the item's **text** can still place them, which is one
# promise of LLM retrieval we will test.

# %%
per_user = r.groupby("user_id").size()
per_item = (
    r.groupby("item_id")
    .size()
    .reindex(ml.item_ids, fill_value=0)
    .sort_values(ascending=False)
)
top10_share = float(per_item.iloc[: len(per_item) // 10].sum() / len(r))
single = int((per_item == 1).sum())

fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
axes[0].hist(np.log10(per_user), bins=30, color=plots.COLORS["history"])
axes[0].set(
    title=f"Ratings per user (median {per_user.median():.0f})",
    xlabel="log10(ratings)",
    ylabel="users",
)
axes[1].loglog(
    np.arange(1, len(per_item) + 1), per_item.to_numpy() + 1, color=plots.COLORS["test"]
)
axes[1].set(
    title=f"Top 10% of movies get {top10_share:.0%} of ratings",
    xlabel="movie rank by ratings",
    ylabel="ratings + 1",
)
genres = ml.movies["genres"].explode().value_counts()
genres.head(12).iloc[::-1].plot.barh(ax=axes[2], color=plots.COLORS["dnn"])
axes[2].set(title="Genres: drama and comedy dominate", xlabel="movies")
fig.tight_layout()

# %%
claims.check(
    "every user has at least 20 ratings",
    per_user.min() >= 20,
    detail=str(per_user.min()),
)
claims.check(
    "the top 10% of movies take most of the ratings",
    top10_share > 0.5,
    detail=f"{top10_share:.2f}",
)
claims.check(
    "a third of the catalogue has one rating",
    single / len(ml.item_ids) > 0.3,
    detail=f"{single / len(ml.item_ids):.2f}",
)
claims.check(
    "drama, then comedy, are the commonest genres",
    list(genres.index[:2]) == ["Drama", "Comedy"],
    detail=", ".join(genres.index[:2]),
)

# %% [markdown]
# ## 4. The split every chapter uses
#
# An offline evaluation pretends to stand at a moment in time: learn from the past, predict the
# future. The cleanest way (Ji et al., TOIS 2023) is **one global cutoff**: everything before it
# is training data, everything after it is to be predicted. Let us try it with the cutoff at the
# 90% time quantile.

# %%
glob = data.global_split(ml.ratings, quantile=0.9)
glob_counts = data.window_users_without_history(glob, "test")
glob_counts

# %% [markdown]
# Only a few dozen users rated anything after the cutoff, and most of them had rated **nothing**
# before it: for them there is no history to recommend from. What is left is far too few users
# to separate two systems with any confidence. (Bursts again: people arrive, rate, leave.)
#
# So this book uses a **per-user chronological split**: for each user with at least 5
# positives, the last 20% of their positives (in time) are **test targets** and the 10% before
# them **validation targets**. A user's history is everything they rated before their first
# target, and a batch of ratings with the same timestamp never straddles history and target.
# Models train on histories only; at test time a user's validation window joins their input.

# %%
split = data.per_user_split(ml.ratings, test_frac=0.2, valid_frac=0.1, min_positives=5)
split_summary = split.summary()
pd.DataFrame([split_summary, glob.summary()]).set_index("split").T

# %%
claims.check(
    "most of the global split's test-window users have no training history",
    glob_counts["without_history"] / glob_counts["window_users"] > 0.5,
    detail=f"{glob_counts['without_history']} of {glob_counts['window_users']}",
)
claims.check(
    "fewer than 50 users are evaluable under a global cutoff",
    glob_counts["evaluable_users"] < 50,
    detail=str(glob_counts["evaluable_users"]),
)
claims.check(
    "the per-user split tests over 10x as many users",
    split_summary["test_users"] > 10 * glob_counts["evaluable_users"],
    detail=f"{split_summary['test_users']} vs {glob_counts['evaluable_users']}",
)

# %% [markdown]
# The whole rule is one function, `llmrec_lib/data.py::per_user_split` (the global cutoff is
# `data.py::global_split`). Open the cell below to read it: the boundaries are timestamps,
# which is what keeps a same-second batch of ratings on one side.

# %% tags=["hide-output"]
show.source(data.per_user_split)

# %%
fig = plots.split_timeline_figure(split, [1, 68, 414, 599, 610])

# %% [markdown]
# ### What the per-user split costs
#
# The per-user split is not free. User A's test window may lie in 2005 while user B, whose
# ratings from 2015 sit in training, tells the model what became popular later: the model sees
# **other users' future**. We do not hide this; we measure it. For each test user: what share of
# the training ratings (by other users) were made after that user's first test target?

# %%
share = data.future_share(split, "test")
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.hist(share, bins=30, color=plots.COLORS["test"])
ax.set(
    title=f"Median test user: {share.median():.0%} of training ratings come from "
    "their future",
    xlabel="share of other users' training ratings made after the user's first target",
    ylabel="test users",
)
fig.tight_layout()
share.describe()

# %%
claims.check(
    "a test user's median future share is 30-70%",
    0.3 < share.median() < 0.7,
    detail=f"{share.median():.2f}",
)
assert data.future_share(glob, "test").max() == 0.0  # the global split has no such leak

# %% [markdown]
# About half of the training data lies in a typical test user's future. That mostly helps
# popularity-style signals ("what became popular later"), and it helps every system we compare
# equally, because all of them train on the same rows. Comparisons between systems stay fair;
# absolute numbers are somewhat optimistic. Chapter 09 returns to this.

# %% [markdown]
# ## 5. How we measure: the full catalogue, Recall@K and NDCG@K
#
# For each test user a system ranks **every movie in the catalogue** except those the user has
# already rated, and we look at the top K:
#
# - **Recall@K** = (test targets in the top K) / (number of test targets): did retrieval find
#   what the user went on to like? This is the candidate generator's job.
# - **NDCG@K** also rewards putting targets near the top: a hit at rank r earns 1/log2(r+1),
#   normalised by the best achievable score.
#
# Two shortcuts are common in papers and we avoid both. **Leave-one-out** (hold out each user's
# last item, train on everything else) lets a model see other users' future without measuring
# it, as above. **Sampled metrics** rank each target among only 100 random items instead of the
# catalogue; Krichene and Rendle (KDD 2020) showed they can disagree with the full ranking about
# which model is better. We can see the effect with two very simple systems.
#
# Where this lives: `llmrec_lib/evaluate.py::evaluate` ranks the full catalogue with seen items
# excluded and computes the metrics of `llmrec_lib/metrics.py::recall_at_k` and
# `metrics.py::ndcg_at_k`; the sampled shortcut is `evaluate.py::sampled_hit_rate`.

# %% [markdown]
# Two systems, both from chapter 02's baselines: **random** (the floor) and **popularity**
# (the most-liked movies in training). First the full-catalogue protocol, on the test stage:

# %%
from llmrec_lib import baselines, evaluate

test_data = evaluate.EvalData.from_split(split, "test", ml.item_ids)
systems = {
    "random": baselines.RandomScorer(ml.item_ids, seed=seed)
    .fit(split.train)
    .for_stage(split, "test"),
    "popularity": baselines.MostPopular(ml.item_ids)
    .fit(split.train)
    .for_stage(split, "test"),
}
full = {
    name: evaluate.evaluate(s, test_data, ks=(10, 50, 100))
    for name, s in systems.items()
}
pd.concat(
    {
        name: r.summary().loc[["recall@10", "ndcg@10", "hr@10", "recall@100"]]
        for name, r in full.items()
    }
)

# %% [markdown]
# Now the sampled shortcut: each target is ranked against 100 random movies the user has not
# rated, and "sampled HR@10" is the share of a user's targets that land in the top 10 of those
# 101. Its full-catalogue counterpart is the share of targets in the top 10 of the whole
# catalogue: Recall@10.

# %%
sampled = {
    name: evaluate.sampled_hit_rate(s, test_data, n_negatives=100, k=10, seed=seed)
    for name, s in systems.items()
}
compare = pd.DataFrame(
    {
        "full-catalogue Recall@10": {n: full[n].mean("recall@10") for n in systems},
        "sampled HR@10 (100 negatives)": {
            n: float(np.mean(v)) for n, v in sampled.items()
        },
    }
)
compare

# %% [markdown]
# Random scoring hits the top 10 of 101 about 10% of the time by construction, a number that
# looks respectable and means nothing; in the full catalogue it almost never finds a target.
# Popularity looks far better than it is, because 100 uniformly drawn movies are mostly obscure
# ones that any popularity-aware model beats. A metric that flatters the floor cannot tell us
# whether an LLM beats a strong baseline, so every chapter ranks the full catalogue.

# %%
rnd = compare.loc["random"]
claims.check(
    "random scoring hits the sampled top 10 about 10/101 of the time",
    abs(rnd["sampled HR@10 (100 negatives)"] - 10 / 101) < 0.02,
    detail=f"{rnd['sampled HR@10 (100 negatives)']:.3f}",
)
claims.check(
    "random almost never finds a target in the full catalogue",
    rnd["full-catalogue Recall@10"] < 0.01,
    detail=f"{rnd['full-catalogue Recall@10']:.4f}",
)
for name in systems:  # sampling inflates every system, by a factor of several
    sampled = compare.loc[name, "sampled HR@10 (100 negatives)"]
    full_r = compare.loc[name, "full-catalogue Recall@10"]
    claims.check(
        f"sampling inflates {name} over 3x",
        sampled > 3 * full_r,
        detail=f"{sampled:.3f} vs {full_r:.4f}",
    )
lo = full["popularity"].summary().loc["recall@10", "lo"]
hi = full["random"].summary().loc["recall@10", "hi"]
claims.check(
    "popularity beats random, intervals apart", lo > hi, detail=f"{lo:.4f} > {hi:.4f}"
)

# %% [markdown]
# ## Results
#
# The numbers later chapters read (all from this run; the split is deterministic, so quick and
# full mode give the same values here).

# %%
from llmrec_lib import results as records

out = {
    "mode": cfg.mode,
    "data": overview,
    "per_user_split": split_summary,
    "global_split": {**glob.summary(), **glob_counts},
    "future_share_median": float(share.median()),
    "one_day_user_share": one_day_share,
    "top10pct_rating_share": top10_share,
    "sampled_hr@10_vs_full_recall@10": compare.to_dict(),
}
records.save("00", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every claim above that is pinned to the reference release (MovieLens ml-latest-small,
# 2018) is asserted when the data are that release, and only reported on other data (set
# `LLMREC_DATA_VERIFY=0` and point `LLMREC_DATA_DIR` at a folder in the same layout; see
# the README). Mechanics, such as "the global split leaks no future", are asserted on any
# data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Candidate generation trades precision for recall: it must not miss what a ranker could use.
# 2. LinkedIn's LLM makes the vectors; RecGPT's LLMs make text that a small model turns into
#    vectors.
# 3. MovieLens users rate in bursts and a few movies take most ratings; a third of movies have one.
# 4. A global cutoff leaves too few users here, so we split per user and measure what that leaks.
# 5. We rank the full catalogue: sampled metrics flatter even a random recommender.
#
# ## Exercises
#
# 1. **Change one parameter.** Rebuild the global split with `quantile=0.8`. How many users
#    become evaluable? *Check:* `data.window_users_without_history(data.global_split(ml.ratings,
#    quantile=0.8))["evaluable_users"] > glob_counts["evaluable_users"]`.
# 2. **Measure the split's price differently.** Compute the share of *training ratings of
#    movies released after* each test user's first target (a stricter leak: the model has seen
#    movies that did not exist yet). *Check:* your median is below `share.median()`.
# 3. **Sampled metrics with more negatives.** Re-run `evaluate.sampled_hit_rate` with 1,000
#    negatives. Does random's HR@10 fall to about 10/1001? *Check:*
#    `abs(np.mean(evaluate.sampled_hit_rate(systems["random"], test_data,
#    n_negatives=1000, k=10)) - 10/1001) < 0.005`.
# 4. **NDCG by hand.** A user has 2 targets; a system puts them at ranks 1 and 4. Compute
#    NDCG@4 on paper, then with
#    `metrics.ndcg_at_k(np.array([[7, 3, 5, 9]]), [np.array([7, 9])], k=4)`.
#    *Check:* both give (1 + 1/log2(5)) / (1 + 1/log2(3)).
