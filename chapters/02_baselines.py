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
# # 02 · Baselines: the numbers every LLM retriever must beat
#
# Before an LLM earns its place in a recommender it has to beat what costs almost nothing:
# recommending what is popular, recommending what co-occurs with what you liked, and a small
# transformer over item IDs. In this chapter you will build those baselines, plus the
# **zero-shot** text retrievers that an un-tuned language model gives for free, measure all of
# them with the book's protocol (full catalogue, seen items excluded, 95% intervals), look at
# the items nobody has rated yet, and serve one of them through an approximate nearest-neighbour
# index. The results are written to `results/ch02.json`, so that no later chapter ever copies
# "what we must beat" by hand.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release; on other data (your own, or a derived copy) the closing table, "Which claims hold on
# this data", says which of the chapter's claims still hold.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
tune_metric = (
    "recall@50"  # hyper-parameters are chosen on the validation stage by this metric
)
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# baselines first: it asks OpenMP threads to wait passively before torch loads (spinning
# threads made training 40x slower on a shared 2-core machine)
# isort: off
from llmrec_lib import baselines, backbones, config, data, encoders, evaluate, index
from llmrec_lib import show, text
from llmrec_lib import results as records
# isort: on

cfg = config.settings(
    "02",
    mode,
    seed=seed,
    backbone="minilm-l6 and smollm2-135m (zero-shot only)",
    quick={
        "popularity_windows_days": [90, 365, 1095],
        "knn_neighbors": [20, 100, None],
        "text_recent_items": [5, 20, None],
        "sasrec": {"epochs": 40, "max_len": 50},
        "minilm_prompt_budget": 128,
        "smollm2_layers": 8,
        "smollm2_prompt_budget": None,
        "n_boot": 1000,
    },
    full={
        "popularity_windows_days": [30, 90, 180, 365, 730, 1095, 1825],
        "knn_neighbors": [10, 20, 50, 100, 200, 500, None],
        "text_recent_items": [1, 5, 10, 20, 50, None],
        "sasrec": {"epochs": 200, "max_len": 200},
        "minilm_prompt_budget": 256,
        "smollm2_layers": 30,
        "smollm2_prompt_budget": 256,
        "n_boot": 2000,
    },
)
cfg.show()
print(config.data_status(cfg.data_dir))
ks = (10, 50, 100)  # list lengths every system is measured at
chapter_t0 = time.perf_counter()

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers ("item-kNN
# beats popularity") is asserted on the reference release and only recorded on other data; a
# mechanic (exact search is exact, an ID model cannot score a movie it never saw) is asserted
# on any data.

# %%
claims = config.Claims("02", path=cfg.data_dir)

# %% [markdown]
# **Learning goals**
#
# - Build five kinds of baseline (random, popularity, item-kNN, an ID-based sequential
#   transformer, zero-shot text retrieval) behind one `fit` / `for_stage` / `score` interface.
# - Say what each stage of the split may see, and why a "recent popularity" window is subtle on
#   a per-user split.
# - Train a SASRec-style model with an in-batch sampled softmax and the log-Q correction.
# - Read a results table with 95% intervals, coverage and novelty, and the cold-item segment.
# - Serve a retriever through faiss and measure what an approximate index costs in recall.

# %% [markdown]
# ## 1. Data, split and protocol
#
# Everything here follows chapter 00: the per-user chronological split, the full catalogue of
# 9,742 movies as candidates, already-rated movies excluded, and positives (rating >= 4) as
# targets. Two rules decide what a model may see:
#
# - **fit** reads `split.train` only, the same rows for every system;
# - **scoring** a user at a stage reads that user's input history, `split.history(stage)`.
#   For the test stage it also holds the user's validation window: the model is not refitted,
#   it just sees the newer history, as a deployed model would.
#
# Hyper-parameters (a popularity window, a number of neighbours) are chosen on **validation**
# and then reported once on **test**.

# %%
ml = data.load_movielens(cfg.data_dir, verify=verify_data)
split = data.per_user_split(ml.ratings)
stages = {
    stage: evaluate.EvalData.from_split(split, stage, ml.item_ids)
    for stage in ("valid", "test")
}
stages

# %%
results: dict[str, dict] = {}  # system name -> {stage: EvalResult}
fitted: dict[str, baselines.Baseline] = {}


def keep(model, name=None, which=("valid", "test")):
    """Evaluate a fitted model on the chosen stages and remember it under its name."""
    name = name or model.name
    fitted[name] = model
    results[name] = baselines.evaluate_stages(
        model, split, {s: stages[s] for s in which}, ks=ks, name=name
    )
    return results[name]


def valid_score(model):
    """The tuning metric of a model on validation (test is never looked at)."""
    return baselines.evaluate_stages(model, split, {"valid": stages["valid"]}, ks=ks)[
        "valid"
    ].mean(tune_metric)


# %% [markdown]
# ## 2. Random: the floor
#
# A system that ranks at random puts each of a user's targets in its top K with probability
# about K / (number of unrated movies), so Recall@10 should be about 10 / 9,700 = 0.1%. Any
# model must clear this by a wide margin; a model that does not has a bug. Every baseline of
# this chapter is a class in `llmrec_lib/baselines.py`; this one is
# `baselines.py::RandomScorer`.

# %%
random_model = baselines.RandomScorer(ml.item_ids, seed=seed).fit(split.train)
r = keep(random_model)
expected = np.mean(10 / (ml.item_ids.size - stages["test"].n_history))
print(
    f"random Recall@10 on test: {r['test'].mean('recall@10'):.4f} (expected "
    f"about {expected:.4f})"
)

# %%
ci = r["test"].summary(metrics=["recall@10"]).loc["recall@10"]
claims.check(
    "random Recall@10 on test matches K / unrated movies (95% interval, +-0.001)",
    ci["lo"] - 0.001 <= expected <= ci["hi"] + 0.001,
    pinned=False,
    detail=f"expected {expected:.4f}, interval [{ci['lo']:.4f}, {ci['hi']:.4f}]",
)

# %% [markdown]
# ## 3. Popularity, and what "recent" means on a per-user split
#
# The classic **MostPop** ranks movies by their number of positive training ratings. It is hard
# to beat on MovieLens, because most people have seen the famous films. Both variants below are
# `llmrec_lib/baselines.py::MostPopular`.
#
# "Popular *recently*" is usually better: tastes move. But recent relative to **what**? Our
# training rows span 1996-2018, while a user's "now" (the moment they ask for recommendations)
# is the time of their own latest rating, which for many users lies in the early 2000s. A
# single window ending at the last training rating (`anchor="global"`) recommends 2018's hits to
# a user who stopped rating in 2001: films that did not exist in their "now". A window that ends
# at each user's own latest rating (`anchor="user"`) counts only what was popular around their
# "now", using only ratings made before it, so it also stops the per-user split's leak of other
# users' future (chapter 00 measured it). We pick the window length on validation.

# %%
pop_all = baselines.MostPopular(ml.item_ids).fit(split.train)
keep(pop_all, "popular (all time)")
grid = []
for days in cfg.sizes["popularity_windows_days"]:
    for anchor in ("user", "global"):
        m = baselines.MostPopular(ml.item_ids, window_days=days, anchor=anchor).fit(
            split.train
        )
        grid.append(
            {
                "window_days": days,
                "anchor": anchor,
                f"valid {tune_metric}": valid_score(m),
            }
        )
pop_grid = pd.DataFrame(grid).pivot(
    index="window_days", columns="anchor", values=f"valid {tune_metric}"
)
best_days = int(pop_grid["user"].idxmax())
pop_grid

# %%
pop_user = baselines.MostPopular(ml.item_ids, window_days=best_days, anchor="user").fit(
    split.train
)
pop_global = baselines.MostPopular(
    ml.item_ids, window_days=best_days, anchor="global"
).fit(split.train)
pop_user_name = f"popular ({best_days} d before the user's now)"
pop_global_name = f"popular ({best_days} d before the end of train)"
keep(pop_user, pop_user_name)
keep(pop_global, pop_global_name)
lift = results[pop_user_name]["valid"].compare(
    results[pop_global_name]["valid"], tune_metric
)
print(
    f"user-anchored minus end-of-train window, valid {tune_metric}: "
    f"{lift.mean_diff:+.3f} "
    f"[{lift.lo:+.3f}, {lift.hi:+.3f}], p = {lift.p_value:.3f}"
)

# %%
# the user's own "now" beats one global window, with a paired interval above 0
claims.check(
    "a popularity window at the user's own now beats one ending at the end of train "
    f"(valid {tune_metric}, paired interval above 0)",
    lift.lo > 0,
    detail=f"{lift.mean_diff:+.4f} [{lift.lo:+.4f}, {lift.hi:+.4f}]",
)
claims.check(  # and at every window length we tried
    "the user-anchored window wins at every window length tried",
    (pop_grid["user"] > pop_grid["global"]).all(),
    detail=", ".join(
        f"{d} d: {u:.4f} vs {g:.4f}"
        for d, u, g in zip(pop_grid.index, pop_grid["user"], pop_grid["global"])
    ),
)

# %% [markdown]
# ## 4. Item-kNN: "people who liked this also liked"
#
# Item-based collaborative filtering (Sarwar et al., 2001) compares items by the users who
# liked them. With `X` the binary user-by-movie matrix of training positives, the similarity of
# two movies is the cosine of their columns: the number of users who liked both, divided by
# the square root of the product of their like counts. Each movie keeps its `k` nearest
# neighbours, and a user's score for a movie is the sum of its similarities to the movies they
# liked. Fitting is one sparse matrix product: a second on this data
# (`llmrec_lib/baselines.py::ItemKNN`).

# %%
knn_grid = {
    str(k): valid_score(baselines.ItemKNN(ml.item_ids, n_neighbors=k).fit(split.train))
    for k in cfg.sizes["knn_neighbors"]
}
best_k = max(knn_grid, key=knn_grid.get)
knn = baselines.ItemKNN(
    ml.item_ids, n_neighbors=None if best_k == "None" else int(best_k)
).fit(split.train)
keep(knn)
print(
    f"valid {tune_metric} by neighbours: {knn_grid}; chosen k = {best_k}; fit "
    f"{knn.fit_seconds:.2f} s"
)
titles = ml.movies.set_index("item_id")["title"]
probe = 1 if 1 in ml.item_ids else int(ml.item_ids[0])  # Toy Story (1995), if present
toy_story = knn.similar_items(probe, k=5)
toy_story.set_axis(titles.loc[toy_story.index]).rename(f"cosine to {titles[probe]}")

# %%
claims.check(
    "item-kNN fits in under 10 s (at 50 GFLOP/s)",
    knn.fit_seconds < config.time_budget(10),
    detail=f"{knn.fit_seconds:.2f} s",
)
toy_story_10 = titles.loc[knn.similar_items(probe, k=10).index].tolist()
claims.check(
    "Toy Story 2 (1999) is among Toy Story (1995)'s 10 nearest neighbours",
    probe == 1 and "Toy Story 2 (1999)" in toy_story_10,
    detail=f"{titles[probe]}: {'; '.join(toy_story_10[:3])}, ...",
)

# %% [markdown]
# ## 5. An ID-based sequential model, SASRec style
#
# SASRec (Kang & McAuley, 2018) reads a user's liked items in order with a **causal
# transformer** and predicts the next one: the state after the last item is the user vector,
# and a dot product with each item's ID embedding is its score. It is the strongest purely
# ID-based design of its size, and exactly the kind of model an LLM retriever competes with.
#
# We train it as LinkedIn trains its LLM: a softmax over **in-batch** candidates (the other
# targets in the batch serve as negatives) instead of over the whole catalogue. In-batch
# sampling has a bias: a popular movie appears as a negative in many more batches than a rare
# one, so the model learns to push popular movies down. The **log-Q correction** (Yi et al.,
# RecSys 2019) subtracts from each candidate's logit the log of its sampling probability,
# which removes that bias. The network is `llmrec_lib/baselines.py::SASRecNet` and the loss
# `baselines.py::sampled_softmax_loss`, six lines; open the two cells below to read them. The
# model that cuts histories into windows, trains and scores is `baselines.py::SASRec`.
#
# Items without a training positive have no ID embedding: the model cannot score them. It says
# so in `can_score_items`, and the protocol counts targets on such items as misses.
#
# One detail keeps the training labels honest. MovieLens stores seconds, and a user often rates
# a page of movies in one second; the order inside that second is only the database's sort
# order. So a target is predicted from the state at the last movie rated *strictly earlier*,
# never from a same-second twin: the library's one tie rule (`llmrec_lib/interactions.py`),
# which every model in the book follows.

# %% tags=["hide-output"]
show.source(baselines.SASRecNet)

# %% tags=["hide-output"]
show.source(baselines.sampled_softmax_loss)

# %%
sasrec = baselines.SASRec(ml.item_ids, seed=seed, **cfg.sizes["sasrec"]).fit(
    split.train
)
keep(sasrec)
log = pd.DataFrame(sasrec.train_log)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(log["epoch"] + 1, log["loss"], marker=".")
ax.set(
    xlabel="epoch",
    ylabel="in-batch softmax loss (log-Q corrected)",
    title=f"SASRec-style training: {sasrec.fit_seconds:.0f} s, "
    f"{int(log['steps'].iloc[-1])} steps",
)
fig.tight_layout()
print(
    f"{sasrec.n_windows} training windows of up to {sasrec.cfg.max_len} "
    f"items, {sasrec.fit_seconds:.0f} s; {sasrec.n_targets:,} targets, "
    f"{sasrec.n_read_earlier:,} read from before their second"
)

# %%
claims.check(  # it learned something
    "SASRec's training loss falls by more than 10%",
    log["loss"].iloc[-1] < 0.9 * log["loss"].iloc[0],
    pinned=False,
    detail=f"{log['loss'].iloc[0]:.3f} -> {log['loss'].iloc[-1]:.3f}",
)
tied = sasrec.n_read_earlier / sasrec.n_targets
claims.check(  # the tie rule is not a corner case on this data
    "10-20% of SASRec's targets share a second with the positive before them",
    0.10 < tied < 0.20,
    detail=f"{tied:.1%} of {sasrec.n_targets:,}",
)
if cfg.mode == "quick":  # budgets scale with this CPU's speed (config.time_budget)
    claims.check(  # the quick-mode promise: at most three minutes
        "quick mode trains SASRec in under three minutes (at 50 GFLOP/s)",
        sasrec.fit_seconds < config.time_budget(180),
        detail=f"{sasrec.fit_seconds:.0f} s, budget {config.time_budget(180):.0f} s "
        f"at {config.matmul_gflops():.0f} GFLOP/s",
    )

# %% [markdown]
# ## 6. Zero-shot text retrieval
#
# An LLM retriever starts from text: every movie, rated or not, has a title and genres. Without
# any training we can already embed each movie's text (`"Movie: Toy Story (1995). Genres:
# Adventure, ..."`, chapter 01's plain format) and represent a user in two ways:
#
# - **item mean**: the normalised mean of the vectors of the movies they liked (we choose on
#   validation how many of the most recent likes to average);
# - **prompt**: the embedding of chapter 01's user prompt, the history written as one text
#   (positives only, newest items kept within a token budget).
#
# We use both bundled backbones. MiniLM is a sentence encoder trained for similarity;
# SmolLM2-135M is a small chat decoder never trained to produce embeddings. Vectors are cached
# on disk (keyed by model weights and texts), so re-running the chapter skips the encoding.
# Quick mode uses SmolLM2's first layers only and skips its prompt variant. It also reads
# SmolLM2's catalogue vectors from a committed float16 copy (`artifacts/vectors/`), after
# encoding 32 of the movies live to check the copy: even with 8 layers, encoding 9,742 titles
# took five minutes on two AVX2 cores. MiniLM, a sixth of the size, encodes live. Full mode
# encodes everything with all 30 layers. The seconds below say where each list came from:
# encoded now, this machine's cache (a second run), or the committed copy.
# The two users are `llmrec_lib/encoders.py::ItemMeanRetrieval` and
# `encoders.py::PromptRetrieval`; the item vectors, `encoders.py::item_text_embeddings`.

# %%
item_text = text.item_texts(ml.movies, fields=("title", "genres"), markers=False)
text_vectors, embed_seconds = {}, {}
minilm = backbones.load_backbone("minilm-l6", device="cpu")
t0 = time.perf_counter()
text_vectors["MiniLM"] = encoders.item_text_embeddings(minilm, item_text, ml.item_ids)
source = encoders.embedding_log()["source"].iloc[-1]  # encoded, cache or committed
embed_seconds[f"MiniLM items ({source})"] = time.perf_counter() - t0
n_layers = cfg.sizes["smollm2_layers"]
smol = backbones.load_backbone(
    "smollm2-135m", device="cpu", n_layers=None if n_layers == 30 else n_layers
)
smol_name = "SmolLM2" if n_layers == 30 else f"SmolLM2 (first {n_layers} of 30 layers)"
t0 = time.perf_counter()
text_vectors[smol_name] = encoders.item_text_embeddings(
    smol, item_text, ml.item_ids, max_length=48
)
source = encoders.embedding_log()["source"].iloc[-1]
embed_seconds[f"{smol_name} items ({source})"] = time.perf_counter() - t0
encoders.check_encoded_nothing(  # MiniLM encodes live: SmolLM2's lists only
    claims,
    cfg.mode,
    "smollm2",
    "quick mode encoded no SmolLM2 list: it came from artifacts/vectors/ (checked) "
    "or this machine's cache",
)
embed_seconds

# %%
rng = np.random.default_rng(seed)
pairs = rng.integers(0, ml.item_ids.size, size=(2, 20_000))
spread = {
    name: float(np.mean(np.sum(v[pairs[0]] * v[pairs[1]], axis=1)))
    for name, v in text_vectors.items()
}
print(
    "mean cosine between random pairs of movies:",
    {k: round(s, 3) for k, s in spread.items()},
)

# %% [markdown]
# Un-tuned SmolLM2 puts every movie in a narrow cone (chapter 01 saw the same): its mean-pooled
# states mostly encode "this is a short English text about a movie". Now the user side.

# %%
recent_choice = {}
for name, vectors in text_vectors.items():
    grid = {
        str(n): valid_score(
            encoders.ItemMeanRetrieval(ml.item_ids, vectors, max_history=n).fit()
        )
        for n in cfg.sizes["text_recent_items"]
    }
    best = max(grid, key=grid.get)
    recent_choice[name] = {"valid": grid, "chosen": best}
    model = encoders.ItemMeanRetrieval(
        ml.item_ids,
        vectors,
        max_history=None if best == "None" else int(best),
        name=f"{name}: mean of last {best} likes",
    ).fit()
    keep(model)
pd.DataFrame({k: v["valid"] for k, v in recent_choice.items()}).rename_axis(
    f"recent likes (valid {tune_metric})"
)

# %%
prompt_backbones = [("MiniLM", minilm, cfg.sizes["minilm_prompt_budget"])]
if cfg.sizes["smollm2_prompt_budget"]:
    prompt_backbones.append((smol_name, smol, cfg.sizes["smollm2_prompt_budget"]))
for name, backbone, budget in prompt_backbones:
    encoder = encoders.prompt_user_encoder(backbone, item_text, budget=budget)
    model = encoders.PromptRetrieval(
        ml.item_ids,
        text_vectors[name],
        encoder,
        name=f"{name}: user prompt ({budget} tokens)",
    ).fit()
    keep(model)
    embed_seconds[f"{name} prompts"] = sum(
        r.timing["bind_seconds"] for r in results[model.name].values()
    )
embed_seconds

# %% [markdown]
# ## 7. All baselines side by side
#
# Recall@K says how many of a user's next likes a retriever finds among K candidates; NDCG@K
# also rewards finding them near the top. **Coverage@100** is the share of the catalogue that
# appears in anyone's top 100, and **novelty@10** the mean self-information, -log2 of an item's
# share of training ratings, of the top 10 (higher: less popular picks). Intervals are 95%
# bootstrap intervals over users.

# %%
metrics = [
    "recall@10",
    "recall@50",
    "recall@100",
    "ndcg@10",
    "ndcg@50",
    "coverage@100",
    "novelty@10",
]
all_results = [res for by_stage in results.values() for res in by_stage.values()]
table = baselines.tidy_table(
    all_results, metrics, n_boot=cfg.sizes["n_boot"], seed=seed
)
baselines.wide_table(table, "test")

# %%
baselines.wide_table(table, "valid")

# %%
best_test = (
    table[(table["stage"] == "test") & (table["metric"] == "recall@50")]
    .sort_values("mean")
    .iloc[-1]
)
fig = baselines.bar_chart(
    table,
    ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"],
    title=f"Best baseline at Recall@50 on test: {best_test['system']} "
    f"({best_test['mean']:.3f}); "
    f"zero-shot text stays below popularity ({cfg.mode} mode)",
)

# %% [markdown]
# What the table says:
#
# - Random is the floor, far below everything else.
# - Popularity is strong, and at K = 50 and 100 a window around each user's own "now" beats
#   all-time counts.
# - Item-kNN and the SASRec-style model, both collaborative, lead; they also recommend a much
#   larger and less popular part of the catalogue than popularity (coverage, novelty).
# - Zero-shot text retrieval is **weaker than popularity**: without training, text similarity
#   to what you liked is a poor guide to what you will like next. That is the gap chapters 03
#   and 04 close by fine-tuning.


# %%
def ci(system, stage, metric):
    row = table[
        (table["system"] == system)
        & (table["stage"] == stage)
        & (table["metric"] == metric)
    ]
    assert len(row) == 1, (system, stage, metric)
    return row.iloc[0]


text_systems = [n for n in results if n.startswith(("MiniLM", "SmolLM2"))]
popular = "popular (all time)"
for stage in ("valid", "test"):
    floor = ci(random_model.name, stage, "recall@10")
    for name in (popular, knn.name, sasrec.name):
        # item-kNN, SASRec and popularity beat random with intervals that do not overlap
        row = ci(name, stage, "recall@10")
        claims.check(
            f"{name} beats random at Recall@10 on {stage} (intervals apart)",
            row["lo"] > floor["hi"],
            detail=f"lo {row['lo']:.4f} vs random hi {floor['hi']:.4f}",
        )
    best_text = max(ci(n, stage, "recall@50")["hi"] for n in text_systems)
    pop_lo = ci(popular, stage, "recall@50")["lo"]
    claims.check(  # zero-shot < popularity
        f"zero-shot text stays below all-time popularity at Recall@50 on {stage} "
        "(intervals apart)",
        best_text < pop_lo,
        detail=f"best text hi {best_text:.4f} vs popularity lo {pop_lo:.4f}",
    )
# collaborative models beat all-time popularity on test, user by user (paired bootstrap)
for name in (knn.name, sasrec.name, pop_user_name):
    paired = results[name]["test"].compare(results[popular]["test"], "recall@50")
    claims.check(
        f"{name} beats all-time popularity at test Recall@50 (paired interval above 0)",
        paired.lo > 0,
        detail=f"{paired.mean_diff:+.4f} [{paired.lo:+.4f}, {paired.hi:+.4f}]",
    )
for model in (knn, sasrec):  # wider and less popular lists than popularity
    cov = ci(model.name, "test", "coverage@100")["mean"]
    pop_cov = ci(popular, "test", "coverage@100")["mean"]
    claims.check(
        f"{model.name} covers over 3x the catalogue share of popularity (coverage@100)",
        cov > 3 * pop_cov,
        detail=f"{cov:.3f} vs {pop_cov:.3f}",
    )
    nov = ci(model.name, "test", "novelty@10")["lo"]
    pop_nov = ci(popular, "test", "novelty@10")["hi"]
    claims.check(
        f"{model.name} recommends less popular movies than popularity (novelty@10, "
        "intervals apart)",
        nov > pop_nov,
        detail=f"lo {nov:.2f} vs popularity hi {pop_nov:.2f}",
    )

# %% [markdown]
# ## 8. The cold-item segment
#
# About 8% of the test targets are movies that nobody rated in training (**cold** items). An ID
# model has never seen them: item-kNN has no column to compare, SASRec no embedding, and
# popularity counts them zero. Text models can still place them, since every movie has a title.

# %%
cold_rows = []
for name, by_stage in results.items():
    seg = by_stage["test"].segment("cold")
    summary = seg.summary(
        metrics=["recall@100"], n_boot=cfg.sizes["n_boot"], seed=seed
    ).loc["recall@100"]
    cold_rows.append(
        {
            "system": name,
            "users with a cold target": len(seg.per_user),
            "cold targets": seg.counts["n_targets"],
            "unscoreable targets (all)": by_stage["test"].counts[
                "n_unscoreable_targets"
            ],
            "cold recall@100": summary["mean"],
            "lo": summary["lo"],
            "hi": summary["hi"],
        }
    )
cold = pd.DataFrame(cold_rows).set_index("system")
cold

# %%
for name in (knn.name, sasrec.name, popular):
    claims.check(
        f"{name}, an ID model, retrieves no cold item",
        cold.loc[name, "cold recall@100"] == 0.0,
        pinned=False,
        detail=f"cold recall@100 {cold.loc[name, 'cold recall@100']:.4f}",
    )
best_cold = cold.loc[text_systems, "cold recall@100"].max()
claims.check(
    "a zero-shot text model retrieves some cold targets",
    best_cold > 0,
    detail=f"best cold recall@100 {best_cold:.4f}",
)
cold_share = stages["test"].target_is_cold.mean()
claims.check(
    "over 5% of the test targets are cold",
    cold_share > 0.05,
    detail=f"{cold_share:.1%}",
)

# %% [markdown]
# Text models recover only a few cold targets, but ID models recover none at all, whatever
# their accuracy elsewhere. A cold movie is invisible to collaborative filtering until someone
# rates it; LinkedIn indexes new posts within about a minute for the same reason.

# %% [markdown]
# ## 9. Serving through a vector index: exact or approximate?
#
# A text or SASRec retriever scores by a dot product between a user vector and item vectors,
# so serving it is a **nearest-neighbour search**. Exact search (`flat`) compares the user with
# every item; approximate indexes trade a little recall for speed: IVF searches only the
# closest clusters of items, HNSW walks a graph. At 9,742 items exact search is instant; at
# LinkedIn's hundreds of millions it is not. We index the best zero-shot text retriever's item
# vectors, search with the validation users' vectors, and compare each index with exact search
# (ANN recall: the share of the exact top 100 that the index also returns) and with the
# protocol's metrics. The indexes are built by `llmrec_lib/index.py::build_index` (FAISS) and
# compared by `index.py::ann_recall`.

# %%
text_best = max(
    (n for n in text_systems if "mean of" in n),
    key=lambda n: results[n]["valid"].mean("recall@50"),
)
text_model = fitted[text_best]
bound = text_model.for_stage(split, "valid")
queries = bound.user_vectors(stages["valid"].user_ids)  # (n_users, dim)
exact = evaluate.evaluate(bound, stages["valid"], ks=ks, name="exact (dense scores)")
_, exact_top = index.build_index(text_model.item_vectors, "flat", "ip").search(
    queries, 100
)
ann_rows = []
for kind, params in (
    ("flat", {}),
    ("ivf", {"nprobe": 4}),
    ("ivf", {"nprobe": 16}),
    ("hnsw", {"ef_search": 32}),
    ("hnsw", {"ef_search": 128}),
):
    t0 = time.perf_counter()
    idx = index.build_index(text_model.item_vectors, kind, "ip", seed=seed, **params)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, top = idx.search(queries, 100)
    per_query_ms = 1000 * (time.perf_counter() - t0) / len(queries)
    served = evaluate.evaluate(
        encoders.VectorRecommender(bound, idx), stages["valid"], ks=ks
    )
    ann_rows.append(
        {
            "index": f"{kind} {params or ''}".strip(),
            "ANN recall@100": index.ann_recall(top, exact_top),
            "ms per query (k=100)": per_query_ms,
            "build s": build_s,
            "MB": idx.memory_bytes() / 2**20,
            "valid recall@10": served.mean("recall@10"),
            "valid recall@100": served.mean("recall@100"),
        }
    )
ann = pd.DataFrame(ann_rows).set_index("index")
print(
    f"exact (dense) scoring: recall@10 {exact.mean('recall@10'):.4f}, "
    f"recall@100 {exact.mean('recall@100'):.4f}"
)
ann.round(4)

# %%
hnsw128, exact_r100 = ann.loc["hnsw {'ef_search': 128}"], exact.mean("recall@100")
claims.check(
    "exact search through faiss is exact (ANN recall@100 > 0.999)",
    ann.loc["flat", "ANN recall@100"] > 0.999,
    pinned=False,
    detail=f"{ann.loc['flat', 'ANN recall@100']:.4f}",
)
claims.check(
    "serving through the flat index gives dense scoring's recall@100 (within 0.002)",
    abs(ann.loc["flat", "valid recall@100"] - exact_r100) < 0.002,
    pinned=False,
    detail=f"{ann.loc['flat', 'valid recall@100']:.4f} vs {exact_r100:.4f}",
)
claims.check(
    "HNSW (ef_search=128) keeps over 90% of the exact top 100",
    hnsw128["ANN recall@100"] > 0.9,
    detail=f"{hnsw128['ANN recall@100']:.3f}",
)
claims.check(
    "HNSW (ef_search=128) answers in under 1 ms per query (at 50 GFLOP/s)",
    hnsw128["ms per query (k=100)"] < config.time_budget(1.0),
    detail=f"{hnsw128['ms per query (k=100)']:.3f} ms",
)
ivf16, ivf4 = (ann.loc[f"ivf {{'nprobe': {n}}}", "ANN recall@100"] for n in (16, 4))
claims.check(
    "IVF searching 16 cells agrees with exact search at least as well as 4 cells",
    ivf16 >= ivf4,
    pinned=False,
    detail=f"{ivf16:.3f} vs {ivf4:.3f}",
)
# losing neighbours is not losing targets: the lists' quality drops far less than
# ANN recall
worst = ann["ANN recall@100"].idxmin()
claims.check(
    "the cheapest index keeps over 90% of exact search's valid recall@100",
    ann.loc[worst, "valid recall@100"] > 0.9 * exact_r100,
    detail=f"{worst}: {ann.loc[worst, 'valid recall@100']:.4f} vs {exact_r100:.4f}",
)

# %% [markdown]
# Even the cheapest index, which returns only about half of the exact top 100, keeps nearly all
# of the protocol's Recall@100: the neighbours it misses are mostly near-ties that were not
# targets either. ANN recall measures agreement with exact search; what users feel is the
# retrieval metric. At LinkedIn's scale that margin is what buys milliseconds.

# %% [markdown]
# And the protocol itself: ranking a full score matrix (every test user against every movie)
# and computing all metrics takes well under a second, so evaluation is never the bottleneck.

# %%
dense = random_model.for_stage(split, "test").score(
    stages["test"].user_ids
)  # (602, 9742) on the reference data
timed = evaluate.evaluate(
    evaluate.MatrixScorer(dense, stages["test"].user_ids), stages["test"], ks=ks
)
print(
    f"{dense.shape[0]} users x {dense.shape[1]} movies evaluated in "
    f"{timed.timing['seconds']:.2f} s"
)
assert dense.shape == (len(stages["test"].user_ids), ml.item_ids.size)
claims.check(
    "evaluating every test user against every movie takes under a second "
    "(at 50 GFLOP/s)",
    timed.timing["seconds"] < config.time_budget(1.0),
    detail=f"{timed.timing['seconds']:.2f} s",
)

# %% [markdown]
# <div class="alert alert-info">
#
# **The paper reports / we measure.** LinkedIn reports Recall@10 of 0.070 for random and 0.243
# for its un-tuned LLaMA-3 (3B) on their feed [secondary write-ups]; RecBole reports, on
# MovieLens-1M with a random split, Recall@10 0.070 for popularity and 0.172 for item-kNN. We
# measure the Recall@10 values in the test table above (mode printed at the top of this
# chapter): random about 0.001, all-time popularity about 0.05, item-kNN and SASRec about
# 0.08-0.09, zero-shot text 0.01-0.02. The protocols differ: our candidates are the whole
# catalogue (random is near zero here, while LinkedIn's 0.070 for random implies a far smaller
# candidate pool), our targets are each user's last 20% of likes rather than random held-out
# ratings, and our zero-shot models are 20-25 times smaller than LLaMA-3 3B and were never
# asked to embed users.
#
# </div>

# %% [markdown]
# ## Results
#
# Everything later chapters compare against, in one file: per system, stage and metric the
# mean and its 95% interval; the cold segment; timings; the choices made on validation; and
# the mode that produced them.

# %%
timing = {}
for name, by_stage in results.items():
    model = fitted[name]
    timing[name] = {
        "fit_seconds": model.fit_seconds,
        **{f"{s}_eval_seconds": r.timing["seconds"] for s, r in by_stage.items()},
        **{f"{s}_bind_seconds": r.timing["bind_seconds"] for s, r in by_stage.items()},
    }
must_beat = {}
for stage in ("valid", "test"):
    for metric in ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"]:
        part = table[
            (table["stage"] == stage) & (table["metric"] == metric)
        ].sort_values("mean")
        must_beat.setdefault(stage, {})[metric] = {
            "system": part.iloc[-1]["system"],
            "mean": part.iloc[-1]["mean"],
        }
out = {
    "chapter": "02",
    "mode": cfg.mode,
    "settings": cfg.as_dict(),
    "produced_by": {
        "quick": f"SASRec trained {sasrec.cfg.epochs} epochs on sequences of "
        f"{sasrec.cfg.max_len}; SmolLM2 uses its first "
        f"{n_layers} layers and no prompt variant; MiniLM prompts at "
        f"{cfg.sizes['minilm_prompt_budget']} tokens",
        "full": "all systems, all 30 SmolLM2 layers, longer SASRec training and "
        "prompts",
    }[cfg.mode],
    "table": table.replace({np.nan: None}).to_dict(orient="records"),
    "cold": cold.reset_index().replace({np.nan: None}).to_dict(orient="records"),
    "must_beat": must_beat,
    "choices": {
        "popularity_window_days": best_days,
        "knn_neighbors": best_k,
        "text_recent_items": recent_choice,
        "tune_metric": tune_metric,
        "popularity_grid": pop_grid.to_dict(),
        "knn_grid": knn_grid,
    },
    "timing": timing,
    "embed_seconds": embed_seconds,
    "zero_shot_mean_cosine": spread,
    "sasrec": {
        "config": sasrec.cfg.__dict__,
        "stopped_early": sasrec.stopped_early,
        "train_log": sasrec.train_log,
    },
    "ann": {
        "system": text_best,
        "exact_valid_recall@100": exact.mean("recall@100"),
        "rows": ann.reset_index().to_dict(orient="records"),
    },
    "eval_seconds_full_matrix": timed.timing["seconds"],
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("02", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# Chapter 09 compares every system of the book user by user. So that it does not refit these
# baselines, each one's test-stage top-100 lists are stored too (`evaluate.save_ranking`, about
# 100 KB each); chapter 09 re-measures them with the same protocol.

# %%
rank_dir = config.results_dir() / "rankings"
for name, by_stage in results.items():
    evaluate.save_ranking(
        by_stage["test"],
        ml.item_ids,
        rank_dir / f"ch02-{evaluate.slug(name)}.npz",
        meta={
            "chapter": "02",
            "mode": cfg.mode,
            "fit_seconds": fitted[name].fit_seconds,
        },
    )
print(f"stored {len(results)} rankings in {rank_dir}")

# %% [markdown]
# SASRec is trained, so its ranking is one draw of a random model. Two more seeds, stored
# beside it, let chapter 09 count training noise in its intervals (`abtest.seed_aware_diff`).

# %%
sasrec_more = {}
for k in (1, 2):
    m_k = baselines.SASRec(ml.item_ids, seed=seed + k, **cfg.sizes["sasrec"]).fit(
        split.train
    )
    r_k = baselines.evaluate_stages(
        m_k, split, {"test": stages["test"]}, ks=ks, name=sasrec.name
    )["test"]
    evaluate.save_ranking(
        r_k,
        ml.item_ids,
        rank_dir / f"ch02-{evaluate.slug(sasrec.name)}-seed{k}.npz",
        meta={"chapter": "02", "mode": cfg.mode, "fit_seconds": m_k.fit_seconds},
    )
    sasrec_more[seed + k] = (r_k.mean("recall@50"), m_k.fit_seconds)
sasrec_r50 = {seed: results[sasrec.name]["test"].mean("recall@50")}
sasrec_r50 |= {s: v for s, (v, _) in sasrec_more.items()}
print({s: round(v, 4) for s, v in sasrec_r50.items()}, "test Recall@50 by seed")

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error.
# Mechanics hold on any data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Random is the floor (Recall@10 about 0.1%); popularity is a strong, cheap baseline.
# 2. "Recent popularity" must be anchored at each user's own "now" on a per-user split; a
#    global window hurts.
# 3. Item-kNN (seconds) and a SASRec-style transformer (a minute or two) lead, with much
#    wider coverage.
# 4. Zero-shot text retrieval falls below popularity, but it alone can retrieve cold movies.
# 5. An HNSW index keeps over 90% of the exact top 100 at a fraction of a millisecond per query.
#
# ## Exercises
#
# 1. **Change one parameter.** Fit `baselines.MostPopular(ml.item_ids, window_days=30,
#    anchor="user")` and compare its validation Recall@50 with the window chosen above.
#    *Check:* `valid_score(your_model) <= pop_grid["user"].max()` (the grid's best is the best
#    of the grid, and 30 days was not in the quick grid).
# 2. **Switch off the log-Q correction.** Train `baselines.SASRec(ml.item_ids, seed=seed,
#    logq=False, **cfg.sizes["sasrec"])` and evaluate it on validation. Without the correction,
#    popular movies are over-sampled as negatives and pushed down. *Check:* its mean
#    `pop_percentile@10` is lower than `results[sasrec.name]["valid"].mean("pop_percentile@10")`.
# 3. **Shrink the similarities.** Item-kNN with `shrink=10` down-weights pairs of rarely liked
#    movies. *Check:* compute its validation Recall@50 and its `coverage@100`; write down which
#    way coverage moved and why.
# 4. **Implement a variant.** Write a popularity model that weights each positive by
#    `exp(-(t_u - t) / tau)` (time decay instead of a hard window) with `tau = best_days *
#    86_400`. *Check:* `assert` that its validation Recall@50 is above `results["popular (all
#    time)"]["valid"].mean("recall@50")`.
# 5. **Cheaper ANN.** Build `index.build_index(text_model.item_vectors, "hnsw", "ip",
#    ef_search=8)`. *Check:* its `index.ann_recall` against `exact_top` is below the
#    `ef_search=128` row of the ANN table.
