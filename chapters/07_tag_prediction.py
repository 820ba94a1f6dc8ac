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
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. On other data (your own, or a derived copy) the tag vocabulary, the targets, the
# two counting baselines, HR@K and the staleness test run live, and the committed adapters
# (chapter 06's student, then the second LLM_IT) tag a few of your users as a demonstration
# that is not scored. What is scored from committed generations (section 4's comparison,
# section 5's second LLM_IT, section 7's tags for chapter 08) is skipped there: they were
# generated for the reference split's users. The closing table, "Which claims hold on this
# data", lists those claims as not tested.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
n_live = 3  # users the live tag generation covers
stale_weeks = 2  # how old the stale interests are (RecGPT refreshes every two weeks)
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import functools
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import config, generation, metrics, plots  # isort: skip
from llmrec_lib import recgpt, serving, show  # isort: skip
from llmrec_lib.recgpt import tagger  # isort: skip

chapter_t0 = time.perf_counter()
cfg = config.settings(
    "07",
    mode,
    seed=seed,
    backbone="smollm2-135m (all 30 layers), LoRA r=8 (adapter of chapter 06)",
    quick={
        "tags per user": recgpt.N_TAGS,
        "live users": n_live,
        "judged generations": "committed artifacts/recgpt (reference release only)",
    },
    full={
        "tags per user": recgpt.N_TAGS,
        "judged generations": "artifacts/recgpt from python -m llmrec_lib.recgpt "
        "full (reference release only)",
    },
)
cfg.show()
print(config.data_status(cfg.data_dir))

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers is asserted
# on the reference release and only recorded on other data; a mechanic (every item tag names
# its item's category) is asserted on any data. Claims about the committed generations
# (`artifacts/recgpt`) are checked only where they fit the data, `claims.artifacts_fit`, and
# recorded as not tested elsewhere (`llmrec_lib/config.py::Claims.check_committed`).

# %%
claims = config.Claims("07", path=cfg.data_dir)
committed = claims.artifacts_fit  # the committed adapters and generations fit this data
WHY = (
    "needs the committed generations (artifacts/recgpt), made for the reference "
    "split's users"
)


# a claim about the committed run: checked where it fits the data, else not tested
check_committed = functools.partial(claims.check_committed, why=WHY)


def ci(table, key, col="mean"):
    """One row's value and 95% interval, for a claim's detail."""
    row = table.loc[key]
    return metrics.interval_text(row[col], row["lo"], row["hi"])


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
setting = recgpt.build_setting(cfg.data_dir, verify=verify_data)
movies = setting.ml.movies.set_index("item_id")
for i in [i for i in (1, 296, 2571, 58559) if i in movies.index]:  # if in the data
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
wrong = [
    (i, p)
    for i, ps in setting.itags.items()
    for p in ps
    if recgpt.tag_category(p) != recgpt.item_category(movies.loc[i, "genres"])
]
claims.check(
    "every item tag names its item's category",
    not wrong,
    pinned=False,
    detail=f"{sum(map(len, setting.itags))} tags, {len(wrong)} wrong {wrong[:3]}",
)

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
RB = "rule-based (recent categories)"
claims.check(  # measured 0.378 vs 0.361
    "the rule-based tags' HR@3 is above the popular tags'",
    b3.loc[RB, "mean"] > b3.loc["popular", "mean"],
    detail=f"{ci(b3, RB)} vs {ci(b3, 'popular')}",
)
claims.check(
    "but their HR@3 intervals overlap",
    b3.loc[RB, "lo"] < b3.loc["popular", "hi"],
    detail=f"{ci(b3, RB)} vs {ci(b3, 'popular')}",
)

# %% [markdown]
# Six categories cover most of what people like on MovieLens, so popularity is a strong
# baseline (HR@3 0.36); the user's own recent categories do only slightly better (0.38, the
# intervals overlap). Tags that are to help retrieval must at least match these two.

# %% [markdown]
# The counting rule is `llmrec_lib/recgpt/teacher.py::recent_tags`, and HR@K is computed
# by `llmrec_lib/recgpt/judges.py::judge_tags`. The rule's source:

# %% tags=["hide-output"]
show.source(recgpt.recent_tags)

# %% [markdown]
# ## 4. LLM_IT: zero-shot vs fine-tuned
#
# The committed run of chapter 06 (`python -m llmrec_lib.recgpt full`, command in
# `artifacts/recgpt/meta.json`) ran LLM_UI then LLM_IT with each model: the zero-shot pipeline
# reads zero-shot interests, the fine-tuned one reads its own. One adapter learned both tasks.
# Live, the prompt and answers for a few users. On other data the committed interests do not
# fit, so the adapter first mines these users' interests live, then tags them: a
# demonstration only, since the adapter was trained on the reference split.

# %%
art = recgpt.artifacts_dir()
tuned_gen = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m", str(art / recgpt.ADAPTER), config=recgpt.generation_config()
    )
)
if committed:
    meta = json.loads((art / recgpt.META).read_text())
    gens = recgpt.read_generations(art / recgpt.GENERATIONS)
    ints_ft = recgpt.phrases_from_generations(gens, "fine-tuned", "interests")
    live_users = [u for u in meta["users"]][:n_live]
else:  # LLM_UI live for the demonstration's users
    meta = gens = None
    live_users = inputs["users"][:n_live]
    ints_ft = recgpt.generate_pipeline(tuned_gen, inputs, live_users, progress=False)
    ints_ft = ints_ft["interests"]
prompts = [
    recgpt.tag_prompt(inputs["history_text"][u], ints_ft[u], recgpt.N_TAGS)
    for u in live_users
]
print(prompts[0][-300:])
for u, t in zip(live_users, tuned_gen.generate(prompts)):
    print(f"user {u}: {t!r}")

# %% [markdown]
# On other data the committed tags do not fit, and the table holds only the two rules, on
# every test user.

# %%
systems = {}
if committed:
    users = meta["users"]
    tags = {
        src: recgpt.phrases_from_generations(gens, src, "tags")
        for src in ("zero-shot", "fine-tuned")
    }
    TUNED = f"SmolLM2 + LoRA ({meta['sft_config']['steps']} steps)"
    systems = {"SmolLM2 zero-shot": tags["zero-shot"], TUNED: tags["fine-tuned"]}
else:
    users, TUNED = inputs["users"], "SmolLM2 + LoRA (committed run)"
systems |= {
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
    "Fine-tuning makes SmolLM2 a tag predictor; counting rules still predict better"
    if committed
    else "The two counting rules on this data",
)
fig.axes[0].set_xlabel(f"HR@{recgpt.N_TAGS} on {len(users)} test users, 95% CI")
hr.round(3)

# %%
z = rates[rates.system == "SmolLM2 zero-shot"].set_index("judge")
t = rates[rates.system == TUNED].set_index("judge")
r = rates[rates.system == "rule-based (recent categories)"].set_index("judge")
HR6 = f"hr@{recgpt.N_TAGS}"
for k in (HR6, "hr@3"):  # intervals apart
    check_committed(
        f"fine-tuning lifts {k.upper()} over zero-shot, intervals apart",
        lambda: (t.loc[k, "lo"] > z.loc[k, "hi"], f"{ci(t, k)} vs {ci(z, k)}"),
    )
for j, why in (
    ("unmapped", "name categories"),
    ("stale", "do not name films just rated"),
):
    check_committed(
        f"fine-tuned tags {why}: a lower {j} rate than zero-shot's",
        lambda: (t.loc[j, "mean"] < z.loc[j, "mean"], f"{ci(t, j)} vs {ci(z, j)}"),
    )
check_committed(
    "at 3 tags the counting rule's lead over the student is within noise",
    lambda: (
        r.loc["hr@3", "lo"] < t.loc["hr@3", "hi"],
        f"{ci(r, 'hr@3')} vs {ci(t, 'hr@3')}",
    ),
)
check_committed(
    "at 6 tags the counting rule leads the student, intervals apart",
    lambda: (r.loc[HR6, "lo"] > t.loc[HR6, "hi"], f"{ci(r, HR6)} vs {ci(t, HR6)}"),
)
check_committed(
    "the student repeats itself: diversity below the rule's, intervals apart",
    lambda: (
        t.loc["diversity", "hi"] < r.loc["diversity", "lo"],
        f"{ci(t, 'diversity')} vs {ci(r, 'diversity')}",
    ),
)
quoted = [0.02, 0.335, 0.40, 0.37, 0.62, 0.54, 0.18]


