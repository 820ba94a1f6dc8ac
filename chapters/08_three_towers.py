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
# # 08 · Three towers and explanations
#
# RecGPT (arXiv 2507.22879) does not ask its LLM to pick items. The LLM writes **tags**, short
# "modifier + core word" phrases describing what a user may want next, and a classic retrieval
# model with **three towers** (user, item, tag) turns those phrases into items, next to the
# collaborative signal of the user's own clicks. A last LLM writes a few words of
# **explanation** for each (interest, item) pair, offline, into a lookup table. In this chapter
# you build the three towers on MovieLens, train the tag tower the way it is used (a user's
# tags before $t$ predict the item at $t$), query it with the tags chapter 07's LLM wrote for
# each test user, choose RecGPT's two knobs on validation over three seeds, measure what the
# LLM's tags add over the user tower and over a counting rule's tags, compare the result with
# chapters 02-05 on the same split, and check the explanations with judges.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. Chapter 07's LLM tags and the committed explanation table were made for that
# release's split, so on other data (your own, or a derived copy) the towers still train live,
# but the tag tower is queried with the counting rule's tags, the comparisons of LLM tags with
# rule tags are recorded as not tested, and a small explanation table is written live; the
# closing table, "Which claims hold on this data", says which claims still hold.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
tag_backbone = "minilm-l6"
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import json
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import (
    abtest,
    backbones,
    config,
    data,
    evaluate,
    generation,
    metrics,
    plots,
    recgpt,
    show,
    text,
)
from llmrec_lib.recgpt import explanations, tagger, towers

