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
# # 06 · Interest mining: an LLM reads a lifelong history
#
# Alibaba's RecGPT (arXiv 2507.22879) starts where classic retrieval never looks: it gives a
# user's whole behaviour history to an LLM, **LLM_UI**, and asks what this person is interested
# in. About 16 interests per user, refreshed every two weeks, feed the next two stages (tags in
# chapter 07, a three-tower retriever in chapter 08). Two problems come first: a lifelong
# history does not fit the model's window, and a base model's interests are often vague or
# invented. In this chapter you compress MovieLens histories the way RecGPT compresses Taobao's,
# mine interests with SmolLM2-135M zero-shot, fine-tune it with LoRA on a teacher's answers, and
# judge both with rules that stand in for the paper's LLM judges.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. On other data (your own, or a derived copy) compression, the zero-shot answers, the
# teacher, the constant answer, the per-user counting rule, every judge and the two-step live
# fine-tuning run live; the committed student also answers a few of your users, as a
# demonstration that is not scored. What is scored from the committed run (its training log,
# section 6's judged generations, section 7's self-training round) is skipped there: that run
# was trained and generated on the reference split's users. The closing table, "Which claims
# hold on this data", lists those claims as not tested.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
n_live = 3  # users the live zero-shot and fine-tuned generations cover (quick mode)
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import functools
import json
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import abtest, backbones, config, generation  # isort: skip
from llmrec_lib import metrics, plots, recgpt, sft, show  # isort: skip
from llmrec_lib.recgpt import selftrain  # isort: skip

chapter_t0 = time.perf_counter()
cfg = config.settings(
    "06",
    mode,
    seed=seed,
    backbone="smollm2-135m (all 30 layers), LoRA r=8 on q,k,v,o",
    quick={
        "history budget (tokens)": recgpt.HISTORY_BUDGET,
        "live users": n_live,
        "live SFT steps": 2,
        "judged generations": "committed artifacts/recgpt (reference release only)",
    },
    full={
        "history budget (tokens)": recgpt.HISTORY_BUDGET,
        "SFT steps": recgpt.default_sft_config("full").steps,
        "judged generations": "this run, python -m llmrec_lib.recgpt full "
        "(reference release only)",
    },
)
cfg.show()
print(config.data_status(cfg.data_dir))

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers is asserted
# on the reference release and only recorded on other data; a mechanic (a resumed run
# continues where it stopped) is asserted on any data. Claims about the committed run
# (`artifacts/recgpt`) are checked only where it fits the data, `claims.artifacts_fit`, and
# recorded as not tested elsewhere (`llmrec_lib/config.py::Claims.check_committed`).

# %%
claims = config.Claims("06", path=cfg.data_dir)
committed = claims.artifacts_fit  # the committed adapters and generations fit this data
WHY = (
    "needs the committed run (artifacts/recgpt), trained and generated on the "
    "reference split's users"
)


# a claim about the committed run: checked where it fits the data, else not tested
check_committed = functools.partial(claims.check_committed, why=WHY)


def ci(table, key, col="diff"):
    """One row's value and 95% interval, for a claim's detail."""
    row = table.loc[key]
    return metrics.interval_text(row[col], row["lo"], row["hi"], signed=True)


# %% [markdown]
# **Learning goals**
#
# - Measure how many tokens a lifelong history costs, and halve it twice with item-level and
#   sequence-level compression.
# - Write a RecGPT-style interest-mining prompt and read what a 135M model makes of it.
# - Build a transparent teacher, distil it into the model with LoRA (loss on the answer only).
# - Judge interests with rates a generic answer cannot fool: specific grounding, hallucination,
#   predictive lift over the population's base rates, personalization, diversity.
# - Compare every answer source (a constant answer, a counting rule, the teacher, zero-shot and
#   fine-tuned mining) on the same users with paired bootstrap intervals.
# - Run one round of judge-filtered self-training (sample, judge, keep, train again) with
#   controls that separate what the judges add from what more training adds.

# %% [markdown]
# ## RecGPT and this book, piece by piece
#
# Chapters 06-08 rebuild RecGPT at pocket scale: a 135M model on two CPU cores, 610
# MovieLens users instead of Taobao's traffic. Some pieces are built as the paper describes,
# some are replaced by a smaller stand-in you can inspect, and some are not built at all.
# The table says which, so you know what a number in these chapters does and does not stand
# for:
#
# | RecGPT piece | paper | here | status | ch. |
# |---|---|---|---|---|
# | behaviour compression | reliable behaviours, item- and sequence-level compression, 128k tokens | the same steps on ratings (section 1), SmolLM2's 8k window; prompts read the newest 160 tokens | implemented | 06 |
# | LLM_UI (interest mining) | fine-tuned LLM, about 16 interests per user, refreshed every two weeks | SmolLM2-135M-Instruct + LoRA, 5 interests per user, mined once | implemented | 06 |
# | LLM_IT (tag prediction) | fine-tuned LLM, at least 50 "modifier + core word" tags per user, each with its interest and a reason | 6 tags per user; first from the adapter LLM_UI shares; then a second, separate LLM_IT (`llmrec_lib/recgpt/tagger.py`) whose prompt adds a category summary of the last 50 likes; a third that also sees the last 10 likes, decoded so that no category is named twice, is the one chapter 08 serves | implemented | 07 |
# | tag-to-category model | a model maps each tag to a category for HR@30 | a keyword head-noun map, `recgpt.tag_category` | substituted | 07 |
# | three towers (user, item, tag) | $L_{col} + a L_{tag} + (1-a) L_{cate}$, $a$ = 0.5; $y = b\,y_{col} + (1-b)\,y_{sem}$, $b$ not disclosed | the same towers and loss on MovieLens features, frozen MiniLM token embeddings in the tag tower | implemented (pocket scale) | 08 |
# | LLM_RE (explanations) | a few words per (interest, item), offline, into a lookup table | SmolLM2-135M-Instruct writes them offline into a lookup table | implemented | 08 |
# | LLM judges | LLMs fine-tuned on human labels (0.77-0.93 accuracy against humans) filter every stage's training data | measured rules: `recgpt.judge_interests`, `recgpt.judge_tags` (and chapter 08's explanation rules); they judge, they filter nothing | substituted | 06-08 |
# | multi-task curriculum | 16 subtasks, 16.3k samples | 2 tasks (interests, tags) in one LoRA run, no curriculum | substituted (mostly omitted) | 06 |
# | distillation from a reasoning LLM | 90.0k answers generated, 19.0k kept after judge filtering | a counting teacher (`recgpt.teacher_interests`), every answer kept | substituted | 06 |
# | judge-filtered self-training | 21.1k samples from the student, kept by the judges, trained on again | one round in miniature (`llmrec_lib/recgpt/selftrain.py`, section 7): 960 sampled answers, 51 kept by the rule judges, 40 more LoRA steps, with unfiltered and more-teacher-steps controls | implemented (one small round) | 06 |
# | incremental training | every two weeks on the last 14 days of logs | trained once, on the training ratings | omitted | 07 |
#
# The omitted and miniature stages are where the paper's scale lives: after judge-filtered
# distillation and self-training its LLM_UI student beat its teacher (human pass rate 77.3%
# against 70.0%), and incremental training raised LLM_IT's HR@30 from 0.3671 to 0.3776.
# Section 6 measures where our student stands after distillation, section 7 what one small
# self-training round adds.

