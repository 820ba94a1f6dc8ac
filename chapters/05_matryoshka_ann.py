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
# # 05 · Matryoshka embeddings and approximate search
#
# LinkedIn's model emits 3072 numbers per post, and every post of the catalogue sits in a GPU
# index: the index, not the LLM, sets the memory bill of serving. The paper trains with a
# **Matryoshka** loss, so that the first 512 numbers are an embedding on their own, and keeps
# 512 of 3072 dimensions for 0.8% of Recall@10, saving about 83% of the index (arXiv 2510.14223).
# In this chapter you measure the same trade on our SmolLM2 dual encoder (576 dimensions): how
# much recall each nested prefix keeps, whether Matryoshka training beats shrinking a model after
# the fact, and what faiss's index types then cost in recall, latency and memory at each size.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
k_headline = 20  # the Recall@K the issue's target is stated in
ks = [10, 20, 50, 100]

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from llmrec_lib import compress, config, evaluate, index, losses, plots, recipes, train
from llmrec_lib.encoders import DualEncoder

chapter_t0 = time.perf_counter()
enc_cfg, mat_cfg = recipes.recipe("matryoshka", "full")
cfg = config.settings(
    "05",
    mode,
    seed=seed,
    backbone=f"{enc_cfg.backbone}, first {enc_cfg.n_layers} layers, LoRA "
    f"r={enc_cfg.lora_r}",
    quick={
        "live": "one Matryoshka batch (loss mechanics)",
        "evaluated models": "committed full-mode adapters 'infonce' and 'matryoshka'",
    },
    full={
        "training": f"both recipes retrained, {mat_cfg.steps} steps each",
        "evaluated models": "the adapters trained in this run",
    },
)
cfg.show()

# %% [markdown]
# **Learning goals**
#
# - Write the Matryoshka loss as a weighted sum of InfoNCE over nested prefixes, and check it.
# - Measure Recall@K at every nested dimension down to 1/16 of the full size.
# - Compare Matryoshka training with truncating or PCA-projecting a model trained without it.
# - Read faiss's Flat, IVF, HNSW and PQ indexes as points on a recall / latency / memory plane.
# - Find the smallest dimension that keeps 99% of recall, and what it saves in index memory.

# %% [markdown]
# ## 1. The loss, on one real batch
#
# Matryoshka Representation Learning (Kusupati et al., 2022) trains several embeddings at once:
# the first 36, 72, 144, 288 and all 576 dimensions of the same vector, each re-normalised and
# each scored with the same InfoNCE, the losses added with weights. Nothing else changes: the
# same model, the same batches, the same cost per step (the heads are slices of one vector).
# Below, one batch of the real training pairs goes through the model once, and the library's
# `MatryoshkaLoss` is checked against the sum written out by hand.

# %%
setting = recipes.build_setting(cfg.data_dir)
pairs = train.training_pairs(setting.split.train)
config.seed_everything(seed)
model = DualEncoder(enc_cfg)
trainer = train.Trainer(
    model, pairs, setting.item_text, setting.history_text, mat_cfg, progress=False
)
batch = trainer.make_batch(0)
with torch.no_grad(), config.autocast(model.device.type, enabled=True):
    u, v = model(
        model.tokenize(batch["users"], enc_cfg.user_max_tokens),
        model.tokenize(batch["items"], enc_cfg.item_max_tokens),
    )
u, v = u.float(), v.float()
base = losses.InfoNCE(temperature=mat_cfg.temperature)
per_dim = {
    d: float(
        base(
            torch.nn.functional.normalize(u[:, :d], dim=-1),
            torch.nn.functional.normalize(v[:, :d], dim=-1),
        )
    )
    for d in mat_cfg.matryoshka_dims
}
mat = float(losses.MatryoshkaLoss(base, mat_cfg.matryoshka_dims)(u, v))
print({d: round(x, 3) for d, x in per_dim.items()}, "-> Matryoshka loss", round(mat, 3))