def measured():
    """The rates the prose below quotes, in its order."""
    rows = [(z, "hr@3"), (t, "hr@3"), (r, "hr@3"), (t, HR6), (r, HR6)]
    rows += [(t, "diversity"), (t, "unmapped")]
    return [table.loc[j, "mean"] for table, j in rows]


if (
    cfg.mode == "quick"
):  # the prose below quotes the committed run, which quick mode reads
    check_committed(
        f"the {len(quoted)} rates quoted below hold within 0.006",
        lambda: (
            np.allclose(measured(), quoted, atol=0.006),
            ", ".join(f"{v:.3f}" for v in measured()),
        ),
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
# interests but ran on its own. `llmrec_lib/recgpt/tagger.py` trains a second, separate
# LLM_IT (RecGPT also keeps LLM_UI and LLM_IT apart) with each cause removed:
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
# answers and generates a few live. On other data the committed answers do not fit: the tag
# model answers one user live (its prompt shows the interests section 4 mined live), the
# answers' form and the model's HR@K are skipped, and the table keeps the rules and popular.

# %%
tmeta = llm2_text = None  # the committed second LLM_IT: only where it fits the data
if committed:
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
else:  # the interests chapter 06's student mined live in section 4
    u1, llm2_ints = live_users[0], ints_ft
p1 = tagger.tag_prompt(
    inputs["history_text"][u1],
    tagger.category_summary(inputs["liked"][u1], setting.itags),
    llm2_ints[u1],
)
print(p1[-430:])
if committed:
    print("--- answer ---\n" + llm2_text[u1])

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
claims.check(
    "the second LLM_IT writes a well-formed list of tags, live",
    recgpt.parse_phrases(again, recgpt.N_TAGS).ok,
    detail=f"user {u1}: {again[:60]!r}",
)

# %% [markdown]
# The answers' form first: how many hit the token limit, repeat a category, or name none.

# %%
llm2 = form = None  # the committed answers: only where they fit the data
if committed:
    llm2 = tagger.load_tags("test")
    n_tok = {
        int(r["user_id"]): r["new_tokens"]
        for r in map(
            json.loads, (art / "tagger" / "tags.jsonl").read_text().splitlines()
        )
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
None if form is None else form.round(3)

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
V2, V2_FIXED = "LLM_IT v2", "LLM_IT v2 + one per category"
SOURCES = {}
if committed:
    SOURCES = {
        V2: {u: llm2.get(u, []) for u in all_users},
        V2_FIXED: {
            u: tagger.one_per_category(llm2.get(u, []), rule[u]) for u in all_users
        },
    }
SOURCES |= {
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
for name in [n for n in (V2, "rule, last 50 likes", "popular") if n in judged6]:
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
if committed:
    llm_vs_rule = v.loc[(V2, HR6)]
    print(
        f"HR@6, LLM_IT v2 minus the rule at matched history: "
        f"{llm_vs_rule['diff']:+.4f} [{llm_vs_rule['lo']:+.4f}, "
        f"{llm_vs_rule['hi']:+.4f}], p = {llm_vs_rule['p']:.3f}"
    )
    first = rates[rates.system == TUNED].set_index("judge").loc[HR6, "mean"]
check_committed(  # the fixes, measured
    "the second LLM_IT's HR@6 is more than 0.15 above the first student's",
    lambda: (
        hr_k.loc[recgpt.N_TAGS, V2] > first + 0.15,
        f"{hr_k.loc[recgpt.N_TAGS, V2]:.3f} vs {first:.3f}",
    ),
)
check_committed(
    "under 5% of its answers hit the token limit",
    lambda: (form["hit the token limit"] < 0.05, f"{form['hit the token limit']:.3f}"),
)
check_committed(
    "the model alone still loses to the rule at matched history "
    "(HR@6 interval below 0)",
    lambda: (llm_vs_rule["hi"] < 0, ci(v, (V2, HR6), "diff")),
)
check_committed(  # with the post-step: a tie
    "with the post-step it ties the rule (HR@6 interval inside +-0.03, spanning 0)",
    lambda: (
        -0.03 < v.loc[(V2_FIXED, HR6), "lo"] < 0 < v.loc[(V2_FIXED, HR6), "hi"] < 0.03,
        ci(v, (V2_FIXED, HR6), "diff"),
    ),
)

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). The fixes are worth a
# lot: HR@6 rises from the first student's 0.37 to about 0.57, no answer hits the token limit,
# and no tag names a category outside the map. But the model on its own still loses to the
# counting rule at matched history, by about 0.04 with the interval below zero: it repeats a
# category in a few answers and orders categories a little worse than their counts do. The
# post-processing step, which keeps one tag per category and tops up from the rule, closes the
# gap to a tie (interval inside about ±0.02). **The target, the LLM beating the rule at matched
# history intervals apart, is missed.** A 135M model with 150 steps of LoRA learns to copy
# the summary's order, not to improve on it. What could improve on it is signal the rule does
# not read; the next subsection measures how much of it there is. Chapter 08 uses an LLM's
# own tags, without the post-step (section 7 picks which run), so that what reaches
# retrieval is the LLM's output.

# %% [markdown]
# ### How much room does the rule leave?
#
# The rule counts. It does not weigh a film liked last week above one liked three years ago,
# and it knows nothing of what everybody likes. Both are signal that a model reading the same
# 50 likes could learn, so before asking an LLM to find it, measure how much of it there is.
# `recgpt.weighted_tags` is the rule with two knobs: a recency half-life, and a prior toward
# the population's category shares (which also fills the slots a short history leaves
# empty). The grid and the tie rule are fixed before looking at validation. The grid runs
# from the rule itself (no decay, no prior, the last 50 likes) toward more change: first a
# prior, then a shorter half-life, then the whole history. The first point within 0.002 of
# the best validation HR@6 wins. Then test, user by user against the rule. (This grid was
# drawn after one exploratory pass over validation; the test numbers of that pass's five
# best points, looked at once, lay within 0.001 of one another.)

# %%
valid_in = setting.stage_inputs("valid")
shares = recgpt.category_base_rates(pos, setting.ml.movies)  # training likes only
KNOBS = [  # (last likes read, half-life in likes, prior weight), preferred first
    (last, half, shrink)
    for shrink in (0.0, 0.5, 1.0, 2.0, 4.0)
    for half in (None, 50, 25, 10)
    for last in (50, None)
]


def tuned_tags(stage_in, knobs):
    """Every user's tags from `recgpt.weighted_tags` at one grid point."""
    last, half, shrink = knobs
    return {
        u: recgpt.weighted_tags(
            stage_in["liked"][u],
            setting.itags,
            shares,
            n=recgpt.N_TAGS,
            last=last,
            half_life=half,
            shrink=shrink,
        )
        for u in stage_in["users"]
    }


def hr6_of(tags, stage_in):
    """Per-user judge table of `tags` on a stage's window."""
    return recgpt.judge_tags(
        tags,
        k=recgpt.N_TAGS,
        future=stage_in["future"],
        recent=stage_in["recent"],
        facts=setting.facts,
        n_requested=recgpt.N_TAGS,
    )


KNOB, knob_grid = serving.choose_on_validation(
    KNOBS, lambda kn: hr6_of(tuned_tags(valid_in, kn), valid_in)[HR6].mean(), tol=0.002
)
print(f"validation chose (last, half-life, prior) = {KNOB}")
knob_grid["value"] = knob_grid["value"].astype(str)
knob_grid.sort_values("metric", ascending=False).head(6).round(4)

# %%
RULE50, TUNED_RULE = "rule, last 50 likes", "rule, tuned on validation"
FILLED = "rule + popular fill"  # the rule; empty slots filled by population share
room = {
    RULE50: judged6[RULE50],
    FILLED: hr6_of(tuned_tags(inputs, (50, None, 1e-6)), inputs),
    TUNED_RULE: hr6_of(tuned_tags(inputs, KNOB), inputs),
}
if committed:
    room |= {V2: judged6[V2], V2_FIXED: judged6[V2_FIXED]}
room_vs = pd.concat(
    {
        "minus the rule": recgpt.paired_rate_table(room, RULE50, columns=[HR6]),
        "minus the tuned rule": recgpt.paired_rate_table(
            room, TUNED_RULE, columns=[HR6]
        ),
    }
).droplevel(1)
room_vs["HR@6"] = room_vs["system"].map({n: j[HR6].mean() for n, j in room.items()})
room_vs.round(4)

# %%
rv = room_vs.reset_index().set_index(["index", "system"])
TUNED_VS, FILL_VS = ("minus the rule", TUNED_RULE), ("minus the rule", FILLED)
claims.check(
    "validation moves the rule off its plain count (a decay or a prior)",
    KNOB != (50, None, 0.0),
    detail=f"{KNOB}",
)
claims.check(  # measured +.023 [+.009, +.038]
    "the tuned rule beats the counting rule on test HR@6 (paired, above 0)",
    rv.loc[TUNED_VS, "lo"] > 0,
    detail=ci(rv, TUNED_VS, "diff"),
)
claims.check(  # measured +.013 [+.003, +.024]: about half the gain
    "filling the rule's empty slots from the population lifts HR@6 (paired, above 0)",
    rv.loc[FILL_VS, "lo"] > 0,
    detail=ci(rv, FILL_VS, "diff"),
)
check_committed(
    "the LLM_IT v2 with its post-step loses to the tuned rule (HR@6 interval below 0)",
    lambda: (
        rv.loc[("minus the tuned rule", V2_FIXED), "hi"] < 0,
        ci(rv, ("minus the tuned rule", V2_FIXED), "diff"),
    ),
)

# %% [markdown]
# So there is room above the rule, and it is measurable on 602 users (quick and full mode
# alike: these are rules, run live on every test user). Validation chose the last 50 likes,
# a half-life of 25 likes and a prior of weight 2, and on test that gains about 0.023 of
# HR@6 over the plain count, with the interval above zero. About half of the gain (0.013)
# is only the filling of the slots a short history leaves empty with what everybody likes;
# the rest is recency and a pull toward the population. This is the bar an LLM reading the
# same history has to clear to "beat the rule" convincingly, and ours is 0.03 below it even
# with its post-step. Its summary line gives counts over 50 likes, with no recency and no
# population shares, and 744 training prompts are few to infer either from. The tuned rule
# is the baseline to report beside the plain one, and the next LLM_IT below is given the
# signal it found.

# %% [markdown]
# ### A third LLM_IT, given that signal
#
# `tagger.py`'s `v3` recipe changes two things and nothing else. Its prompt adds a summary of
# the last 10 likes above the one over 50, so recency is in view, and its targets' backfill
# (the slots the next 8 likes leave empty) follows the tuned rule's order instead of the
# history's counts, so the population prior is in what it learns. It keeps v2's cut points,
# v2's interests (the same LLM_UI answers, reused from v2's run) and v2's 150 steps. It ran
# once in full mode (command below); both modes read its committed answers.

# %%
V3, V3_FIXED = "LLM_IT v3", "LLM_IT v3 + one per category"


def judge_with_post_step(name, fixed, tags):
    """Judge an LLM's answers alone (`name`) and after the post-step (`fixed`)."""
    room[name] = hr6_of({u: tags.get(u, []) for u in all_users}, inputs)
    room[fixed] = hr6_of(
        {u: tagger.one_per_category(tags.get(u, []), rule[u]) for u in all_users},
        inputs,
    )


def paired_against(names, refs):
    """HR@6 of `names` minus each reference of `refs` (label, system), user-paired."""
    t = pd.concat(
        {
            against: recgpt.paired_rate_table(room, ref, columns=[HR6])
            for against, ref in refs
        }
    ).droplevel(1)
    t = t[t["system"].isin(names)].copy()
    t["HR@6"] = t["system"].map({n: room[n][HR6].mean() for n in names})
    return t


def above_0(r):
    """The paired interval of row `r` lies above 0."""
    return r["lo"] > 0


def below_0(r):
    """The paired interval of row `r` lies below 0."""
    return r["hi"] < 0


def spans_0(r):
    """The paired interval of row `r` holds 0: no measurable difference."""
    return r["lo"] < 0 < r["hi"]


def check_rows(rows, table):
    """Check each claim of `rows` (claim -> (row key, holds)) on the paired table that
    `table()` returns: a committed run's, so it is read only where that run fits."""
    for claim, (key, holds) in rows.items():
        check_committed(
            claim,
            lambda key=key, holds=holds: (
                holds(table().loc[key]),
                ci(table(), key, "diff"),
            ),
        )


RULES = [("minus the rule", RULE50), ("minus the tuned rule", TUNED_RULE)]
v3_vs = None  # the committed third LLM_IT: only where it fits the data
if committed:
    v3_dir = art / "tagger-v3"
    v3meta = json.loads((v3_dir / "meta.json").read_text())
    print(
        v3meta["command"],
        "| held-out answer loss:",
        f"base {v3meta['val_loss_base']:.2f},",
        f"fine-tuned {v3meta['val_loss_tuned']:.2f}",
    )
    v3 = tagger.load_tags("test", v3_dir / "tags.jsonl")
    judge_with_post_step(V3, V3_FIXED, v3)
    v3_vs = paired_against([V3, V3_FIXED], RULES + [("minus v2", V2)])
None if v3_vs is None else v3_vs.round(4)

# %% [markdown]
# Before the verdict, the answers' form: the parser keeps each distinct tag once, so an
# answer that writes the same line twice names fewer than six tags, and the slot is lost.


# %%
def share_short(count, sources, name):
    """Per source, the share of answers whose `count(tags)` is below six."""
    return pd.Series(
        {
            n: np.mean([count(t) < recgpt.N_TAGS for t in tags.values()])
            for n, tags in sources
        },
        name=name,
    )


if committed:
    short = share_short(
        len, ((V2, llm2), (V3, v3)), "answers naming fewer than 6 distinct tags"
    )
    print(short.round(3).to_string())
    v3r = v3_vs.reset_index().set_index(["index", "system"])
V3_CLAIMS = {  # claim -> (row of v3_vs, holds); measured in full mode, 602 test users
    "the third LLM_IT beats the second on HR@6 (paired, above 0)": (
        ("minus v2", V3),
        above_0,
    ),
    "alone it still loses to the rule at matched history (interval below 0)": (
        ("minus the rule", V3),
        below_0,
    ),
    "with the post-step it ties the rule (interval spans 0)": (
        ("minus the rule", V3_FIXED),
        spans_0,
    ),
    "with the post-step it still loses to the tuned rule (interval below 0)": (
        ("minus the tuned rule", V3_FIXED),
        below_0,
    ),
}
check_rows(V3_CLAIMS, lambda: v3r)
check_committed(
    "over a fifth of the third LLM_IT's answers repeat a tag",
    lambda: (short[V3] > 0.2, f"{short[V3]:.3f}"),
)

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). Recency in the prompt
# and the tuned order in the targets help: the third LLM_IT beats the second by about 0.015
# of HR@6, interval just above zero, and with the post-step it now sits level with the rule
# (+0.006, interval across zero) where v2 sat below it. **The target is still missed**: on its
# own it loses to the rule at matched history by about 0.02, interval below zero, and even
# with the post-step it is about 0.017 below the tuned rule. Most of that loss is mechanical
# again: over a quarter of its answers write one tag twice (greedy decoding, no repetition
# control), which leaves a slot empty that the post-step fills from the rule. Decoding that
# cannot repeat a tag is the next fix, measured below as its own step, like the post-step.

# %% [markdown]
# ### Decoding that cannot repeat a category
#
# The repeats come from decoding, so the fix goes there. `tagger.OneTagPerCategory` is a
# constraint on greedy decoding (`GenerationConfig(constraint=...)`, applied by a logits
# processor in `generation.py`): once a line has named a category, a later token is refused
# if it would complete one of that category's words, or start a word that can only become
# one. Greedy decoding then takes the model's best remaining token, so the slot gets the
# model's next choice instead of a repeat. One detail decided a twentieth of the answers:
# under bf16 two tokens often share a score exactly, and greedy decoding breaks the tie by
# the lower token id, so a refused token that ties with the best allowed one must be barred
# as well (the first run of this section missed that, and 32 of its 602 answers still named
# a category twice). The adapter, prompts, interests and users are
# v3's; only the decoding changes. It ran once in full mode (command below), and both modes
# read its committed answers. The post-step is measured again on top, for answers that
# still name fewer than six categories (a line that maps to none, or an early stop).

# %% tags=["hide-output"]
show.source(tagger.OneTagPerCategory.allows)

# %%
V3_ONCE = "LLM_IT v3, constrained decoding"
V3_ONCE_FIXED = "LLM_IT v3, constrained + one per category"
once_vs = None
if committed:
    once_dir = v3_dir / tagger.CONSTRAINED
    once_meta = json.loads((once_dir / "meta.json").read_text())
    print(once_meta["command"], f"| {once_meta['wall_s'] / 60:.0f} min, 2 cores")
    once = tagger.load_tags("test", once_dir / "tags.jsonl")
    judge_with_post_step(V3_ONCE, V3_ONCE_FIXED, once)
    once_vs = paired_against(
        [V3_ONCE, V3_ONCE_FIXED], RULES + [("minus v3, greedy", V3)]
    )
None if once_vs is None else once_vs.round(4)

# %% [markdown]
# The answers' form, greedy against constrained: how many name fewer than six distinct
# categories (a repeat, a line that maps to none, or an early stop).


# %%
def n_categories(tags):
    """Distinct categories an answer names (unmapped lines not counted)."""
    return len({recgpt.tag_category(t) for t in tags} - {recgpt.UNMAPPED})


def few_categories(sources):
    """Per (name, tags) source, the share of answers naming fewer than 6 categories."""
    return share_short(n_categories, sources, "answers naming fewer than 6 categories")


if committed:
    few = few_categories(((V3, v3), (V3_ONCE, once)))
    print(few.round(3).to_string())
    once_r = once_vs.reset_index().set_index(["index", "system"])

# %% [markdown]
# Where in the list the difference sits: HR@K for the first K tags, K = 1 to 6, for the two
# rules and the two decodings of v3 (all test users).


# %%
def hr_at_ks(curves):
    """HR@K of each system's tags (name -> user -> tags), K = 1 to 6, test users."""
    ks = range(1, recgpt.N_TAGS + 1)
    return pd.DataFrame(
        {
            name: [recgpt.judge_tags(t, k=k, **tj)[f"hr@{k}"].mean() for k in ks]
            for name, t in curves.items()
        },
        index=pd.Index(ks, name="K"),
    )


if committed:
    curves = {
        RULE50: rule,
        TUNED_RULE: tuned_tags(inputs, KNOB),
        V3: v3,
        V3_ONCE: once,
    }
    once_k = hr_at_ks(curves)
    print(once_k.round(3).to_string())
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name in curves:
        ax.plot(once_k.index, once_k[name], marker="o", ms=3, label=name)
    ax.set(xlabel="K (first K tags)", ylabel="HR@K, test users", title="HR@K against K")
    ax.legend(fontsize=8)
    fig.tight_layout()

# %%
from llmrec_lib import abtest

TIE = ("minus the rule", V3_ONCE)
ONCE_CLAIMS = {  # claim -> (row of once_vs, holds); full mode, 602 test users
    "constrained decoding beats greedy decoding of the same model (paired, above 0)": (
        ("minus v3, greedy", V3_ONCE),
        above_0,
    ),
    "constrained, the model ties the rule at matched history (interval spans 0)": (
        TIE,
        spans_0,
    ),
    "constrained, it still loses to the tuned rule (interval below 0)": (
        ("minus the tuned rule", V3_ONCE),
        below_0,
    ),
}
check_rows(ONCE_CLAIMS, lambda: once_r)
check_committed(
    "constrained, no answer names fewer than 6 categories (greedy: over a fifth)",
    lambda: (few[V3_ONCE] == 0 and few[V3] > 0.2, few.round(3).to_dict()),
)
if committed:
    tie_mde = abtest.mde_from_interval(once_r.loc[TIE, "lo"], once_r.loc[TIE, "hi"])
    print(f"minimum detectable HR@6 difference against the rule: {tie_mde:.3f}")

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). Decoding is worth
# about 0.028 of HR@6 over greedy decoding of the same model, interval above zero, and no
# answer names fewer than six categories any more (over a quarter did), so the post-step has
# nothing left to fill: its rows equal the model's. **The target is still missed**: the
# constrained model ties the counting rule at matched history (a difference of about
# +0.004, interval from -0.014 to +0.023; an effect smaller than the printed minimum
# detectable one, about 0.027, could hide in it), and stays about 0.019 below the tuned
# rule. The curve shows where: the model is behind the rule from the first tag (HR@1 0.168
# against 0.181), and the constraint only lets it catch up in the last slots. What is left
# is the order of its choices. Before more training, one cheaper question: is that order
# lost in decoding, or missing from the model?

