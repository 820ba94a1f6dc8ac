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
# # 07 · Tag prediction: from interests to words that find items
#
# Interests ("likes 90s crime films") are too broad to retrieve with. RecGPT's second LLM,
# **LLM_IT**, turns a user's interests and history into **tags**: short "modifier + core word"
# phrases that describe items the user may want *next* ("outdoor waterproof non-slip hiking
# boots"), under constraints (consistent with the interests, diverse, specific, fresh: nothing
# bought or clicked in the last month). Chapter 08's tag tower retrieves items for those tags.
# The paper measures tags with **HR@30**: map the tags to categories and count a hit when the
# true next item's category is among them. In this chapter you build the tag vocabulary and
# the tag-to-category map for MovieLens, train LLM_IT's targets from what users liked next,
# measure zero-shot and fine-tuned SmolLM2 against two rule-based baselines, and test how
# fast interests go stale.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
n_live = 3  # users the live tag generation covers
stale_weeks = 2  # how old the stale interests are (RecGPT refreshes every two weeks)

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import config, generation, metrics, plots  # isort: skip
from llmrec_lib import recgpt, show, tagger  # isort: skip

chapter_t0 = time.perf_counter()
cfg = config.settings(
    "07",
    mode,
    seed=seed,
    backbone="smollm2-135m (all 30 layers), LoRA r=8 (adapter of chapter 06)",
    quick={
        "tags per user": recgpt.N_TAGS,
        "live users": n_live,
        "judged generations": "committed artifacts/recgpt",
    },
    full={
        "tags per user": recgpt.N_TAGS,
        "judged generations": "artifacts/recgpt from python -m llmrec_lib.recgpt full",
    },
)
cfg.show()

# %% [markdown]
# **Learning goals**
#
# - Describe items with "modifier + core word" tags, and map any tag to a category.
# - Build tag-prediction targets from the items users actually liked next.
# - Measure HR@K through the tag-to-category map, against popularity and a rule-based predictor.
# - Check the constraints (diverse, fresh) as measured rates.
# - Measure what stale interests cost.

# %% [markdown]
# ## 1. Tags and categories
#
# Taobao items have leaf categories; a MovieLens film has up to ten genres. We give each film
# **one category**, its most specific genre (rarest in the catalogue: an Animation|Children|Comedy
# film is an animation first), and describe it with phrases whose core word is that category:
# the decade, each other genre or a popular user tag as modifier (`recgpt.item_tags`, from
# training-time tags only). The tag-to-category map (`recgpt.tag_category`) is transparent: the
# last category word of a phrase is its head noun.

# %%
setting = recgpt.build_setting(cfg.data_dir)
movies = setting.ml.movies.set_index("item_id")
for i in (1, 296, 2571, 58559):
    print(
        f"{movies.loc[i, 'title']:45s} "
        f"{recgpt.item_category(movies.loc[i, 'genres']):10s} "
        f"{setting.itags[i]}"
    )
for t in (
    "animated comedy",
    "comedy drama",
    "dark sci-fi thriller",
    "90s war film",
    "cozy autumn vibes",
):
    print(f"{t!r:25} -> {recgpt.tag_category(t)}")

# %%
assert all(
    recgpt.tag_category(p) == recgpt.item_category(movies.loc[i, "genres"])
    for i, ps in setting.itags.items()
    for p in ps
)  # every item tag names its item's category

# %% [markdown]
# ## 2. Targets: what the user liked next
#
# RecGPT trains LLM_IT incrementally on the titles of items users actually clicked. Ours: at a
# cut point in a user's *training* history, the target tags are the phrases of the next 5 liked
# films, most shared first, at most 2 per category (`recgpt.target_tags`). The prompt shows the
# compressed history and the teacher's interests, as LLM_IT reads LLM_UI's output:

# %%
inputs = setting.stage_inputs("test")
ex = recgpt.sft_examples(setting, users=inputs["users"][:4], seed=seed)
row = ex[ex.task == "tags"].iloc[0]
print(row.prompt[-420:], "\n--- target ---\n" + row.answer)

# %% [markdown]
# ## 3. HR@K, and two baselines that need no LLM
#
# For each test user, HR@K is the share of their liked films in the test window whose category
# is the category of one of the first K tags (the paper scores only the next item; averaging
# over the window is less noisy on 600 users). Two baselines bound what tags can do here:
# **popular** gives everyone the 6 categories most often liked in training, **rule-based** gives
# the categories of the user's last 50 liked films (`recgpt.recent_tags`).

