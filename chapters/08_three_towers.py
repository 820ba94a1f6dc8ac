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
# you build the three towers on MovieLens, train them with RecGPT's loss, sweep its two knobs,
# compare the result with chapters 02-05 on the same split, and check the explanations with
# judges.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
tag_backbone = "minilm-l6"

# %%
import json
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import (
    backbones,
    config,
    data,
    evaluate,
    generation,
    metrics,
    plots,
    recgpt,
    text,
    towers,
)

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
        "explanations": "committed table + a few generated live",
    },
    full={
        "values of a": towers.MODES["full"]["alphas"],
        "training seeds": towers.MODES["full"]["seeds"],
        "epochs": tcfg.epochs,
        "explanations": "committed table + a few generated live",
    },
)
cfg.show()

# %% [markdown]
# **Learning goals**
#
# - Build an item tower from IDs and side features, a user tower from an ID and pooled history,
#   and a tag tower from frozen token embeddings.
# - Write RecGPT's loss $L = L_{col} + a L_{tag} + (1-a) L_{cate}$ as three in-batch softmaxes,
#   and see why the log-Q correction matters for in-batch negatives.
# - Fuse $h = b\,h_u + (1-b)\,h_t$ at inference, choose $b$ on validation, and test the gain
#   over the user tower alone with a paired bootstrap.
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
ml = data.load_movielens(cfg.data_dir)
split = data.per_user_split(ml.ratings)
item_tags = recgpt.item_tags(ml.movies, text.training_tags(ml.tags, split.train))
feats = towers.ItemFeatures.build(ml.movies, split.train, ml.item_ids)
stages = {
    s: evaluate.EvalData.from_split(split, s, ml.item_ids) for s in ("valid", "test")
}
probe = feats.columns([1, 2571, 296])
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
assert (
    feats.n_warm == split.train["item_id"].nunique()
)  # IDs come from training ratings only

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

# %%
hits = [
    recgpt.tag_category(t) in {c for x in n for c in recgpt.tag_categories(x)}
    for t, n in zip(new_tags, near)
]
assert sum(hits) >= 3, near_table  # most new phrases find tags that name their category

# %% [markdown]
# ## 3. Three losses, one item tower
#
# Scores are cosines divided by a temperature $\tau$: $y_{col} = h_u \cdot h_v / \tau$ (user
# and item), $y_{sem} = h_t \cdot h_v / \tau$ (tag and item). Each training row is a user, the
# positives they made strictly before time $t$, the item they liked at $t$, and one of that
# item's tags drawn at random. Over a batch of $B$ rows:
#
# - $L_{col}$: user $i$ against the $B$ items of the batch, its own item the positive;
# - $L_{tag}$: tag $i$ against the same items, its own item the positive;
# - $L_{cate}$: tag $i$ again, but **every** item of the batch in the tag's category counts as
#   a positive: $-\log \sum_{j \in P_i} e^{y_{ij}} / \sum_j e^{y_{ij}}$.
#
# $L = L_{col} + a L_{tag} + (1-a) L_{cate}$; RecGPT uses $a = 0.5$. A duplicate of a row's own
# item elsewhere in the batch is masked (it is no negative). One more detail matters a lot: in
# an in-batch softmax a popular film is a negative in far more batches than a rare one, so the
# model learns to push popular films down. Subtracting $\log q_j$, the log of how often item
# $j$ is a training target, from every logit (the log-Q correction, as chapter 02's SASRec does)
# removes that bias; section 3 ends by measuring what it is worth.
#
# We train the $a = 0.5$ model in two sittings to show that training resumes: it stops after
# one epoch and a second call continues from the checkpoint (the unit tests check that the
# result equals an uninterrupted run, weight for weight).