chapter_t0 = time.perf_counter()
run = towers.MODES[config.get_mode(mode)]
tcfg = run["config"]
cfg = config.settings(
    "08",
    mode,
    seed=seed,
    backbone=f"{tag_backbone} token embeddings (frozen) for tags; smollm2-135m for "
    "explanations",
    quick={
        "values of a": towers.MODES["quick"]["alphas"],
        "training seeds": towers.MODES["quick"]["seeds"],
        "epochs": tcfg.epochs,
        "explanations": "committed table (reference data; "
        f"{towers.MODES['quick']['explain_users_live']} users written live on other "
        "data) + 5 generated live",
    },
    full={
        "values of a": towers.MODES["full"]["alphas"],
        "training seeds": towers.MODES["full"]["seeds"],
        "epochs": tcfg.epochs,
        "explanations": "committed table (reference data; "
        f"{towers.MODES['full']['explain_users_live']} users written live on other "
        "data) + 5 generated live",
    },
)
cfg.show()

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers ("log-Q is
# worth +0.05 Recall@50") is asserted on the reference release and only recorded on other
# data; a mechanic (training resumes, a loss falls) is asserted on any data.

# %%
claims = config.Claims("08", path=cfg.data_dir)
# the tags the main line queries with: the LLM's where they fit, else the rule's
main_tags = "LLM" if claims.artifacts_fit else "rule"

# %% [markdown]
# **Learning goals**
#
# - Build an item tower from IDs and side features, a user tower from an ID and pooled history,
#   and a tag tower from frozen token embeddings.
# - Write RecGPT's loss $L = L_{col} + a L_{tag} + (1-a) L_{cate}$ as three in-batch softmaxes,
#   and see why the log-Q correction matters for in-batch negatives.
# - Train a tower as it is used at inference, and measure what that choice is worth.
# - Fuse $h = b\,h_u + (1-b)\,h_t$ at inference, choose $a$ and $b$ on validation over seeds
#   with a tie rule fixed in advance, and test the gain over the user tower alone with a
#   paired bootstrap and its minimum detectable effect.
# - Generate explanations offline into a lookup table and measure them with two judges.

# %% [markdown]
# ## 1. Items as features, and the tags that describe them
#
# The item tower reads what RecGPT's does, translated to films: an **ID** (RecGPT: item ID),
# the **genres** (category), the **release decade** (brand, roughly: a stable attribute) and a
# **popularity bucket** computed from training ratings only (discretised sales). An item nobody
# rated in training has no learned ID vector (its ID row is zero), but its other features still
# place it: the three-tower model can retrieve cold items, unlike chapter 02's ID models.
#
# The tag tower needs tags on both sides. Chapter 07's `recgpt.item_tags` describes every item
# with phrases built from its own metadata and the user tags written in training time ("90s
# comedy", "animated comedy", "atmospheric drama"), and `recgpt.tag_category` maps a phrase to
# its category (a genre), as RecGPT's tag-to-category model does.

# %%
ml = data.load_movielens(cfg.data_dir, verify=verify_data)
split = data.per_user_split(ml.ratings)
item_tags = recgpt.item_tags(ml.movies, text.training_tags(ml.tags, split.train))
feats = towers.ItemFeatures.build(ml.movies, split.train, ml.item_ids)
stages = {
    s: evaluate.EvalData.from_split(split, s, ml.item_ids) for s in ("valid", "test")
}
probe_ids = [i for i in (1, 2571, 296) if i in set(feats.item_ids.tolist())]
probe = feats.columns(probe_ids or feats.item_ids[:3])  # Toy Story, Matrix, Pulp F.
pd.DataFrame(
    {
        "title": ml.movies.set_index("item_id")
        .loc[feats.item_ids[probe], "title"]
        .to_numpy(),
        "ID row": feats.id_index[probe],
        "genres": [
            ", ".join(feats.genre_names[j] for j in np.flatnonzero(feats.genres[c]))
            for c in probe
        ],
        "decade": [feats.decades[feats.decade[c]] for c in probe],
        "pop bucket": feats.pop[probe],
        "tags": [", ".join(item_tags[i][:4]) for i in feats.item_ids[probe]],
    }
)

# %%
n_cold = int((feats.id_index == 0).sum())
print(
    f"{feats.n_warm:,} items with a training rating, {n_cold:,} cold; "
    f"{int((item_tags.str.len() > 0).sum()):,} of {len(item_tags):,} items "
    "carry at least one tag"
)
claims.check(
    "item IDs come from training ratings only",
    feats.n_warm == split.train["item_id"].nunique(),
    pinned=False,
    detail=f"{feats.n_warm:,} ID rows",
)

# %% [markdown]
# ## 2. The tag tower reads frozen token embeddings
#
# RecGPT's tag tower takes "the mean of the token embeddings" of a tag, then a DNN. We use the
# input word-piece table of MiniLM (all-MiniLM-L6-v2), frozen: a lookup per token, no
# transformer pass. The alternative, a word table learned from scratch, would only know the
# words of our few hundred training tags; an LLM at inference writes words no item tag
# contains ("gritty heist movie"), and a pretrained table already places them near related
# words. The check below: new phrases, never seen in training, land next to item tags that name
# their category by the frozen vectors alone (before any training).

# %%
bb = backbones.load_backbone(tag_backbone)
vocab = towers.TagVocab.from_backbone([t for ts in item_tags for t in ts], bb)
unit = vocab.vectors / np.linalg.norm(vocab.vectors, axis=1, keepdims=True)
new_tags = [
    "scary ghost movie",
    "funny cartoon",
    "space battle epic",
    "cowboy gunfight",
]
q = vocab.vectors_for(new_tags)
q /= np.linalg.norm(q, axis=1, keepdims=True)
near = [[vocab.tags[j] for j in np.argsort(-(unit @ v))[:3]] for v in q]
near_table = pd.DataFrame(
    {
        "new tag": new_tags,
        "its category": [recgpt.tag_category(t) for t in new_tags],
        "nearest item tags (frozen vectors)": ["; ".join(n) for n in near],
        "categories they name": [
            ", ".join(sorted({c for t in n for c in recgpt.tag_categories(t)}))
            for n in near
        ],
    }
)
print(f"{len(vocab.tags)} distinct item tags, vectors of {vocab.dim} dims")
near_table

# %% [markdown]
# Six hand-picked phrases illustrate; they prove nothing. The measured version asks, for
# every item tag with a category, whether its nearest *other* tag by the frozen vectors names
# the same category, against chance (the share of candidates that do). It is asked twice:
# with every other tag as a candidate, and with only the tags that share **no word** with it,
# the case of an LLM phrase whose words no item tag contains.

# %%
agree = {
    share: towers.nearest_tag_agreement(
        vocab,
        recgpt.tag_category,
        recgpt.tag_categories,
        share_words=share,
        unmapped=recgpt.UNMAPPED,
    )
    for share in (True, False)
}
agree_ci = {
    share: metrics.bootstrap_ci((d["hit"] - d["chance"]).astype(float), seed=0)
    for share, d in agree.items()
}
pd.DataFrame(
    {
        "candidates": ["all other tags", "tags sharing no word"],
        "tags": [len(agree[s]) for s in (True, False)],
        "nearest names the category": [agree[s]["hit"].mean() for s in (True, False)],
        "chance": [agree[s]["chance"].mean() for s in (True, False)],
        "lift over chance [95% CI]": [
            f"{agree_ci[s].mean:+.3f} [{agree_ci[s].lo:+.3f}, {agree_ci[s].hi:+.3f}]"
            for s in (True, False)
        ],
    }
).round(3)

# %%
claims.check(  # measured +0.73
    "with shared words, the nearest tag names the category far above chance "
    "(lift > .5)",
    agree_ci[True].lo > 0.5,
    detail=f"lift {agree_ci[True].mean:+.3f}, lower bound {agree_ci[True].lo:+.3f}",
)
claims.check(  # measured +0.045
    "without a shared word, the nearest tag still names the category above chance",
    agree_ci[False].lo > 0,
    detail=f"lift {agree_ci[False].mean:+.3f}, lower bound {agree_ci[False].lo:+.3f}",
)
claims.check(  # measured 0.05
    "... yet rarely: right less than 20% of the time without a shared word",
    agree[False]["hit"].mean() < 0.2,
    detail=f"{agree[False]['hit'].mean():.3f}",
)

# %% [markdown]
# So the frozen table carries a phrase to its category mostly **through shared words**:
# "90s drama" finds "80s drama". With no word in common, the nearest tag names the right
# category 5% of the time: above chance (under 1%), far from reliable. This is why the
# tagger of chapter 07 is trained to write the catalogue's own kind of tags (a modifier and
# a kind of film), and why its few novel phrases ("90s family drama") still share a word
# with an item tag.

# %% [markdown]
# ## 3. Three losses, one item tower
#
# Scores are cosines divided by a temperature $\tau$: $y_{col} = h_u \cdot h_v / \tau$ (user
# and item), $y_{sem} = h_t \cdot h_v / \tau$ (tag and item). Each training row is a user, the
# positives they made strictly before time $t$, the item they liked at $t$, and **the tags
# the user has at $t$**. That last choice is the point of this chapter. At inference the tag
# tower reads the tags chapter 07's LLM predicted for the user's next films, so it is trained
# the same way: the user's tags before $t$ predict the item at $t$. The LLM cannot run at each
# of 60,000 training positions on two CPU cores, so training uses the tags of its stand-in,
# the counting rule of chapter 07 (`recgpt.recent_tags` over the last 50 likes), which the LLM
# was trained to improve on. A row's tag vector $h_t$ is the normalised mean of its tags'
# vectors, exactly as at inference. Over a batch of $B$ rows:
#
# - $L_{col}$: user $i$ against the $B$ items of the batch, its own item the positive;
# - $L_{tag}$: tags $i$ against the same items, its own item the positive;
# - $L_{cate}$: tags $i$ again, but **every** item of the batch whose category (chapter 07's
#   one category per film, `recgpt.item_category`) is one of the tags' categories counts as a
#   positive: $-\log \sum_{j \in P_i} e^{y_{ij}} / \sum_j e^{y_{ij}}$.
#
# $L = L_{col} + a L_{tag} + (1-a) L_{cate}$; RecGPT uses $a = 0.5$. A duplicate of a row's own
# item elsewhere in the batch is masked (it is no negative). The library also keeps the other
# design, `tag_source="item"`: one of the *target item's own* tags per row, where $L_{tag}$
# counts every batch item that carries that tag as a positive. Section 6 measures what the
# difference is worth. One more detail matters a lot: in an in-batch softmax a popular film is
# a negative in far more batches than a rare one, so the model learns to push popular films
# down. Subtracting $\log q_j$, the log of how often item $j$ is a training target, from every
# logit (the log-Q correction, as chapter 02's SASRec does) removes that bias; section 3 ends
# by measuring what it is worth.


# %%
tag_lookup = item_tags.to_dict()  # a dict: the rule runs once per training pair


def rule_tagger(items):
    """The user's tags at t from their likes before t: chapter 07's counting rule."""
    return recgpt.recent_tags(items, tag_lookup, n=recgpt.N_TAGS)


def make_model(alpha, seed_, name=None, **over):
    return towers.ThreeTowerModel(
        feats,
        vocab,
        item_tags,
        recgpt.tag_category,
        towers.TowerConfig(
            **{**tcfg.__dict__, "tag_source": "history", "alpha": alpha, "seed": seed_}
            | over
        ),
        name=name,
        item_category=recgpt.item_category,
        history_tagger=rule_tagger,
    )


# %% [markdown]
# What the three masks look like on the first 12 rows of a real batch: white cells are the
# positives of each row (a tag set), grey cells are masked, black cells are negatives.

# %%
demo = make_model(0.5, 0)
pairs = towers.training_pairs(split.train, feats, tcfg.max_history)
rows12 = np.random.default_rng(0).choice(len(pairs), 12, replace=False)
set_rows, set_cats = demo.history_sets(pairs)
tgt12 = pairs.target[rows12]
_, cate12 = towers.history_tag_masks(tgt12, set_cats[rows12], demo.primary)
twin = tgt12[:, None] == tgt12[None, :]
eye12 = np.eye(12, dtype=bool)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, (title, pos) in zip(
    axes,
    [("$L_{col}$", eye12), ("$L_{tag}$", eye12), ("$L_{cate}$", cate12 | eye12)],
):
    img = np.where(pos, 1.0, np.where(twin, 0.5, 0.0))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set(title=title, xlabel="batch item j", ylabel="row i", xticks=[], yticks=[])
fig.suptitle("Positives of each row (white), masked twins (grey), negatives (black)")
fig.tight_layout()
print(f"{len(pairs):,} training pairs; row tags, e.g.: {rule_tagger([1, 296, 2571])}")

# %%
claims.check(
    "the own item is usually in one of the row's tag categories (12 rows shown)",
    cate12[eye12].mean() > 0.5,
    detail=f"{cate12[eye12].mean():.2f} of rows",
)
claims.check(
    "L_cate has many positives per row: a softer target (> 2 per row)",
    (cate12 | eye12).sum() > 2 * 12,
    detail=f"{(cate12 | eye12).sum() / 12:.1f} per row",
)

# %% [markdown]
# We train the $a = 0.5$ model in two sittings to show that training resumes: it stops after
# one epoch and a second call continues from the checkpoint (the unit tests check that the
# result equals an uninterrupted run, weight for weight).

# %%
ckpt = tempfile.mkdtemp(prefix="ch08-towers-")
first = make_model(0.5, 0).fit(split.train, checkpoint=ckpt, stop_at=1)
models = {(0.5, 0): make_model(0.5, 0).fit(split.train, checkpoint=ckpt)}
log = pd.DataFrame(models[(0.5, 0)].train_log).set_index("epoch")
print(
    f"resumed from epoch {models[(0.5, 0)].resumed_from}; "
    f"{len(models[(0.5, 0)].pairs):,} training pairs"
)
log.round(3)

# %%
claims.check(
    "training resumes from the checkpoint and runs every epoch once",
    models[(0.5, 0)].resumed_from == 1 and list(log.index) == list(range(tcfg.epochs)),
    pinned=False,
    detail=f"resumed from epoch {models[(0.5, 0)].resumed_from}",
)
claims.check(
    "L_col and L_tag fall over training",
    log["col"].iloc[-1] < log["col"].iloc[0]
    and log["tag"].iloc[-1] < log["tag"].iloc[0],
    pinned=False,
    detail=f"col {log['col'].iloc[0]:.3f} -> {log['col'].iloc[-1]:.3f}, "
    f"tag {log['tag'].iloc[0]:.3f} -> {log['tag'].iloc[-1]:.3f}",
)

# %% [markdown]
# Now the other values of $a$, each with three seeds: validation will choose by the mean over
# seeds, and the spread between seeds is the noise any choice has to beat. Each model takes
# seconds: the towers are small MLPs over embedding tables. A model trains on one thread, so
# `llmrec_lib/recgpt/towers.py::fit_all` trains one per core in forked processes; the weights
# are exactly those of one-by-one training (a test checks it).

# %%
t_fit = time.perf_counter()
to_fit = {
    (alpha, s): make_model(alpha, s)
    for alpha in run["alphas"]
    for s in run["seeds"]
    if (alpha, s) not in models
}
models |= towers.fit_all(to_fit, split.train)
print(
    f"{len(models)} models, {sum(m.fit_seconds for m in models.values()):.0f} "
    f"s of training; these {len(to_fit)} took {time.perf_counter() - t_fit:.0f} s "
    "of wall time"
)

# %% [markdown]
# What the log-Q correction is worth: the same $a = 0.5$ model trained without it, both read
# as the user tower alone on validation.

# %%
no_logq = make_model(0.5, 0, logq=False).fit(split.train, progress=False)
logq_r50 = {
    name: evaluate.evaluate(
        m.system(split, "valid", {}, b=1.0), stages["valid"], ks=(50,)
    ).mean("recall@50")
    for name, m in [("with log-Q", models[(0.5, 0)]), ("without log-Q", no_logq)]
}
print({k: round(v, 4) for k, v in logq_r50.items()})
claims.check(  # the correction matters a lot
    "log-Q adds over .05 validation Recall@50 to the user tower",
    logq_r50["with log-Q"] > logq_r50["without log-Q"] + 0.05,
    detail=f"{logq_r50['with log-Q']:.4f} vs {logq_r50['without log-Q']:.4f}",
)

# %% [markdown]
# The three losses are one function, `llmrec_lib/recgpt/towers.py::tower_losses` (with
# the masks of `llmrec_lib/recgpt/towers.py::history_tag_masks`). Its source:

# %% tags=["hide-output"]
show.source(towers.tower_losses)

# %% [markdown]
# ## 4. The tags the tag tower reads at inference
#
# **LLM tags** (the main line): the LLM_IT that chapter 07 serves (section 7 there: its
# third recipe, decoded one tag per category, chosen on validation). For each user, chapter
# 06's fine-tuned LLM_UI mined interests from the compressed history, and the tag model read
# those interests, the history and two category summaries, and wrote six tags for the next
# films (`tagger.served_tags`; generated once in full mode by the commands in
# `artifacts/recgpt/README.md`, for every test user and a seeded sample of 100 validation
# users, and committed). **Rule tags** (the ablation): the counting rule the
# towers were trained with, computed live from each stage's history. Validation can only
# choose on the users the LLM tagged.
#
# On other data the LLM's tags do not exist (they were written for the reference split's
# users and histories), so there the rule's tags are the main line: every section below
# queries with them, and the LLM-versus-rule comparisons are recorded as not tested.

# %%
user_tags = {"LLM": {}, "rule": {}} if claims.artifacts_fit else {"rule": {}}
for s in stages:
    h = split.history(s)
    liked = h[h["rating"] >= data.POSITIVE_MIN].sort_values(
        ["user_id", "timestamp", "item_id"], kind="stable"
    )
    user_tags["rule"][s] = {
        int(u): rule_tagger(g["item_id"].tolist()) for u, g in liked.groupby("user_id")
    }
    if claims.artifacts_fit:
        user_tags["LLM"][s] = tagger.served_tags(s)
covered = {
    s: np.array([u for u in split.users(s) if user_tags[main_tags][s].get(int(u))])
    for s in stages
}
eval_on = {s: stages[s].subset(covered[s]) for s in stages}
u0 = int(covered["test"][0])
if claims.artifacts_fit:
    tag_meta = json.loads(
        (recgpt.artifacts_dir() / tagger.SERVED / "meta.json").read_text()
    )
    print(f"tagger run: {tag_meta['command']}")
    print(f"user {u0}, LLM tags: {user_tags['LLM']['test'][u0]}")
else:
    tag_meta = None
    print("no LLM tags on this data: the main line queries with the rule's tags")
print(f"user {u0}, rule tags: {user_tags['rule']['test'][u0]}")
print({s: f"{len(covered[s])} of {len(split.users(s))} users" for s in stages})

# %%
claims.check(  # the main line: all
    "the main line's tags cover over 95% of test users",
    len(covered["test"]) > 0.95 * len(split.users("test")),
    detail=f"{main_tags} tags, {len(covered['test'])} of {len(split.users('test'))}",
)
claims.check(
    "at least 100 tagged validation users to choose on",
    len(covered["valid"]) >= 100,
    detail=f"{len(covered['valid'])} users",
)

# %% [markdown]
# ## 5. Choosing a and b on validation
#
# For every trained model, tag source and $b$ we build the fused system and rank the full
# catalogue on both stages; validation chooses, test is only reported. The rule, fixed before
# looking: average validation Recall@50 (LLM tags; on other data the rule's) over the seeds;
# every $(a, b)$ within the noise of the best (the larger of .002 and the best cell's
# standard error over seeds) ties, a tie goes to the $a$ nearest the paper's $0.5$, and for
# that $a$ the $b$ with the best mean is taken.

# %%
ks = (10, 50, 100)
systems = {
    (key, src, s): m.system(split, s, user_tags[src][s])
    for key, m in models.items()
    for src in user_tags
    for s in stages
}
rows, evals = [], {}  # evals: every (model, tags, stage, b) result, per user
for (key, src, s), sys_ in systems.items():
    for b in towers.BETAS:
        r = evals[key, src, s, b] = evaluate.evaluate(sys_.with_b(b), eval_on[s], ks=ks)
        rows.append(
            {"a": key[0], "seed": key[1], "tags": src, "b": b, "stage": s}
            | {m_: r.mean(m_) for m_ in ("recall@10", "recall@50", "recall@100")}
            | {m_: r.mean(m_) for m_ in ("coverage@50", "novelty@50")}
        )
sweep = pd.DataFrame(rows)
by_cell = sweep.groupby(["tags", "stage", "a", "b"])["recall@50"]
mean_sweep = by_cell.agg(["mean", "std", "count"]).reset_index()
valid = mean_sweep[(mean_sweep["tags"] == main_tags) & (mean_sweep["stage"] == "valid")]
best_cell = valid.loc[valid["mean"].idxmax()]
cell_se = float(best_cell["std"]) / np.sqrt(best_cell["count"])
tol = max(0.002, cell_se)
tied = valid[valid["mean"] >= best_cell["mean"] - tol]
a_pref = tied.loc[(tied["a"] - 0.5).abs().idxmin(), "a"]
at_a = valid[valid["a"] == a_pref]
chosen = at_a.loc[at_a["mean"].idxmax()]
a_star, b_star = float(chosen["a"]), float(chosen["b"])
print(
    f"best cell a = {best_cell['a']:g}, b = {best_cell['b']:g}: "
    f"{best_cell['mean']:.4f} (seed SE {cell_se:.4f}, tie tolerance {tol:.4f})"
)
print(f"chosen: a = {a_star:g}, b = {b_star:g} ({chosen['mean']:.4f})")
valid.pivot(index="b", columns="a", values="mean").round(4)

# %%
claims.check(
    "the chosen (a, b) ties with the best validation cell",
    chosen["mean"] >= best_cell["mean"] - tol,
    pinned=False,
    detail=f"{chosen['mean']:.4f} vs best {best_cell['mean']:.4f} - {tol:.4f}",
)
claims.check(
    "validation wants the tags: b* < 1",
    b_star < 1.0,
    detail=f"a* = {a_star:g}, b* = {b_star:g}",
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for alpha, part in valid.groupby("a"):
    axes[0].errorbar(
        part["b"],
        part["mean"],
        yerr=part["std"],
        marker="o",
        ms=3,
        capsize=2,
        label=f"a = {alpha:g}",
    )
test_llm = mean_sweep[
    (mean_sweep["tags"] == main_tags) & (mean_sweep["stage"] == "test")
]
for alpha, part in test_llm.groupby("a"):
    axes[1].plot(part["b"], part["mean"], marker="o", ms=3, label=f"a = {alpha:g}")
for ax, st in zip(axes, ("validation (chooses)", "test (reported)")):
    ax.set(
        xlabel="b (1 = user tower alone, 0 = tag tower alone)",
        ylabel="Recall@50, mean over seeds",
        title=f"{main_tags} tags, {st}",
    )
axes[0].axvline(b_star, color="grey", ls=":")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Why does $b$ sit so close to 1 in RecGPT-style fusion? The two scores live on different
# scales: the user tower separates a user's next film from the rest far more sharply than a
# tag set does, which fits hundreds of films. The distributions of $y_{col}$ and $y_{sem}$ over
# the catalogue for test users show it.

# %%
sys0 = systems[((a_star, 0), main_tags, "test")]
u_rows = np.arange(0, len(sys0.user_ids), 10)
y_col = (sys0.h_u[u_rows] @ sys0.h_v.T).ravel()
y_sem = (sys0.h_t[u_rows] @ sys0.h_v.T).ravel()
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.hist(y_col, bins=80, alpha=0.6, density=True, label="$y_{col} = h_u \\cdot h_v$")
ax.hist(y_sem, bins=80, alpha=0.6, density=True, label="$y_{sem} = h_t \\cdot h_v$")
ax.set(xlabel="cosine", ylabel="density", title="Scores over the catalogue, test users")
ax.legend()
print(f"SD over the catalogue: y_col {y_col.std():.3f}, y_sem {y_sem.std():.3f}")

# %% [markdown]
# ## 6. The fused model against the user tower alone
#
# Same models, same users, two ways to score: $b = 1$ (the user tower alone) and the chosen
# $b^*$, for each of the three seeds. Each user's Recall@50 is averaged over the seeds, and a
# paired bootstrap over test users gives the interval of the difference; the minimum
# detectable effect (80% power) says what a null result could have missed.


# %%
def seed_mean(src, a, b, stage="test", metric="recall@50", model_set=None):
    """Per-user metric averaged over the seeds, and the per-seed means (the
    sweep's results where it has them; other models are evaluated here)."""
    per_seed = []
    for s in run["seeds"]:
        r = evals.get(((a, s), src, stage, b)) if model_set is None else None
        if r is None:
            sys_ = (model_set or models)[(a, s)].system(
                split, stage, user_tags[src][stage]
            )
            r = evaluate.evaluate(sys_.with_b(b), eval_on[stage], ks=ks)
        per_seed.append(r.per_user.set_index("user_id")[metric])
    df = pd.concat(per_seed, axis=1)
    return df.mean(axis=1), df.mean(axis=0).to_numpy()


def paired_row(name, x, y, xs, ys):
    d = metrics.paired_bootstrap(x.to_numpy(), y.loc[x.index].to_numpy(), seed=0)
    return {
        "comparison": name,
        "diff": d.mean_diff,
        "lo": d.lo,
        "hi": d.hi,
        "p": d.p_value,
        "mde": abtest.mde(x.to_numpy() - y.loc[x.index].to_numpy()),
        "relative": d.mean_diff / y.mean(),
        "seed diffs": np.round(xs - ys, 4).tolist(),
    }


fused_u, fused_s = seed_mean(main_tags, a_star, b_star)
alone_u, alone_s = seed_mean(main_tags, a_star, 1.0)
main = paired_row(
    f"fused ({main_tags} tags) - user tower", fused_u, alone_u, fused_s, alone_s
)
print(
    f"test Recall@50 over {len(run['seeds'])} seeds: fused {fused_u.mean():.4f}, "
    f"user tower {alone_u.mean():.4f}; diff {main['diff']:+.4f} [{main['lo']:+.4f}, "
    f"{main['hi']:+.4f}], {main['relative']:+.1%} relative, MDE {main['mde']:.4f}; "
    f"per seed {main['seed diffs']}"
)

# %%
if main["lo"] > 0:
    verdict = "the fused model beats the user tower alone on test: interval above 0"
elif main["hi"] < 0:
    verdict = "the fused model is worse than the user tower alone on test"
else:
    verdict = f"no measurable difference: the interval covers 0 (MDE {main['mde']:.4f})"
print(verdict)
claims.check(  # the LLM's tags add retrieval the user tower lacks
    "the fused model beats its own user tower on test Recall@50 (interval above 0)",
    main["lo"] > 0,
    detail=f"{main_tags} tags, {main['diff']:+.4f} "
    f"[{main['lo']:+.4f}, {main['hi']:+.4f}]",
)

# %% [markdown]
# RecGPT reports **+6.3% CTR** online for the whole pipeline against its production system.
# Our effect is offline, on one metric, against the model's own user tower; the relative lift
# printed above sits beside it, not against it: a click-through rate and a recall are
# different quantities.
#
# ### Where the gain comes from: three ablations
#
# The same selected models with **rule tags** instead of LLM tags; the **tag tower alone**
# ($b = 0$) with each source; and the other training design, `tag_source="item"` (a tag of the
# target item per row, with $a^*$ and the same seeds), whose own $b$ is chosen on validation
# by the same rule. On other data only the last runs (with the rule's tags): the first two
# need the LLM's tags.

# %%
rule0_u, rule0_s = seed_mean("rule", a_star, 0.0)
item_models = towers.fit_all(
    {(a_star, s): make_model(a_star, s, tag_source="item") for s in run["seeds"]},
    split.train,
)
item_curve = {
    b: seed_mean(main_tags, a_star, b, "valid", model_set=item_models)[0].mean()
    for b in towers.BETAS
}
best_item = max(item_curve.values())
b_item = max(b for b, v in item_curve.items() if v >= best_item - 0.002)
item_u, item_s = seed_mean(main_tags, a_star, b_item, model_set=item_models)
trained_as_used = paired_row(
    f"trained on history tags - on item tags (b={b_item:g})",
    fused_u,
    item_u,
    fused_s,
    item_s,
)
if claims.artifacts_fit:
    rule_u, rule_s = seed_mean("rule", a_star, b_star)
    llm0_u, llm0_s = seed_mean("LLM", a_star, 0.0)
    llm_vs_rule = paired_row(
        "fused: LLM tags - rule tags", fused_u, rule_u, fused_s, rule_s
    )
    alone_llm_vs_rule = paired_row(
        "tag tower alone: LLM - rule tags", llm0_u, rule0_u, llm0_s, rule0_s
    )
    ablations = pd.DataFrame([main, llm_vs_rule, alone_llm_vs_rule, trained_as_used])
else:  # no LLM tags here: only what the rule's tags can measure
    llm_vs_rule = alone_llm_vs_rule = None
    ablations = pd.DataFrame([main, trained_as_used])
ablations.round(4)

# %%
claims.check(  # training the tag tower as it is used pays
    "training the tag tower on history tags beats item tags (interval above 0)",
    trained_as_used["lo"] > 0,
    detail=f"{trained_as_used['diff']:+.4f} "
    f"[{trained_as_used['lo']:+.4f}, {trained_as_used['hi']:+.4f}]",
)
LLM_EQ_RULE = "fused: LLM tags = rule tags, within the noise (interval covers 0)"
LLM_ALONE = "read by the tag tower alone, LLM tags find fewer next films than rule tags"
if claims.artifacts_fit:
    claims.check(  # LLM tags = rule tags, within the MDE
        LLM_EQ_RULE,
        llm_vs_rule["lo"] < 0 < llm_vs_rule["hi"],
        detail=f"{llm_vs_rule['diff']:+.4f} "
        f"[{llm_vs_rule['lo']:+.4f}, {llm_vs_rule['hi']:+.4f}]",
    )
    claims.check(  # read alone, the LLM's tags find fewer next films
        LLM_ALONE,
        alone_llm_vs_rule["hi"] < 0,
        detail=f"{alone_llm_vs_rule['diff']:+.4f} "
        f"[{alone_llm_vs_rule['lo']:+.4f}, {alone_llm_vs_rule['hi']:+.4f}]",
    )
    print(
        f"tag tower alone, test Recall@50: LLM tags {llm0_u.mean():.4f}, "
        f"rule tags {rule0_u.mean():.4f}"
    )
    decade = recgpt.decade_mentions  # the one rule that reads decades in a phrase
    dec_share = {
        src: np.mean(
            [
                bool(decade(t, years=False))
                for v in user_tags[src]["test"].values()
                for t in v
            ]
        )
        for src in ("LLM", "rule")
    }
    print(f"test tags naming a decade: {dec_share}")
    claims.check(  # measured .997 and .575
        "nearly every LLM tag names a decade (over 95%), the rule's far fewer (< 70%)",
        dec_share["LLM"] > 0.95 and dec_share["rule"] < 0.7,
        detail=f"{dec_share['LLM']:.3f} vs {dec_share['rule']:.3f}",
    )
else:
    no_llm = "needs chapter 07's LLM tags, written for the reference split"
    claims.skip(LLM_EQ_RULE, no_llm)
    claims.skip(LLM_ALONE, no_llm)
    print(f"tag tower alone, test Recall@50: rule tags {rule0_u.mean():.4f}")

# %% [markdown]
# What the ablations say (quick mode numbers, printed above; `results/ch08.json` keeps them).
# Training the tag tower as it is used is worth about +0.009 Recall@50 over the item-tag
# design, interval above 0. With the LLM's tags the fused model beats its own user tower by
# about +0.003 (+1.2% relative), interval above 0, in two of three seeds: the LLM's output
# reaches retrieval and helps, a little. But the LLM's tags do **not** measurably beat the
# counting rule's tags at the fused point (about +0.001, the interval covers 0; the MDE is
# about 0.003), and read by the tag tower alone they find fewer next films (about -0.07).
# That gap is not the categories: chapter 07's served LLM_IT names the rule's categories as
# well as the rule does (HR@6 level with it). It is the words: the LLM writes nearly every
# tag as a decade and a kind ("90s crime film"), while four in ten of the rule's tags take
# their modifier from the films' own tags ("suspense crime film"; shares printed above). A
# likely reason, not measured here, is that the tower, trained on the rule's phrases, tells
# films apart by those modifiers. The honest lesson on this benchmark: the gain comes
# from the tag channel and from training it the way it is used; our 135M LLM_IT carries the
# rule's signal into it, and nothing measurable beyond it.

# %% [markdown]
# ### Without a user ID
#
# Chapter 09 also reads a variant whose user tower has no ID embedding (pooled history only):
# it reads fresh history the same way on validation and test. We train it with $a^*$, choose
# its $b$ on validation by the same rule (one seed), and test it.

# %%
noid = make_model(a_star, 0, user_id=False, name="three towers, no user ID").fit(
    split.train, progress=False
)
noid_sys = {s: noid.system(split, s, user_tags[main_tags][s]) for s in stages}
noid_curve = pd.DataFrame(
    {
        s: [
            evaluate.evaluate(noid_sys[s].with_b(b), eval_on[s], ks=(50,)).mean(
                "recall@50"
            )
            for b in towers.BETAS
        ]
        for s in stages
    },
    index=list(towers.BETAS),
)
v_best = noid_curve["valid"].max()
b_noid = float(
    max(b for b in towers.BETAS if noid_curve.loc[b, "valid"] >= v_best - 0.002)
)
f2 = evaluate.evaluate(
    noid_sys["test"].with_b(b_noid, name=f"fused, no user ID (b={b_noid:g})"),
    eval_on["test"],
    ks=ks,
)
a2 = evaluate.evaluate(
    noid_sys["test"].with_b(1.0, name="user tower alone, no user ID"),
    eval_on["test"],
    ks=ks,
)
diff_noid = f2.compare(a2, "recall@50")
verdict_noid = (
    "beats"
    if diff_noid.lo > 0
    else "is worse than"
    if diff_noid.hi < 0
    else "does not measurably differ from"
)
print(
    f"no user ID: validation chooses b = {b_noid:g}; test Recall@50 fused "
    f"{f2.mean('recall@50'):.4f} vs user tower alone {a2.mean('recall@50'):.4f}: "
    f"{diff_noid.mean_diff:+.4f} [{diff_noid.lo:+.4f}, {diff_noid.hi:+.4f}]; the fused "
    f"model {verdict_noid} its user tower"
)
noid_curve.T.round(4)

# %% [markdown]
# The seed-0 results of the selected model are what the later sections and chapter 09 read.

# %%
sys_sel = systems[((a_star, 0), main_tags, "test")]
fused = evaluate.evaluate(
    sys_sel.with_b(
        b_star, name=f"three towers, {main_tags} tags (a={a_star:g}, b={b_star:g})"
    ),
    eval_on["test"],
    ks=ks,
)
alone = evaluate.evaluate(
    sys_sel.with_b(1.0, name=f"user tower alone (a={a_star:g})"), eval_on["test"], ks=ks
)
fused_rule = (  # on other data the main line is the rule's tags
    evaluate.evaluate(
        systems[((a_star, 0), "rule", "test")].with_b(
            b_star, name=f"three towers, rule tags (a={a_star:g}, b={b_star:g})"
        ),
        eval_on["test"],
        ks=ks,
    )
    if main_tags != "rule"
    else fused
)
diff = fused.compare(alone, "recall@50")
pd.DataFrame(
    {
        r.name: r.summary().loc[["recall@10", "recall@50", "recall@100"], "mean"]
        for r in {id(r): r for r in (fused, fused_rule, alone)}.values()
    }
).round(4)

# %% [markdown]
# ## 7. Against chapters 02-05
#
# The other chapters' numbers come from their results files, written on the same split and
# catalogue; nothing is copied by hand.

# %%
from llmrec_lib import results as records

board = [
    {
        "system": r.name,
        "chapter": "08",
        **r.summary().loc["recall@50", ["mean", "lo", "hi"]].to_dict(),
    }
    for r in {id(r): r for r in (fused, fused_rule)}.values()
] + [
    {
        "system": f"three towers, user tower alone (a={a_star:g})",
        "chapter": "08",
        **alone.summary().loc["recall@50", ["mean", "lo", "hi"]].to_dict(),
    },
    {
        "system": f"three towers, no user ID, fused (b={b_noid:g})",
        "chapter": "08",
        **f2.summary().loc["recall@50", ["mean", "lo", "hi"]].to_dict(),
    },
]
ch02 = records.load("02", "table", "cold")
# chapter 02's baselines, and chapter 03's models where it ran on this data
board = records.leaderboard("recall@50", ["02", "03"], board)
fig = plots.bars_with_ci(
    board.assign(label=board["chapter"] + " · " + board["system"]),
    "mean",
    "lo",
    "hi",
    "label",
    "Three towers next to every earlier system (test Recall@50, 95% CI)",
)
board.round(4)

# %%
knn = board[board["system"] == "item-kNN"].iloc[0]
print(
    f"item-kNN {knn['mean']:.4f} [{knn['lo']:.4f}, {knn['hi']:.4f}] vs fused "
    f"{fused.mean('recall@50'):.4f}"
)
pop_all = board[board["system"] == "popular (all time)"]["mean"].iloc[0]
claims.check(
    "the fused model beats all-time popularity on test Recall@50",
    fused.mean("recall@50") > pop_all,
    detail=f"{fused.mean('recall@50'):.4f} vs {pop_all:.4f}",
)
claims.check(  # within reach of the best baseline
    "the fused model's interval reaches item-kNN's (test Recall@50)",
    fused.summary().loc["recall@50", "hi"] > knn["lo"],
    detail=f"fused upper {fused.summary().loc['recall@50', 'hi']:.4f}, "
    f"item-kNN lower {knn['lo']:.4f}",
)

# %% [markdown]
# ### Cold items
#
# Chapter 02's ID models score cold targets at exactly zero. The item tower places a cold film
# by its genres, decade and popularity bucket, so it can retrieve some.

# %%
cold = fused.segment("cold").summary().loc["recall@100"]
cold02 = pd.DataFrame(ch02["cold"]).set_index("system")
print(
    f"cold-target Recall@100: fused {cold['mean']:.4f} [{cold['lo']:.4f}, "
    f"{cold['hi']:.4f}]; "
    f"item-kNN {cold02.loc['item-kNN', 'cold recall@100']:.4f}, random "
    f"{cold02.loc['random', 'cold recall@100']:.4f}"
)

# %% [markdown]
# ## 8. Explanations (LLM_RE) and their judges
#
# RecGPT writes a few words per (interest, item) offline and serves them from a lookup table.
# Ours comes from **the model section 5 selected** ($a^*$, seed 0, queried with chapter 07's
# LLM tags and fused with $b^*$): SmolLM2-135M-Instruct explains the top-4 items of 30 seeded
# test users, each with the user's LLM tag that the tag tower matches best to it. The command,
# $a$, $b$ and the writer's fingerprint are stored with the table. Three judges read every row:
#
# - **relevant**: the tag's category (`recgpt.tag_category`) is one of the item's genres. This
#   judges the *retrieval's* pick of the tag, not the writer, and the pick itself leans on
#   categories, so it is reported and not counted as evidence for the explanations;
# - **faithful**: the explanation names no genre the item lacks and no decade other than its
#   own;
# - **grounded**: faithful *and* it names at least one fact of its own item, a genre or the
#   decade (`explanations.judge_grounded`). It reads only what the writer wrote. A
#   control shows it can fail: the same explanations judged against **another row's
#   item** (a seeded derangement). A judge that cannot tell an item's own explanation
#   from another item's measures nothing.
#
# The committed table explains the reference split's selected model. On other data this run's
# selected model is explained live instead (`explanations.explain_model`), with the
# rule's tags, for fewer users (8 in quick mode): the checks that compare with the
# committed table are recorded as not tested.

# %%
gen = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m",
        config=generation.GenerationConfig(**explanations.EXPLAIN_CONFIG),
    )
)
if claims.artifacts_fit:
    table = explanations.ExplanationTable.load(explanations.explanations_path())