# %%
pos = setting.split.train[setting.split.train.rating >= 4]
popular = recgpt.popular_tags(pos, setting.ml.movies, setting.itags, n=recgpt.N_TAGS)
rule = {
    u: recgpt.recent_tags(inputs["liked"][u], setting.itags, n=recgpt.N_TAGS)
    for u in inputs["users"]
}
print("popular:", popular)
tj = dict(
    future=inputs["future"],
    recent=inputs["recent"],
    facts=setting.facts,
    n_requested=recgpt.N_TAGS,
)
base = {}
for k in (3, 6):  # HR@K of the first K tags
    base[k] = recgpt.rate_table(
        {
            "popular": recgpt.judge_tags(
                {u: popular for u in inputs["users"]}, k=k, **tj
            ),
            "rule-based (recent categories)": recgpt.judge_tags(rule, k=k, **tj),
        },
        columns=[f"hr@{k}"],
    )
pd.concat(base.values()).round(3)

# %%
b3 = base[3].set_index("system")
assert (
    b3.loc["rule-based (recent categories)", "mean"] > b3.loc["popular", "mean"]
)  # measured 0.378 vs 0.361
assert (
    b3.loc["rule-based (recent categories)", "lo"] < b3.loc["popular", "hi"]
)  # but the intervals overlap

# %% [markdown]
# Six categories cover most of what people like on MovieLens, so popularity is a strong
# baseline (HR@3 0.36); the user's own recent categories do only slightly better (0.38, the
# intervals overlap). Tags that are to help retrieval must at least match these two.

# %% [markdown]
# The counting rule is `llmrec_lib/recgpt.py::recent_tags`, and HR@K is computed by
# `llmrec_lib/recgpt.py::judge_tags`. The rule's source:

# %% tags=["hide-output"]
show.source(recgpt.recent_tags)

# %% [markdown]
# ## 4. LLM_IT: zero-shot vs fine-tuned
#
# The committed run of chapter 06 (`python -m llmrec_lib.recgpt full`, command in
# `artifacts/recgpt/meta.json`) ran LLM_UI then LLM_IT with each model: the zero-shot pipeline
# reads zero-shot interests, the fine-tuned one reads its own. One adapter learned both tasks.
# Live, the prompt and answers for a few users:

# %%
art = recgpt.artifacts_dir()
meta = json.loads((art / recgpt.META).read_text())
gens = recgpt.read_generations(art / recgpt.GENERATIONS)
ints_ft = recgpt.phrases_from_generations(gens, "fine-tuned", "interests")
live_users = [u for u in meta["users"]][:n_live]
tuned_gen = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m", str(art / recgpt.ADAPTER), config=recgpt.generation_config()
    )
)
prompts = [
    recgpt.tag_prompt(inputs["history_text"][u], ints_ft[u], recgpt.N_TAGS)
    for u in live_users
]
print(prompts[0][-300:])
for u, t in zip(live_users, tuned_gen.generate(prompts)):
    print(f"user {u}: {t!r}")

# %%
users = meta["users"]
tags = {
    src: recgpt.phrases_from_generations(gens, src, "tags")
    for src in ("zero-shot", "fine-tuned")
}
TUNED = f"SmolLM2 + LoRA ({meta['sft_config']['steps']} steps)"
systems = {
    "SmolLM2 zero-shot": tags["zero-shot"],
    TUNED: tags["fine-tuned"],
    "rule-based (recent categories)": {u: rule[u] for u in users},
    "popular": {u: popular for u in users},
}
judged = {
    name: recgpt.judge_tags(t, k=recgpt.N_TAGS, **tj) for name, t in systems.items()
}
judged3 = {name: recgpt.judge_tags(t, k=3, **tj) for name, t in systems.items()}
rates = pd.concat(
    [recgpt.rate_table(judged), recgpt.rate_table(judged3, columns=["hr@3"])],
    ignore_index=True,
)
rates.pivot(index="judge", columns="system", values="mean").round(3)

# %%
hr = (
    rates[rates.judge == f"hr@{recgpt.N_TAGS}"]
    .sort_values("mean", ascending=False)
    .reset_index(drop=True)
)
fig = plots.bars_with_ci(
    hr,
    "mean",
    "lo",
    "hi",
    "system",
    "Fine-tuning makes SmolLM2 a tag predictor; counting rules still predict better",
)
fig.axes[0].set_xlabel(f"HR@{recgpt.N_TAGS} on {len(users)} test users, 95% CI")
hr.round(3)