# %% [markdown]
# ## 1. Lifelong histories do not fit: behaviour compression
#
# Taobao users have on average more than 37,000 behaviours; RecGPT's LLM reads 128k tokens.
# The paper keeps only **reliable** behaviours (purchases, add-to-cart, favourites, detail
# views and searches; plain clicks are dropped), shortens each **item** to a short summary,
# and compresses the **sequence**: behaviours are bucketed by day for the recent past, by
# month and then by year further back, and aggregated per item inside a bucket. With that,
# 98% of users fit in 128k tokens instead of 88%.
#
# MovieLens logs one kind of behaviour, a rating, so the stand-in for the reliable ones is
# the rating itself: a film rated 4 or more is **liked** (our purchase, cart or favourite),
# one rated 2 or less is **disliked** and stays in the history as an explicit negative, and
# the lukewarm 2.5-3.5 are dropped, as the paper drops plain clicks. Detail views and
# searches have no MovieLens counterpart: nothing records which films a user looked at or
# searched for without rating them, so our histories lack the intent those signals carry.
#
# MovieLens's analogue, built from training-time data only (`recgpt.build_setting`):
#
# | RecGPT | here |
# |---|---|
# | reliable behaviours | ratings >= 4 ("liked") or <= 2 ("disliked"); the lukewarm 2.5-3.5 dropped; no views or searches exist |
# | item summary | `Toy Story '95 (animation/family film)` instead of the full title, every genre and user tags |
# | day / month / year buckets | the same, relative to the user's latest rating |
# | 128k-token window | SmolLM2's 8,192-token window |

# %%
setting = recgpt.build_setting(cfg.data_dir, verify=verify_data)
split, tok = setting.split, setting.tokenizer
history = split.history(
    "test"
)  # what a test-stage model may read: never the test window
tokens, fit = recgpt.compression_stats(
    history, setting.ml.movies, tok, tags=setting.train_tags, budgets=(2048, 4096, 8192)
)
tokens.describe().loc[["mean", "50%", "max"]].round(0)

# %% [markdown]
# One user's history, first in its raw form, then compressed (first lines of each):

# %%
u = int(tokens["raw"].sub(tokens["raw"].median()).abs().idxmin())  # the median user
raw_items = recgpt.raw_item_texts(setting.ml.movies, setting.train_tags)
print(
    recgpt.raw_history_texts(history[history.user_id == u], raw_items).iloc[0][:400],
    "...\n",
)
rel = recgpt.reliable_behaviours(history[history.user_id == u])
print(recgpt.compressed_history_texts(rel, setting.short).iloc[0][:400], "...")
print(
    f"\nuser {u}: {tokens.loc[u, 'raw']} tokens raw -> "
    f"{tokens.loc[u, 'sequence-level']} compressed"
)

# %%
saving = 1 - tokens.sum() / tokens["raw"].sum()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].bar(saving.index, tokens.sum() / 1e6, color=plots.COLORS["history"])
axes[0].set(
    title="Each stage shortens every history",
    ylabel="tokens, all test users (millions)",
)
for b, c in zip(fit.index, ["#bbb", "#888", plots.COLORS["test"]]):
    axes[1].plot(
        fit.columns, fit.loc[b], marker="o", label=f"fits {b:,} tokens", color=c
    )
axes[1].set(title="Share of users whose whole history fits", ylim=(0, 1.02))
axes[1].legend()
fig.tight_layout()
pd.concat([saving.rename("token saving vs raw"), fit.T], axis=1).round(3)

# %% [markdown]
# Compression removes about four fifths of the tokens, and the share of users whose *whole*
# history fits SmolLM2's 8k window rises from about 80% to over 99%: the same move as the
# paper's 88% -> 98% at 128k. The largest single step is sequence-level: one date per bucket
# instead of one timestamp per rating. (MovieLens has one rating per user and item, so
# aggregation per item inside a bucket rarely fires here; on Taobao, where an item is viewed
# many times, it is the main saving.)

# %%
claims.check(
    "sequence-level compression saves over 70% of the tokens",
    saving["sequence-level"] > 0.7,
    detail=f"{saving['sequence-level']:.3f} (reference 0.81)",
)
claims.check(
    "8k tokens hold under 85% of raw histories and over 98% of compressed ones",
    fit.loc[8192, "raw"] < 0.85 and fit.loc[8192, "sequence-level"] > 0.98,
    detail=f"{fit.loc[8192, 'raw']:.3f} raw, {fit.loc[8192, 'sequence-level']:.3f} "
    "compressed",
)

# %% [markdown]
# A 135M model on two CPU cores cannot read 8k tokens per user for 600 users in a chapter, so
# every prompt below holds the newest `HISTORY_BUDGET` = 160 tokens of the compressed history
# (about 12-20 films), cut between whole items.

# %% [markdown]
# ## 2. The prompt, and what a base model does with it
#
# RecGPT's LLM_UI prompt gives the compressed history and asks for interests with constraints.
# Ours asks for five short "modifier + kind of film" phrases, the vocabulary of chapter 07's tags:

# %%
inputs = setting.stage_inputs("test")
live_users = inputs["users"][:n_live]
print(recgpt.interest_prompt(inputs["history_text"][live_users[0]]))

# %% [markdown]
# SmolLM2-135M-Instruct, zero-shot, greedy decoding, live on a few users (answers are cached
# on disk by `generation.CachedGenerator`, so a rerun regenerates nothing):

# %%
zero_gen = generation.CachedGenerator(
    generation.LocalGenerator("smollm2-135m", config=recgpt.generation_config())
)
live_zero = zero_gen.generate(
    [recgpt.interest_prompt(inputs["history_text"][u]) for u in live_users]
)
for u, t in zip(live_users, live_zero):
    print(f"user {u}: {t[:300]!r}\n")

# %% [markdown]
# Typical of a base model this small: titles copied from the history, sentences instead of
# phrases, lists cut off by the token limit. Parsing is strict about it: a malformed answer is
# counted, never silently turned into an empty list.

# %%
_, live_report = generation.parse_all(
    live_zero, recgpt.parse_phrases, name="zero-shot interests (live)", n=5
)
print(live_report)

# %% [markdown]
# ## 3. A teacher that shows its work
#
# RecGPT distils a large reasoning model (90k generated answers, 19k kept after judge
# filtering). We have no such model, so a **transparent miner stands in for it**: a phrase is an
# interest when the user's liked films carry it *more often than an average user's would*
# (`recgpt.teacher_interests`: excess count over the training base rate, at least 3 supporting
# films, at most 2 phrases per category, as the paper balances its tag data). It is not an LLM,
# it is reproducible, and its answers can be learned from the prompt, because it reads the same
# films the prompt shows.

# %%
u0 = live_users[0]
print("shown liked films:", [setting.short[i] for i in inputs["shown_liked"][u0]][-6:])
print(
    "teacher:",
    recgpt.teacher_interests(
        inputs["shown_liked"][u0], setting.itags, setting.base_rate
    ),
)

# %% [markdown]
# The teacher lives in `llmrec_lib/recgpt/teacher.py::teacher_interests`: each phrase
# scored by how far its count on the shown liked films exceeds what an average user with
# as many likes would show (the base rate), at most two per category. Its source:

# %% tags=["hide-output"]
show.source(recgpt.teacher_interests)