else:  # the committed table explains the reference split: write one live, smaller
    table = explanations.explain_model(
        models[(a_star, 0)],
        split,
        ml.movies,
        user_tags[main_tags]["test"],
        run["explain_users_live"],
        run["explain_k"],
        b_star,
        generator=gen,
        progress=False,
        meta={
            "command": "generated live by chapter 08 (explanations.explain_model), "
            f"{run['explain_users_live']} test users, {main_tags} tags"
        },
    )
print(
    table.meta["command"],
    "|",
    table.meta["generator"],
    "|",
    table.meta["n_pairs"],
    "pairs",
)
if cfg.mode == "full" and claims.artifacts_fit:  # full mode explains its own model
    table = explanations.run_explain(
        cfg.mode,
        a_star,
        b_star,
        0,
        model=models[(a_star, 0)],
        out=tempfile.mkdtemp(prefix="ch08-expl-") + "/explanations.json",
    )
judged = table.judged(ml.movies, recgpt.tag_category)
JUDGE_COLS = {
    "relevant": "relevant",
    "faithful": "faithful",
    "grounded": "grounded",
    "grounded, shuffled items": "grounded_shuffled",
    "well formed": "ok",
}
rates = pd.DataFrame(
    {
        j: metrics.bootstrap_ci(judged[c].astype(float), seed=0)._asdict()
        for j, c in JUDGE_COLS.items()
    }
).T
own_vs_other = metrics.paired_bootstrap(
    judged["grounded"].to_numpy(float),
    judged["grounded_shuffled"].to_numpy(float),
    seed=0,
)
print(
    f"grounded, own item - another item: {own_vs_other.mean_diff:+.3f} "
    f"[{own_vs_other.lo:+.3f}, {own_vs_other.hi:+.3f}]"
)
rates.round(3)