# %%
def make_model(alpha, seed_):
    return towers.ThreeTowerModel(
        feats,
        vocab,
        item_tags,
        recgpt.tag_category,
        towers.TowerConfig(**{**tcfg.__dict__, "alpha": alpha, "seed": seed_}),
    )


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
assert models[(0.5, 0)].resumed_from == 1 and list(log.index) == list(
    range(tcfg.epochs)
)
assert (
    log["col"].iloc[-1] < log["col"].iloc[0]
    and log["tag"].iloc[-1] < log["tag"].iloc[0]
)

# %% [markdown]
# Now the other values of $a$ (and, in full mode, more seeds). Each model takes seconds: the
# towers are small MLPs over embedding tables.

# %%
for alpha in run["alphas"]:
    for s in run["seeds"]:
        if (alpha, s) not in models:
            models[(alpha, s)] = make_model(alpha, s).fit(split.train, progress=False)
print(
    f"{len(models)} models, {sum(m.fit_seconds for m in models.values()):.0f} "
    "s of training"
)

# %% [markdown]
# What the log-Q correction is worth: the same $a = 0.5$ model trained without it, both read
# as the user tower alone on validation.

# %%
no_logq = towers.ThreeTowerModel(
    feats,
    vocab,
    item_tags,
    recgpt.tag_category,
    towers.TowerConfig(**{**tcfg.__dict__, "alpha": 0.5, "seed": 0, "logq": False}),
    name="no log-Q",
).fit(split.train, progress=False)
logq_r50 = {
    name: evaluate.evaluate(
        m.system(split, "valid", {}, b=1.0), stages["valid"], ks=(50,)
    ).mean("recall@50")
    for name, m in [("with log-Q", models[(0.5, 0)]), ("without log-Q", no_logq)]
}
print({k: round(v, 4) for k, v in logq_r50.items()})
assert (
    logq_r50["with log-Q"] > logq_r50["without log-Q"] + 0.05
)  # the correction matters a lot

# %% [markdown]
# ## 4. Which tags does the tag tower read at inference?
#
# In RecGPT, LLM_IT predicts tags for what a user wants *next* (chapter 07). Here the tags come
# from two sources. **Recent tags** (always): the tags of the user's 10 latest positives, most
# frequent first, at most 10; this is a stand-in that describes what the user liked *lately*,
# not a prediction of what comes next. **LLM tags** (when chapter 07's committed predictions for
# the test users exist): the bundled model's predicted tags.

# %%
user_tags = {
    s: towers.recent_tags(split.history(s), item_tags, users=split.users(s))
    for s in stages
}
try:
    llm_tags = recgpt.load_predicted_tags()
except (FileNotFoundError, ValueError) as err:
    llm_tags = None
    print("no LLM-predicted tags:", err)
u0 = int(split.users("test")[0])
print(f"user {u0}, recent tags: {user_tags['test'][u0]}")
if llm_tags is not None:
    print(
        f"user {u0}, LLM tags: {llm_tags.get(u0)}; LLM tags for "
        f"{len(llm_tags)} test users"
    )

# %% [markdown]
# ## 5. Sweeping a and b
#
# For every trained model and every $b$ we build the fused system and rank the full catalogue
# on both stages. The validation stage chooses; the test stage is only reported.

# %%
ks = (10, 50, 100)
systems = {
    s: {key: m.system(split, s, user_tags[s]) for key, m in models.items()}
    for s in stages
}
rows = []
for (alpha, s_), _ in models.items():
    for b in towers.BETAS:
        for stage in stages:
            r = evaluate.evaluate(
                systems[stage][(alpha, s_)].with_b(b), stages[stage], ks=ks
            )
            rows.append(
                {
                    "a": alpha,
                    "seed": s_,
                    "b": b,
                    "stage": stage,
                    "recall@10": r.mean("recall@10"),
                    "recall@50": r.mean("recall@50"),
                    "recall@100": r.mean("recall@100"),
                    "coverage@50": r.mean("coverage@50"),
                    "novelty@50": r.mean("novelty@50"),
                }
            )
