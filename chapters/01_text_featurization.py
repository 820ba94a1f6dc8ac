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
# # 01 · Items and users as prompts
#
# An LLM retriever never sees an item ID: it reads **text**. LinkedIn's feed retrieval model
# (arXiv 2510.14223) renders every post and every member as a prompt, feeds both to one causal
# LLM, and mean-pools the token states into vectors. How that text is written decides how much
# of a history fits the model's window, what the model can learn about numbers, and how much
# every training step costs. In this chapter you will build LinkedIn's prompt recipe for
# MovieLens: marker tokens, percentile buckets for numbers, positive-only histories under a
# token budget. Then you will take a first zero-shot look at what two un-tuned models,
# SmolLM2-135M and MiniLM, make of these texts, and see why chapter 03 has to fine-tune.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release; the table at the end of the chapter says which of its claims hold on the data you
# run it on.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
famous = [1, 2571, 858, 296]  # Toy Story, The Matrix, The Godfather, Pulp Fiction
budgets = [128, 256, 512, 1024]
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import backbones, config, data, encoders, plots, show, text

cfg = config.settings(
    "01",
    mode,
    seed=seed,
    backbone="smollm2-135m (30 layers) and minilm-l6",
    quick={"embed_items": 1000, "users": "all with training ratings"},
    full={"embed_items": "all 9,742", "users": "all with training ratings"},
)
cfg.show()
print(config.data_status(cfg.data_dir))
# pinned claims are asserted on the reference release and reported elsewhere
claims = config.Claims("01", path=cfg.data_dir)
n_embed = (
    cfg.sizes["embed_items"] if isinstance(cfg.sizes["embed_items"], int) else None
)
chapter_t0 = time.perf_counter()

# %% [markdown]
# **Learning goals**
#
# - Render an item and a user as LinkedIn-style prompts, with marker tokens registered as
#   single special tokens, and measure what markers save.
# - Turn a number into a percentile-bucket token, compute it from training data only, and see
#   how raw counts tokenize instead.
# - Build positive-only histories, oldest to newest, that keep the most recent items within
#   a token budget, and read the token-length distribution of a whole user base.
# - Embed a catalogue zero-shot with a small decoder and a sentence encoder, and measure why
#   un-tuned mean-pooled decoder states cannot serve as a retriever yet.
#
# **What this chapter checks.** The check cells (`assert` and `claims.check`) test claims
# that other data, another tokenizer or a bug could break: popularity and tags come from training time only (and the
# late tags would name held-out answers); every marker is one token and markers shorten every
# catalogue; a raw count costs more than one token, buckets are ordered and ties share one,
# and a movie nobody rated in training gets `[POP_1]`, not `[POP_0]`; positive-only histories
# are shorter; budgets truncate most users, keep the newest items and write them oldest to
# newest; and zero-shot SmolLM2 finds genre neighbours but puts every pair of movies in a
# narrow cone. The exercises' *Check* lines are for you; the chapter does not run them.

# %% [markdown]
# ## 1. The data the prompts are made from
#
# Everything a prompt says about popularity or about a user's history must come from the
# **training** side of the split: a popularity count that included test ratings would whisper
# the answers into every item's text. We take the per-user chronological split of chapter 00;
# `split.train` holds every rating a model may see.
#
# User tags are dated too, and here the rule bites hardest. A few dozen users wrote all of
# MovieLens's tags, mostly after their last training rating, and some on the very movies they
# rated in the windows we hold out: such a tag names an answer. `text.training_tags` keeps
# a tag only when its author wrote it no later than their last training rating. (Other users'
# later tags would be the per-user split's usual leak of other people's future, measured in
# chapter 00; this rule is the per-user one.)

# %%
ml = data.load_movielens(cfg.data_dir, verify=verify_data)
split = data.per_user_split(ml.ratings)
train = split.train
counts = text.popularity_counts(
    train, ml.item_ids
)  # training ratings per movie, 0 if none
known_tags = text.training_tags(
    ml.tags, train
)  # written before their author's held-out window
tags = text.top_tags(known_tags, k=3)
print(
    f"{len(train):,} training ratings from {train.user_id.nunique()} users; "
    f"{(counts > 0).sum():,} of {len(counts):,} movies have a training rating"
)
print(
    f"user tags: {len(known_tags):,} of {len(ml.tags):,} written in training "
    f"time, on {len(tags):,} movies "
    f"(all tags: {ml.tags.item_id.nunique():,} movies)"
)

