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

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
n_live = 3  # users the live zero-shot and fine-tuned generations cover (quick mode)

# %%
import json
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import backbones, config, generation, plots, recgpt, sft  # isort: skip

chapter_t0 = time.perf_counter()
cfg = config.settings("06", mode, seed=seed, backbone="smollm2-135m (all 30 layers), LoRA r=8 on q,k,v,o",
                      quick={"history budget (tokens)": recgpt.HISTORY_BUDGET, "live users": n_live,
                             "live SFT steps": 2, "judged generations": "committed artifacts/recgpt"},
                      full={"history budget (tokens)": recgpt.HISTORY_BUDGET,
                            "SFT steps": recgpt.default_sft_config("full").steps,
                            "judged generations": "this run (python -m llmrec_lib.recgpt full)"})
cfg.show()

# %% [markdown]
# **Learning goals**
#
# - Measure how many tokens a lifelong history costs, and halve it twice with item-level and
#   sequence-level compression.
# - Write a RecGPT-style interest-mining prompt and read what a 135M model makes of it.
# - Build a transparent teacher, distil it into the model with LoRA (loss on the answer only).
# - Judge interests with measured rates: grounding, predictiveness, diversity, hallucination.
# - Compare zero-shot and fine-tuned mining with bootstrap intervals, next to the paper's numbers.

# %% [markdown]
# ## 1. Lifelong histories do not fit: behaviour compression
#
# Taobao users have on average more than 37,000 behaviours; RecGPT's LLM reads 128k tokens.
# The paper keeps only **reliable** behaviours (purchases, carts, favourites, no plain clicks),
# shortens each **item** to a short summary, and compresses the **sequence**: behaviours are
# bucketed by day for the recent past, by month and then by year further back, and aggregated
# per item inside a bucket. With that, 98% of users fit in 128k tokens instead of 88%.
#
# MovieLens's analogue, built from training-time data only (`recgpt.build_setting`):
#
# | RecGPT | here |
# |---|---|
# | reliable behaviours | ratings >= 4 ("liked") or <= 2 ("disliked"); the lukewarm 2.5-3.5 dropped |
# | item summary | `Toy Story '95 (animation/family film)` instead of the full title, every genre and user tags |
# | day / month / year buckets | the same, relative to the user's latest rating |
# | 128k-token window | SmolLM2's 8,192-token window |

# %%
setting = recgpt.build_setting(cfg.data_dir)
split, tok = setting.split, setting.tokenizer
history = split.history("test")  # what a test-stage model may read: never the test window
tokens, fit = recgpt.compression_stats(history, setting.ml.movies, tok, tags=setting.train_tags,
                                       budgets=(2048, 4096, 8192))
tokens.describe().loc[["mean", "50%", "max"]].round(0)

# %% [markdown]
# One user's history, first in its raw form, then compressed (first lines of each):

# %%
u = int(tokens["raw"].sub(tokens["raw"].median()).abs().idxmin())  # the median user
raw_items = recgpt.raw_item_texts(setting.ml.movies, setting.train_tags)
print(recgpt.raw_history_texts(history[history.user_id == u], raw_items).iloc[0][:400], "...\n")
rel = recgpt.reliable_behaviours(history[history.user_id == u])
print(recgpt.compressed_history_texts(rel, setting.short).iloc[0][:400], "...")
print(f"\nuser {u}: {tokens.loc[u, 'raw']} tokens raw -> {tokens.loc[u, 'sequence-level']} compressed")