sweep = pd.DataFrame(rows)
mean_sweep = (
    sweep.groupby(["stage", "a", "b"])
    .mean(numeric_only=True)
    .drop(columns="seed")
    .reset_index()
)
mean_sweep[mean_sweep["stage"] == "test"].pivot(
    index="b", columns="a", values="recall@50"
).round(4)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
for alpha, part in mean_sweep.groupby("a"):
    for ax, (stage, metric) in zip(
        axes, [("valid", "recall@50"), ("test", "recall@50"), ("test", "coverage@50")]
    ):
        p = part[part["stage"] == stage]
        ax.plot(p["b"], p[metric], marker="o", ms=3, label=f"a = {alpha:g}")
        ax.set(
            xlabel="b (1 = user tower alone, 0 = tag tower alone)",
            ylabel=f"{stage} {metric}",
        )
axes[0].legend()
axes[0].set_title("Validation: the curve that chooses b")
axes[1].set_title("Test Recall@50 over b")
axes[2].set_title("Test coverage@50 over b")
fig.tight_layout()

# %% [markdown]
# The tag tower alone ($b = 0$) retrieves far fewer targets: recent tags say "90s comedy",
# which fits hundreds of films. How Recall, coverage and novelty move with $b$ for each $a$ is in
# the sweep table and in `results/ch08.json`. We pick $(a, b)$ as the best validation Recall@50
# (averaged over seeds in full mode).

# %%
valid = mean_sweep[mean_sweep["stage"] == "valid"]
best = valid.loc[valid["recall@50"].idxmax()]
a_star, b_star = float(best["a"]), float(best["b"])
print(
    f"chosen on validation: a = {a_star:g}, b = {b_star:g} (validation "
    f"Recall@50 {best['recall@50']:.4f})"
)
assert (valid["recall@50"] <= best["recall@50"]).all()

# %% [markdown]
# ## 6. The fused model against the user tower alone
#
# Same model, same users, two ways to score: $b = 1$ (the user tower alone) and the chosen
# $b^*$. A paired bootstrap over test users gives the interval of the difference.


# %%
def paired(stage, a, b, metric="recall@50", seed_=0):
    sys_ = systems[stage][(a, seed_)]
    fused = evaluate.evaluate(
        sys_.with_b(b, name=f"fused (a={a:g}, b={b:g})"), stages[stage], ks=ks
    )
    alone = evaluate.evaluate(
        sys_.with_b(1.0, name=f"user tower alone (a={a:g})"), stages[stage], ks=ks
    )
    return fused, alone, fused.compare(alone, metric)


fused, alone, diff = paired("test", a_star, b_star)
headline = pd.DataFrame(
    {
        n: r.summary().loc[
            ["recall@10", "recall@50", "recall@100", "novelty@50", "coverage@50"]
        ]["mean"]
        for n, r in [(fused.name, fused), (alone.name, alone)]
    }
)
print(
    f"test Recall@50, fused minus user tower alone: {diff.mean_diff:+.4f} "
    f"[{diff.lo:+.4f}, {diff.hi:+.4f}], p = {diff.p_value:.3f}, {diff.n} users"
)
headline.round(4)

# %% [markdown]
# What the interval says decides what we may claim. The cell below states the verdict from the
# numbers and asserts only what they support.

# %%
if b_star == 1.0:
    verdict = (
        "validation chose b = 1: on validation the tag tower added nothing, "
        "so the fused model is the user tower"
    )
elif diff.lo > 0:
    verdict = (
        "the fused model beats the user tower alone on test Recall@50, "
        "interval above zero"
    )
elif diff.hi < 0:
    verdict = (
        "the fused model is worse than the user tower alone on test "
        "Recall@50, interval below zero"
    )
else:
    verdict = (
        "the interval of the difference covers zero: no measurable gain from "
        "fusing at this b"
    )
print(verdict)
assert np.isfinite(diff.mean_diff) and diff.lo <= diff.mean_diff <= diff.hi