# %%
assert int(counts.sum()) == len(train)  # popularity counts training rows, nothing else
leaked = text.popularity_counts(ml.ratings, ml.item_ids)
assert (leaked >= counts).all()  # all ratings count at least the training ones
claims.check(
    "Counting all ratings would change the popularity of more than 1,000 movies",
    (leaked > counts).sum() > 1000,
    detail=f"{(leaked > counts).sum():,} movies",
)
# no tag the prompts may use was written after its author's last training rating
last_train = train.groupby("user_id").timestamp.max()
assert (known_tags.timestamp <= known_tags.user_id.map(last_train)).all()
held_out = pd.concat([split.targets("valid"), split.targets("test")])[
    ["user_id", "item_id"]
]
self_tagged = held_out.merge(ml.tags[["user_id", "item_id"]].drop_duplicates())
print(
    f"{ml.tags.user_id.nunique()} users wrote the tags; {len(self_tagged)} "
    "held-out targets carry a tag "
    "written by the user who holds them out, "
    f"{len(self_tagged.merge(known_tags[['user_id', 'item_id']]))} "
    f"of those tags from training time"
)
claims.check(
    "Fewer than 10% of the users wrote all the tags",
    ml.tags.user_id.nunique() < 0.1 * ml.n_users,
    detail=f"{ml.tags.user_id.nunique()} of {ml.n_users} users",
)
claims.check(
    "Most tags were written after their author's last training rating",
    len(known_tags) < 0.5 * len(ml.tags),
    detail=f"{len(known_tags):,} of {len(ml.tags):,} tags from training time",
)
claims.check(
    "More than 100 held-out targets carry a tag by the user who holds them out",
    len(self_tagged) > 100,
    detail=f"{len(self_tagged)} targets",
)

# %% [markdown]
# ## 2. An item as text, with and without markers
#
# LinkedIn writes each feature behind a **marker**: a short tag such as `[GENRES]` added to the
# tokenizer as a single special token. Compare the same movie in three renderings: plain
# labelled text, the marker text as a tokenizer that does not know the markers sees it, and the
# marker text once `text.add_markers` has registered them. The example is the most-rated movie
# that has a training-time tag (on data without tags, the most-rated movie).

# %%
# Two copies of each tokenizer: markers go into one, the other stays as shipped.
smol_tok, mini_tok = (
    backbones.load_tokenizer("smollm2-135m"),
    backbones.load_tokenizer("minilm-l6"),
)
raw_tok = {
    "SmolLM2": backbones.load_tokenizer("smollm2-135m"),
    "MiniLM": backbones.load_tokenizer("minilm-l6"),
}
toks = {"SmolLM2": smol_tok, "MiniLM": mini_tok}
for tok in toks.values():
    print("markers added:", text.add_markers(tok))

marked = text.item_texts(ml.movies, tags=tags, popularity=counts)
plain = text.item_texts(ml.movies, tags=tags, popularity=counts, markers=False)
by_pop = counts.sort_values(ascending=False, kind="stable").index
example = next((i for i in by_pop if i in tags), by_pop[0])
print(marked[example])
print(plain[example])
print(
    "SmolLM2, markers unknown:",
    raw_tok["SmolLM2"].tokenize(marked[example])[:12],
    "...",
)
print("SmolLM2, markers added:  ", smol_tok.tokenize(marked[example])[:12], "...")

# %% [markdown]
# Registered markers are one token each, and, because they are *special* tokens, WordPiece
# does not lower-case or split them either. Over the whole catalogue:

# %%
rows = []
for name, tok in toks.items():
    n_plain = text.count_tokens(tok, plain.tolist())
    n_unreg = text.count_tokens(raw_tok[name], marked.tolist())
    n_mark = text.count_tokens(tok, marked.tolist())
    rows.append(
        {
            "tokenizer": name,
            "plain labels": n_plain.mean(),
            "markers, unregistered": n_unreg.mean(),
            "markers, registered": n_mark.mean(),
            "saved vs plain": 1 - n_mark.sum() / n_plain.sum(),
            "saved vs unregistered": 1 - n_mark.sum() / n_unreg.sum(),
        }
    )
marker_table = pd.DataFrame(rows).set_index("tokenizer")
marker_table.style.format("{:.1f}").format(
    "{:.0%}", subset=["saved vs plain", "saved vs unregistered"]
)

# %%
for name, tok in toks.items():
    for m in text.marker_tokens():
        assert len(tok(m, add_special_tokens=False)["input_ids"]) == 1, (name, m)