# %%
assert (
    abs(mat - np.mean(list(per_dim.values()))) < 1e-5
)  # equal weights: the mean over prefixes

# %% [markdown]
# ## 2. Two committed models
#
# Both adapters were trained by full mode with the same data, steps, batch and seed; only the
# loss differs. `infonce` is chapter 03's model, trained on its full 576-d vector alone;
# `matryoshka` was trained on all five prefixes at once. Quick mode loads them (about 0.5 MB each);
# full mode retrains both here first (about 30 minutes each on two CPU cores; `infonce` shares
# its checkpoint folder with chapter 03, so after that chapter's full run it resumes finished).

# %%
NAMES = {"infonce": "InfoNCE (no Matryoshka)", "matryoshka": "InfoNCE + Matryoshka"}
if cfg.mode == "full":
    for name in NAMES:
        t0 = time.perf_counter()
        tr = recipes.train_recipe(name, "full", setting=setting, evaluate_every=800)
        recipes.publish(
            tr,
            name,
            time.perf_counter() - t0,
            f"python -m llmrec_lib.recipes train {name} --mode full --eval-every 800",
        )
        recipes.evaluate_published(
            name, setting, "test", save=True
        )  # chapter 09's top-100 lists
metas = {}
for name in NAMES:
    metas[name] = json.loads((recipes.ARTIFACTS / name / "encoder.json").read_text())[
        "meta"
    ]
    print(
        f"{name:<11}",
        metas[name]["command"],
        f"| {metas[name]['train_seconds_all_steps']:.0f} s of steps",
    )

# %% [markdown]
# Each model encodes the catalogue (9,742 item prompts) and the 602 test users once; the vectors
# are cached on disk, keyed by the adapter's weights, so rerunning the chapter does not re-encode.

# %%
test_data = evaluate.EvalData.from_split(setting.split, "test", setting.ml.item_ids)
users = test_data.user_ids
vectors = {}
for name in NAMES:
    m = DualEncoder.from_adapter(recipes.ARTIFACTS / name)
    system = recipes.dual_encoder_system(m, setting, "test", name=name)
    vectors[name] = {
        "items": system.model.item_vectors,
        "users": system.user_vectors(users),
    }
    del m, system
full_dim = vectors["matryoshka"]["items"].shape[1]
dims = compress.nested_dims(full_dim, 16)
print("full dimension", full_dim, "| nested prefixes", dims)

# %% [markdown]
# ## 3. Recall at every nested dimension
#
# Three ways to a d-dimensional embedding, all evaluated with chapter 02's protocol (full
# catalogue, seen items excluded, 95% bootstrap intervals over users):
#
# - **Matryoshka prefix**: the first d numbers of the Matryoshka model, re-normalised;
# - **truncation**: the same slice of the model trained without Matryoshka;
# - **PCA**: the no-Matryoshka model projected onto the top d principal directions of its item
#   vectors (fitted on the catalogue, applied to users and items).


# %%
def shrink(name: str, how: str, d: int) -> tuple[np.ndarray, np.ndarray]:
    it, us = vectors[name]["items"], vectors[name]["users"]
    if how == "pca":
        p = compress.PCAProjection.fit(it, d)
        return p.transform(us), p.transform(it)
    return compress.truncate(us, d), compress.truncate(it, d)


ARMS = {
    "Matryoshka prefix": ("matryoshka", "prefix"),
    "truncation (no Matryoshka)": ("infonce", "prefix"),
    "PCA (no Matryoshka)": ("infonce", "pca"),
}
results, rows = {}, []
for arm, (name, how) in ARMS.items():
    for d in dims:
        us, it = shrink(name, how, d)
        r = evaluate.evaluate(
            evaluate.MatrixScorer(us @ it.T, users), test_data, ks=ks, name=f"{arm} {d}"
        )
        results[arm, d] = r
        s = r.summary()
        for k in ks:
            rows.append(
                {
                    "arm": arm,
                    "dim": d,
                    "k": k,
                    "recall": s.loc[f"recall@{k}", "mean"],
                    "lo": s.loc[f"recall@{k}", "lo"],
                    "hi": s.loc[f"recall@{k}", "hi"],
                }
            )