# %% [markdown]
# ## 4. Judges that a generic answer cannot fool
#
# The paper trains LLM judges on human labels (0.77-0.93 agreement) and reports human pass
# rates. Ours are rules anyone can rerun (`recgpt.judge_interests`). The obvious rules are easy
# to fool: give *every* user the same answer, the five categories (in chapter 07's sense, an
# item's rarest genre) most often liked in training, and most users have liked a few films of
# each, and most of their next films fall in one of them. So every judge below compares an
# answer with what the same answer would score for an average user of the population (all
# test users). Write `H` for the user's distinct liked films before the test window (what a
# model could see), `C` for the categories the answer names, `F` for the films the user likes
# in the test window (never shown to any model):
#
# - **supported**: the interest is supported by at least 3 films of `H` (every category it
#   names is the film's, its decade is the film's);
# - **grounding**: supported *and specific*: the share of `H` that supports it is above the
#   population's base rate, the same share for an average user. "Comedy" is grounded only for
#   a user whose history has more comedies than the average user's;
# - **hallucination**: supported by no film of `H`;
# - **precision**, **recall**: the share of `C` that is the category of some film in `F`, and
#   the share of `F` whose category is in `C`;
# - **precision lift**, **recall lift**: precision (recall) minus the mean precision (recall) of
#   the same `C` on every test user's window: how much better the answer predicts *this*
#   user's future than an average user's. A constant answer's lift averages exactly zero over
#   the population, by definition;
# - **personalization**: 1 minus the Jaccard overlap of `C` with the population's modal answer
#   (the five most-liked categories); a constant answer scores zero, by definition;
# - **diversity**: distinct categories among the interests / 5.
#
# An empty answer fails every judge. Supported, precision and recall are kept as *raw rates*:
# they say whether an answer is true and useful, not whether it is about this user.
#
# Three answers need no LLM, so we judge them on every test user: the **constant** answer
# above (`recgpt.category_interests` on all training likes, written as bare category words,
# the easiest form to support), the **per-user counting rule** (the same function on the
# user's own liked films: their five most-liked categories) and the **teacher**, which reads
# only the ~12 films the prompt shows and so has less to go on than the rule.

# %%
teacher = {
    u: recgpt.teacher_interests(
        inputs["shown_liked"][u], setting.itags, setting.base_rate
    )
    for u in inputs["users"]
}
pos = split.train[split.train["rating"] >= recgpt.LIKED_MIN]  # training likes
constant = recgpt.category_interests(
    pos["item_id"], setting.facts, n=recgpt.N_INTERESTS
)
counting = {
    u: recgpt.category_interests(
        inputs["liked"][u], setting.facts, n=recgpt.N_INTERESTS
    )
    for u in inputs["users"]
}
print("constant answer:", constant, "\nuser", u0, "counting rule:", counting[u0])
judge = dict(
    history=inputs["liked"],
    future=inputs["future"],
    facts=setting.facts,
    n_requested=recgpt.N_INTERESTS,
    population_answer=[recgpt.tag_category(p) for p in constant],
)
CONST, RULE, TEACHER = "constant answer", "per-user counting rule", "teacher (counting)"
judged_all = {
    CONST: recgpt.judge_interests({u: constant for u in inputs["users"]}, **judge),
    RULE: recgpt.judge_interests(counting, **judge),
    TEACHER: recgpt.judge_interests(teacher, **judge),
}
rates_all = recgpt.rate_table(judged_all)
paired_all = recgpt.paired_rate_table(judged_all, CONST)
rates_all.pivot(index="judge", columns="system", values="mean").round(3)

# %% [markdown]
# Differences from the constant answer, user by user (mean and 95% paired bootstrap
# interval), on every test user:

# %%
paired_all.pivot(index="judge", columns="system", values="diff").round(3)

# %% [markdown]
# The raw rates are fooled: the constant answer is *supported* more often than the teacher's
# (0.70 vs 0.57) and covers more of the next liked films (recall 0.52 vs 0.33), because it
# names the categories everybody likes. The judges are not: against the per-user counting
# rule the constant answer loses on grounding (0.41 vs 0.68) and on both lifts (zero against
# +0.09 precision and +0.14 recall), with paired intervals that exclude zero, and the
# teacher, reading only the films its prompt shows, beats it on grounding and both lifts
# too. The constant answer also hallucinates for some users (0.08: a "mystery" for a user
# who liked no mystery), with an interval above zero.
#
# Some numbers in these tables hold **by construction**, so the checks below do not assert
# them; read them as definitions, not findings:
#
# - the constant answer's personalization is 0 and its diversity 1: it *is* the modal
#   answer, five distinct categories. Its lifts average exactly 0 over all test users.
#   Any other answer "beats" it on personalization; the rule's 0.61 and the teacher's 0.78
#   say how far from the modal answer they are, not that they won;
# - the counting rule hallucinates nothing: its categories are those of the user's own
#   liked films, the very films the judge checks;
# - the teacher hallucinates no phrase it names: every one is carried by at least one film
#   its prompt shows. Its rate, 0.002, is one user of 602 whose prompt shows no liked film,
#   so the teacher answers nothing, and an empty answer counts as a failed one. Its "zero
#   hallucination" is a property of counting, not a skill a student can be asked to match.
#
# The rule names five distinct categories for nearly every user (diversity 0.99); the
# teacher, at most two phrases per category, averages 0.65.


# %%
def _d(table, system, j, col="diff"):
    return table.set_index(["system", "judge"]).loc[(system, j), col]


r_all = rates_all.set_index(["system", "judge"])
p_all = paired_all.set_index(["system", "judge"])
for j in ("supported", "recall"):
    claims.check(
        f"the raw {j} rate ranks the constant answer above the teacher "
        "(paired interval below 0)",
        _d(paired_all, TEACHER, j, "hi") < 0,
        detail=f"teacher minus constant {ci(p_all, (TEACHER, j))}",
    )
# personalization is left out: the constant answer's 0 there holds by definition
for src in (RULE, TEACHER):
    js = ("grounding", "precision_lift", "recall_lift")
    claims.check(
        f"the {src} beats the constant answer on grounding and both lifts "
        "(paired intervals above 0)",
        all(_d(paired_all, src, j, "lo") > 0 for j in js),
        detail="; ".join(f"{j} {ci(p_all, (src, j))}" for j in js),
    )
# the rule's 0 holds by construction
claims.check(
    "the constant answer hallucinates for some users (interval above 0)",
    r_all.loc[(CONST, "hallucination"), "lo"] > 0,
    detail=ci(r_all, (CONST, "hallucination"), "mean"),
)
r_all = r_all["mean"]
quoted_all = {
    (CONST, "supported"): 0.70,
    (TEACHER, "supported"): 0.57,
    (CONST, "recall"): 0.52,
    (TEACHER, "recall"): 0.33,
    (CONST, "grounding"): 0.41,
    (RULE, "grounding"): 0.68,
    (RULE, "precision_lift"): 0.09,
    (RULE, "recall_lift"): 0.14,
    (RULE, "personalization"): 0.61,
    (CONST, "hallucination"): 0.08,
    (TEACHER, "hallucination"): 0.002,
    (TEACHER, "personalization"): 0.78,
    (RULE, "diversity"): 0.99,
    (TEACHER, "diversity"): 0.65,
}
off = {k: r_all[k] for k, v in quoted_all.items() if abs(r_all[k] - v) >= 0.006}
claims.check(  # every test user, no LLM: the same in both modes
    f"the {len(quoted_all)} rates quoted above (every test user, no LLM) hold "
    "within 0.006",
    not off,
    detail="; ".join(f"{s} {j} {v:.3f}" for (s, j), v in off.items()) or "all hold",
)