# %% [markdown]
# Had we peeked at test, which $b$ would it have picked, and by how much does that differ from
# the honest choice? The gap is the optimism a test-tuned number would carry.

# %%
test_curve = mean_sweep[
    (mean_sweep["stage"] == "test") & (mean_sweep["a"] == a_star)
].set_index("b")["recall@50"]
print(
    f"test's own best b = {test_curve.idxmax():g} (Recall@50 {test_curve.max():.4f}); "
    f"validation's b = {b_star:g} ({test_curve[b_star]:.4f}); user tower "
    f"alone {test_curve[1.0]:.4f}"
)

# %% [markdown]
# ### What validation can and cannot see: the user ID
#
# The cell above prints the $b$ that test itself would have picked. When that is below 1 while
# validation picked 1 (as it was in our runs while building this chapter: a finding to check,
# not a tuning step), a mechanism can explain it. For the validation stage the input history is
# the training data itself, on which the user's ID embedding was trained: the user tower already
# "knows" the user's latest likes, so tags of those likes add nothing. For the test stage the
# history also holds the validation window, which the ID embedding never saw; the tags of the
# latest likes then carry fresh signal. A user tower **without** an ID (pooled history only)
# reads fresh history the same way on both stages, so validation should be able to see the tag
# tower's value. We train that variant with the chosen $a$, choose its $b$ on validation, and
# test it.

# %%
noid = towers.ThreeTowerModel(
    feats,
    vocab,
    item_tags,
    recgpt.tag_category,
    towers.TowerConfig(
        **{**tcfg.__dict__, "alpha": a_star, "seed": 0, "user_id": False}
    ),
    name="three towers, no user ID",
).fit(split.train, progress=False)
noid_sys = {s: noid.system(split, s, user_tags[s]) for s in stages}
noid_curve = pd.DataFrame(
    {
        s: [
            evaluate.evaluate(noid_sys[s].with_b(b), stages[s], ks=(50,)).mean(
                "recall@50"
            )
            for b in towers.BETAS
        ]
        for s in stages
    },
    index=list(towers.BETAS),
)
b_noid = float(noid_curve["valid"].idxmax())
f2 = evaluate.evaluate(
    noid_sys["test"].with_b(b_noid, name=f"fused, no user ID (b={b_noid:g})"),
    stages["test"],
    ks=ks,
)
a2 = evaluate.evaluate(
    noid_sys["test"].with_b(1.0, name="user tower alone, no user ID"),
    stages["test"],
    ks=ks,
)
diff_noid = f2.compare(a2, "recall@50")
print(
    f"no user ID: validation chooses b = {b_noid:g}; test Recall@50 fused "
    f"{f2.mean('recall@50'):.4f} vs "
    f"user tower alone {a2.mean('recall@50'):.4f}: {diff_noid.mean_diff:+.4f} "
    f"[{diff_noid.lo:+.4f}, {diff_noid.hi:+.4f}], p = {diff_noid.p_value:.3f}"
)
noid_curve.T.round(4)

# %%
verdict_noid = (
    "beats"
    if diff_noid.lo > 0
    else "is worse than"
    if diff_noid.hi < 0
    else "does not measurably differ from"
)
print(
    "without a user ID, the fused model (b chosen on validation) "
    f"{verdict_noid} its user tower alone on test"
)
assert b_noid < 1.0  # validation now sees value in the tag tower
assert (
    diff_noid.mean_diff > 0
)  # and the fused model retrieves more test targets than its user tower

# %% [markdown]
# Without a user ID, validation does choose $b < 1$ (asserted above). Whether the resulting gain
# on test is real is the paired interval's call, printed above for this run: the gain is small
# either way, and with a different $a$ or seed it can fall inside the noise, so read the verdict
# line, not the point estimate. The lesson reaches beyond this model: a component that
# memorises the training data (an ID embedding) can make a validation stage built on that same
# data blind to signal that is *fresh* at test time.