sweep = pd.DataFrame(rows)
full = sweep[sweep["dim"] == full_dim].set_index(["arm", "k"])["recall"]
sweep["share of full"] = sweep["recall"] / sweep.apply(
    lambda r: full[r["arm"], r["k"]], axis=1
)
sweep[sweep["k"] == k_headline].pivot(
    index="dim", columns="arm", values="recall"
).sort_index(ascending=False).round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for arm, color in zip(ARMS, [plots.COLORS["test"], plots.COLORS["history"], "grey"]):
    s = sweep[(sweep["arm"] == arm) & (sweep["k"] == k_headline)].sort_values("dim")
    axes[0].errorbar(
        s["dim"],
        s["recall"],
        yerr=[s["recall"] - s["lo"], s["hi"] - s["recall"]],
        marker="o",
        capsize=3,
        label=arm,
        color=color,
    )
    axes[1].plot(s["dim"], s["share of full"], marker="o", label=arm, color=color)
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("embedding dimension (log scale)")
axes[0].set(
    ylabel=f"test Recall@{k_headline} (95% CI)", title="Recall at each nested dimension"
)
axes[1].axhline(
    0.95, ls="--", color="black", lw=1, label="95% of full (the issue's target)"
)
axes[1].set(
    ylabel="share of the same model's full-dim recall",
    title="What each way of shrinking keeps",
)
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# What Matryoshka training buys shows at the small end: cut the model trained without it to 72
# or 36 dimensions and it loses most of its recall, while the Matryoshka model's prefixes lose
# much less. The paired bootstrap compares the two models on the same users at d = 36:

# %%
smallest = dims[-1]
m_vs_t = results["Matryoshka prefix", smallest].compare(
    results["truncation (no Matryoshka)", smallest], f"recall@{k_headline}"
)
print(
    f"d={smallest}: Matryoshka minus truncation, Recall@{k_headline} "
    f"{m_vs_t.mean_diff:+.4f} "
    f"[{m_vs_t.lo:+.4f}, {m_vs_t.hi:+.4f}], p={m_vs_t.p_value:.3f}"
)
assert (
    m_vs_t.lo > 0
)  # at 1/16 of the dimensions, Matryoshka prefixes beat plain truncation

# %% [markdown]
# PCA is the strong post-hoc baseline: it keeps the directions of largest variance, which is
# close to what Matryoshka training arranges on purpose. At our scale it is about as good as the
# Matryoshka prefixes; LinkedIn's post-hoc projection (an MLP) lost a little more than theirs.
#
# The issue's target: at a quarter of the dimensions, the Matryoshka model keeps at least 95% of
# its full-dimension Recall@20.

# %%
quarter = full_dim // 4
share = sweep.set_index(["arm", "dim", "k"])["share of full"]
keeps = {arm: share[arm, quarter, k_headline] for arm in ARMS}
print(
    {a: f"{v:.1%}" for a, v in keeps.items()},
    f"of full Recall@{k_headline} at d={quarter}",
)
mat_full, mat_quarter = (
    results["Matryoshka prefix", full_dim],
    results["Matryoshka prefix", quarter],
)
cmp = mat_quarter.compare(mat_full, f"recall@{k_headline}")
pd.Series(cmp._asdict()).round(4)