# %%
saving = 1 - tokens.sum() / tokens["raw"].sum()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].bar(saving.index, tokens.sum() / 1e6, color=plots.COLORS["history"])
axes[0].set(title="Each stage shortens every history", ylabel="tokens, all test users (millions)")
for b, c in zip(fit.index, ["#bbb", "#888", plots.COLORS["test"]]):
    axes[1].plot(fit.columns, fit.loc[b], marker="o", label=f"fits {b:,} tokens", color=c)
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
assert saving["sequence-level"] > 0.7  # measured 0.81 on the book's split
assert fit.loc[8192, "raw"] < 0.85 and fit.loc[8192, "sequence-level"] > 0.98

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
zero_gen = generation.CachedGenerator(generation.LocalGenerator("smollm2-135m", config=recgpt.generation_config()))
live_zero = zero_gen.generate([recgpt.interest_prompt(inputs["history_text"][u]) for u in live_users])
for u, t in zip(live_users, live_zero):
    print(f"user {u}: {t[:300]!r}\n")

# %% [markdown]
# Typical of a base model this small: titles copied from the history, sentences instead of
# phrases, lists cut off by the token limit. Parsing is strict about it: a malformed answer is
# counted, never silently turned into an empty list.

# %%
_, live_report = generation.parse_all(live_zero, recgpt.parse_phrases, name="zero-shot interests (live)", n=5)
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
print("teacher:", recgpt.teacher_interests(inputs["shown_liked"][u0], setting.itags, setting.base_rate))

# %% [markdown]
# ## 4. Judges: four measured rates
#
# The paper trains LLM judges on human labels (0.77-0.93 agreement) and reports human pass
# rates. Ours are rules anyone can rerun (`recgpt.judge_interests`):
#
# - **grounding**: the interest is supported by at least 3 of the user's liked films (every
#   category it names is the film's, its decade is the film's);
# - **hallucination**: supported by none of them;
# - **predictiveness**: share of the user's liked films in the *test window* (never shown to
#   any model) whose category (its most specific genre) is an interest's category;
# - **diversity**: distinct categories among the interests / 5.
#
# Applied to the teacher on every test user it shows what these rates look like for an answer
# built by counting: almost never about nothing, grounded in at least 3 films a bit more than
# half the time (it reads only the ~12 films the prompt shows, where a phrase seen twice can
# still be picked), and predictive for about a third of the next liked films: the future is
# only partly like the past.

# %%
teacher = {u: recgpt.teacher_interests(inputs["shown_liked"][u], setting.itags, setting.base_rate)
           for u in inputs["users"]}
judge = dict(history=inputs["liked"], future=inputs["future"], facts=setting.facts, n_requested=recgpt.N_INTERESTS)
judged = {"teacher (counting)": recgpt.judge_interests(teacher, **judge)}
recgpt.rate_table(judged).round(3)

# %%
t_rates = judged["teacher (counting)"].mean()
assert t_rates["hallucination"] < 0.01 and t_rates["grounding"] > 0.5  # measured 0.002 and 0.57

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
first = sft.SFTTrainer(backbones.load_backbone("smollm2-135m"), pairs, live_cfg, run_dir, progress=False).train(stop_at=1)
again = sft.SFTTrainer(backbones.load_backbone("smollm2-135m"), pairs, live_cfg, run_dir, progress=False).train()
print(f"resumed from step {again.resumed_from}; losses {[round(h['loss'], 3) for h in again.state.history]}")
assert again.resumed_from == 1 and [h["step"] for h in again.state.history] == [1, 2]

# %% [markdown]
# The full-mode run (`python -m llmrec_lib.recgpt full`) trains the same way for longer and
# commits its adapter (bf16 safetensors, under 2 MB) with every generation. Quick mode reads
# the committed run (printed below: the defaults, 120 SFT steps of 8 examples and 120 sampled
# test users; 20 minutes on the book's 2-core machine, 14 of them fine-tuning); full mode
# retrains here.

# %%
art = recgpt.artifacts_dir()
if cfg.mode == "full":
    recgpt.run_full(command="python -m llmrec_lib.recgpt full --users 120")