# %%
TABLE_CLAIMS = {
    "model": "the committed table explains the selected model (a*, b*, history tags)",
    "pairs": "90% of the table's pairs are retrieved again by this run's model",
    "fresh": "the committed table matches the prompts this code writes",
    "judges": "the judges reproduce the rates the table recorded",
}
if claims.artifacts_fit:
    claims.check(  # the selected model
        TABLE_CLAIMS["model"],
        table.meta["alpha"] == a_star
        and table.meta["b"] == b_star
        and table.meta["tag_source"] == "history",
        detail=f"table a = {table.meta['alpha']:g}, b = {table.meta['b']:g}, "
        f"{table.meta['tag_source']} tags",
    )
    # and its pairs are what this chapter's selected model retrieves now
    redo = explanations.explanation_pairs(
        models[(a_star, 0)],
        split,
        user_tags["LLM"]["test"],
        run["explain_users"],
        run["explain_k"],
        b=b_star,
    ).dropna(subset=["tag"])
    same = set(zip(redo["tag"], redo["item_id"])) & set(
        zip(table.rows["tag"], table.rows["item_id"])
    )
    print(f"{len(same)} of {len(table.rows)} table pairs retrieved again by this model")
    claims.check(
        TABLE_CLAIMS["pairs"],
        len(same) >= 0.9 * len(table.rows),
        detail=f"{len(same)} of {len(table.rows)}",
    )
    claims.check(TABLE_CLAIMS["fresh"], table.stale_rows(ml.movies).empty)
    key = {"well formed": "well_formed"}  # the judges reproduce what the run recorded
    off = {
        j: abs(rates.loc[j, "mean"] - table.meta["judges"][key.get(j, j)])
        for j in JUDGE_COLS
    }
    claims.check(
        TABLE_CLAIMS["judges"],
        max(off.values()) < 1e-9,
        detail=f"largest gap {max(off.values()):.1e}",
    )