# %% [markdown]
# All of these judges are one function, `llmrec_lib/recgpt/judges.py::judge_interests`;
# its docstring states each rate's formula. Its source:

# %% tags=["hide-output"]
show.source(recgpt.judge_interests)

# %% [markdown]
# ## 5. Distillation: LoRA fine-tuning on the teacher's answers
#
# Training examples come from the **training ratings only**: for each user, two cut points in
# their history; the prompt shows the compressed history before the cut, the answer is the
# teacher's interests on it (`recgpt.sft_examples`; the same call also makes chapter 07's
# examples, so one adapter learns both tasks, where the paper trains two models).
# `sft.SFTTrainer` renders each example with the chat template exactly as generation does and
# puts the loss on the answer tokens only. Live, two steps on a few examples, interrupted after
# the first and resumed:

# %%
few = recgpt.sft_examples(setting, users=inputs["users"][:6], seed=seed)
few_int = few[few.task == "interests"]
print(few_int.prompt.iloc[0][-250:], "\n---\n", few_int.answer.iloc[0])
run_dir = tempfile.mkdtemp(prefix="ch06-sft-")
live_cfg = recgpt.default_sft_config("quick", seed)
pairs = list(zip(few.prompt, few.answer))
first = sft.SFTTrainer(
    backbones.load_backbone("smollm2-135m"), pairs, live_cfg, run_dir, progress=False
).train(stop_at=1)
again = sft.SFTTrainer(
    backbones.load_backbone("smollm2-135m"), pairs, live_cfg, run_dir, progress=False
).train()
print(
    f"resumed from step {again.resumed_from}; "
    f"losses {[round(h['loss'], 3) for h in again.state.history]}"
)
claims.check(
    "a run interrupted after step 1 resumes there and logs steps 1 and 2 once each",
    again.resumed_from == 1 and [h["step"] for h in again.state.history] == [1, 2],
    pinned=False,
    detail=f"resumed from {again.resumed_from}, steps "
    f"{[h['step'] for h in again.state.history]}",
)

# %% [markdown]
# The full-mode run (`python -m llmrec_lib.recgpt full`) trains the same way for longer and
# commits its adapter (bf16 safetensors, under 2 MB) with every generation. Quick mode reads
# the committed run (printed below: the defaults, 120 SFT steps of 8 examples and 120 sampled
# test users; 20 minutes on the book's 2-core machine, 14 of them fine-tuning); full mode
# retrains here. On other data neither happens: the committed run belongs to the reference
# split, and a full-mode retraining would overwrite it in `artifacts/recgpt`.

# %%
art = recgpt.artifacts_dir()
if cfg.mode == "full" and committed:
    recgpt.run_full(command="python -m llmrec_lib.recgpt full --users 120")
meta = json.loads((art / recgpt.META).read_text()) if committed else None
log = json.loads((art / recgpt.ADAPTER / "sft.json").read_text()) if committed else None
if committed:
    print(meta["command"])
    keys = ("n_train_examples", "n_val_examples", "val_loss_base", "val_loss_tuned")
    print({k: meta[k] for k in (*keys, "wall_s")})
    curve = pd.DataFrame(log["history"])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(
        curve["step"],
        curve["loss"].rolling(10, min_periods=1).mean(),
        color=plots.COLORS["history"],
    )
    ax.set(
        title="Full-mode SFT: answer-token loss falls",
        xlabel="step",
        ylabel="loss (10-step mean)",
    )
    fig.tight_layout()
else:
    print(f"skipped on this data: the committed run {WHY}")

# %%
check_committed(  # held-out users (measured 1.80 -> 0.66)
    "the committed run's held-out answer loss falls by more than 0.5",
    lambda: (
        meta["val_loss_tuned"] < meta["val_loss_base"] - 0.5,
        f"{meta['val_loss_base']:.2f} -> {meta['val_loss_tuned']:.2f}",
    ),
)

# %% [markdown]
# How much interest mining did that run see? "120 steps of 8 examples" is 960 draws, but
# over **both** tasks: every training cut gives one interest example and one tag example.
# The trainer's batch order is a function of the seed (`sft.batch_indices`), so the draws
# can be replayed exactly. Rebuild the run's examples (their fingerprint must match the one
# stored in `meta.json`), split them as the run did, and count what it drew:

# %%
draws = None  # the committed run's draws: only where the run fits the data
if committed:
    ex_run = recgpt.sft_examples(setting, seed=meta["seed"])
    fingerprint = recgpt.short_sha("".join(ex_run["prompt"] + ex_run["answer"]))
    tr_run, _ = recgpt.split_examples(ex_run, seed=meta["seed"])
    sc = meta["sft_config"]
    drawn = np.concatenate(
        [
            sft.batch_indices(len(tr_run), sc["batch_size"], sc["seed"], step)
            for step in range(sc["steps"])
        ]
    )
    draws = pd.DataFrame(
        {
            "training examples": tr_run["task"].value_counts(),
            "drawn": tr_run["task"].iloc[drawn].value_counts(),
        }
    )
    draws.loc["both tasks"] = draws.sum()
    print(
        f"{len(drawn)} draws, {len(set(drawn.tolist()))} distinct examples: "
        f"{len(drawn) / len(tr_run):.2f} of an epoch"
    )
draws

# %%
check_committed(  # the run's examples
    "the rebuilt examples match the committed run's fingerprint and count",
    lambda: (
        fingerprint == meta["examples_sha"]
        and len(tr_run) == meta["n_train_examples"] == log["n_examples"],
        f"{fingerprint} vs {meta['examples_sha']}; {len(tr_run)} training examples",
    ),
    pinned=False,
)
if cfg.mode == "quick":  # the counts quoted below, from the committed run
    check_committed(
        "the committed run drew 960 of 1,674 examples (492 of 837 interest "
        "examples), none twice",
        lambda: (
            draws.loc["both tasks"].tolist() == [1674, 960]
            and draws.loc["interests"].tolist() == [837, 492]
            and len(set(drawn.tolist())) == 960,
            f"{draws.loc['both tasks'].tolist()} both tasks, "
            f"{draws.loc['interests'].tolist()} interests, "
            f"{len(set(drawn.tolist()))} distinct",
        ),
    )

# %% [markdown]
# So the committed student saw **492 interest examples** (and 468 tag examples), each once,
# from 1,674 training examples (837 per task): 0.57 of one epoch. The paper's LLM_UI
# trained on 16.3k curriculum samples, 19.0k judge-filtered distilled answers and 21.1k
# self-training samples.

# %% [markdown]
# The same live users, now with the committed adapter. On other data this is a demonstration
# only: the adapter was trained on the reference split, which may hold these users' test
# films, so nothing below scores these answers.

# %%
tuned_gen = generation.CachedGenerator(
    generation.LocalGenerator(
        "smollm2-135m", str(art / recgpt.ADAPTER), config=recgpt.generation_config()
    )
)
live_tuned = tuned_gen.generate(
    [recgpt.interest_prompt(inputs["history_text"][u]) for u in live_users]
)
for u, t in zip(live_users, live_tuned):
    print(f"user {u}: {t!r}")