meta = json.loads((art / recgpt.META).read_text())
log = json.loads((art / recgpt.ADAPTER / "sft.json").read_text())
print(meta["command"])
print({k: meta[k] for k in ("n_train_examples", "n_val_examples", "val_loss_base", "val_loss_tuned", "wall_s")})
curve = pd.DataFrame(log["history"])
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(curve["step"], curve["loss"].rolling(10, min_periods=1).mean(), color=plots.COLORS["history"])
ax.set(title="Full-mode SFT: answer-token loss falls", xlabel="step", ylabel="loss (10-step mean)")
fig.tight_layout()

# %%
assert meta["val_loss_tuned"] < meta["val_loss_base"] - 0.5  # held-out users (measured 1.80 -> 0.66)

# %% [markdown]
# The same live users, now with the committed adapter:

# %%
tuned_gen = generation.CachedGenerator(generation.LocalGenerator(
    "smollm2-135m", str(art / recgpt.ADAPTER), config=recgpt.generation_config()))
live_tuned = tuned_gen.generate([recgpt.interest_prompt(inputs["history_text"][u]) for u in live_users])
for u, t in zip(live_users, live_tuned):
    print(f"user {u}: {t!r}")

# %% [markdown]
# ## 6. Zero-shot vs fine-tuned, judged
#
# Both models mined interests for the same test users in the committed run (greedy decoding,
# the prompt of section 2; its command is printed in section 5). Each judge rate is a mean over
# users with a 95% bootstrap interval.

# %%
gens = recgpt.read_generations(art / recgpt.GENERATIONS)
mined = {src: recgpt.phrases_from_generations(gens, src, "interests") for src in ("zero-shot", "fine-tuned")}
users = meta["users"]
TUNED = f"SmolLM2 + LoRA ({meta['sft_config']['steps']} steps)"
judged = {
    "SmolLM2 zero-shot": recgpt.judge_interests(mined["zero-shot"], **judge),
    TUNED: recgpt.judge_interests(mined["fine-tuned"], **judge),
    "teacher (counting)": recgpt.judge_interests({u: teacher[u] for u in users}, **judge),
}
rates = recgpt.rate_table(judged)
rates.pivot(index="judge", columns="system", values="mean").round(3)

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 2.8), sharey=True)
for ax, j in zip(axes, ["grounding", "predictiveness", "diversity", "hallucination"]):
    plots.bars_with_ci(rates[rates.judge == j].reset_index(drop=True), "mean", "lo", "hi", "system", j, ax=ax)
axes[0].figure.suptitle(f"Fine-tuning makes interests grounded, predictive and diverse, not less invented ({len(users)} test users)", y=1.04)
fig.tight_layout()

# %%
z = rates[rates.system == "SmolLM2 zero-shot"].set_index("judge")
t = rates[rates.system == TUNED].set_index("judge")
tt = rates[rates.system == "teacher (counting)"].set_index("judge")
for j in ("grounding", "predictiveness", "diversity"):
    assert t.loc[j, "lo"] > z.loc[j, "hi"], j  # fine-tuned above zero-shot, intervals apart
assert t.loc["hallucination", "lo"] < z.loc["hallucination", "hi"]  # hallucination: no difference shown
assert tt.loc["grounding", "lo"] > t.loc["grounding", "hi"]  # the student stays below its teacher here
assert tt.loc["hallucination", "hi"] < t.loc["hallucination", "lo"]  # and here
for j in ("predictiveness", "diversity"):  # but is indistinguishable from it on these two
    assert t.loc[j, "lo"] < tt.loc[j, "hi"] and tt.loc[j, "lo"] < t.loc[j, "hi"], j

# %% [markdown]
# Three of the four judges move, with intervals apart: the fine-tuned model writes interests
# that its user's films support (grounding 0.12 -> 0.44 on the committed run), that name the
# categories of films they will like next (predictiveness 0.04 -> 0.38), and that differ from
# each other (diversity 0.08 -> 0.64). Hallucination does **not** fall: the zero-shot model
# copies titles from the prompt (supported, if useless), the student writes well-formed
# phrases that are sometimes wrong ("90s sci-fi" for a user with no sci-fi), about 30% of
# them in both cases. Against its teacher, the student matches it on predictiveness and
# diversity (intervals overlap) but stays below on grounding (0.44 vs 0.58) and cannot match
# its zero hallucination: 120 steps of LoRA on 960 examples taught the *form* and the
# category mix of an answer more than the counting behind each phrase. The paper's student
# beat its teacher after 19k filtered samples and a self-training round.