# %% [markdown]
# On the point estimate the target is **not met**: the 1/4 prefix keeps clearly less than 95%
# of the full-dimension Recall@20. The interval puts that in proportion: Recall@20 on 602 users
# carries about +-20% relative noise, and the paired difference between d=576 and d=144 of the
# same model is borderline (its interval ends at about zero, p about 0.06). A 5% criterion needs
# a test set that can resolve 5% differences; ours cannot, in either direction, and the chapter
# says so instead of picking the metric or the seed that would pass. What we can say: the
# Matryoshka model loses less than plain truncation at every prefix below 1/4, and significantly
# less at 1/16 (above).

# %%
assert (
    keeps["Matryoshka prefix"] < 0.95
)  # the target, read on the point estimate, is missed
assert (
    cmp.mean_diff < 0 and cmp.p_value > 0.01
)  # a loss, but not a clearly significant one

# %% [markdown]
# ## 4. Approximate nearest neighbours at each dimension
#
# Serving does not multiply a user by every item: it asks an index for the nearest ones. For the
# Matryoshka model at each dimension we build faiss's four families over the 9,742 item vectors
# and query them with the 602 test users: recall of the exact top 100 (what the index loses on
# top of what the dimension lost), latency per query (single queries: the online case), and
# index memory. PQ stores d/8 one-byte codes per item; it is meant to be followed by exact
# re-scoring of a wider list, shown in the last column.

# %%
index.set_threads(None)
configs = [
    ("flat", {}),
    ("ivf", {"nprobe": 10}),
    ("hnsw", {"M": 32, "ef_search": 128}),
    ("pq", {}),
]
ann = []
for d in dims:
    us, it = shrink("matryoshka", "prefix", d)
    ann.append(index.compare_indexes(it, us, configs, k=100, n_single=200, seed=seed))
ann = pd.concat(ann, ignore_index=True)
ann["memory_MiB"] = ann["memory_bytes"] / 2**20
ann[
    [
        "dim",
        "index",
        "recall@100",
        "recall@100 in 1000",
        "single_us_per_query",
        "memory_MiB",
        "build_s",
    ]
].round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for kind, group in ann.groupby("kind"):
    axes[0].plot(group["dim"], group["memory_MiB"], marker="o", label=kind)
    axes[1].plot(group["dim"], group["single_us_per_query"], marker="o", label=kind)
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("embedding dimension (log scale)")
    ax.legend(fontsize=8)
axes[0].set(
    yscale="log",
    ylabel="index memory (MiB, log)",
    title="Memory falls with the dimension",
)
axes[1].set(
    ylabel="µs per single query", title="Latency per query (measured here, 2 cores)"
)
fig.tight_layout()

# %% [markdown]
# ## 5. The dimension that keeps 99% of recall, and what it saves
#
# LinkedIn picked 512 of 3072 dimensions (1/6) at -0.8% Recall@10 and reports about 83% less GPU
# index memory. Here: the smallest nested dimension of the Matryoshka model whose Recall@20 is at
# least 99% of the full dimension's, and the Flat index memory it saves (a Flat index stores d
# float32 numbers per item, so memory is linear in d).

# %%
mat_share = sweep[
    (sweep["arm"] == "Matryoshka prefix") & (sweep["k"] == k_headline)
].set_index("dim")["share of full"]
d99 = int(min(d for d in dims if mat_share[d] >= 0.99))
flat = ann[ann["kind"] == "flat"].set_index("dim")["memory_bytes"]
saving = 1 - flat[d99] / flat[full_dim]
print(
    f"smallest dim keeping 99% of Recall@{k_headline} (point estimate): {d99} "
    f"({mat_share[d99]:.1%}); "
    f"Flat index {flat[full_dim] / 2**20:.1f} -> {flat[d99] / 2**20:.1f} MiB "
    f"({saving:.0%} saved)"
)

# %% [markdown]
# With our noise, "99% on the point estimate" is decided by luck: the prefixes' recall wobbles
# up and down by more than 1% from one dimension to the next. A criterion that respects the
# noise: the smallest dimension whose paired difference from the full dimension is not
# significant at 5% (the interval of the difference reaches zero). It is a weaker promise, "we
# could not measure a loss", and the table shows the intervals so you can judge it.