# %%
z = rates[rates.system == "SmolLM2 zero-shot"].set_index("judge")
t = rates[rates.system == TUNED].set_index("judge")
r = rates[rates.system == "rule-based (recent categories)"].set_index("judge")
assert (
    t.loc[f"hr@{recgpt.N_TAGS}", "lo"] > z.loc[f"hr@{recgpt.N_TAGS}", "hi"]
)  # intervals apart
assert t.loc["hr@3", "lo"] > z.loc["hr@3", "hi"]
assert (
    t.loc["unmapped", "mean"] < z.loc["unmapped", "mean"]
)  # fine-tuned tags name categories
assert (
    t.loc["stale", "mean"] < z.loc["stale", "mean"]
)  # and do not name films just rated
assert (
    r.loc["hr@3", "lo"] < t.loc["hr@3", "hi"]
)  # at 3 tags the counting rule's lead is within noise
assert (
    r.loc[f"hr@{recgpt.N_TAGS}", "lo"] > t.loc[f"hr@{recgpt.N_TAGS}", "hi"]
)  # at 6 it is clear
assert t.loc["diversity", "hi"] < r.loc["diversity", "lo"]  # the student repeats itself
if (
    cfg.mode == "quick"
):  # the prose below quotes the committed run, which quick mode reads
    assert np.allclose(
        [
            z.loc["hr@3", "mean"],
            t.loc["hr@3", "mean"],
            r.loc["hr@3", "mean"],
            t.loc[f"hr@{recgpt.N_TAGS}", "mean"],
            r.loc[f"hr@{recgpt.N_TAGS}", "mean"],
            t.loc["diversity", "mean"],
            t.loc["unmapped", "mean"],
        ],
        [0.02, 0.335, 0.40, 0.37, 0.62, 0.54, 0.18],
        atol=0.006,
    )

# %% [markdown]
# Zero-shot, SmolLM2 almost never writes a usable tag: it repeats titles from the prompt
# (which also breaks the freshness constraint for about a third of its tags) or the prompt
# itself, and HR@3 is about 0.02. Fine-tuned, its tags name categories and never a film just
# rated, and HR@3 rises to 0.335, with intervals apart. Its first three tags come close to the
# counting rule of section 3 (0.40; the intervals overlap), but over all six the rule stays
# clearly ahead (HR@6 0.62 vs 0.37): the student repeats itself (diversity 0.54 against the
# rule's 0.98; "2010s action" twice), and 18% of its tags name no category, some of them cut off
# by the token limit ("2010"). That is the honest result of this run; more steps, a larger
# model and RecGPT's judge-filtered data are the levers the paper pulls.

# %% [markdown]
# ## 5. A second LLM_IT, built for the metric
#
# Section 4's student lost for reasons that have nothing to do with what a language model can
# learn. Its answers were cut off at 48 new tokens, its targets allowed two tags per category,
# it saw 12-20 liked titles while the rule counted 50, and it was trained on the teacher's
# interests but ran on its own. `llmrec_lib/tagger.py` trains a second, separate LLM_IT (RecGPT
# also keeps LLM_UI and LLM_IT apart) with each cause removed:
#
# - **the rule's history, in the prompt**: a category summary of the last 50 likes
#   ("drama 14, comedy 9, ..."), next to the compressed titles;
# - **targets over a horizon like the test window**: the categories of the next 8 liked
#   films (the test window's median), most frequent first, **one tag per category**, topped
#   up from the history's categories so every answer names six;
# - **the interests it reads at inference**: each training prompt shows chapter 06's student's
#   interests, generated at that cut point;
# - **room to answer**: 80 new tokens (six numbered tags take 30-50).
#
# It ran once in full mode for every test user (command below); quick mode reads the committed
# answers and generates a few live.

# %%
tmeta = json.loads((art / "tagger" / "meta.json").read_text())
print(
    tmeta["command"],
    "|",
    tmeta["n_train_examples"],
    "training prompts,",
    tmeta["sft_config"]["steps"],
    "steps of",
    tmeta["sft_config"]["batch_size"],
)
print(
    f"held-out answer loss: base {tmeta['val_loss_base']:.2f}, "
    f"fine-tuned {tmeta['val_loss_tuned']:.2f}"
)
llm2_text = tagger.load_tags("test", field="text")
llm2_ints = tagger.load_tags("test", field="interests")
u1 = next(iter(llm2_text))
p1 = tagger.tag_prompt(
    inputs["history_text"][u1],
    tagger.category_summary(inputs["liked"][u1], setting.itags),
    llm2_ints[u1],
)
print(p1[-430:], "\n--- answer ---\n" + llm2_text[u1])