claims.check(
    "Registered markers save over 20% of tokens against plain labels, both tokenizers",
    (marker_table["saved vs plain"] > 0.2).all(),
    detail=", ".join(f"{k} {v:.0%}" for k, v in marker_table["saved vs plain"].items()),
)
claims.check(
    "Registered markers save over 20% of tokens against unregistered ones",
    (marker_table["saved vs unregistered"] > 0.2).all(),
    detail=", ".join(
        f"{k} {v:.0%}" for k, v in marker_table["saved vs unregistered"].items()
    ),
)
# No MovieLens field forges a marker (render_item would neutralise one anyway):
fields = pd.concat([ml.movies.title, ml.tags.tag]).astype(str)
forged = int((fields.map(text.neutralize_markers) != fields).sum())
claims.check(
    "No title or tag contains a marker look-alike", forged == 0, detail=f"{forged}"
)
forgery = "The [POP_9] Heist"  # and a forged one is rewritten, on any data
assert text.neutralize_markers(forgery) != forgery

# %% [markdown]
# Registered markers save about a third of every item's tokens here (field labels and the
# popularity phrase shrink to one token each), and a fine-tuned model gets one learnable
# embedding per field boundary. They also close a door: a title containing the string
# `[POP_9]` would otherwise *become* the bucket token, so `render_item` rewrites marker
# look-alikes inside fields (`text.neutralize_markers`) before rendering. Until the model is
# fine-tuned, though, a new marker is only a random-ish vector; section 6 therefore embeds the
# plain text.
#
# One item's text is `llmrec_lib/text.py::render_item` (the catalogue's,
# `text.py::item_texts`; the markers, `text.py::add_markers`). Open the cell to read it.

# %% tags=["hide-output"]
show.source(text.render_item)

# %% [markdown]
# ## 3. Numbers as text: raw counts or percentile buckets
#
# How popular is a movie? A raw count ("173 ratings") costs several tokens, and its meaning
# depends on the catalogue: 173 is a hit here and nothing on the LinkedIn feed. LinkedIn found
# that a raw count barely registered with the fine-tuned model and replaced it with
# **percentile buckets**: one special token per decile, `[POP_0]` (least rated) to `[POP_9]`.
# See how each tokenizer cuts numbers:

# %%
for n in (7, 173, 1234, 31250):
    print(
        f"{n:>6}: SmolLM2 {smol_tok.tokenize(f'[POP] {n}')}  MiniLM "
        f"{mini_tok.tokenize(f'[POP] {n}')}"
        f"  vs  {text.pop_token(9)} = 1 token"
    )
count_texts = [f"{text.POP} {int(c)}" for c in counts]
count_cost = {
    name: float(text.count_tokens(tok, count_texts, add_special_tokens=False).mean())
    for name, tok in toks.items()
}
count_cost

# %% [markdown]
# SmolLM2 spends one token per digit. The buckets come from
# `llmrec_lib/text.py::percentile_buckets` (its source is in the cell after the figure),
# computed over the training counts of the whole catalogue. MovieLens' long tail shows up at
# once: about a quarter of the movies have no training rating at all and more than a quarter
# exactly one, and tied values must share a bucket, so the deciles cannot be equal in size. We
# put a tie in the middle of the buckets it spans (a mid-rank percentile), which leaves some
# buckets empty instead of pretending the tied movies differ.
#
# One consequence to remember: there is no "unseen" bucket. The movies with 0 training
# ratings span the lowest two deciles, so they all get `[POP_1]`, and `[POP_0]` is never used.
# Every cold movie of chapters 02 and 03 (no rating in training) carries `[POP_1]`.

# %%
buckets = text.popularity_buckets(counts)
edges = text.percentile_edges(counts.to_numpy())
per_bucket = buckets.value_counts().reindex(range(text.N_BUCKETS), fill_value=0)
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(per_bucket.index, per_bucket.to_numpy(), color=plots.COLORS["data"])
ax.set(
    xticks=range(text.N_BUCKETS),
    xlabel="popularity bucket ([POP_b])",
    ylabel="movies",
    title="Ties in the long tail leave some deciles empty; the head splits evenly",
)
fig.tight_layout()
pd.DataFrame(
    {
        "training ratings, lowest": counts.groupby(buckets).min(),
        "highest": counts.groupby(buckets).max(),
        "movies": per_bucket,
    }
).T