# %% [markdown]
# ### Reading the ranking instead of decoding it
#
# Greedy decoding keeps one token per step, and each later line is written in the light of
# the earlier ones. Yet at the first tag's head (after "1. 90s") the model has already
# weighed every category: its probabilities of the 18 core words (" drama", " crime", ...)
# rank them all at once. `tagger.rank` reads that ranking instead of decoding it: greedy
# decoding up to the first tag's head (`tagger.after_modifier`), then the categories in the
# order of the model's probability of their core word, each written with the same modifier
# (`tagger.ranked_answer`). The model, prompts, interests and users are v3's again; a few new
# tokens per user are decoded instead of about fifty. If the order of the model's later
# choices were what holds it back, this reading would show it. It ran once in full mode
# (command below); both modes read its committed answers.

# %% tags=["hide-output"]
show.source(tagger.ranked_answer)

# %%
V3_RANK = "LLM_IT v3, ranked at the first tag"
V3_RANK_FIXED = "LLM_IT v3, ranked + one per category"
rank_vs = None
if committed:
    rank_dir = v3_dir / tagger.RANKED
    rank_meta = json.loads((rank_dir / "meta.json").read_text())
    print(
        rank_meta["command"],
        f"| {rank_meta['wall_s'] / 60:.0f} min, 2 cores;",
        f"answers not read: {rank_meta['unread']}",
    )
    ranked = tagger.load_tags("test", rank_dir / "tags.jsonl")
    judge_with_post_step(V3_RANK, V3_RANK_FIXED, ranked)
    rank_vs = paired_against(
        [V3_RANK, V3_RANK_FIXED], RULES + [("minus v3, constrained", V3_ONCE)]
    )
    rank_r = rank_vs.reset_index().set_index(["index", "system"])
    rank_k = hr_at_ks({RULE50: rule, V3_ONCE: once, V3_RANK: ranked})
    same_first = np.mean(
        [
            recgpt.tag_category(ranked[u][0]) == recgpt.tag_category(once[u][0])
            for u in all_users
        ]
    )
    print(rank_k.round(3).to_string())
    print(f"users whose first tag names the same category both ways: {same_first:.3f}")