# %% [markdown]
# The loss on the answer tokens only comes from `llmrec_lib/sft.py::encode_example`: the prompt's
# tokens get the label -100, which cross-entropy ignores. Its source:

# %% tags=["hide-output"]
show.source(sft.encode_example)

# %% [markdown]
# ## 6. Every answer source, side by side
#
# Both models mined interests for the same test users in the committed run (greedy decoding,
# the prompt of section 2; its command is printed in section 5). Each fine-tuned round in the
# generations file gets a column (the committed run has one). Next to them, on the same
# users: the constant answer, the per-user counting rule and the teacher. Each judge rate is a
# mean over users with a 95% bootstrap interval; the second table gives each source minus the
# constant answer, user by user, with a paired interval. On other data the committed
# generations do not fit, so the tables hold only the three answers that need no LLM, on
# every test user, and every claim of this section is recorded as not tested.

# %%
if committed:
    gens = recgpt.read_generations(art / recgpt.GENERATIONS)
    users = meta["users"]
    TUNED = f"SmolLM2 + LoRA ({meta['sft_config']['steps']} steps)"
    rounds = [
        s for s in dict.fromkeys(gens["source"]) if s != "zero-shot"
    ]  # fine-tuned round(s)
    mined = {
        src: recgpt.phrases_from_generations(gens, src, "interests")
        for src in ["zero-shot", *rounds]
    }
else:  # no generation fits this data: the answers that need no LLM, every test user
    users, TUNED, mined = inputs["users"], "SmolLM2 + LoRA (committed run)", {}
label = {"zero-shot": "SmolLM2 zero-shot", "fine-tuned": TUNED}
judged = {name: df.loc[users] for name, df in judged_all.items()}
judged.update(
    {label.get(src, src): recgpt.judge_interests(mined[src], **judge) for src in mined}
)
rates = recgpt.rate_table(judged)
paired = recgpt.paired_rate_table(judged, CONST)
fmt = rates.assign(
    v=[
        f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
        for m, lo, hi in zip(rates["mean"], rates["lo"], rates["hi"])
    ]
)
fmt.pivot(index="judge", columns="system", values="v")[list(judged)]

# %%
pfmt = paired.assign(
    v=[
        f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        for m, lo, hi in zip(paired["diff"], paired["lo"], paired["hi"])
    ]
)
pfmt.pivot(index="judge", columns="system", values="v")[
    [k for k in judged if k != CONST]
]

# %%
JUDGES = [
    "grounding",
    "hallucination",
    "precision_lift",
    "recall_lift",
    "personalization",
    "diversity",
]
fig, axes = plt.subplots(2, 3, figsize=(15, 6), sharey=True)
for ax, j in zip(axes.ravel(), JUDGES):
    plots.bars_with_ci(
        rates[rates.judge == j].reset_index(drop=True),
        "mean",
        "lo",
        "hi",
        "system",
        j,
        ax=ax,
    )
fig.suptitle(
    "The student beats the constant answer on both lifts, matches it on grounding "
    f"and loses on hallucination ({len(users)} test users)"
    if committed
    else f"The answers that need no LLM ({len(users)} test users)",
    y=1.02,
)
fig.tight_layout()

# %% [markdown]
# Two answers **match** on a judge below when the paired interval of their difference lies
# inside ±0.10: a difference of a tenth of the judge's 0-1 scale is ruled out. An interval
# that merely spans zero would prove little, since with 120 users a real difference can
# hide in it. Against the constant answer, the fine-tuned student wins two judges, matches
# one, and loses two:
#
# - **it wins** on precision lift (+0.08) and recall lift (+0.09), paired intervals
#   excluding zero: its categories predict *this* user's next films better than an average
#   user's, which the constant answer by definition does not. Its personalization, 0.66,
#   "beats" the constant's 0 by definition; the finding is that it is as far from the
#   modal answer as the per-user rule's (0.64; they match);
# - **it matches** on grounding (0.39 vs 0.42, paired interval [-0.09, +0.04]). Its
#   supported interests are specific far more often (0.89 of them against 0.61 of the
#   constant answer's, intervals apart below), but about 30% of its interests are supported
#   by nothing and so are never grounded;
# - **it loses** on hallucination (0.29 vs 0.10): the student writes well-formed phrases that
#   are sometimes wrong ("90s sci-fi" for a user with no sci-fi), and matches zero-shot here;
#   the constant answer names five big categories nearly every user has liked a film of,
#   which is not invention, only not about anyone;
# - **it loses** on diversity (0.64 vs 1.0, the constant's by construction): the student
#   copies its teacher's form, up to two phrases per category (it matches the teacher's
#   diversity), while five distinct categories are the constant answer's form. Diversity
#   measures an answer's spread, not whom it is about.
#
# The per-user counting rule, which reads the user's whole liked history, is the answer to
# beat: on these users it beats the student on grounding (0.69 vs 0.39) and recall lift (0.16
# vs 0.11). Against its teacher, the student is below on grounding (0.39 vs 0.53) and
# matches it on recall lift and diversity. On hallucination the comparison says nothing
# new: the teacher's zero holds by construction (section 4), so "below the teacher" only
# restates the student's 0.29. 120 steps of 8 draws over two tasks, 492 interest examples
# seen once (section 5), taught the *form* and the category mix of an answer more than the
# counting behind each phrase. The paper's student beat its teacher after 19.0k
# judge-filtered distilled answers and a 21.1k-sample self-training round; section 7 runs
# a self-training round in miniature.

# %%
MATCH = 0.10  # "match": the paired interval lies inside +-MATCH


def matches(table, key):
    return -MATCH < table.loc[key, "lo"] and table.loc[key, "hi"] < MATCH


P = paired.set_index(["system", "judge"])
R6 = rates.set_index(["system", "judge"])["mean"]
for j in ("precision_lift", "recall_lift"):  # wins
    check_committed(
        f"the student beats the constant answer on {j} (paired interval above 0)",
        lambda: (P.loc[(TUNED, j), "lo"] > 0, ci(P, (TUNED, j))),
    )
check_committed(
    "the student matches the constant answer on grounding (interval inside +-0.10)",
    lambda: (matches(P, (TUNED, "grounding")), ci(P, (TUNED, "grounding"))),
)
for j, sign in (("hallucination", 1), ("diversity", -1)):  # losses
    check_committed(
        f"the student loses to the constant answer on {j} (paired interval excludes 0)",
        lambda: (
            sign * P.loc[(TUNED, j), "lo" if sign > 0 else "hi"] > 0,
            ci(P, (TUNED, j)),
        ),
    )


def specific_share(
    df, idx
):  # of the supported interests, the share that is also specific
    return (
        df["grounding"].to_numpy()[idx].mean() / df["supported"].to_numpy()[idx].mean()
    )