# %%
claims.check(
    "A raw count costs more than 1.5 tokens on average",
    all(c > 1.5 for c in count_cost.values()),
    detail=", ".join(f"{k} {v:.2f}" for k, v in count_cost.items()),
)
assert buckets.groupby(counts).nunique().max() == 1  # equal counts share one bucket
assert (counts.groupby(buckets).max().diff().dropna() > 0).all()  # buckets are ordered
claims.check(
    "The Matrix is in the top decile",
    2571 in buckets.index and buckets.get(2571) == 9,
    detail=f"[POP_{buckets[2571]}]" if 2571 in buckets.index else "not in the data",
)
claims.check(
    "Every movie with no training rating gets [POP_1], and [POP_0] stays empty",
    (buckets[counts == 0] == 1).all() and per_bucket[0] == 0,
    detail=f"unrated movies in {sorted(set(buckets[counts == 0]))}, "
    f"{per_bucket[0]} in [POP_0]",
)

# %% [markdown]
# The mid-rank rule for ties is the last three lines of `percentile_buckets`:

# %% tags=["hide-output"]
show.source(text.percentile_buckets)

# %% [markdown]
# Do digits mean nothing to an un-tuned model, then? Not quite. Embed "Ratings: N." for 40
# numbers from 1 to about 3,000 and ask whether two numbers of similar size get similar
# vectors (a rank correlation between cosine similarity and closeness in log scale):

# %%
smol = backbones.load_backbone("smollm2-135m")
mini = backbones.load_backbone("minilm-l6")
numbers = np.unique(np.round(np.logspace(0, 3.5, 40)).astype(int))
iu = np.triu_indices(len(numbers), 1)
closeness = -np.abs(np.log(numbers)[:, None] - np.log(numbers)[None, :])[iu]
magnitude_rho = {}
for name, bb in (("SmolLM2", smol), ("MiniLM", mini)):
    v = encoders.embed_texts(bb, [f"Ratings: {n}." for n in numbers], progress=False)
    sims = (v @ v.T)[iu]
    magnitude_rho[name] = float(
        pd.Series(sims).rank().corr(pd.Series(closeness).rank())
    )
magnitude_rho

# %%
# zero-shot, a number alone does carry its size (the numbers are not from the data)
assert magnitude_rho["SmolLM2"] > 0.3

# %% [markdown]
# Zero-shot, SmolLM2 does place a number near numbers of similar size, at least when the
# number is the whole text. LinkedIn's finding is about something harder: after fine-tuning, a
# count buried in a long prompt and averaged with hundreds of other tokens barely moved the
# member-item score (correlation with popularity about -0.004), while a bucket token, one
# embedding per decile, did (0.116). We carry both renderings forward; chapter 04 (section 5)
# trains a model on each and measures the difference: on our data, the opposite of LinkedIn's.

# %% [markdown]
# ## 4. A user as a prompt: positive-only, oldest to newest
#
# A member prompt at LinkedIn is a profile plus the posts they engaged with. A MovieLens user
# has no profile, so the prompt is the history: `[HISTORY]` followed by each liked movie in time
# order, each opening with `[ITEM]`. Only **positives** (ratings of 4 or more) go in: LinkedIn
# found positive-only histories better (Recall@10 0.424 vs 0.398 with InfoNCE) and cheaper.
# History items use a short text, title and genres, so more of them fit. The prompts are built
# by `llmrec_lib/text.py::user_prompts`.

# %%
short = text.item_texts(ml.movies, fields=("title", "genres"))
t0 = time.perf_counter()
full_hist = {
    name: text.user_prompts(train, short, tok, budget=None)
    for name, tok in toks.items()
}
render_s = (time.perf_counter() - t0) / len(toks)
no_pos = int((full_hist["SmolLM2"].n_history == 0).sum())
full_hist = {
    name: df[df.n_history > 0] for name, df in full_hist.items()
}  # users with a positive
# user 2, or the first user with a positive when the data has no user 2
users = full_hist["SmolLM2"].user_id
example_user = 2 if (users == 2).any() else int(users.iloc[0])
example = full_hist["SmolLM2"].set_index("user_id").loc[example_user]
print(
    f"user {example_user}: {example.n_items} positives, "
    f"{example.n_tokens} SmolLM2 tokens; all "
    f"{len(full_hist['SmolLM2']) + no_pos} users rendered in {render_s:.1f} s "
    f"(users without a positive in training, left out below: {no_pos})\n"
)
print(example.prompt[:600], "...")

# %% [markdown]
# How much do the negatives and the ratings themselves cost? The same users, all ratings shown
# with `[RATED] 4.5`:

# %%
all_hist = text.user_prompts(
    train, short, smol_tok, budget=None, positive_only=False, show_rating=True
)
pos_tokens, all_tokens = full_hist["SmolLM2"].n_tokens.sum(), all_hist.n_tokens.sum()
pos_saving = 1 - pos_tokens / all_tokens
print(
    f"positive-only histories use {pos_saving:.0%} fewer SmolLM2 tokens "
    f"({pos_tokens / 1e6:.2f}M vs {all_tokens / 1e6:.2f}M) [{cfg.mode} mode; "
    "the same in both modes]"
)

# %% [markdown]
# A promise about time depends on the machine. The book's time claims were measured on two
# AVX2 cores that multiply float32 matrices at about 50 GFLOP/s. On a slower CPU,
# `config.py::time_budget` stretches each budget in proportion to `config.matmul_gflops()`.
# On a faster CPU the budget stays as it is. So a claim fails when the code gets slower,
# and not merely because the reader's laptop is slow.

# %%
print(f"this CPU: {config.matmul_gflops():.0f} GFLOP/s float32")
claims.check(
    "Every user's history is tokenized and measured in under 10 s (at 50 GFLOP/s)",
    render_s < config.time_budget(10),
    detail=f"{render_s:.1f} s",
)
claims.check(
    "Positive-only histories use 30% to 80% fewer tokens",
    0.3 < pos_saving < 0.8,
    detail=f"{pos_saving:.0%}",
)

# %% [markdown]
# <div class="alert alert-info">
#
# **The paper reports / we measure.** LinkedIn: positive-only histories need 37% less memory
# per sequence and run 2.6x faster per iteration. We measure the token side of that: positive
# histories are shorter by the share printed above (mode-independent: it is a count). Ours
# differ because MovieLens users rate what they watched, so about half of all ratings are
# positive, and we also drop the rating tokens.
#
# </div>

# %% [markdown]
# ## 5. Token budgets: how much history fits?
#
# Histories are long. Here is the length of every user's *full* positive history, in each
# tokenizer, against the budgets a small model can afford.

# %%
fig, ax = plt.subplots(figsize=(8, 3.4))
bins = np.logspace(
    1, np.log10(max(df.n_tokens.max() for df in full_hist.values())) + 0.05, 40
)
for (name, df), color in zip(
    full_hist.items(), (plots.COLORS["llm"], plots.COLORS["dnn"])
):
    ax.hist(df.n_tokens, bins=bins, alpha=0.6, color=color, label=name)
ax.set_xscale("log")
for b in budgets:
    ax.axvline(b, color="black", lw=0.8, ls="--")
    ax.text(b, ax.get_ylim()[1] * 0.9, f" {b}", fontsize=8)
share_fit = {
    name: text.fit_shares(df.n_tokens, budgets) for name, df in full_hist.items()
}
ax.set(
    xlabel="tokens in the full positive-only history (log scale)",
    ylabel="users",
    title=f"Only {share_fit['SmolLM2'][256]:.0%} of users fit 256 SmolLM2 tokens; "
    f"half need more than {int(full_hist['SmolLM2'].n_tokens.median())}",
)
ax.legend()
fig.tight_layout()
pd.DataFrame(share_fit).T.style.format("{:.0%}").set_caption(
    "share of users whose full history fits"
)

# %%
claims.check(
    "A 256-token budget truncates most users (SmolLM2)",
    share_fit["SmolLM2"][256] < 0.5,
    detail=f"{share_fit['SmolLM2'][256]:.0%} fit",
)
claims.check(
    "More users fit 1,024 tokens than 128, in both tokenizers",
    all(share_fit[n][1024] > share_fit[n][128] for n in toks),
    detail=", ".join(
        f"{n} {share_fit[n][128]:.0%} -> {share_fit[n][1024]:.0%}" for n in toks
    ),
)
claims.check(
    "At 512 tokens MiniLM fits at least as many users as SmolLM2",
    share_fit["MiniLM"][512] >= share_fit["SmolLM2"][512],
    detail=f"{share_fit['MiniLM'][512]:.0%} vs {share_fit['SmolLM2'][512]:.0%}",
)

# %% [markdown]
# So a budget means truncation for most users. `text.user_prompts` keeps the **most recent**
# items, dropping the oldest whole items until the prompt fits; it never cuts an item in half.
# The prompt still reads forward in time, oldest kept item first and the newest last, just
# before the end of the prompt (not most-recent-first).
# Each item's text is tokenized once and lengths are summed per user (exact here, because every
# item starts with a special token), and every final prompt is measured again, so the budget
# holds for any tokenizer.