None if rank_vs is None else rank_vs.round(4)

# %%
RANK_TIE = ("minus the rule", V3_RANK)
RANK_CLAIMS = {  # claim -> (row of rank_vs, holds); full mode, 602 test users
    "ranked at the first tag, the model still ties the rule (interval spans 0)": (
        RANK_TIE,
        spans_0,
    ),
    "ranked and constrained decoding do not differ measurably (interval spans 0)": (
        ("minus v3, constrained", V3_RANK),
        spans_0,
    ),
    "ranked, it still loses to the tuned rule (interval below 0)": (
        ("minus the tuned rule", V3_RANK),
        below_0,
    ),
}
check_rows(RANK_CLAIMS, lambda: rank_r)
check_committed(
    "for over 90% of users the first tag names the same category both ways",
    lambda: (same_first > 0.9, f"{same_first:.3f}"),
)
check_committed(
    "the post-step finds no empty slot in the ranked answers (same HR@6 per user)",
    lambda: (
        room[V3_RANK][HR6].equals(room[V3_RANK_FIXED][HR6]),
        f"{room[V3_RANK_FIXED][HR6].mean():.4f}",
    ),
)
check_committed(
    "every test answer was read, and HR@1 stays below the rule's",
    lambda: (
        rank_meta["unread"] == 0 and rank_k.loc[1, V3_RANK] < rank_k.loc[1, RULE50],
        f"unread {rank_meta['unread']}; HR@1 {rank_k.loc[1, V3_RANK]:.3f} vs "
        f"{rank_k.loc[1, RULE50]:.3f}",
    ),
)
if committed:
    rank_mde = abtest.mde_from_interval(
        rank_r.loc[RANK_TIE, "lo"], rank_r.loc[RANK_TIE, "hi"]
    )
    print(f"minimum detectable HR@6 difference against the rule: {rank_mde:.3f}")

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). Reading the
# ranking changes little: HR@6 is about 0.611 against 0.608 for constrained decoding, a
# difference the interval cannot tell from zero (+0.003, from -0.012 to +0.020). Against
# the rule it is still a tie (about +0.007, interval from -0.011 to +0.027, minimum
# detectable effect printed above), and it stays about 0.016 below the tuned rule,
# interval just below zero. The first tag names the same category both ways for 96% of
# the users, so HR@1 does not move (0.167, the rule 0.181); the ranking helps a little
# in the middle of the list (HR@3 0.382 against 0.374) and gives it back at K = 4-5. The
# post-step again has no empty slot to fill (its rows equal the model's). So the gap to
# the rule is not in how the answer is read from the model: it is in the model's first
# choice, which 744 training prompts and 150 LoRA steps on a 135M model have not taught
# it to set better than a count does. More training data (more cut points per user) is
# the next lever, measured below. Section 7 chooses between the two readings on
# validation, where the ranking scores a little lower.