spec = spec_lo = spec_hi = zt = None  # from the committed generations only
if committed:
    rng = np.random.default_rng(seed)
    boot = np.array(
        [
            [specific_share(judged[s], idx) for s in (TUNED, CONST)]
            for idx in rng.integers(0, len(users), size=(1000, len(users)))
        ]
    )
    spec = {s: specific_share(judged[s], np.arange(len(users))) for s in (TUNED, CONST)}
    spec_lo = np.quantile(boot, 0.025, axis=0)
    spec_hi = np.quantile(boot, 0.975, axis=0)
    print(
        {s: round(v, 3) for s, v in spec.items()},
        "intervals",
        spec_lo.round(3),
        spec_hi.round(3),
    )
    Z = "SmolLM2 zero-shot"
    zt = recgpt.paired_rate_table(
        {
            TUNED: judged[TUNED],
            Z: judged[Z],
            TEACHER: judged[TEACHER],
            RULE: judged[RULE],
        },
        TUNED,
    ).set_index(["system", "judge"])
check_committed(
    "supported student interests are specific more often than the constant answer's "
    "(intervals apart)",
    lambda: (
        spec_lo[0] > spec_hi[1],
        f"{spec[TUNED]:.3f} [{spec_lo[0]:.3f}, {spec_hi[0]:.3f}] vs "
        f"{spec[CONST]:.3f} [{spec_lo[1]:.3f}, {spec_hi[1]:.3f}]",
    ),
)
for who, j, what in (
    ("SmolLM2 zero-shot", "hallucination", "no better than zero-shot"),
    (TEACHER, "diversity", "the teacher's form"),
    (RULE, "personalization", "as far from the modal answer as the rule's"),
    (TEACHER, "recall_lift", "level with the teacher"),
):
    check_committed(
        f"the student matches {who} on {j} ({what}; interval inside +-0.10)",
        lambda: (matches(zt, (who, j)), f"{who} minus student {ci(zt, (who, j))}"),
    )
for who, js in ((RULE, ("grounding", "recall_lift")), (TEACHER, ("grounding",))):
    check_committed(
        f"the {who} beats the student on {' and '.join(js)} (paired interval above 0)",
        lambda: (
            all(zt.loc[(who, j), "lo"] > 0 for j in js),
            "; ".join(f"{j} {ci(zt, (who, j))}" for j in js),
        ),
    )
js_zero = ("grounding", "precision_lift", "recall_lift", "personalization")
check_committed(
    "fine-tuning beats zero-shot on grounding, both lifts and personalization "
    "(paired intervals apart from 0)",
    lambda: (
        all(zt.loc[("SmolLM2 zero-shot", j), "hi"] < 0 for j in js_zero),
        "; ".join(f"{j} {ci(zt, ('SmolLM2 zero-shot', j))}" for j in js_zero),
    ),
)

# %%
quoted = {
    (TUNED, "precision_lift"): 0.08,
    (TUNED, "recall_lift"): 0.09,
    (TUNED, "personalization"): 0.66,
}
quoted_rates = {
    (TUNED, "grounding"): 0.39,
    (CONST, "grounding"): 0.42,
    (TUNED, "hallucination"): 0.29,
    (CONST, "hallucination"): 0.10,
    (TUNED, "diversity"): 0.64,
    (RULE, "grounding"): 0.69,
    (RULE, "recall_lift"): 0.16,
    (TUNED, "recall_lift"): 0.11,
    (TUNED, "personalization"): 0.66,
    (RULE, "personalization"): 0.64,
    (TEACHER, "grounding"): 0.53,
}


def quoted_off():
    """The quoted numbers that the committed run does not reproduce within 0.006."""
    off = [
        f"{k} diff {P.loc[k, 'diff']:.3f}"
        for k, v in quoted.items()
        if abs(P.loc[k, "diff"] - v) >= 0.006
    ]
    off += [
        f"{k} {R6[k]:.3f}" for k, v in quoted_rates.items() if abs(R6[k] - v) >= 0.006
    ]
    if abs(spec[TUNED] - 0.89) >= 0.006 or abs(spec[CONST] - 0.61) >= 0.006:
        off.append(f"specific share {spec}")
    return off


if (
    cfg.mode == "quick"
):  # the prose above quotes the committed run, which quick mode reads
    check_committed(
        f"the {len(quoted) + len(quoted_rates) + 2} numbers quoted above hold "
        "within 0.006",
        lambda: (not quoted_off(), "; ".join(quoted_off()) or "all hold"),
    )

# %%
print(
    "parse failures in the full run:" if committed else "no committed run on this data"
)
for src, rep in (meta["parse_reports"] if committed else {}).items():
    print(
        f"  {src}: {rep['interests']['n_malformed']}/{rep['interests']['n']} "
        "malformed, "
        f"{rep['interests']['reasons']}"
    )

# %% [markdown]
# ## 7. Judge-filtered self-training
#
# RecGPT's LLM_UI did not stop at distillation: the student sampled answers for many users,
# LLM judges kept those that passed, and the student trained on them again (90.0k distilled
# answers with 19.0k kept, then 21.1k self-training samples).
# `llmrec_lib/recgpt/selftrain.py` runs one such round in miniature, with this chapter's
# judges in place of the paper's LLM judges:
#
# 1. **Generate.** 240 training cut points (training ratings only), 4 sampled answers each
#    (temperature 0.8, top-p 0.95) from the committed student.
# 2. **Judge and keep.** Each sample is judged against the user's next 8 likes after the
#    cut, with every cut point as the population (`selftrain.judge_samples`). The filter was
#    fixed before any sample was judged (`selftrain.passes`): five phrases, none backed by
#    nothing, grounding at least 0.6, precision lift above 0. A prompt keeps its best
#    passing sample (`selftrain.pick`), so no prompt counts twice.
# 3. **Train.** The student's adapter trains on for 40 steps of 8 (`sft.fit` with
#    `init_adapter`), in three arms of equal compute: on the kept answers
#    (**self-trained**), on the first sample of every prompt with no judge
#    (**unfiltered**), and on the teacher's answers to the same prompts (**more teacher
#    steps**). The two controls separate what the judges add from what 40 more steps add.
# 4. **Measure.** Each arm mines interests, greedy, for section 6's 120 test users.

# %% [markdown]
# Quick mode reads the committed round (its command and time are printed below); full mode
# runs it here on the student that section 5 trained (about 40 minutes on 2 cores). On other
# data the whole round is skipped: its samples were drawn at the reference split's training
# cuts and its arms answered the reference split's test users. The cells below then print
# nothing, and the closing table lists the section's claims as not tested.

# %%
if cfg.mode == "full" and committed:
    selftrain.run_full(command="python -m llmrec_lib.recgpt.selftrain full")
st_meta = funnel = None  # the committed round: only where it fits the data
if committed:
    st_meta, st_samples, st_gens = selftrain.load()
    print(st_meta["command"], "|", f"{st_meta['wall_s'] / 60:.0f} min")
    draws = st_meta["sft_config"]["steps"] * st_meta["sft_config"]["batch_size"]
    funnel = pd.Series(st_meta["funnel"], name="answers")
    funnel["draws per arm in training"] = draws
    print(funnel.to_string())
    print("filter:", st_meta["filter"])
else:
    print(f"skipped on this data: the self-training round {WHY}")

# %%
if committed:
    fig, ax = plt.subplots(figsize=(7, 2.4))
    stages_f = ["generated", "parsed in full", "passed", "kept (one per prompt)"]
    ax.barh(
        stages_f[::-1], [funnel[k] for k in stages_f[::-1]], color=plots.COLORS["llm"]
    )
    for y, k in enumerate(stages_f[::-1]):
        ax.text(funnel[k], y, f" {funnel[k]:,}", va="center")
    ax.set(
        xlabel="answers",
        title="Self-training funnel (RecGPT: 90.0k distilled answers, 19.0k kept)",
    )
    fig.tight_layout()