# %%
live2 = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m",
        str(art / "tagger" / "adapter"),
        config=tagger.generation_config(),
    )
)
again = live2.generate([p1])[0]
print(f"live: {again!r}")
assert recgpt.parse_phrases(again, recgpt.N_TAGS).ok  # a well-formed list, live

# %% [markdown]
# The answers' form first: how many hit the token limit, repeat a category, or name none.

# %%
llm2 = tagger.load_tags("test")
n_tok = {
    int(r["user_id"]): r["new_tokens"]
    for r in map(json.loads, (art / "tagger" / "tags.jsonl").read_text().splitlines())
    if r["stage"] == "test"
}
cats2 = {u: [recgpt.tag_category(t) for t in ts] for u, ts in llm2.items()}
form = pd.Series(
    {
        "answers": len(llm2),
        "hit the token limit": np.mean(
            [n >= tagger.MAX_NEW_TOKENS for n in n_tok.values()]
        ),
        "answers with a repeated category": np.mean(
            [len(set(c)) < len(c) for c in cats2.values()]
        ),
        "tags naming no category": np.mean(
            [c == recgpt.UNMAPPED for cs in cats2.values() for c in cs]
        ),
        "tags per answer": np.mean([len(t) for t in llm2.values()]),
    }
)
form.round(3)

# %% [markdown]
# Now HR@K on every test user, for K = 1 to 6, against the rule **at matched history** (the
# last 50 likes, what the summary counts), the rule at the last 12 likes (roughly what the
# first student saw), and the popular list. The post-processing step (`tagger.
# one_per_category`: drop a repeated or unmapped category, top up from the rule) is reported
# as its own row, so what the model does and what the fix-up does stay apart.

# %%
all_users = inputs["users"]
rule12 = {
    u: recgpt.recent_tags(inputs["liked"][u], setting.itags, n=recgpt.N_TAGS, last=12)
    for u in all_users
}
SOURCES = {
    "LLM_IT v2": {u: llm2.get(u, []) for u in all_users},
    "LLM_IT v2 + one per category": {
        u: tagger.one_per_category(llm2.get(u, []), rule[u]) for u in all_users
    },
    "rule, last 50 likes": rule,
    "rule, last 12 likes": rule12,
    "popular": {u: popular for u in all_users},
}
hr_k = pd.DataFrame(
    {
        name: [
            recgpt.judge_tags(t, k=k, **tj)[f"hr@{k}"].mean()
            for k in range(1, recgpt.N_TAGS + 1)
        ]
        for name, t in SOURCES.items()
    },
    index=pd.Index(range(1, recgpt.N_TAGS + 1), name="K"),
)
judged6 = {n: recgpt.judge_tags(t, k=recgpt.N_TAGS, **tj) for n, t in SOURCES.items()}
vs_rule = recgpt.paired_rate_table(
    judged6, "rule, last 50 likes", columns=[f"hr@{recgpt.N_TAGS}", "diversity"]
)
print(vs_rule.round(4).to_string(index=False))
hr_k.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for name in SOURCES:
    axes[0].plot(hr_k.index, hr_k[name], marker="o", ms=3, label=name)
axes[0].set(
    xlabel="K (first K tags)", ylabel="HR@K, test users", title="HR@K against K"
)
axes[0].legend(fontsize=8)
n_likes = pd.Series({u: len(inputs["liked"][u]) for u in all_users})
bins = pd.qcut(n_likes, 4, duplicates="drop")
for name in ("LLM_IT v2", "rule, last 50 likes", "popular"):
    h = judged6[name][f"hr@{recgpt.N_TAGS}"]
    per_bin = h.groupby(bins.loc[h.index].astype(str), sort=False).mean()
    per_bin = per_bin.loc[
        sorted(per_bin.index, key=lambda s: float(s.split(",")[0][1:]))
    ]
    axes[1].plot(range(len(per_bin)), per_bin.to_numpy(), marker="o", label=name)
    labels = per_bin.index