# %% [markdown]
# ### A fourth LLM_IT, given more data
#
# The ranking put the gap in the model's first choice, and 744 training prompts are few to
# learn it from. `tagger.py`'s `v4` recipe is v3 with more data and nothing else in the
# model: six training cut points per user instead of two (2,099 training prompts against
# 744, from the same 399 users), trained for the same 1.6 epochs (420 LoRA steps of 8
# instead of 150). Prompts, targets, the test users' interests (v2's, reused) and the 100
# validation users are v3's. It decodes 32 prompts at a time instead of 8, 2.5 times faster
# on 2 cores; under bf16 that changes some greedy answers by rounding (72 of 96 interests
# agreed between the two batch sizes in a check), not by design. It is decoded both ways,
# greedy and constrained. The question was set before the run: does constrained v4 beat
# the rule at matched history, intervals apart? It ran once in full mode (commands below);
# both modes read its committed answers.

# %%
V4, V4_FIXED = "LLM_IT v4", "LLM_IT v4 + one per category"
V4_ONCE = "LLM_IT v4, constrained decoding"
V4_ONCE_FIXED = "LLM_IT v4, constrained + one per category"


def read_run(folder, names):
    """A committed run in `artifacts/recgpt/<folder>`, decoded greedy and constrained:
    print its commands and held-out loss, judge both answers with and without the
    post-step (`names`: greedy, its post-step, constrained, its post-step), and return
    both metas and both answers."""
    run_dir = art / folder
    metas = [
        json.loads((d / "meta.json").read_text())
        for d in (run_dir, run_dir / tagger.CONSTRAINED)
    ]
    for m_ in metas:
        print(m_["command"], f"| {m_['wall_s'] / 60:.0f} min, 2 cores")
    print(
        f"{metas[0]['n_train_examples']} training prompts; held-out answer loss:",
        f"base {metas[0]['val_loss_base']:.2f},",
        f"fine-tuned {metas[0]['val_loss_tuned']:.2f}",
    )
    greedy = tagger.load_tags("test", run_dir / "tags.jsonl")
    constrained = tagger.load_tags("test", run_dir / tagger.CONSTRAINED / "tags.jsonl")
    judge_with_post_step(names[0], names[1], greedy)
    judge_with_post_step(names[2], names[3], constrained)
    return *metas, greedy, constrained


v4_vs = None
if committed:
    v4meta, v4_once_meta, v4, v4_once = read_run(
        "tagger-v4", (V4, V4_FIXED, V4_ONCE, V4_ONCE_FIXED)
    )
    v4_vs = paired_against(
        [V4, V4_ONCE],
        RULES + [("minus v3, greedy", V3), ("minus v3, constrained", V3_ONCE)],
    )
    v4_r = v4_vs.reset_index().set_index(["index", "system"])
    v4_k = hr_at_ks({RULE50: rule, V3_ONCE: once, V4_ONCE: v4_once})
    print(v4_k.round(3).to_string())
None if v4_vs is None else v4_vs.round(4)

# %%
V4_TIE = ("minus the rule", V4_ONCE)
if committed:
    few4 = few_categories(((V4, v4), (V4_ONCE, v4_once)))
    print(few4.round(3).to_string())
V4_CLAIMS = {  # claim -> (row of v4_vs, holds); full mode, 602 test users
    "more data lifts greedy decoding: v4 beats v3, both greedy (paired, above 0)": (
        ("minus v3, greedy", V4),
        above_0,
    ),
    "constrained, v4 and v3 do not differ measurably (interval spans 0)": (
        ("minus v3, constrained", V4_ONCE),
        spans_0,
    ),
    "constrained v4 still ties the rule at matched history (interval spans 0)": (
        V4_TIE,
        spans_0,
    ),
    "constrained v4 no longer loses measurably to the tuned rule (spans 0)": (
        ("minus the tuned rule", V4_ONCE),
        spans_0,
    ),
}
check_rows(V4_CLAIMS, lambda: v4_r)
check_committed(
    "constrained v4's first tag is still behind the rule's (HR@1), nearer than v3's",
    lambda: (
        v4_k.loc[1, V3_ONCE] < v4_k.loc[1, V4_ONCE] < v4_k.loc[1, RULE50],
        v4_k.loc[1].round(3).to_dict(),
    ),
)
if committed:
    v4_mde = abtest.mde_from_interval(v4_r.loc[V4_TIE, "lo"], v4_r.loc[V4_TIE, "hi"])
    print(f"minimum detectable HR@6 difference against the rule: {v4_mde:.3f}")

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). More data helps the
# model: greedy v4 beats greedy v3 by about 0.031 of HR@6, interval above zero. Most of that
# gain is what constrained decoding had already bought v3, though: constrained v4 is only
# about 0.008 above constrained v3, a difference the interval cannot tell from zero.
# **The target is still missed.** Constrained v4 is about 0.012 above the rule at matched
# history, interval from about -0.006 to +0.030: a tie, and the largest lead any LLM_IT here
# has had. It is no longer measurably below the tuned rule (about -0.011, interval across
# zero). The first tag moved most (HR@1 0.176, v3 0.168, the rule 0.181), which is where
# the ranking said the gap was: three times the data closed more than half of v3's
# distance to the rule at K = 1. So the lever works; whether more of it, or a larger model,
# takes the LLM past the rule intervals apart is open. Section 7 decides on validation
# whether chapter 08 serves v4.

# %% [markdown]
# ### A fifth LLM_IT, told how the tuned rule reads the history
#
# The tuned rule beats the counting rule (above: recent likes weigh more, and a category
# everyone likes counts for less), yet the model is shown only counts: the 50-like
# summary and the 10-like one. Recency it could work out from the two lines; the
# population's shares it cannot, because no prompt states them. `tagger.py`'s `v5` recipe
# is v4 with one more prompt line and nothing else: the categories in the tuned rule's
# order (`tagger.backfill_order`, the first 8), which its targets already use for ties and
# backfill. It reads the same likes the rules read, so the comparison with the rule stays
# at matched history; what changes is how much of the rule's arithmetic the prompt does
# for the model. The line takes 49 of the 2,206 examples past 512 tokens, so v5 trains
# with room for 576 (padding is to each batch's longest, so the rest are unchanged). Its
# steps ran with a cheaper loss: `llmrec_lib/sft.py::SFTTrainer.loss` now projects onto
# the vocabulary only the positions from each batch's first answer token on. The number is
# the same; one batch's forward and backward ran 2.4 times faster in
# `benchmarks/bench_sft.py`. The questions were set before the run: does constrained v5
# beat the rule at matched history, intervals apart; and, since it is shown the tuned
# rule's order, does it add anything to the tuned rule? It ran once in full mode (commands
# below); both modes read its committed answers.

# %%
V5, V5_FIXED = "LLM_IT v5", "LLM_IT v5 + one per category"
V5_ONCE = "LLM_IT v5, constrained decoding"
V5_ONCE_FIXED = "LLM_IT v5, constrained + one per category"
v5_vs = None
if committed:
    v5meta, v5_once_meta, v5, v5_once = read_run(
        "tagger-v5", (V5, V5_FIXED, V5_ONCE, V5_ONCE_FIXED)
    )
    v5_vs = paired_against(
        [V5, V5_ONCE],
        RULES + [("minus v4, greedy", V4), ("minus v4, constrained", V4_ONCE)],
    )
    v5_r = v5_vs.reset_index().set_index(["index", "system"])
    v5_k = hr_at_ks(
        {RULE50: rule, TUNED_RULE: tuned_tags(inputs, KNOB), V5_ONCE: v5_once}
    )
    print(v5_k.round(3).to_string())
None if v5_vs is None else v5_vs.round(4)

# %% [markdown]
# Does the model read the new line? Where the two rules put different categories first
# (about a third of the test users), the first tag of each run can follow one rule, the
# other, or neither.


# %%
def follows_first(tags):
    """Among test users whose two rules lead with different categories, the share of
    answers whose first tag names the rule's first, and the tuned rule's first."""
    tuned = tuned_tags(inputs, KNOB)
    cat = recgpt.tag_category
    split_users = [u for u in all_users if cat(rule[u][0]) != cat(tuned[u][0])]
    first = {u: cat(tags[u][0]) if tags.get(u) else None for u in split_users}
    return pd.Series(
        {
            "rule's first": np.mean([first[u] == cat(rule[u][0]) for u in split_users]),
            "tuned rule's first": np.mean(
                [first[u] == cat(tuned[u][0]) for u in split_users]
            ),
            "users": len(split_users),
        }
    )