# %%
kept = {}
for b in budgets:
    df = text.user_prompts(train, short, smol_tok, budget=b)
    assert (df.n_tokens <= b).all()
    assert (df.n_tokens == text.count_tokens(smol_tok, df.prompt.tolist())).all()
    kept[b] = df
u = kept[128].set_index("user_id").loc[example_user]
newest = train[
    (train.user_id == example_user) & (train.rating >= data.POSITIVE_MIN)
].sort_values(["timestamp", "item_id"])
assert (
    u.item_ids.tolist() == newest.item_id.tolist()[-u.n_items :]
)  # the newest, in order
pd.DataFrame(
    {
        b: {
            "median items kept": df.n_items.median(),
            "users truncated": (df.n_items < df.n_history).mean(),
            "mean tokens used": df.n_tokens.mean(),
        }
        for b, df in kept.items()
    }
).T

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.boxplot([kept[b].n_items[kept[b].n_history > 0] for b in budgets], showfliers=False)
ax.set_xticks(range(1, len(budgets) + 1), [str(b) for b in budgets])
ax.set(
    xlabel="token budget (SmolLM2)",
    ylabel="history items kept",
    title=f"128 tokens keep a median of {kept[128].n_items.median():.0f} items; "
    f"1,024 keep {kept[1024].n_items.median():.0f}",
)
fig.tight_layout()

# %%
med = [kept[b].n_items.median() for b in budgets]
claims.check(
    "Each larger budget keeps a larger median history",
    all(a < b for a, b in zip(med, med[1:])),
    detail=" < ".join(f"{m:g}" for m in med),
)
claims.check(
    "128 tokens hold only the last 4 to 12 movies (median)",
    4 <= med[0] <= 12,
    detail=f"{med[0]:g} movies",
)

# %% [markdown]
# ## 6. A first zero-shot look: nearest movies
#
# What do the two bundled models make of item texts *without any training*? We embed the
# catalogue (in quick mode the most-rated movies only) with mean pooling over all of SmolLM2's
# 30 layers and over MiniLM, in bf16 autocast where the CPU has bf16 instructions (float32
# elsewhere), using the plain-text rendering (the markers are
# still untrained vectors), and look up the nearest movies to a few famous titles. The
# embedding is `llmrec_lib/encoders.py::embed_texts`, which pools with
# `encoders.py::mean_pool` (chapter 03 shows it).

# %%
subset = by_pop[:n_embed] if n_embed else by_pop
movies_sub = ml.movies.set_index("item_id").loc[subset].reset_index()
zs_text = text.item_texts(
    movies_sub, fields=("title", "genres", "tags"), tags=tags, markers=False
)
emb, embed_s = {}, {}
for name, bb in (("SmolLM2", smol), ("MiniLM", mini)):
    t0 = time.perf_counter()
    emb[name] = encoders.embed_texts(bb, zs_text.tolist(), batch_size=32, max_length=96)
    embed_s[name] = time.perf_counter() - t0
    print(f"{name}: {len(zs_text):,} movies in {embed_s[name]:.0f} s [{cfg.mode} mode]")

# %%
titles = movies_sub.title.to_numpy()
pos_of = {i: p for p, i in enumerate(movies_sub.item_id)}
# the famous movies among those embedded; else the most-rated ones
shown = [i for i in famous if i in pos_of] or list(movies_sub.item_id[: len(famous)])
neighbours = {}
for name, x in emb.items():
    sims = x @ x[[pos_of[i] for i in shown]].T  # (n, len(shown))
    for col, i in enumerate(shown):
        order = np.argsort(-sims[:, col])
        neighbours[(name, titles[pos_of[i]])] = [
            titles[j] for j in order if j != pos_of[i]
        ][:5]
queries = [titles[pos_of[i]] for i in shown]
pd.DataFrame(
    {m: [title for q in queries for title in neighbours[(m, q)]] for m in emb},
    index=pd.MultiIndex.from_product([queries, range(1, 6)], names=["query", "rank"]),
)

# %% [markdown]
# Both lists look sensible at first sight: sequels, same genre, same era. The text carries real
# signal (titles, genres, user tags), so even an un-tuned model finds related movies. A simple
# check for the whole subset: how often do a movie's 10 nearest neighbours share at least one
# genre with it, against 10 random movies?

# %%
genre_sets = [set(g) for g in movies_sub.genres]
rng = np.random.default_rng(cfg.seed)