axes[1].set_xticks(range(len(labels)), labels, fontsize=8)
axes[1].set(
    xlabel="liked films in the history (quartiles)",
    ylabel=f"HR@{recgpt.N_TAGS}",
    title="HR@6 against history length",
)
axes[1].legend(fontsize=8)
fig.tight_layout()

# %%
v = vs_rule.set_index(["system", "judge"])
llm_vs_rule = v.loc[("LLM_IT v2", f"hr@{recgpt.N_TAGS}")]
print(
    f"HR@6, LLM_IT v2 minus the rule at matched history: {llm_vs_rule['diff']:+.4f} "
    f"[{llm_vs_rule['lo']:+.4f}, {llm_vs_rule['hi']:+.4f}], p = {llm_vs_rule['p']:.3f}"
)
first = (
    rates[rates.system == TUNED].set_index("judge").loc[f"hr@{recgpt.N_TAGS}", "mean"]
)
assert hr_k.loc[recgpt.N_TAGS, "LLM_IT v2"] > first + 0.15  # the fixes, measured
assert form["hit the token limit"] < 0.05  # no more answers cut off mid-tag
fixed = v.loc[("LLM_IT v2 + one per category", f"hr@{recgpt.N_TAGS}")]
assert llm_vs_rule["hi"] < 0  # the model alone still loses to the rule
assert -0.03 < fixed["lo"] < 0 < fixed["hi"] < 0.03  # with the post-step: a tie

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). The fixes are worth a
# lot: HR@6 rises from the first student's 0.37 to about 0.57, no answer hits the token limit,
# and no tag names a category outside the map. But the model on its own still loses to the
# counting rule at matched history, by about 0.04 with the interval below zero: it repeats a
# category in a few answers and orders categories a little worse than their counts do. The
# post-processing step, which keeps one tag per category and tops up from the rule, closes the
# gap to a tie (interval inside about ±0.02). **The target, the LLM beating the rule at matched
# history intervals apart, is missed.** A 135M model with 150 steps of LoRA learns to copy
# the summary's order, not to improve on it; what could improve on it is signal the rule does
# not read (the population's drift between windows, co-liked categories), and neither our
# prompt nor our 744 training prompts carry much of it. Chapter 08 uses the model's own tags,
# without the post-step, so that what reaches retrieval is the LLM's output.

# %% [markdown]
# The second LLM_IT's targets and its post-processing step are
# `llmrec_lib/tagger.py::next_tags` and `llmrec_lib/tagger.py::one_per_category`. Their source:

# %% tags=["hide-output"]
show.source(tagger.next_tags)

# %% tags=["hide-output"]
show.source(tagger.one_per_category)

# %% [markdown]
# ## 6. Staleness: interests mined weeks before the window
#
# RecGPT refreshes interests every two weeks and retrains LLM_IT on 14 days of logs (HR@30
# 0.3671 -> 0.3776). How much does age cost here? We predict tags twice with the rule-based
# predictor (cheap enough for every test user): from the history up to the start of the test
# window, and from the history as it was `stale_weeks` weeks earlier. Only users with liked films
# before the earlier date are compared, the same users on both sides (a paired bootstrap).

# %%
hist = setting.split.history("test")
start = setting.split.targets("test").groupby("user_id")["timestamp"].min()
old = recgpt.history_before(hist, (start - stale_weeks * 7 * 86400).to_dict())
old_liked = {
    int(u): g.loc[g.rating >= 4, "item_id"].tolist() for u, g in old.groupby("user_id")
}
paired = [u for u in inputs["users"] if old_liked.get(u)]
fresh_t = {u: rule[u] for u in paired}
stale_t = {
    u: recgpt.recent_tags(old_liked[u], setting.itags, n=recgpt.N_TAGS) for u in paired
}
a = recgpt.judge_tags(fresh_t, k=3, **tj)["hr@3"].to_numpy()
b = recgpt.judge_tags(stale_t, k=3, **tj)["hr@3"].to_numpy()
res = metrics.paired_bootstrap(a, b, nan_policy="omit")
changed = np.mean([fresh_t[u] != stale_t[u] for u in paired])
print(
    f"{len(paired)} users; HR@3 fresh {np.nanmean(a):.3f} vs {stale_weeks} "
    f"weeks stale {np.nanmean(b):.3f}; "
    f"difference {res.mean_diff:+.3f} [{res.lo:+.3f}, {res.hi:+.3f}], p = "
    f"{res.p_value:.3f}; "
    f"tags changed for {changed:.0%} of users"
)