if committed:
    follow = pd.DataFrame(
        {V4_ONCE: follows_first(v4_once), V5_ONCE: follows_first(v5_once)}
    )
    print(follow.round(3).to_string())

# %%
V5_TIE = ("minus the rule", V5_ONCE)
V5_CLAIMS = {  # claim -> (row of v5_vs, holds); full mode, 602 test users
    "the weighted line does not move constrained HR@6: v5 and v4 do not differ "
    "measurably (interval spans 0)": (
        ("minus v4, constrained", V5_ONCE),
        spans_0,
    ),
    "constrained v5 still ties the rule at matched history (interval spans 0)": (
        V5_TIE,
        spans_0,
    ),
    "constrained v5 does not differ measurably from the tuned rule (spans 0)": (
        ("minus the tuned rule", V5_ONCE),
        spans_0,
    ),
}
check_rows(V5_CLAIMS, lambda: v5_r)
check_committed(
    "where the rules' first categories differ, v5 follows the tuned rule's first "
    "more often than v4 does (by over 0.05)",
    lambda: (
        follow.loc["tuned rule's first", V5_ONCE]
        > follow.loc["tuned rule's first", V4_ONCE] + 0.05,
        follow.loc["tuned rule's first"].round(3).to_dict(),
    ),
)
if committed:
    v5_mde = abtest.mde_from_interval(v5_r.loc[V5_TIE, "lo"], v5_r.loc[V5_TIE, "hi"])
    print(f"minimum detectable HR@6 difference against the rule: {v5_mde:.3f}")

# %% [markdown]
# What the numbers say (committed full-mode run, all 602 test users). The model reads the
# line. Where the two rules lead with different categories (189 users), constrained v5's
# first tag names the tuned rule's first for about half of them (0.49, against 0.37 for
# v4), and the counting rule's less often (0.28 against 0.32). Yet HR@6 does not move:
# constrained v5 is about 0.003 below constrained v4, an interval across zero. **The target
# is still missed**: constrained v5 is about +0.010 over the rule at matched history
# (interval from about -0.008 to +0.029; the minimum detectable effect, printed above, is
# about 0.026), and about 0.014 below the tuned rule, an interval from -0.029 to +0.002.
# The curve says why following the hint at the top is not enough: HR@1 is 0.179, between
# the rule's 0.181 and the tuned rule's 0.185, and by K = 3 the tuned rule is ahead again
# (0.400 against 0.386). The model takes the hint for its first tag and writes the rest of
# its list from what its training taught it. Its targets are noisy: a few films liked next,
# not a ranking. So 2,099 of them have not taught a 135M model to order categories as well
# as a formula with two knobs, even with the formula's own order in its prompt. Two levers
# are not run here: a larger model, and every training like as a cut point instead of six
# per user. A third, a head trained on the ranking itself instead of on generated text, is
# next.

# %% [markdown]
# ### A head trained on the ranking
#
# Every LLM_IT so far writes its ranking as text, and learns it from text: a next-token loss
# on six tags per training prompt. HR@K asks only which categories come first. So read the
# model once per prompt instead, at the point where it would write its answer's first
# token (`generation.LocalGenerator.prompt_states`: the last hidden state, 576 numbers),
# and train a softmax layer on top for the ranking itself: to predict each category's
# share of the next 8 likes, the window the tags' targets describe
# (`llmrec_lib/recgpt/head.py`). The layer learns from the 2,099 training cut points v5
# was fine-tuned on, and nothing else; its L2 penalty is chosen on the 100 validation
# users by cross-entropy against their validation windows, the strongest penalty within
# 0.002 nats of the best (grid and rule fixed before any state was read).
#
# Three heads, fit the same way on the same rows, tell apart what each part adds:
#
# - on **v5's states**, the fine-tuned LLM reading the prompt;
# - on the **base SmolLM2's states**, the same prompt read zero-shot;
# - on the **prompt's counts** alone (`head.count_features`): each category's share in the
#   three summary lines (50 likes, 10 likes, the tuned rule's scores) and the history's
#   length, with no LLM at all.
#
# The questions, set before the states were read: does the head on v5's states beat the
# rule at matched history (HR@6, paired, interval above 0), and does it beat the head on
# the counts, which sees the same numbers without the titles and interests? In fairness:
# the counts head was run first, as a check of the code, and its test numbers were seen
# before the LLM's states existed. The states come from one forward pass per prompt
# (commands below; about 12 minutes per model on 2 cores), committed; the heads are fit
# here, in both modes, in seconds.

# %%
from llmrec_lib.recgpt import head

cut_seed = v5meta["seed"] if committed else 0  # v5's cut points: its training prompts
cuts = tagger.cut_points(
    setting, per_user=tagger.VARIANTS["v5"].per_user, seed=cut_seed
)
train_cuts, _ = recgpt.split_examples(cuts, seed=cut_seed)  # held-out users left out
is_train = cuts["user_id"].isin(train_cuts["user_id"]).to_numpy()
y_train = head.category_shares(train_cuts["next_items"], setting.itags)
head_users = recgpt.eval_users(setting, 100, cut_seed, stage="valid")  # as v5 ran
y_valid = head.category_shares(
    [valid_in["future"][u] for u in head_users], setting.itags
)


def counts_of(liked_lists):
    """The numbers a v5 prompt's summary lines show, one row per list of likes."""
    return head.count_features(
        liked_lists, setting.itags, shares, tuned=tagger.TUNED_RULE
    )


HEAD_V5, HEAD_BASE = "head on v5's states", "head on base SmolLM2's states"
HEAD_COUNTS = "head on the prompt's counts"
features = {  # head -> training, validation and test rows
    HEAD_COUNTS: (
        counts_of(train_cuts["liked_before"]),
        counts_of([valid_in["liked"][u] for u in head_users]),
        counts_of([inputs["liked"][u] for u in all_users]),
    )
}
for name, which in ((HEAD_V5, "tuned"), (HEAD_BASE, "base")) if committed else ():
    st = tagger.load_states("v5", which)
    st_meta = json.loads(
        (art / "tagger-v5" / tagger.HEAD / f"states-{which}.json").read_text()
    )
    print(st_meta["command"], f"| {st_meta['wall_s'] / 60:.0f} min, 2 cores")
    assert st["examples_cuts"].tolist() == cuts["cut"].tolist(), "states of other cuts"
    assert st["valid_users"].tolist() == head_users, "states of other users"
    assert st["test_users"].tolist() == all_users, "states of other users"
    features[name] = (
        st["examples_states"][is_train],
        st["valid_states"],
        st["test_states"],
    )
penalty, heads = {}, {}
for name, (x_tr, x_va, x_te) in features.items():
    heads[name], grid_ = head.choose(x_tr, y_train, x_va, y_valid)
    penalty[name] = grid_.set_index("l2")["cross_entropy"]
    room[name] = hr6_of(dict(zip(all_users, heads[name].tags(x_te))), inputs)
penalty = pd.DataFrame(penalty).rename_axis("L2 penalty")
print("chosen:", {n: h.l2 for n, h in heads.items()})
penalty.round(4)  # validation cross-entropy (nats), 100 users

# %%
HEADS = [n for n in (HEAD_V5, HEAD_BASE, HEAD_COUNTS) if n in heads]
room["popular"] = judged6["popular"]  # the stretch: everyone's six categories
head_refs = RULES + [("minus the popular list", "popular")]
head_refs += [("minus the counts head", HEAD_COUNTS)]
if committed:
    head_refs += [("minus constrained v5", V5_ONCE), ("minus the base head", HEAD_BASE)]
ref_of = dict(head_refs)
head_vs = paired_against(HEADS, head_refs)
head_vs = head_vs[[ref_of[a] != n for a, n in zip(head_vs.index, head_vs["system"])]]
head_r = head_vs.reset_index().set_index(["index", "system"])
head_k = hr_at_ks(
    {RULE50: rule, TUNED_RULE: tuned_tags(inputs, KNOB)}
    | {n: dict(zip(all_users, heads[n].tags(features[n][2]))) for n in HEADS}
)
print(head_k.round(3).to_string())
head_vs.round(4)