else:
    for claim in TABLE_CLAIMS.values():
        claims.skip(claim, "the committed table explains the reference split's model")
claims.check(  # the grounded judge tells an item's explanation from another's
    "grounded: own item beats another item by over .1 (interval)",
    own_vs_other.lo > 0.1,
    detail=f"{own_vs_other.mean_diff:+.3f} [{own_vs_other.lo:+.3f}, "
    f"{own_vs_other.hi:+.3f}], {len(judged)} rows",
)

# %%
titles = ml.movies.set_index("item_id")["title"]
rows_t = judged.assign(title=titles.loc[judged["item_id"]].to_numpy())
pd.concat([rows_t[rows_t["grounded"]].head(4), rows_t[~rows_t["faithful"]].head(4)])[
    ["tag", "title", "explanation", "relevant", "faithful", "grounded", "violations"]
]

# %% [markdown]
# What the judges say (the committed table, quick mode's selection): a bit over a third of
# the explanations are grounded in a fact of their own film, and under one in ten are when
# judged against another film, so the judge reads the film, not a fixed phrase. Unfaithful rows
# mostly name a genre the film does not have (the small model likes "comedy-drama" and
# "fantasy" whatever the film is), or copy the tag's decade ("2000s mystery") onto a film of
# another decade: there the writer repeats a mismatch the retrieval made, since the tag tower
# matches a tag by its category more than its decade. About a quarter of the tags the tower
# picks do not name a genre of the film at all (relevant ~.75), a retrieval error no writer
# can fix.