def genre_overlap(x: np.ndarray, k: int = 10, chunk: int = 1000) -> float:
    """Share of (movie, one of its k nearest neighbours) pairs that share a genre."""
    hits = []
    for start in range(
        0, len(x), chunk
    ):  # in chunks: the full-mode matrix would be 380 MB
        sims = x[start : start + chunk] @ x.T  # (chunk, n)
        sims[
            np.arange(len(sims)), np.arange(start, start + len(sims))
        ] = -np.inf  # not itself
        nn = np.argpartition(-sims, k, axis=1)[:, :k]
        hits += [
            bool(genre_sets[start + r] & genre_sets[j])
            for r, row in enumerate(nn)
            for j in row
        ]
    return float(np.mean(hits))


overlap = {name: genre_overlap(x) for name, x in emb.items()}
random_nn = rng.integers(0, len(genre_sets), size=(len(genre_sets), 10))
overlap["random"] = float(
    np.mean(
        [
            [bool(genre_sets[i] & genre_sets[j]) for j in row]
            for i, row in enumerate(random_nn)
        ]
    )
)
overlap

# %%
for name in ("SmolLM2", "MiniLM"):
    claims.check(
        f"{name}'s 10 nearest neighbours share a genre 15 points more often "
        "than random",
        overlap[name] > overlap["random"] + 0.15,
        detail=f"{overlap[name]:.0%} vs {overlap['random']:.0%}",
    )

# %% [markdown]
# ### Nearly all alike: the spread of cosine similarities
#
# Rankings hide a problem that scores reveal. Look at the cosine similarity of 200,000 random
# pairs of movies in each space:

# %%
pa, pb = rng.integers(
    0, len(zs_text), size=(2, 200_000)
)  # random pairs of distinct movies
pa, pb = pa[pa != pb], pb[pa != pb]
cos = {name: np.einsum("ij,ij->i", x[pa], x[pb]) for name, x in emb.items()}
centred = {}
for name, x in emb.items():
    xc = x - x.mean(axis=0)
    xc /= np.linalg.norm(xc, axis=1, keepdims=True)
    centred[name] = np.einsum("ij,ij->i", xc[pa], xc[pb])
spread = pd.DataFrame(
    {
        name: {
            "mean": c.mean(),
            "std": c.std(),
            "p5": np.percentile(c, 5),
            "p95": np.percentile(c, 95),
            "std after centring": centred[name].std(),
        }
        for name, c in cos.items()
    }
).T
fig, ax = plt.subplots(figsize=(8, 3.2))
for (name, c), color in zip(cos.items(), (plots.COLORS["llm"], plots.COLORS["dnn"])):
    ax.hist(
        c, bins=100, range=(-0.2, 1), alpha=0.7, color=color, label=name, density=True
    )
ax.set(
    xlabel="cosine similarity between two movies",
    ylabel="density",
    title=f"Un-tuned SmolLM2 puts every pair near {spread.loc['SmolLM2', 'mean']:.2f}; "
    "MiniLM spreads them out",
)
ax.legend()
fig.tight_layout()
spread.round(3)

# %%
sm, mi = spread.loc["SmolLM2"], spread.loc["MiniLM"]
claims.check(
    "Un-tuned SmolLM2 puts two random movies at a mean cosine above 0.85",
    sm["mean"] > 0.85,
    detail=f"{sm['mean']:.3f}",
)
claims.check(
    "SmolLM2's cosines spread less than half as much as MiniLM's (std)",
    sm["std"] < 0.5 * mi["std"],
    detail=f"{sm['std']:.3f} vs {mi['std']:.3f}",
)
claims.check(
    "SmolLM2's 5-95% cosine range is narrower than MiniLM's",
    sm["p95"] - sm["p5"] < mi["p95"] - mi["p5"],
    detail=f"{sm['p95'] - sm['p5']:.3f} vs {mi['p95'] - mi['p5']:.3f}",
)
claims.check(
    "Centring widens SmolLM2's cosine spread more than fivefold",
    sm["std after centring"] > 5 * sm["std"],
    detail=f"std {sm['std']:.3f} -> {sm['std after centring']:.3f}",
)

# %% [markdown]
# Mean-pooled states of an un-tuned decoder all point roughly the same way (the **anisotropy**
# of language-model representations): every movie is a 0.9-something match for every other.
# The ranking above survives because it only compares tiny differences, but a retriever that
# mixes scores, thresholds them or trains a temperature on them needs a spread. Subtracting the
# mean vector recovers a wide spread, so the information is there, just dominated by a
# shared direction. MiniLM was trained contrastively for sentence similarity and has no such
# problem. And item-to-item neighbours are the easy case: a retriever must place a *user's*
# history prompt near the movies that user will like next, a match no un-tuned model was
# trained for. Contrastive fine-tuning (chapter 03) is what turns the decoder into such a
# retriever; LinkedIn measured Recall@10 0.243 for LLaMA-3 without fine-tuning and 0.424 after.