# %%
HEAD_TARGET = ("minus the rule", HEAD_V5)
HEAD_CLAIMS = {  # claim -> (row of head_vs, holds); full mode, 602 test users
    "the head on v5's states beats the rule at matched history on HR@6 "
    "(paired, above 0)": (HEAD_TARGET, above_0),
    "it beats v5's own constrained tags, the same model decoded (paired, above 0)": (
        ("minus constrained v5", HEAD_V5),
        above_0,
    ),
    "it does not differ measurably from the tuned rule (interval spans 0)": (
        ("minus the tuned rule", HEAD_V5),
        spans_0,
    ),
    "it does not differ measurably from the head on the prompt's counts (spans 0)": (
        ("minus the counts head", HEAD_V5),
        spans_0,
    ),
    "nor from the same head on the base model's states: fine-tuning adds nothing "
    "measurable to it (spans 0)": (
        ("minus the base head", HEAD_V5),
        spans_0,
    ),
    "the head on the base model's states beats the rule too (paired, above 0)": (
        ("minus the rule", HEAD_BASE),
        above_0,
    ),
    "the head on v5's states beats the popular list (paired, above 0)": (
        ("minus the popular list", HEAD_V5),
        above_0,
    ),
}
check_rows(HEAD_CLAIMS, lambda: head_r)
claims.check(  # live on any data: the counts head needs no LLM
    "a head on the prompt's counts alone beats the rule on HR@6 (paired, above 0)",
    head_r.loc[("minus the rule", HEAD_COUNTS), "lo"] > 0,
    detail=ci(head_r, ("minus the rule", HEAD_COUNTS), "diff"),
)
if committed:
    vs_counts = head_r.loc[("minus the counts head", HEAD_V5)]
    head_mde = abtest.mde_from_interval(vs_counts["lo"], vs_counts["hi"])
    print(
        f"minimum detectable HR@6 difference, LLM head vs counts head: {head_mde:.3f}"
    )

# %% [markdown]
# The fit is `llmrec_lib/recgpt/head.py::fit` (and `head.choose` around it); its source:

# %% tags=["hide-output"]
show.source(head.fit)

# %% [markdown]
# How much does the verdict hang on the penalty? For teaching only (validation chose it
# above), the head on v5's states refit at every penalty of the grid, each against the rule
# on test:


# %%
def head_at_every_penalty(name):
    """Test HR@6 of `name`'s head minus the rule, at every penalty of the grid."""
    x_tr, _, x_te = features[name]
    out = {}
    for l2 in head.L2_GRID:
        fitted = heads[name] if l2 == heads[name].l2 else head.fit(x_tr, y_train, l2)
        tags = fitted.tags(x_te)
        judged = {
            RULE50: room[RULE50],
            name: hr6_of(dict(zip(all_users, tags)), inputs),
        }
        row = recgpt.paired_rate_table(judged, RULE50, columns=[HR6]).iloc[0]
        out[l2] = row[["diff", "lo", "hi"]].astype(float)
    return pd.DataFrame(out).T.rename_axis("L2 penalty")


sens = head_at_every_penalty(HEAD_V5) if committed else None
None if sens is None else sens.round(4)

# %%
check_committed(
    "the lead is fragile: above the rule at every penalty but the weakest (point "
    "estimates), its interval clears 0 at validation's penalty and at most one other",
    lambda: (
        (sens["diff"].iloc[:-1] > 0).all()
        and sens.loc[heads[HEAD_V5].l2, "lo"] > 0
        and (sens["lo"] > 0).sum() <= 2,
        f"lower ends {sens['lo'].round(4).tolist()}",
    ),
)

# %% [markdown]
# What the numbers say (all 602 test users; the states are the committed full-mode ones
# and the heads are fit here, so both modes print the same numbers). **The head on v5's
# states beats the rule at matched history**: HR@6 0.633 against 0.604, +0.029 with the
# paired interval from +0.009 to +0.051, and the popular list by +0.042 (interval from
# +0.025 to +0.061). It also beats the same model's own constrained tags by +0.020 (from
# +0.002 to +0.037): the model's reading of the prompt held more than its writing showed.
# It ties the tuned rule (+0.006, an interval across zero); its HR@K sits on the tuned
# rule's at K = 1 and 2 and a little above it from K = 3 on.
#
# The verdict is real but narrow. Refit at the other penalties of the grid, the head
# stays above the rule in point estimate (all but the weakest), yet its interval clears
# zero only at validation's 0.1 and the stronger 0.3; at 0.03 or 1.0 it would have been
# one more tie. Validation chose well here, and a reader should know how little room
# there was.
#
# The credit is not the LLM's, though. The same head on the base model's states, never
# fine-tuned, does as well (+0.028 over the rule; the fine-tuned states add +0.001, from
# -0.010 to +0.012), and so does the head on the prompt's counts alone, with no LLM at all
# (HR@6 0.636; the head on v5's states is 0.003 below it, an interval across zero, with
# the minimum detectable effect printed above). What beat the rule is the objective: a
# layer trained to rank the categories, on the same 2,099 examples, learns the recency and
# the population prior that the tuned rule writes by hand. The titles and interests the
# LLM reads add nothing measurable to the numbers the prompt already states. On 18
# categories and 2,099 examples, the LLM's states are as good an input for the ranking
# as the counts, not a better one; whether a larger model or more examples change that is
# not tested here. In section 7 the head's tags score 0.647 on the 100 validation users,
# within 0.002 of constrained v3, so chapter 08 keeps serving constrained v3 by the rule
# that section set.

# %% [markdown]
# The second LLM_IT's targets and its post-processing step are
# `llmrec_lib/recgpt/tagger.py::next_tags` and
# `llmrec_lib/recgpt/tagger.py::one_per_category`. Their source:

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
claims.check(  # no measurable staleness cost here
    f"over 100 users compared, and {stale_weeks}-week-old tags cost no measurable HR@3 "
    "(paired interval spans 0)",
    len(paired) > 100 and res.lo < 0 < res.hi,
    detail=f"{len(paired)} users, {res.mean_diff:+.3f} [{res.lo:+.3f}, {res.hi:+.3f}]",
)

# %% [markdown]
# ## 7. The tags chapter 08 uses
#
# Chapter 08's tag tower reads one LLM_IT's tags, for every test user and a seeded sample of
# 100 validation users (its $a$ and $b$ are chosen there). Which one is a choice, so it is
# made on validation: the run with the highest validation HR@6 on those 100 users, a newer
# run only when it is more than 0.002 above the older ones (each run above was tagged on the
# same 100 users). We saw the test numbers above before writing this rule; validation is
# what decides, and the check below fails if it ever disagrees with `tagger.SERVED`, the one
# place the library names the served run (`tagger.served_tags` reads it). The first run's
# tags (`artifacts/recgpt/tags_test.jsonl`, read with `recgpt.load_predicted_tags(source=
# ...)`) stay for section 4's comparison. On other data these tags belong to the reference
# split's users: nothing here is written for chapter 08, which then has no LLM tags.

# %%
RUNS = {  # oldest first: the tie rule keeps the older run
    V2: "tagger",
    V3: "tagger-v3",
    V3_ONCE: f"tagger-v3/{tagger.CONSTRAINED}",
    V3_RANK: f"tagger-v3/{tagger.RANKED}",
    V4: "tagger-v4",
    V4_ONCE: f"tagger-v4/{tagger.CONSTRAINED}",
    V5: "tagger-v5",
    V5_ONCE: f"tagger-v5/{tagger.CONSTRAINED}",
}
if committed:
    val_tags = {
        n: tagger.load_tags("valid", art / d / "tags.jsonl") for n, d in RUNS.items()
    }
    val_users = sorted(set.intersection(*(set(t) for t in val_tags.values())))
    val_hr = pd.Series(
        {
            n: hr6_of({u: t[u] for u in val_users}, valid_in)[HR6].mean()
            for n, t in val_tags.items()
        },
        name=f"validation HR@6, {len(val_users)} users",
    )
    # the ranking head is the newest candidate; its tags are bare category names
    head_valid = dict(zip(head_users, heads[HEAD_V5].tags(features[HEAD_V5][1])))
    val_hr[HEAD_V5] = hr6_of({u: head_valid[u] for u in val_users}, valid_in)[
        HR6
    ].mean()
    served = next(n for n in val_hr.index if val_hr[n] > val_hr.max() - 0.002)
    print(val_hr.round(4).to_string(), f"\nserved: {served}")