# %%
check_committed(
    "the round answered section 6's test users",
    lambda: (st_meta["test_users"] == users, f"{len(st_meta['test_users'])} users"),
    pinned=False,
)
check_committed(
    "the funnel's kept count is the samples marked kept",
    lambda: (
        funnel["kept (one per prompt)"] == int(st_samples["kept"].sum()),
        f"{funnel['kept (one per prompt)']} vs {int(st_samples['kept'].sum())}",
    ),
    pinned=False,
)
# the committed samples still pass or fail the code's filter as recorded
check_committed(
    "the code's filter passes exactly the committed samples recorded as passed",
    lambda: (
        (
            selftrain.passes(st_samples.set_index(["prompt_row", "sample"]))
            == st_samples.set_index(["prompt_row", "sample"])["passed"]
        ).all(),
        f"{int(st_samples['passed'].sum())} of {len(st_samples)} passed",
    ),
    pinned=False,
)

# %% [markdown]
# The filter and the pick are `llmrec_lib/recgpt/selftrain.py::passes` and
# `llmrec_lib/recgpt/selftrain.py::pick`; the whole round is
# `llmrec_lib/recgpt/selftrain.py::run_full`.

# %% tags=["hide-output"]
show.source(selftrain.passes)

# %% [markdown]
# What the judges kept, against everything sampled (mean judge rates on the training cuts):

# %%
JUDGED = ["grounding", "hallucination", "precision_lift", "recall_lift"]
JUDGED += ["personalization", "diversity"]
kept_vs_all = None
if committed:
    kept_vs_all = pd.DataFrame(
        {
            "all samples": st_samples[JUDGED].mean(),
            "kept": st_samples.loc[st_samples["kept"], JUDGED].mean(),
        }
    ).round(3)
kept_vs_all

# %% [markdown]
# Now the test: each arm beside the round-0 student, on the same users and judges as
# section 6, with paired intervals (each arm minus round 0):

# %%
ROUND0 = TUNED
st_names = {arm: f"round 1, {arm}" for arm in selftrain.ARMS}
st_fmt = None
if committed:
    judged_st = {ROUND0: judged[ROUND0]}
    for arm, name in st_names.items():
        mined_arm = recgpt.phrases_from_generations(st_gens, arm, "interests")
        judged_st[name] = recgpt.judge_interests(mined_arm, **judge).loc[users]
    st_rates = recgpt.rate_table(judged_st)
    st_paired = recgpt.paired_rate_table(judged_st, ROUND0)
    st_fmt = st_paired.assign(
        v=[f"{r.diff:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]" for r in st_paired.itertuples()]
    ).pivot(index="judge", columns="system", values="v")[list(st_names.values())]
    r0 = st_rates[st_rates.system == ROUND0].set_index("judge")["mean"]
    st_fmt.insert(0, "round 0 (rate)", r0.round(2))
st_fmt

# %% [markdown]
# Three questions, each a paired difference of the self-trained arm: against round 0 (did
# the round change the student?), against the unfiltered arm (what do the judges add?) and
# against more teacher steps (is self-training better than simply training longer?). On
# the six judges of section 6 that is 18 tests, so the p-values are Holm-adjusted, and each
# row carries its minimum detectable effect (80% power, unadjusted).

# %%
SELF = st_names["self-trained"]
fam = F = None
if committed:
    fam = []
    for ref, what in [
        (ROUND0, "round 0"),
        (st_names["unfiltered"], "unfiltered"),
        (st_names["more teacher steps"], "more teacher steps"),
    ]:
        pair = {SELF: judged_st[SELF], ref: judged_st[ref]}
        t = recgpt.paired_rate_table(pair, ref, columns=JUDGES, n_boot=10000)
        t["MDE"] = [
            abtest.mde((judged_st[SELF][j] - judged_st[ref][j]).dropna().to_numpy())
            for j in t["judge"]
        ]
        fam.append(t.assign(comparison=f"self-trained - {what}"))
    fam = pd.concat(fam, ignore_index=True)
    fam["holm p"] = abtest.holm(fam["p"])
    F = fam.set_index(["comparison", "judge"])
None if F is None else F[["diff", "lo", "hi", "holm p", "MDE"]].round(3)

# %%
R0, UNF, TEA = (
    f"self-trained - {w}" for w in ("round 0", "unfiltered", "more teacher steps")
)


def holm_detail(key):
    """A comparison's difference, interval and Holm-adjusted p, for a claim's detail."""
    return f"{ci(F, key)}, Holm p {F.loc[key, 'holm p']:.3f}"


for key, sign in [
    ((R0, "hallucination"), -1),  # the round changed the student
    ((R0, "diversity"), 1),
    ((UNF, "grounding"), 1),  # the judges' filter is what helped
    ((UNF, "hallucination"), -1),
    ((TEA, "personalization"), -1),  # more teacher steps: more personal answers
]:
    check_committed(
        f"{key[0]}: {key[1]} {'rises' if sign > 0 else 'falls'} (Holm p < 0.05)",
        lambda: (
            F.loc[key, "holm p"] < 0.05 and sign * F.loc[key, "diff"] > 0,
            holm_detail(key),
        ),
    )
for j in ("grounding", "hallucination", "precision_lift", "recall_lift"):
    check_committed(
        f"{TEA}: {j} within +-0.05 and not Holm-significant",
        lambda: (
            -0.05 < F.loc[(TEA, j), "lo"]
            and F.loc[(TEA, j), "hi"] < 0.05
            and F.loc[(TEA, j), "holm p"] > 0.05,
            holm_detail((TEA, j)),
        ),
    )

# %% [markdown]
# What one round in miniature shows (the committed run, 120 test users):
#
# - **The round changed the student.** Against round 0 it invents less (hallucination
#   -0.04) and spreads over more categories (diversity +0.08), both Holm-significant;
#   grounding, both lifts and personalization do not move detectably (MDEs 0.03-0.04).
# - **The judges are what helped.** Trained for the same 40 steps on its own unjudged
#   samples, the student gets worse: the self-trained arm beats the unfiltered one on
#   grounding (+0.05), hallucination (-0.05) and diversity (+0.10). A student that trains on
#   its own output needs a filter, which is why RecGPT puts its judges there.
# - **It does not beat training longer on the teacher.** With the same compute on the
#   teacher's answers, the student is as good on grounding, hallucination and both lifts
#   (every interval inside +-0.05; MDEs about 0.05), and more personal (+0.06). The paper's self-trained
#   student overtook its teacher after 21.1k kept samples; our round kept 51 of 960, 5%
#   against the paper's 21% of distilled answers, and 51 answers drawn 320 times are a
#   small, repeated lesson. A second round, more samples per prompt or a looser filter are
#   the next things to try (exercise 5).

# %%
if committed:
    cols = ["n_train", "val_loss_base", "val_loss_tuned"]
    fits = pd.DataFrame(st_meta["fits"]).T[cols]
    fits.columns = ["answers trained on", "held-out loss before", "after"]
    print("answer loss on held-out cuts against the teacher's answers:")
    print(fits.round(3).to_string())
quoted_st = {
    (R0, "hallucination"): -0.04,
    (R0, "diversity"): 0.08,
    (UNF, "grounding"): 0.05,
    (UNF, "hallucination"): -0.05,
    (UNF, "diversity"): 0.10,
    (TEA, "personalization"): -0.06,
}