# %%
if cfg.mode == "quick":  # the prose above quotes the committed table
    claims.check(
        "over a third of the explanations are grounded (.30 to .45)",
        0.30 < rates.loc["grounded", "mean"] < 0.45,
        detail=f"{rates.loc['grounded', 'mean']:.3f}",
    )
    claims.check(
        "almost none are grounded when judged against another film (< .15)",
        rates.loc["grounded, shuffled items", "mean"] < 0.15,
        detail=f"{rates.loc['grounded, shuffled items', 'mean']:.3f}",
    )
    RELEVANT = "about three quarters of the tower's LLM tag picks are relevant (.75)"
    if claims.artifacts_fit:
        claims.check(
            RELEVANT,
            abs(rates.loc["relevant", "mean"] - 0.75) < 0.03,
            detail=f"{rates.loc['relevant', 'mean']:.3f}",
        )
    else:
        claims.skip(RELEVANT, "judges picks among the LLM's tags; here the rule's")

# %% [markdown]
# The grounded judge and its control are
# `llmrec_lib/recgpt/explanations.py::judge_grounded` and
# `llmrec_lib/recgpt/explanations.py::derangement`. The judge's source:

# %% tags=["hide-output"]
show.source(explanations.judge_grounded)

# %% [markdown]
# ## 9. One user through the whole chain
#
# History, the interests chapter 06's LLM_UI mined from it, the tags chapter 07's LLM_IT wrote
# from those, the items the fused model without a user ID retrieves, and their explanations,
# for one test user. The explanations for this user are generated live (and
# cached on disk) with the same prompt and settings as the table. On other data the
# interests and the LLM's tags do not exist; the rule's tags take their place.