check_committed(
    "validation picks the run the library serves (tagger.SERVED)",
    lambda: (RUNS.get(served) == tagger.SERVED, f"{served}: {val_hr[served]:.4f}"),
)
for stage_ in ("test", "valid") if committed else ():
    got = tagger.served_tags(stage_)
    print(f"{stage_:5s} {len(got):4d} users, e.g. {next(iter(got.values()))}")
check_committed(
    "the served tags cover every test user",
    lambda: (
        set(tagger.served_tags("test")) == set(inputs["users"]),
        f"{len(tagger.served_tags('test'))} of {len(inputs['users'])} users",
    ),
    pinned=False,
)

# %% [markdown]
# The fourth and fifth LLM_ITs do not change the choice. On the 100 validation users v4
# scores about 0.639 constrained and 0.638 greedy, and v5 0.638 constrained and 0.643
# greedy, all below constrained v3's 0.646, so chapter 08 keeps serving constrained v3. On
# test both are a little higher (HR@6 0.616 and 0.613 constrained, against v3's 0.608;
# v4's lead is an interval across zero, section 5): the two stages disagree within their
# noise, and validation decides, by the rule this section set before v4 existed.
# The ranking head on v5's states, the newest candidate, scores 0.647: 0.0016 above
# constrained v3, inside the tolerance, so the older run stays (its lead on test is real
# against the rule but not against the tuned rule, section 5).

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT**: HR@30 0.3671 (0.3776 with incremental learning), at least 50 tags per user,
# human pass rate of tags 84.8-88.8% fine-tuned vs 33.7% base. **We measure** HR@3 and HR@6
# (6 tags per user, 18 categories instead of thousands of leaf categories, which is why our
# hit rates are higher in absolute terms and popularity is hard to beat), in the tables above.
# ```

# %% [markdown]
# ## Results
#
# Where the committed generations do not fit the data, their entries are None: `tag_judges`,
# the second LLM_IT's `form` and its two `hr_at_k` columns; `vs_rule_last_50` then compares
# only the rule at 12 likes and the popular list with the rule at 50.

# %%
from llmrec_lib import results as records

skipped = f"skipped on this data: {WHY}"
out = {
    "chapter": "07",
    "mode": cfg.mode,
    "reference_data": claims.reference,
    "produced_by": {
        "baselines and staleness": "this run, all test users",
        "LLM tags": f"artifacts/recgpt: {meta['command']}" if committed else skipped,
        "LLM_IT v2": f"artifacts/recgpt/tagger: {tmeta['command']}"
        if committed
        else skipped,
        "LLM_IT v3": f"artifacts/recgpt/tagger-v3: {v3meta['command']}"
        if committed
        else skipped,
        "LLM_IT v3, constrained": "artifacts/recgpt/tagger-v3/constrained: "
        f"{once_meta['command']}"
        if committed
        else skipped,
        "LLM_IT v3, ranked": "artifacts/recgpt/tagger-v3/ranked: "
        f"{rank_meta['command']}"
        if committed
        else skipped,
        "LLM_IT v4": f"artifacts/recgpt/tagger-v4: {v4meta['command']}; "
        f"constrained: {v4_once_meta['command']}"
        if committed
        else skipped,
        "LLM_IT v5": f"artifacts/recgpt/tagger-v5: {v5meta['command']}; "
        f"constrained: {v5_once_meta['command']}"
        if committed
        else skipped,
        "ranking heads": "fit here on the states of artifacts/recgpt/tagger-v5/head: "
        + "; ".join(
            json.loads(
                (art / "tagger-v5" / tagger.HEAD / f"states-{w}.json").read_text()
            )["command"]
            for w in ("tuned", "base")
        )
        if committed
        else "counts head only, fit here",
        "live": f"{n_live} users",
    },
    "baselines": pd.concat(base.values()).to_dict(orient="records"),
    "tag_judges": rates.to_dict(orient="records") if committed else None,
    "llm_it_v2": {
        "form": form.to_dict() if committed else None,
        "hr_at_k": {V2: None, V2_FIXED: None} | hr_k.to_dict(),
        "vs_rule_last_50": vs_rule.to_dict(orient="records"),
        "tuned_rule": {
            "chosen": {"last": KNOB[0], "half_life": KNOB[1], "shrink": KNOB[2]},
            "paired": room_vs.reset_index(names="against").to_dict(orient="records"),
        },
        "v3": None
        if v3_vs is None
        else v3_vs.reset_index(names="against").to_dict(orient="records"),
        "v3_constrained": None
        if once_vs is None
        else {
            "paired": once_vs.reset_index(names="against").to_dict(orient="records"),
            "fewer_than_6_categories": few.to_dict(),
            "hr_at_k": once_k.to_dict(),
        },
        "v3_ranked": None
        if rank_vs is None
        else {
            "paired": rank_vs.reset_index(names="against").to_dict(orient="records"),
            "hr_at_k": rank_k.to_dict(),
            "same_first_category": same_first,
            "unread": rank_meta["unread"],
        },
        "v4": None
        if v4_vs is None
        else {
            "paired": v4_vs.reset_index(names="against").to_dict(orient="records"),
            "hr_at_k": v4_k.to_dict(),
        },
        "v5": None
        if v5_vs is None
        else {
            "paired": v5_vs.reset_index(names="against").to_dict(orient="records"),
            "hr_at_k": v5_k.to_dict(),
        },
        "validation_hr@6": val_hr.to_dict() if committed else None,
        "head": {
            "penalty_chosen": {n: h.l2 for n, h in heads.items()},
            "validation_cross_entropy": penalty.to_dict(),
            "paired": head_vs.reset_index(names="against").to_dict(orient="records"),
            "hr_at_k": head_k.to_dict(),
        },
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
records.save("07", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error.
# Mechanics hold on any data. Rows "not tested" need the committed generations, which fit
# the reference split only.

# %%
claims.report()  # the data, the guarantee that all held here, every row

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
#    matched history, user by user; the verdict is printed there. A rule tuned on validation
#    (recency and a population prior) shows how much room the plain count leaves, and a
#    third LLM_IT given that signal closes part of the gap, not all of it. Decoding that
#    cannot name a category twice brings it level with the plain rule, still below the
#    tuned one, and reading the model's ranking of categories instead of decoding it
#    changes nothing measurable: the gap is the model's first choice. Three times the
#    training data (v4) lifts greedy decoding measurably and moves the first choice toward
#    the rule's; constrained, it leads the plain rule by about 0.012, still a tie. Writing
#    the tuned rule's order into the prompt (v5) moves the model's first tag toward it, but
#    not its hit rate: still a tie with the rule. A softmax head trained on the ranking,
#    reading v5's last hidden state, beats the rule (+0.029, interval above 0) and the
#    popular list, but so do the same head on the base model and a head on the prompt's
#    counts alone: the training objective beat the rule, not the LLM's reading.
# 5. Staleness is measurable; on MovieLens categories two weeks cost nothing we can detect.
#
# ## Exercises
#
# 1. **K.** Compute HR@1 for the four systems (`recgpt.judge_tags(..., k=1, **tj)`).
#    *Check:* on the 120 users of the committed generations (quick mode), HR@1 is 0.015 for
#    zero-shot, 0.150 for the fine-tuned model, 0.186 for the rule and 0.127 for popular
#    (HR@3: 0.019, 0.335, 0.399, 0.360). The fine-tuned model beats popular at K = 1 but not
#    at K = 3; the rule leads at both. On all 602 test users: rule 0.181, popular 0.137.
# 2. **One tag per category.** Rebuild `rule` with `max_per_category=1`. *Check:* 52 of the
#    602 test users (8.6%) get a different list, 5.87 tags on average instead of 5.99, yet
#    HR@6 stays 0.604 and the diversity rate 0.978, both unchanged to the last digit (quick
#    mode). A change in either means something besides the second phrase per category moved;
#    say why neither judge can see it.
# 3. **Head noun.** Write three tags whose category the map gets wrong (e.g. "comic book
#    adaptation"). *Check:* `recgpt.tag_category` returns the wrong category for each; say
#    how a learned tag-to-category model would avoid it.
# 4. **Older interests.** Set `stale_weeks = 26`. *Check:* fewer users remain in `paired`,
#    and the share whose tags changed rises (measured: 63 users, 95%).
# 5. **Both inputs.** Fit one head on v5's states and the prompt's counts side by side
#    (`np.hstack` of the two feature sets of section 5's last subsection, each row of one
#    beside the same row of the other) with `head.choose`, as there. *Check:* validation
#    chooses a penalty of 0.3; test HR@6 is 0.634, +0.030 over the rule (interval above
#    0) and 0.002 below the counts head alone (interval across 0). Say what this adds to
#    the verdict on the LLM's states.