# %%
paired = pd.DataFrame(
    {
        d: results["Matryoshka prefix", d]
        .compare(mat_full, f"recall@{k_headline}")
        ._asdict()
        for d in dims
        if d != full_dim
    }
).T
paired.index.name = "dim"
d_ns = int(min([full_dim] + [d for d in paired.index if paired.loc[d, "hi"] >= 0]))
saving_ns = 1 - flat[d_ns] / flat[full_dim]
print(
    f"smallest dim with no significant loss: {d_ns}; Flat index memory saved: "
    f"{saving_ns:.0%}"
)
assert (
    d_ns < full_dim
)  # some prefix shows no significant loss: its index saving is real
paired.round(4)

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **LinkedIn** (Recall@10 relative to 3072-d, secondary write-ups [S]): 2048-d +0.1%, 1024-d -0.2%,
# 512-d -0.8%; a post-hoc MLP projection to 512-d -1.1%; 512-d saves about 83% of the GPU index.
# **We measure** (test, 602 users, full catalogue, committed full-mode adapters; quick mode
# re-measures them, it does not retrain): the tables above. Our full dimension is 576 and our
# smallest prefix 36, so our 1/4 (144) sits between their 1/3 and 1/6.
# ```

# %%
paper = pd.DataFrame(
    {
        "fraction of full dim": ["2/3", "1/3", "1/6", "1/6 (post-hoc MLP)"],
        "LinkedIn Recall@10 change": ["+0.1%", "-0.2%", "-0.8%", "-1.1%"],
    }
)
ours = (
    sweep[(sweep["k"] == 10) & (sweep["arm"] != "PCA (no Matryoshka)")]
    .pivot(index="dim", columns="arm", values="share of full")
    .sort_index(ascending=False)
)
ours = (ours - 1).map(lambda x: f"{x:+.1%}")
ours.index = [f"{d} (1/{full_dim // d})" for d in ours.index]
ours.index.name = "our dim, Recall@10 change vs full"
ours

# %%
paper

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "05",
    "mode": cfg.mode,
    "produced_by": {n: metas[n]["command"] for n in NAMES},
    "dims": dims,
    "k_headline": k_headline,
    "sweep": sweep.to_dict(orient="records"),
    "keeps_at_quarter": keeps,
    "paired_quarter_vs_full": cmp._asdict(),
    "ann": ann.drop(columns=["memory_MiB"]).to_dict(orient="records"),
    "dim_keeping_99": d99,
    "flat_memory_saving": saving,
    "matryoshka_vs_truncation_smallest": m_vs_t._asdict(),
    "dim_no_significant_loss": d_ns,
    "flat_memory_saving_no_significant_loss": saving_ns,
    "paired_vs_full": paired.reset_index().to_dict(orient="records"),
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
(config.results_dir() / "ch05.json").write_text(
    json.dumps(out, indent=2, default=float)
)
print(f"wrote results/ch05.json ({cfg.mode} mode, {out['chapter_seconds']:.0f} s)")

# %% [markdown]
# ## Exercises
#
# 1. **Another prefix.** Add d=18 (1/32) to the sweep with `compress.truncate`. *Check:* its
#    Recall@20 is below the d=36 value for the Matryoshka model, and you can say by how much.
# 2. **Weights.** Write `losses.MatryoshkaLoss(base, dims, weights=[2, 1, 1, 1, 1])` for the batch
#    of section 1. *Check:* the loss equals the weighted mean of the per-prefix values.
# 3. **PCA on users.** Fit the PCA on the user vectors instead of the items. *Check:* Recall@20 at
#    d=144 changes, and explain which population the projection should serve.
# 4. **Re-ranking PQ.** For d=144, take PQ's top 1,000, re-score them exactly and keep 100.
#    *Check:* the recall of the exact top 100 is the table's "in 1000" column.