def quoted_st_off():
    """The quoted numbers of the round that the committed run does not reproduce."""
    off = [
        f"{k} {F.loc[k, 'diff']:+.3f}"
        for k, v in quoted_st.items()
        if abs(F.loc[k, "diff"] - v) >= 0.006
    ]
    if not (funnel["generated"] == 960 and funnel["kept (one per prompt)"] == 51):
        off.append(f"funnel {funnel['generated']} -> {funnel['kept (one per prompt)']}")
    return off


if cfg.mode == "quick":  # the prose above quotes the committed run
    check_committed(
        f"the round's {len(quoted_st)} quoted differences (within 0.006) and its "
        "960 -> 51 funnel hold",
        lambda: (not quoted_st_off(), "; ".join(quoted_st_off()) or "all hold"),
    )
    for j in ("grounding", "precision_lift", "recall_lift", "personalization"):
        check_committed(  # "MDEs 0.03-0.04"
            f"{R0}: {j} does not move detectably (Holm p > 0.05, MDE 0.025-0.045)",
            lambda: (
                F.loc[(R0, j), "holm p"] > 0.05
                and 0.025 < F.loc[(R0, j), "MDE"] < 0.045,
                f"{holm_detail((R0, j))}, MDE {F.loc[(R0, j), 'MDE']:.3f}",
            ),
        )
    check_committed(  # "MDEs about 0.05"
        f"{TEA}: the MDEs of grounding, hallucination and both lifts lie in 0.045-0.06",
        lambda: (
            all(0.045 < F.loc[(TEA, j), "MDE"] < 0.06 for j in JUDGES[:4]),
            ", ".join(f"{j} {F.loc[(TEA, j), 'MDE']:.3f}" for j in JUDGES[:4]),
        ),
    )

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT** (human pass rate of mined interests): teacher 70.0%, base 14B model 59.7%,
# fine-tuned 77.3%; 16 interests per user; compression lets 98% of users fit 128k tokens (88%
# before). **We measure** (tables above): rule-based judge rates instead of human pass rates,
# 5 interests per user, a 135M model and a counting teacher. Our fine-tuned student copies the
# teacher's *style*; after 120 steps (960 draws over two tasks, 492 of them interest
# examples) it beats a constant answer on both predictive lifts, matches it on grounding
# and loses on hallucination and diversity, and a per-user counting rule beats it on
# grounding and recall lift. The paper's student surpassed its teacher (77.3% vs 70.0%)
# after 19.0k judge-filtered distilled answers and 21.1k self-training samples. Our one
# self-training round (960 samples, 51 kept by the rule judges) made the student invent less
# and spread wider than round 0, and beat training on its own unjudged samples, but matched
# (did not beat) training as long on the teacher's answers.
# ```

# %% [markdown]
# ## Results
#
# Where the committed run does not fit the data, its entries (`interest_judges`,
# `specific_share_of_supported`, `self_training`, `sft`) are None: nothing was measured.

# %%
from llmrec_lib import results as records

skipped = f"skipped on this data: {WHY}"
out = {
    "chapter": "06",
    "mode": cfg.mode,
    "reference_data": claims.reference,
    "produced_by": {
        "compression": "this run, all test users",
        "teacher, constant answer, counting rule": "this run, all test users",
        "judged generations": f"artifacts/recgpt: {meta['command']}"
        if committed
        else skipped,
        "self-training round": f"artifacts/recgpt/selftrain: {st_meta['command']}"
        if committed
        else skipped,
        "live": f"{n_live} users, 2 SFT steps (mechanics only)",
    },
    "compression": {
        "tokens_total": tokens.sum().to_dict(),
        "saving": saving.to_dict(),
        "fit": {str(b): fit.loc[b].to_dict() for b in fit.index},
    },
    "interest_judges": rates.to_dict(orient="records") if committed else None,
    "interest_judges_minus_constant": paired.to_dict(orient="records")
    if committed
    else None,
    "interest_judges_all_test_users": rates_all.to_dict(orient="records"),
    "interest_judges_all_test_users_minus_constant": paired_all.to_dict(
        orient="records"
    ),
    "specific_share_of_supported": {
        "value": spec,
        "lo": dict(zip((TUNED, CONST), spec_lo)),
        "hi": dict(zip((TUNED, CONST), spec_hi)),
    }
    if committed
    else None,
    "constant_answer": constant,
    "self_training": {
        "command": st_meta["command"],
        "funnel": st_meta["funnel"],
        "paired": fam.to_dict(orient="records"),
    }
    if committed
    else None,
    "sft": {
        k: meta[k]
        for k in ("val_loss_base", "val_loss_tuned", "n_train_examples", "timings_s")
    }
    if committed
    else None,
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("06", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error.
# Mechanics hold on any data. Rows "not tested" need the committed run, which fits the
# reference split only.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Reliable behaviours, short item texts and time buckets cut a history's tokens by about
#    four fifths; nearly every user's whole history then fits an 8k window.
# 2. A 135M base model asked for interests copies titles and writes sentences.
# 3. A counting teacher, distilled with LoRA on training-time examples (492 interest
#    examples drawn in the committed run), teaches it the task's form.
# 4. Judges as measured rates make "better interests" a claim with an interval, and only
#    judges relative to the population (specific grounding, lift, personalization) keep a
#    constant answer from winning.
# 5. Self-training needs its judges: trained on its own unjudged samples the student gets
#    worse; trained on the judged ones it invents less, yet one small round only matches
#    training as long on the teacher.
#
# ## Exercises
#
# 1. **Budget.** Recompute `fit` with `budgets=(512, 1024)`. *Check:* at 512 tokens about
#    47% of the users fit once compressed (sequence-level) against 0.5% raw; at 1,024, about
#    69% against 15%.
# 2. **A stricter judge.** Rerun `recgpt.judge_interests` on every test user with
#    `min_support=10`. *Check:* the teacher's grounding falls from 0.52 to about 0.14, below
#    the constant answer's (about 0.22); explain why the teacher, which reads only the films
#    its prompt shows, suffers most. Hallucination does not change: why can it not?
# 3. **Teacher without the base rate.** Pass `base_rate=pd.Series(dtype=float)` to
#    `teacher_interests` for every test user. *Check:* its recall rises (0.33 to about 0.39)
#    and its personalization falls (0.78 to about 0.73), and "90s crime film" becomes its
#    most common interest (about 124 users instead of 65); explain the trade.
# 4. **Sampling.** Generate the live users' interests with
#    `generation.GenerationConfig(max_new_tokens=48, temperature=0.7)`. *Check:* all three
#    answers differ from the greedy ones, a second call returns the same three (each
#    prompt's seed comes from the config's seed and the prompt), and `seed=1` changes them.
#    Compare the parse report's malformed count with the greedy one.
# 5. **A looser filter.** Read the committed samples (`selftrain.load()`), set
#    `selftrain.MIN_GROUNDING = 0.4` and count what `selftrain.passes` and `selftrain.pick`
#    keep. *Check:* 91 samples pass and 75 prompts keep one (59 and 51 at 0.6); allowing
#    one unsupported phrase instead (`MAX_HALLUCINATION = 0.2`, grounding back at 0.6)
#    keeps 78. Which judge would you loosen for a second round, and what would you watch
#    on test to know it went too far?