# %% [markdown]
# <div class="alert alert-info">
#
# **The paper reports / we measure.** LinkedIn's prompts put features behind single-token
# markers and numbers into percentile buckets. We measure the token savings of registered
# markers over plain labels in both tokenizers (section 2), one token per bucket against
# several per raw count (section 3), and an un-tuned decoder whose item vectors sit in a narrow
# cone (mean cosine shown above), whereas the paper reports only retrieval quality of its
# un-tuned 3B model (Recall@10 0.243, vs 0.070 random). The embedding numbers come from the mode
# printed above: quick mode embeds the most-rated movies, full mode the whole catalogue.
#
# </div>

# %% [markdown]
# ## Results

# %%
from llmrec_lib import results as records

out = {
    "mode": cfg.mode,
    "embedded_movies": int(len(zs_text)),
    "marker_tokens_per_item": marker_table.round(4).to_dict(orient="index"),
    "raw_count_tokens_mean": count_cost,
    "number_magnitude_rank_corr": magnitude_rho,
    "popularity_bucket_sizes": per_bucket.astype(int).tolist(),
    "positive_only_token_saving": float(pos_saving),
    "full_history_tokens_median": {
        n: float(df.n_tokens.median()) for n, df in full_hist.items()
    },
    "share_users_fit": {
        n: {str(b): v for b, v in s.items()} for n, s in share_fit.items()
    },
    "items_kept_median_smollm2": {str(b): float(m) for b, m in zip(budgets, med)},
    "zero_shot_genre_overlap@10": overlap,
    "zero_shot_cosine_spread": spread.round(4).to_dict(orient="index"),
    "zero_shot_neighbours": {f"{m} | {t}": v for (m, t), v in neighbours.items()},
    "embed_seconds": embed_s,
    "reference_data": claims.reference,
    "claims_not_holding": [c.claim for c in claims.failed],
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("01", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every check above, in one table. A claim *pinned to the reference* quotes a number or an
# ordering measured on the 2018 release: it is asserted there and only reported on other
# data. A *mechanic* (no future leak, budgets hold, buckets ordered) is asserted on any data.
# (The plain `assert` lines above are mechanics too.)

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Markers registered as single special tokens shorten every item's text and cannot be
#    forged by field text.
# 2. A percentile bucket is one token; a raw count is several, and its bucket must come from
#    training ratings only. Ties share a bucket, so a movie with no training rating gets
#    `[POP_1]`; `[POP_0]` stays empty.
# 3. Positive-only histories cut the tokens per user by a large share, as LinkedIn found.
# 4. Full histories are long: most users need more than 256 tokens, so we keep the newest
#    whole items that fit, written oldest to newest.
# 5. Un-tuned mean-pooled SmolLM2 vectors find sensible neighbours but are nearly all alike:
#    it needs fine-tuning.
#
# ## Exercises
#
# 1. **Change one parameter.** Render histories with titles only (`fields=("title",)`) at a
#    128-token budget. How many more items fit? *Check:*
#    `text.user_prompts(train, text.item_texts(ml.movies, fields=("title",)), smol_tok,
#    budget=128).n_items.median() > med[0]`.
# 2. **All ratings, shown.** Build budget-256 prompts with `positive_only=False, show_rating=True`.
#    Do users keep fewer distinct movies than with positives only? *Check:* its `n_items.median()`
#    is below `kept[256].n_items.median()`.
# 3. **Buckets against the training distribution.** A new movie arrives with 40 ratings. Which
#    bucket does it get? *Check:*
#    `text.percentile_buckets([40], edges=edges)[0] == buckets[counts.sub(40).abs().idxmin()]`.
# 4. **Last-token pooling.** Embed the first 200 movies of `zs_text` with `pooling="last"` in
#    SmolLM2 and compute the standard deviation of their pairwise cosines. Is the cone wider or
#    narrower than with mean pooling? *Check:* compare with the same 200 movies under mean pooling
#    (`emb["SmolLM2"][:200]`); write down which is larger and why that might be.
# 5. **Centre before you compare.** Re-rank the neighbours of The Matrix with centred SmolLM2
#    vectors (subtract `emb["SmolLM2"].mean(0)`, re-normalise). *Check:* the genre overlap of the
#    centred space, `genre_overlap(xc)`, is at least `overlap["random"]`, and note whether it beats
#    the un-centred `overlap["SmolLM2"]`.