# %%
quoted = {"grounding": (0.12, 0.44, 0.58), "predictiveness": (0.04, 0.38, 0.36),
          "diversity": (0.08, 0.64, 0.65), "hallucination": (0.30, 0.29, 0.0)}  # zero-shot, tuned, teacher
if cfg.mode == "quick":  # the prose above quotes the committed run, which quick mode reads
    for j, vals in quoted.items():
        assert np.allclose([z.loc[j, "mean"], t.loc[j, "mean"], tt.loc[j, "mean"]], vals, atol=0.006), j

# %%
print("parse failures in the full run:")
for src, rep in meta["parse_reports"].items():
    print(f"  {src}: {rep['interests']['n_malformed']}/{rep['interests']['n']} malformed, {rep['interests']['reasons']}")

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **RecGPT** (human pass rate of mined interests): teacher 70.0%, base 14B model 59.7%,
# fine-tuned 77.3%; 16 interests per user; compression lets 98% of users fit 128k tokens (88%
# before). **We measure** (tables above): rule-based judge rates instead of human pass rates,
# 5 interests per user, a 135M model and a counting teacher. Our fine-tuned student copies the
# teacher's *style* and, after 120 steps, matches it on predictiveness and diversity but not on
# grounding or hallucination; the paper's student
# surpassed its teacher (77.3% vs 70.0%) with far more data and a self-training round.
# ```

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "06", "mode": cfg.mode,
    "produced_by": {"compression": "this run, all test users", "teacher": "this run, all test users",
                    "judged generations": f"artifacts/recgpt: {meta['command']}",
                    "live": f"{n_live} users, 2 SFT steps (mechanics only)"},
    "compression": {"tokens_total": tokens.sum().to_dict(), "saving": saving.to_dict(),
                    "fit": {str(b): fit.loc[b].to_dict() for b in fit.index}},
    "interest_judges": rates.to_dict(orient="records"),
    "sft": {k: meta[k] for k in ("val_loss_base", "val_loss_tuned", "n_train_examples", "timings_s")},
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
(config.results_dir() / "ch06.json").write_text(json.dumps(out, indent=2, default=float))
print(f"wrote results/ch06.json ({cfg.mode} mode, {out['chapter_seconds']:.0f} s)")

# %% [markdown]
# ## Summary
#
# 1. Reliable behaviours, short item texts and time buckets cut a history's tokens by about
#    four fifths; nearly every user's whole history then fits an 8k window.
# 2. A 135M base model asked for interests copies titles and writes sentences.
# 3. A counting teacher, distilled with LoRA on training-time examples, teaches it the task.
# 4. Judges as measured rates make "better interests" a claim with an interval.
#
# ## Exercises
#
# 1. **Budget.** Recompute `fit` with `budgets=(512, 1024)`. *Check:* at 512 tokens the
#    sequence-level share is below its 8,192 share, and still above the raw share.
# 2. **A stricter judge.** Rerun `recgpt.judge_interests` with `min_support=10`. *Check:* every
#    system's grounding falls or stays equal, and hallucination does not change.
# 3. **Teacher without the base rate.** Pass `base_rate=pd.Series(dtype=float)` to
#    `teacher_interests`. *Check:* the teacher's predictiveness changes; explain why "90s drama"
#    now appears for many users.
# 4. **Sampling.** Generate the live users' interests with
#    `generation.GenerationConfig(max_new_tokens=48, temperature=0.7)`. *Check:* the parse
#    report's malformed count is a number you can compare with the greedy one.