# %%
user = int(split.users("test")[5])
ed_u = stages["test"].subset(np.array([user]))
top = evaluate.evaluate(noid_sys["test"].with_b(b_noid), ed_u, ks=(5,)).topk[0]
interests_u = (
    tagger.served_tags("test", field="interests").get(user, [])
    if claims.artifacts_fit
    else ["(not on this data: mined for the reference split)"]
)
targets_u = set(split.targets("test").loc[lambda t: t["user_id"] == user, "item_id"])
items = feats.item_ids[top]
tags_u = user_tags[main_tags]["test"].get(user, [])
pair_tags = explanations.best_tags(noid, tags_u, top)
live = explanations.ExplanationTable.generate(
    gen, pd.DataFrame({"tag": pair_tags, "item_id": items}), ml.movies, progress=False
)
live_j = live.judged(ml.movies, recgpt.tag_category)
hist = split.history("test")
hist = hist[(hist["user_id"] == user) & (hist["rating"] >= data.POSITIVE_MIN)].tail(6)
chain = {
    "history (latest likes)": [titles[i] for i in hist["item_id"]],
    "interests (LLM_UI, ch. 06)": interests_u,
    "tags (LLM_IT, ch. 07)" if claims.artifacts_fit else "tags (counting rule)": tags_u,
    f"retrieved (no user ID, b={b_noid:g})": [
        f"{titles[i]}{' *' if i in targets_u else ''}" for i in items
    ],
    "explanations": [
        f"[{t}] {e}" for t, e in zip(live.rows["tag"], live.rows["explanation"])
    ],
}
import textwrap

fig, axes = plt.subplots(
    1, 5, figsize=(17, 4.4), gridspec_kw={"width_ratios": [1.1, 0.8, 0.8, 1.1, 1.3]}
)
for ax, (head, lines), color in zip(
    axes, chain.items(), ["history", "llm", "llm", "dnn", "llm"]
):
    ax.axis("off")
    ax.set_title(head, fontsize=10, color=plots.COLORS[color], fontweight="bold")
    width = 34 if head == "explanations" else 28
    ax.text(
        0.0,
        1.0,
        "\n\n".join(textwrap.fill(str(l), width) for l in lines),
        va="top",
        fontsize=8,
        linespacing=1.2,
    )
fig.suptitle(
    f"User {user}: from history to explained recommendations (* = a test target)"
)
fig.tight_layout()
print(f"live explanations: {gen.last_hits} from cache, {gen.last_misses} generated now")