# %% [markdown]
# ### LLM tags instead of recent tags
#
# When chapter 07's predicted tags are committed (`artifacts/recgpt/tags_test.jsonl`), the
# model without a user ID reads them instead of the recent tags, for the test users each source
# covers: the fine-tuned and zero-shot SmolLM2 (a sample of users), and chapter 07's rule-based
# and popularity stand-ins (every test user). Two views per source, each paired against recent
# tags on the same users: the tag tower **alone** ($b = 0$: how well the tags alone find the next
# items) and the fused model at the $b$ validation chose (with recent tags; the predictions cover
# test users only, so $b$ cannot be re-chosen for them).

# %%
llm_rows = []
if llm_tags is not None:
    sources = sorted(
        {
            json.loads(l)["source"]
            for l in recgpt.predicted_tags_path().read_text().splitlines()
            if l.strip()
        }
    )
    for src in sources:
        tags_src = recgpt.load_predicted_tags(source=src)
        covered = np.array([u for u in split.users("test") if tags_src.get(int(u))])
        if len(covered) == 0:
            continue
        ed = stages["test"].subset(covered)
        sys_src = noid.system(split, "test", tags_src)
        for b in (0.0, b_noid):
            r_src = evaluate.evaluate(sys_src.with_b(b, name=f"{src} tags"), ed, ks=ks)
            r_rec = evaluate.evaluate(
                noid_sys["test"].with_b(b, name="recent tags"), ed, ks=ks
            )
            d = r_src.compare(r_rec, "recall@50")
            llm_rows.append(
                {
                    "source": src,
                    "users": len(covered),
                    "b": b,
                    "recall@50": r_src.mean("recall@50"),
                    "recent tags": r_rec.mean("recall@50"),
                    "diff": d.mean_diff,
                    "lo": d.lo,
                    "hi": d.hi,
                }
            )
    llm_table = pd.DataFrame(llm_rows)
    print(llm_table.round(4).to_string(index=False))
else:
    print("skipped: no predicted tags committed (artifacts/recgpt/tags_test.jsonl)")

# %% [markdown]
# How to read the table: `diff` is the source's Recall@50 minus that of recent tags for the same
# users, with its paired 95% interval. At $b = 0$ it measures the tags themselves; at the chosen
# $b$ the user tower does most of the work, so differences shrink. An interval below zero means
# the source's tags point the tag tower at fewer of the user's next films than the tags of their
# own recent likes do; the sample sources cover few users, hence their wide intervals.

# %% [markdown]
# ## 7. Against chapters 02-05
#
# The other chapters' numbers come from their results files, written on the same split and
# catalogue; nothing is copied by hand.