# %% [markdown]
# On the book's split the difference is indistinguishable from zero (measured: about -0.005,
# interval about [-0.03, +0.03] on 116 users, although the tags changed for three quarters of
# them; 8 and 26 weeks give the same picture on fewer users). MovieLens tastes, seen as 18
# categories, move slowly, and a rating burst is not a shopping season. The paper's gain from
# fresher data, +2.9% relative (0.3671 -> 0.3776), is smaller than our interval's width: it
# took Taobao's traffic to see it.

# %%
assert len(paired) > 100 and res.lo < 0 < res.hi  # no measurable staleness cost here

# %% [markdown]
# ## 7. The tags chapter 08 uses
#
# Chapter 08's tag tower reads the second LLM_IT's tags, for every test user and a seeded
# sample of validation users (its $a$ and $b$ are chosen there), with `tagger.load_tags`.
# The first run's tags (`artifacts/recgpt/tags_test.jsonl`, read with
# `recgpt.load_predicted_tags(source=...)`) stay for section 4's comparison.

# %%
for stage_ in ("test", "valid"):
    got = tagger.load_tags(stage_)
    print(f"{stage_:5s} {len(got):4d} users, e.g. {next(iter(got.values()))}")
assert set(tagger.load_tags("test")) == set(inputs["users"])  # every test user

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT**: HR@30 0.3671 (0.3776 with incremental learning), at least 50 tags per user,
# human pass rate of tags 84.8-88.8% fine-tuned vs 33.7% base. **We measure** HR@3 and HR@6
# (6 tags per user, 18 categories instead of thousands of leaf categories, which is why our
# hit rates are higher in absolute terms and popularity is hard to beat), in the tables above.
# ```

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "07",
    "mode": cfg.mode,
    "produced_by": {
        "baselines and staleness": "this run, all test users",
        "LLM tags": f"artifacts/recgpt: {meta['command']}",
        "LLM_IT v2": f"artifacts/recgpt/tagger: {tmeta['command']}",
        "live": f"{n_live} users",
    },
    "baselines": pd.concat(base.values()).to_dict(orient="records"),
    "tag_judges": rates.to_dict(orient="records"),
    "llm_it_v2": {
        "form": form.to_dict(),
        "hr_at_k": hr_k.to_dict(),
        "vs_rule_last_50": vs_rule.to_dict(orient="records"),
    },
    "staleness": {
        "weeks": stale_weeks,
        "users": len(paired),
        "hr@3_fresh": float(np.nanmean(a)),
        "hr@3_stale": float(np.nanmean(b)),
        "diff": res.mean_diff,
        "lo": res.lo,
        "hi": res.hi,
        "p": res.p_value,
    },
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
(config.results_dir() / "ch07.json").write_text(
    json.dumps(out, indent=2, default=float)
)
print(f"wrote results/ch07.json ({cfg.mode} mode, {out['chapter_seconds']:.0f} s)")

# %% [markdown]
# ## Summary
#
# 1. Tags are "modifier + core word" phrases; a transparent head-noun map turns them into
#    categories.
# 2. Targets are the tags of what users liked next, from training time only.
# 3. HR@K through the map: popularity is strong on 18 categories; fine-tuning makes SmolLM2 a
#    tag predictor at all (zero-shot it is not), but the first student lost to a counting
#    rule for mechanical reasons: truncated answers, repeated categories, a shorter history.
# 4. A second LLM_IT with those causes removed (section 5) is compared with the rule at
#    matched history, user by user; the verdict is printed there.
# 5. Staleness is measurable; on MovieLens categories two weeks cost nothing we can detect.
#
# ## Exercises
#
# 1. **K.** Compute HR@1 for the four systems. *Check:* every HR@1 is at most the same
#    system's HR@3.
# 2. **One tag per category.** Rebuild `rule` with `max_per_category=1`. *Check:* its
#    diversity rate rises or stays equal, and report what HR@6 does.
# 3. **Head noun.** Write three tags whose category the map gets wrong (e.g. "comic book
#    adaptation"). *Check:* `recgpt.tag_category` returns the wrong category for each; say
#    how a learned tag-to-category model would avoid it.
# 4. **Older interests.** Set `stale_weeks = 26`. *Check:* fewer users remain in `paired`,
#    and the share whose tags changed rises (measured: 63 users, 95%).