# %%
claims.check(
    "five live explanations, written from the prompts this code writes",
    len(live.rows) == 5 and live.stale_rows(ml.movies).empty,
    pinned=False,
)

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT** trains its towers with $a = 0.5$ and does not disclose $b$; it reports the
# pipeline online only (1% traffic per arm): CTR +6.33%, item page views +9.47%, dwell time
# +4.82%, clicked categories +6.96%. Its judges are LLMs fine-tuned on human labels (0.77-0.93
# agreement). **We measure** offline, on MovieLens' test stage, the numbers in sections 5-8: the
# fused model against its own user tower with a paired interval, and rule-based judges that
# stand in for the paper's LLM judges. The tags the tag tower reads at inference are chapter
# 07's LLM predictions for the user's next films (section 4); the towers were trained with the
# counting rule's tags in their place.
# ```

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "08",
    "mode": cfg.mode,
    "settings": cfg.as_dict(),
    "produced_by": {
        "towers": f"trained live in this run ({tcfg.epochs} epochs per model, a in "
        f"{list(run['alphas'])}, "
        f"seeds {list(run['seeds'])}), tag_source='history' (rule tags before t)",
        "tags_at_inference": f"LLM tags: artifacts/recgpt/{tagger.SERVED} "
        f"({tag_meta['command']}); ablation: rule tags (recgpt.recent_tags), "
        "computed live"
        if claims.artifacts_fit
        else "rule tags (recgpt.recent_tags), computed live: chapter 07's LLM tags "
        "were written for the reference split and are not used on this data",
        "explanations": table.meta["command"],
    },
    "main_tags": main_tags,  # "LLM" on the reference release, "rule" on other data
    "sweep": sweep.to_dict(orient="records"),
    "chosen": {
        "a": a_star,
        "b": b_star,
        "valid_recall@50": float(chosen["mean"]),
        "best_cell": {"a": float(best_cell["a"]), "b": float(best_cell["b"])},
        "tie_tolerance": tol,
        "valid_users": len(covered["valid"]),
    },
    "seed_averaged": {
        "fused_recall@50": float(fused_u.mean()),
        "user_tower_recall@50": float(alone_u.mean()),
        "ablations": ablations.to_dict(orient="records"),
        "b_item_source": b_item,
    },
    "test": {
        "fused": fused.to_dict(segments=False),
        "user_tower_alone": alone.to_dict(segments=False),
    },
    "fused_minus_user_tower_recall@50": diff._asdict(),
    "verdict": verdict,
    "headline": {
        "model": f"three towers without a user ID, {main_tags} tags, a chosen on "
        "validation with the ID model",
        "a": a_star,
        "b": b_noid,
        "fused_recall@50": f2.mean("recall@50"),
        "user_tower_recall@50": a2.mean("recall@50"),
        "diff": diff_noid._asdict(),
    },
    "no_user_id": {
        "b_chosen_on_valid": b_noid,
        "curve_recall@50": noid_curve.to_dict(),
        "test": {
            "fused": f2.to_dict(segments=False),
            "user_tower_alone": a2.to_dict(segments=False),
        },
        "fused_minus_user_tower_recall@50": diff_noid._asdict(),
        "verdict": verdict_noid,
    },
    "cold_recall@100": dict(cold),
    "explanation_judges": rates.to_dict(orient="index"),
    "valid_recall@50_logq": logq_r50,
    "claims": claims.table().to_dict(orient="records"),
    "fit_seconds": {
        **{f"a={a:g},seed={s}": m.fit_seconds for (a, s), m in models.items()},
        "no_user_id": noid.fit_seconds,
    },
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("08", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# Chapter 09 compares every system user by user; the test-stage top-100 lists of the three fused
# models are stored for it (`evaluate.save_ranking`). On other data there is no LLM-tag arm:
# the rule-tag arm is stored under its usual name and the model without a user ID, queried
# with the rule's tags, under a name that says so.

# %%
rank_dir = config.results_dir() / "rankings"
ARMS = {  # which list goes to which file
    "LLM": "ch08-three-towers",
    "rule": "ch08-three-towers-rule-tags",
    "no-ID": "ch08-three-towers-no-user-id",
}
if not claims.artifacts_fit:
    ARMS = {"rule": ARMS["rule"], "no-ID": "ch08-three-towers-no-user-id-rule-tags"}
seed0 = {
    "LLM": (fused, models[(a_star, 0)].fit_seconds),
    "rule": (fused_rule, models[(a_star, 0)].fit_seconds),
    "no-ID": (f2, noid.fit_seconds),
}
for arm, key in ARMS.items():
    res_, secs = seed0[arm]
    evaluate.save_ranking(
        res_,
        ml.item_ids,
        rank_dir / f"{key}.npz",
        meta={
            "chapter": "08",
            "mode": cfg.mode,
            "fit_seconds": secs,
            "system": res_.name,
        },
    )
print(f"stored {len(ARMS)} rankings in {rank_dir}: {', '.join(ARMS.values())}")

# %% [markdown]
# The same three arms trained with the other seeds (same $a^*$, $b^*$ and $b$ of the no-ID
# variant, chosen above on seed 0), so chapter 09 can count training noise in its intervals.

# %%
more_seeds = [s for s in run["seeds"] if s != 0]
noid_more = towers.fit_all(
    {
        s: make_model(a_star, s, user_id=False, name="three towers, no user ID")
        for s in more_seeds
    },
    split.train,
)
for s in more_seeds:
    noid_s = noid_more[s].system(split, "test", user_tags[main_tags]["test"])
    by_arm = {
        src: (
            evals[((a_star, s), src, "test", b_star)],
            models[(a_star, s)].fit_seconds,
        )
        for src in user_tags
    } | {
        "no-ID": (
            evaluate.evaluate(noid_s.with_b(b_noid), eval_on["test"], ks=ks),
            noid_more[s].fit_seconds,
        )
    }
    for arm, key in ARMS.items():
        res_, secs = by_arm[arm]
        evaluate.save_ranking(
            res_,
            ml.item_ids,
            rank_dir / f"{key}-seed{s}.npz",
            meta={"chapter": "08", "mode": cfg.mode, "fit_seconds": secs, "seed": s},
        )
print(f"stored {len(ARMS) * len(more_seeds)} more rankings (seeds {more_seeds})")

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error;
# "not tested" rows needed chapter 07's LLM tags or the committed explanation table, which
# were made for the reference split. Mechanics hold on any data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Three towers share one item tower: collaborative scores from the user tower, semantic
#    scores from the tag tower, fused linearly with one weight $b$.
# 2. The tag tower reads frozen token embeddings, so tags never seen in training still land
#    near tags of their category, mostly through the words they share with item tags.
# 3. In-batch softmax needs the log-Q correction; without it the model buries popular films.
# 4. The tag tower is trained as it is used: the user's tags before $t$ predict the item at
#    $t$. Queried with chapter 07's LLM tags, the fused model is measured against its own
#    user tower over three seeds, with $a$ and $b$ chosen on validation by a rule fixed
#    before looking; the numbers and the verdict are printed in section 6.
# 5. Explanations are cheap to serve from a table and cheap to check with judges, if the
#    judges read what the writer wrote and a control shows they can fail: over a third of
#    a 135M model's explanations are grounded in a fact of their own film, under one in
#    ten when judged against another film (section 8).
#
# ## Exercises
#
# 1. **Temperature.** Train `make_model(0.5, 0, temperature=0.05)` again (its keyword
#    arguments override `tcfg`, and it keeps the chapter's `tag_source="history"`) and evaluate
#    it at b = 1 on validation. *Check:* the chapter's model at the default temperature 0.1
#    scores validation Recall@50 0.3616 at b = 1 (a = 0.5, seed 0, LLM tags, quick mode). Your
#    number must differ from 0.3616; the same value to four decimals means the new temperature
#    never reached training. Say whether it moved by more than 0.01, and in which direction.
# 2. **Fewer tags.** Keep only each user's first three LLM tags
#    (`{u: t[:3] for u, t in user_tags["LLM"]["test"].items()}`) and evaluate the selected
#    seed-0 model at b* = 0.95 on test. *Check:* with all tags it scores Recall@50 0.2537, and
#    at b = 1 (the user tower alone) 0.2492 (quick mode). At b = 1 your three-tag run must give
#    0.2492 exactly, since the tag tower has no weight there; any other value means the
#    truncation changed more than the tags. At b* = 0.95, say whether it moved by more than
#    the MDE printed in section 6 (0.0028, quick mode); for scale, swapping all LLM tags for
#    the rule's tags moves it by 0.0012 (0.2525).
# 3. **Category only.** With a = 0 the tag tower learns only category-level positives. Look
#    at that model's tag tower alone (b = 0) in `sweep`. *Check:* on validation (a = 0, seed 0,
#    LLM tags, quick mode) the tag tower's coverage@50 is 0.064 against the user tower's 0.141
#    (b = 1): below, about 45%; on test 0.089 against 0.263. Reading the a = 0.5 rows instead
#    gives 0.047 and 0.146. Explain the direction.
# 4. **A stricter judge.** Extend `explanations.judge_faithful` to flag explanations
#    that name a year more than 5 years from the film's (after removing the title, as
#    the judge does). *Check:* on the committed table (107 rows) the faithful rate stays
#    0.430 (46 rows): eight explanations name a year, and the three more than 5 years off
#    (2014 for a 1991 film, for one) are already unfaithful. A rate of 0.402 (43 rows) means
#    your judge read decades such as "2000s" as the year 2000.