# %%
board = [
    {
        "system": f"three towers, fused (a={a_star:g}, b={b_star:g})",
        "chapter": "08",
        **fused.summary().loc["recall@50", ["mean", "lo", "hi"]].to_dict(),
    },
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
ch02 = json.loads((config.results_dir() / "ch02.json").read_text())
t02 = pd.DataFrame(ch02["table"])
for r in t02[(t02["stage"] == "test") & (t02["metric"] == "recall@50")].itertuples():
    board.append(
        {"system": r.system, "chapter": "02", "mean": r.mean, "lo": r.lo, "hi": r.hi}
    )
for ch in ("03", "04", "05"):
    path = config.results_dir() / f"ch{ch}.json"
    if path.is_file():
        for name, summ in json.loads(path.read_text()).get("summary", {}).items():
            if "recall@50" in summ:
                s = summ["recall@50"]
                board.append(
                    {
                        "system": name,
                        "chapter": ch,
                        "mean": s["mean"],
                        "lo": s["lo"],
                        "hi": s["hi"],
                    }
                )
board = pd.DataFrame(board).sort_values("mean", ascending=False).reset_index(drop=True)
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
assert (
    fused.mean("recall@50")
    > board[board["system"] == "popular (all time)"]["mean"].iloc[0]
)
assert (
    fused.summary().loc["recall@50", "hi"] > knn["lo"]
)  # within reach of the best baseline

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
# Ours was generated by SmolLM2-135M-Instruct for the top-4 items of 30 test users, each with
# the user's tag that the tag tower matches best to it; the command and the model's fingerprint
# are stored with the table. Two judges check every row:
#
# - **relevant**: the tag's category (`recgpt.tag_category`) is one of the item's genres;
# - **faithful**: the explanation names no genre the item lacks and no decade other than its own.

# %%
table = towers.ExplanationTable.load(towers.explanations_path())
print(
    table.meta["command"],
    "|",
    table.meta["generator"],
    "|",
    table.meta["n_pairs"],
    "pairs",
)
judged = table.judged(ml.movies, recgpt.tag_category)
rates = pd.DataFrame(
    {
        j: metrics.bootstrap_ci(judged[j].astype(float), seed=0)._asdict()
        for j in ("relevant", "faithful", "ok")
    }
).T.rename(index={"ok": "well formed"})
rates.round(3)

# %%
assert table.stale_rows(
    ml.movies
).empty  # the table matches the prompts this code writes
assert (
    abs(rates.loc["relevant", "mean"] - table.meta["judges"]["relevant"]) < 1e-9
)  # judges reproduce
titles = ml.movies.set_index("item_id")["title"]
show = judged.assign(title=titles.loc[judged["item_id"]].to_numpy())
pd.concat([show[show["faithful"]].head(4), show[~show["faithful"]].head(4)])[
    ["tag", "title", "explanation", "relevant", "faithful", "violations"]
]

# %% [markdown]
# Two kinds of unfaithful rows turn up in the table. Most name a genre the film does not have:
# the small model likes "comedy-drama" and "fantasy" whatever the film is. The others copy the
# tag's decade ("2000s mystery") onto a film from another decade: there the writer repeats a
# mismatch the retrieval made, since the tag tower matched the tag by its category, not its
# decade. A relevance failure is always the retrieval's: the tag's category is not the film's.

# %% [markdown]
# ## 9. One user through the whole chain
#
# History, the interests behind the tags (their categories; chapter 06's mined interests are not
# used here), the tags, the items the fused model without a user ID retrieves, and their
# explanations, for one test user. The explanations for this user are generated live (and
# cached on disk) with the same prompt and settings as the table.

# %%
user = int(split.users("test")[5])
ed_u = stages["test"].subset(np.array([user]))
top = evaluate.evaluate(noid_sys["test"].with_b(b_noid), ed_u, ks=(5,)).topk[0]
targets_u = set(split.targets("test").loc[lambda t: t["user_id"] == user, "item_id"])
items = feats.item_ids[top]
tags_u = user_tags["test"][user]
pair_tags = towers.best_tags(noid, tags_u, top)
gen = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m", config=generation.GenerationConfig(**towers.EXPLAIN_CONFIG)
    )
)
live = towers.ExplanationTable.generate(
    gen, pd.DataFrame({"tag": pair_tags, "item_id": items}), ml.movies, progress=False
)
live_j = live.judged(ml.movies, recgpt.tag_category)
hist = split.history("test")
hist = hist[(hist["user_id"] == user) & (hist["rating"] >= data.POSITIVE_MIN)].tail(6)
cats = pd.Series([recgpt.tag_category(t) for t in tags_u]).value_counts()
chain = {
    "history (latest likes)": [titles[i] for i in hist["item_id"]],
    "interests (tag categories)": [f"{c} ({n} tags)" for c, n in cats.items()],
    "tags": tags_u,
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
assert len(live.rows) == 5 and live.stale_rows(ml.movies).empty

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT** trains its towers with $a = 0.5$ and does not disclose $b$; it reports the
# pipeline online only (1% traffic per arm): CTR +6.33%, item page views +9.47%, dwell time
# +4.82%, clicked categories +6.96%. Its judges are LLMs fine-tuned on human labels (0.77-0.93
# agreement). **We measure** offline, on MovieLens' test stage, the numbers in sections 5-8: the
# fused model against its own user tower with a paired interval, and rule-based judges that
# stand in for the paper's LLM judges. The tags the tag tower reads at inference are the
# user's recent tags (section 4), not a prediction of the next items, unless chapter 07's
# predictions were available.
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
        f"seeds {list(run['seeds'])})",
        "tags_at_inference": "tags of each user's 10 latest positives "
        "(recgpt.item_tags)",
        "explanations": table.meta["command"],
    },
    "sweep": sweep.to_dict(orient="records"),
    "chosen": {"a": a_star, "b": b_star, "valid_recall@50": float(best["recall@50"])},
    "test": {
        "fused": fused.to_dict(segments=False),
        "user_tower_alone": alone.to_dict(segments=False),
    },
    "fused_minus_user_tower_recall@50": diff._asdict(),
    "verdict": verdict,
    "headline": {
        "model": "three towers without a user ID, a chosen on validation with the "
        "ID model",
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
    "llm_tags": llm_rows,
    "cold_recall@100": dict(cold),
    "explanation_judges": rates.to_dict(orient="index"),
    "valid_recall@50_logq": logq_r50,
    "fit_seconds": {
        **{f"a={a:g},seed={s}": m.fit_seconds for (a, s), m in models.items()},
        "no_user_id": noid.fit_seconds,
    },
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
(config.results_dir() / "ch08.json").write_text(
    json.dumps(out, indent=2, default=float)
)
print(f"wrote results/ch08.json ({cfg.mode} mode, {out['chapter_seconds']:.0f} s)")

# %% [markdown]
# Chapter 09 compares every system user by user; the test-stage top-100 lists of the two fused
# models are stored for it (`evaluate.save_ranking`).

# %%
rank_dir = config.results_dir() / "rankings"
for key, res_, secs in [
    ("ch08-three-towers", fused, models[(a_star, 0)].fit_seconds),
    ("ch08-three-towers-no-user-id", f2, noid.fit_seconds),
]:
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
print(f"stored 2 rankings in {rank_dir}")

# %% [markdown]
# ## Summary
#
# 1. Three towers share one item tower: collaborative scores from the user tower, semantic
#    scores from the tag tower, fused linearly with one weight $b$.
# 2. The tag tower reads frozen token embeddings, so tags never seen in training still land
#    near tags of their category.
# 3. In-batch softmax needs the log-Q correction; without it the model buries popular films.
# 4. $b$ is chosen on validation and the gain over the user tower is reported with a paired
#    interval on test, whatever it turns out to be.
# 5. Explanations are cheap to serve from a table and cheap to check with judges; a 135M model
#    writes relevant-sounding phrases that are not always faithful to the film.
#
# ## Exercises
#
# 1. **Temperature.** Train `make_model(0.5, 0)` again with `temperature=0.05` (use
#    `towers.TowerConfig(**{**tcfg.__dict__, "alpha": 0.5, "temperature": 0.05})`) and evaluate
#    it at $b = 1$ on validation. *Check:* you can say whether validation Recall@50 moved by more
#    than 0.01 and in which direction.
# 2. **Fresher tags.** Recompute `user_tags` with `n_items=3` and redo the validation sweep for
#    $a^*$. *Check:* you can say whether the best validation $b$ moved down (more tag
#    weight) or not.
# 3. **Category only.** With $a = 0$ the tag tower learns only category-level positives. Look
#    at that model's tag tower alone ($b = 0$) in `sweep`. *Check:* you can say whether its
#    coverage@50 is above or below its user tower's ($b = 1$), and explain the direction.
# 4. **A stricter judge.** Extend `towers.judge_faithful` to flag explanations that name a
#    year more than 5 years from the film's. *Check:* the faithful rate of the table can
#    only go down.
