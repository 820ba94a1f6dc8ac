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
# # 03 · The LLM dual encoder: one model for members and items
#
# LinkedIn replaced the two towers of its Feed retrieval with **one** causal LLM (arXiv
# 2510.14223): the same network reads a member prompt and a post prompt, mean-pools its token
# states into one vector each, and is fine-tuned with InfoNCE so that members land near the posts
# they engage with. In this chapter you build that model from SmolLM2-135M and the prompts of
# chapter 01, train it (live, briefly; and from a committed full-mode adapter), and measure it
# against zero-shot SmolLM2 and the chapter-02 baselines on the same split and catalogue.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
recipe_name = "infonce"

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import config, data, evaluate, plots, recipes, train
from llmrec_lib.encoders import DualEncoder

chapter_t0 = time.perf_counter()
enc_cfg, live_cfg = recipes.recipe(recipe_name, "quick")  # the live demos are short in both modes
_, full_cfg = recipes.recipe(recipe_name, "full")
cfg = config.settings("03", mode, seed=seed, backbone=f"{enc_cfg.backbone}, first {enc_cfg.n_layers} layers, LoRA r={enc_cfg.lora_r}",
                      quick={"live training steps": live_cfg.steps, "evaluated model": "committed full-mode adapter",
                             "pairs per step": live_cfg.batch_size},
                      full={"live training steps": live_cfg.steps, "training steps": full_cfg.steps,
                            "evaluated model": "the adapter trained in this run",
                            "pairs per step": full_cfg.batch_size})
cfg.show()

# %% [markdown]
# **Learning goals**
#
# - Build training pairs (member prompt, next engaged item) that never peek at the future.
# - Write InfoNCE with in-batch negatives and say what the temperature does.
# - Fine-tune a shared LLM with LoRA, interrupt it, and resume it without losing a step.
# - Measure throughput as pairs/s and as a share of the machine's matmul peak.
# - Compare fine-tuned, zero-shot and classic retrieval on the full catalogue, warm and cold.

# %% [markdown]
# ## 1. Training pairs
#
# A pair is one member's prompt, rendered from the positives they made **strictly before** a
# positive at time t, and the item they engaged with at t. Every earlier positive of every user in
# the training histories gives one pair; nothing from the validation or test windows is used.

# %%
setting = recipes.build_setting(cfg.data_dir)
pairs = train.training_pairs(setting.split.train)
print(f"{len(pairs):,} training pairs from {len(np.unique(pairs.user_id))} users")
i = int(np.flatnonzero(pairs.hist_end - pairs.hist_start >= 3)[0])
h = pairs.history.iloc[pairs.hist_start[i] : pairs.hist_end[i]]
assert (h["timestamp"] < pairs.timestamp[i]).all() and (h["user_id"] == pairs.user_id[i]).all()

# %% [markdown]
# What the model reads for that pair: the member prompt (marker tokens from chapter 01, newest
# items kept within 128 tokens) and the item prompt (title, genres, popularity bucket).

# %%
model = DualEncoder(enc_cfg)
live = train.Trainer(model, pairs, setting.item_text, setting.history_text, live_cfg, progress=False)
print("USER:", live.user_prompts_for(np.array([i]))[0][:400])
print("ITEM:", setting.item_text[pairs.item_id[i]])

# %% [markdown]
# ## 2. InfoNCE with in-batch negatives
#
# For a batch of B pairs, each member's own item is the positive and the other B - 1 items of the
# batch are its negatives:
#
# $$\mathcal{L} = -\frac1B \sum_i \log \frac{\exp(\cos(u_i, v_i)/\tau)}{\sum_j \exp(\cos(u_i, v_j)/\tau)}$$
#
# The temperature $\tau$ (0.05 here, as sentence-transformers' default scale of 20) sharpens the
# softmax: cosines live in [-1, 1], and without it the loss could barely tell a close item from a
# far one. Two refinements from chapter 04's list are on by default: a column is **masked** when
# it holds the same movie as the row's positive (a duplicate in the batch is not a negative) or a
# movie the member already liked. Before any training the loss sits near $\log B$, the loss of
# guessing:

# %%
batch = live.make_batch(0)
with np.errstate(all="ignore"):
    loss0 = float(live.compute_loss(batch))
print(f"loss before training {loss0:.3f} vs log(B) = {np.log(live_cfg.batch_size):.3f}")
assert abs(loss0 - np.log(live_cfg.batch_size)) < 0.5

# %% [markdown]
# ## 3. A short live run, interrupted and resumed
#
# Training stops and restarts: a laptop sleeps, a job is pre-empted. The trainer writes a
# checkpoint with the adapter, optimizer, scheduler, random state and position in the data, and
# each step's batch is a pure function of (seed, step), so a resumed run continues with exactly
# the batches the uninterrupted one would have seen. We stop half-way and resume.

# %%
import tempfile

run_dir = tempfile.mkdtemp(prefix="ch03-live-")
half = live_cfg.steps // 2
first = recipes.train_recipe(recipe_name, "quick", setting=setting, out_dir=run_dir, stop_at=half)
resumed = recipes.train_recipe(recipe_name, "quick", setting=setting, out_dir=run_dir)
steps_seen = [h["step"] for h in resumed.state.history]
print(f"first run stopped at step {first.state.step}; resumed from {resumed.resumed_from}; "
      f"steps recorded {steps_seen[0]}..{steps_seen[-1]}")
assert resumed.resumed_from == half and steps_seen == list(range(1, live_cfg.steps + 1))

# %% [markdown]
# ### Throughput, and how much of the machine it uses
#
# Pairs per second is what a reader feels; **model FLOPs utilisation** (MFU) says how far that
# is from what the hardware could do. We count the FLOPs of the forward and backward passes over
# the tokens each step actually computed (padding included, since it is computed too; LoRA keeps
# the base weights frozen, so backward costs about two forwards, not three) and divide by the
# bf16 matmul peak measured just now on the same machine.

# %%
throughput = train.utilisation(resumed, peak_gflops=train.matmul_peak_gflops())
pd.Series(throughput).round(3)

# %%
assert 0 < throughput["mfu"] < 1  # a utilisation, measured against this machine's own peak

# %% [markdown]
# ## 4. The full-mode run
#
# Quick mode cannot train this model to its real quality on two CPU cores, so the book ships
# the adapter that full mode trained (about 0.5 MB of LoRA weights in bf16), together with the
# command that regenerates it. Quick mode loads it; full mode retrains it here first.

# %%
adapter_dir = recipes.ARTIFACTS / recipe_name
if cfg.mode == "full":
    t0 = time.perf_counter()
    trainer = recipes.train_recipe(recipe_name, "full", setting=setting, evaluate_every=400)
    recipes.publish(trainer, recipe_name, time.perf_counter() - t0,
                    f"python -m llmrec_lib.recipes train {recipe_name} --mode full --eval-every 400")
    recipes.evaluate_published(recipe_name, setting, "test", save=True)  # chapter 09's top-100 lists
meta = json.loads((adapter_dir / "encoder.json").read_text())["meta"]
print(meta["command"])
print({k: meta[k] for k in ("steps_done", "pairs_seen", "n_pairs", "wall_seconds", "hardware")})

# %%
curve = pd.read_csv(adapter_dir / "loss.csv")
evals = pd.DataFrame(meta["evals"])
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
axes[0].plot(curve["step"], curve["loss"].rolling(50, min_periods=1).mean(), color=plots.COLORS["history"])
axes[0].axhline(np.log(full_cfg.batch_size), ls="--", color="grey", label="log B (guessing)")
axes[0].set(title="Full-mode InfoNCE loss falls below chance", xlabel="step", ylabel="loss (50-step mean)")
axes[0].legend()
axes[1].plot(evals["step"], evals["eval_recall@50"], marker="o", color=plots.COLORS["test"])
axes[1].set(title="Validation Recall@50 during training (150 users)", xlabel="step", ylabel="Recall@50")
fig.tight_layout()

# %%
assert meta["loss_last_50"] < meta["loss_first_50"] - 0.2  # the loss fell during the full run

# %% [markdown]
# ## 5. Zero-shot vs fine-tuned, on the test stage
#
# Now the same model twice: with its LoRA adapter at zero (zero-shot: SmolLM2's first 8 layers
# as they come) and with the trained adapter. Both encode the whole catalogue from item prompts
# and each test user from their prompt; the evaluation protocol is chapter 02's.

# %%
test_data = evaluate.EvalData.from_split(setting.split, "test", setting.ml.item_ids)
zero = DualEncoder(enc_cfg)
tuned = DualEncoder(enc_cfg).load_adapter(adapter_dir)
ZERO = "SmolLM2 zero-shot (8 layers, user prompt)"
TUNED = f"SmolLM2 fine-tuned ({'this run' if cfg.mode == 'full' else 'full-mode adapter'})"
systems, res = {}, {}
for name, m in [(ZERO, zero), (TUNED, tuned)]:
    systems[name] = recipes.dual_encoder_system(m, setting, "test", name=name)
    res[name] = evaluate.evaluate(systems[name], test_data, ks=(10, 50, 100))
table = pd.concat({n: r.summary().loc[["recall@10", "recall@50", "recall@100", "ndcg@10"]] for n, r in res.items()})
table.round(4)

# %% [markdown]
# ### Against the chapter-02 baselines
#
# The baselines' numbers come from `results/ch02.json`, written by chapter 02 on the same split
# and catalogue, never copied by hand.

# %%
ch02 = json.loads((config.results_dir() / "ch02.json").read_text())
base = pd.DataFrame(ch02["table"])
base = base[(base["stage"] == "test") & (base["metric"] == "recall@50")]
ours = pd.DataFrame([{"system": n, "mean": r.summary().loc["recall@50", "mean"],
                      "lo": r.summary().loc["recall@50", "lo"], "hi": r.summary().loc["recall@50", "hi"]}
                     for n, r in res.items()])
board = pd.concat([base[["system", "mean", "lo", "hi"]], ours], ignore_index=True).sort_values("mean", ascending=False)
fig = plots.bars_with_ci(board, "mean", "lo", "hi", "system",
                         "Fine-tuning beats zero-shot; collaborative baselines stay far ahead")
fig.axes[0].set_xlabel(f"test Recall@50, 95% CI (chapter-02 baselines: {ch02['mode']} mode)")
board.round(4)

# %% [markdown]
# Two findings, both asserted below. Fine-tuning lifts SmolLM2 well clear of its zero-shot self:
# the intervals do not overlap, and Recall@50 at least doubles. But on all test targets the
# collaborative baselines of chapter 02 are still far ahead: item-kNN finds more than twice as
# many of the targets in its top 50. LinkedIn's LLM replaced a retrieval stack that included
# collaborative filtering; at this scale (8 of 30 layers of a 135M model, one pass over ~26k pairs
# on two CPU cores) ours does not, and the gap is the honest headline of this chapter.

# %%
z, t = res[ZERO].summary(), res[TUNED].summary()
knn = base[base["system"] == "item-kNN"].iloc[0]
assert t.loc["recall@50", "lo"] > z.loc["recall@50", "hi"]  # fine-tuning beats zero-shot, intervals apart
assert t.loc["recall@50", "mean"] > 2 * z.loc["recall@50", "mean"]  # and at least doubles Recall@50
assert knn["mean"] > 2 * t.loc["recall@50", "mean"]  # item-kNN still finds more than twice as many
assert knn["lo"] > t.loc["recall@50", "hi"]

# %% [markdown]
# ### Cold-start items
#
# A test target is **cold** when nobody rated it in the training histories. An ID model has no
# vector for it and can never retrieve it; the LLM reads its title, genres and popularity bucket
# (bucket 0: unseen) like any other item's.

# %%
cold = {n: r.segment("cold").summary().loc["recall@100"] for n, r in res.items()}
cold_02 = pd.DataFrame(ch02["cold"]).set_index("system")
cold_table = pd.concat([
    cold_02[["cold recall@100", "lo", "hi"]].rename(columns={"cold recall@100": "mean"}),
    pd.DataFrame(cold).T[["mean", "lo", "hi"]],
])
cold_table.round(4)

# %% [markdown]
# Here the picture turns: the ID models of chapter 02 (item-kNN, SASRec) score exactly zero on
# cold targets, and the fine-tuned LLM retrieves some of them, with an interval that stays
# above zero. This is the ID models' structural blind spot and the text model's first real win.

# %%
sasrec_cold = cold_02.loc["SASRec-style"]
assert sasrec_cold["cold recall@100"] == 0.0 and cold_02.loc["item-kNN", "cold recall@100"] == 0.0
assert cold[TUNED]["lo"] > sasrec_cold["hi"]  # the LLM retrieves cold items; the ID model cannot

# %% [markdown]
# ### Nearest movies, before and after
#
# Fine-tuning on co-engagement changes what "similar" means: before, neighbours share words;
# after, they share audiences.

# %%
items = setting.ml.movies.set_index("item_id")
col = pd.Series(np.arange(len(setting.ml.item_ids)), index=setting.ml.item_ids)
probe = {"Toy Story": 1, "The Matrix": 2571, "Pulp Fiction": 296}
rows = []
for label, iid in probe.items():
    for name in (ZERO, TUNED):
        v = systems[name].model.item_vectors
        sims = v @ v[col[iid]]
        top = [int(setting.ml.item_ids[j]) for j in np.argsort(-sims)[1:6]]
        rows.append({"movie": label, "model": name, "nearest": "; ".join(items.loc[top, "title"])})
pd.DataFrame(rows)

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **LinkedIn** (Recall@10, secondary write-ups of the paper [S]): LLaMA-3 without fine-tuning
# 0.243, InfoNCE fine-tuned 0.424 (+74%), with a 3B model on about 5M member-item pairs.
# **We measure** (test Recall@10, full catalogue, 602 users): the numbers in the table above,
# from the committed full-mode adapter (SmolLM2's first 8 layers, LoRA r=8, see the command in
# section 4). Ours are far lower in absolute terms because MovieLens titles say less about a
# film than a post's text says about a post, the model is over 20x smaller (and we train 8 of its
# 30 layers), it sees about 0.5% as many pairs, and our ranking covers the whole catalogue.
# ```

# %%
lift = t.loc["recall@10", "mean"] / max(z.loc["recall@10", "mean"], 1e-9) - 1
paper_lift = 0.424 / 0.243 - 1
print(f"relative lift from fine-tuning, Recall@10: ours {lift:+.0%}, LinkedIn {paper_lift:+.0%}")

# %% [markdown]
# ### Where the gap comes from, and what the next chapters try
#
# These are hypotheses, each tested later rather than claimed here: the model sees only the last
# few liked titles (128 tokens, chapter 01 measured it); it trains 8 of 30 layers for one pass
# over the pairs; its in-batch negatives are 15 easy ones per pair (chapter 04 adds hard
# negatives); and MovieLens titles carry far less signal about a film than a post's text carries
# about a post. The validation curve above was still rising when training stopped.

# %%
assert evals["eval_recall@50"].iloc[-1] > evals["eval_recall@50"].iloc[0]  # still rising at the end

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "03", "mode": cfg.mode,
    "produced_by": {"live": f"{live_cfg.steps} live steps (quick mode shows mechanics only)",
                    "evaluated": f"adapter {adapter_dir.name}: {meta['command']}"},
    "test": {n: r.to_dict() for n, r in res.items()},
    "summary": {n: r.summary().to_dict(orient="index") for n, r in res.items()},
    "cold_recall@100": {n: dict(v) for n, v in cold.items()},
    "throughput_live": throughput,
    "full_run": {k: meta[k] for k in ("steps_done", "pairs_seen", "wall_seconds", "hardware", "throughput")},
    "relative_lift_recall@10": lift,
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
(config.results_dir() / "ch03.json").write_text(json.dumps(out, indent=2, default=float))
print(f"wrote results/ch03.json ({cfg.mode} mode, {out['chapter_seconds']:.0f} s)")

# %% [markdown]
# ## Summary
#
# 1. One shared LLM, mean pooling and cosine turn LinkedIn's retrieval into a few dozen lines.
# 2. Pairs come from positives strictly before each target; in-batch items are the negatives.
# 3. A checkpoint with optimizer, scheduler, RNG and data position makes training resumable exactly.
# 4. Fine-tuning at least doubles SmolLM2's zero-shot Recall@50 and lets it retrieve cold items.
# 5. On all targets item-kNN is still more than twice as good: the bar LLM retrieval must clear.
#
# ## Exercises
#
# 1. **Temperature.** Retrain the live run with `temperature=0.2` (edit a copy of the recipe:
#    `recipes.RECIPES["t02"] = (enc_cfg, dataclasses.replace(live_cfg, temperature=0.2))`).
#    Does the loss start closer to log B? *Check:* the first step's loss differs from the
#    default run's by more than 0.01.
# 2. **Last-token pooling.** Build `DualEncoder(dataclasses.replace(enc_cfg, pooling="last"))`
#    and compute the zero-shot Recall@50 on the test stage. *Check:* it is a number in [0, 1]
#    and you can say whether it is above or below mean pooling's (LinkedIn: last token -12.4%).
# 3. **Resume for real.** Start `python -m llmrec_lib.recipes train infonce --mode quick` in a
#    terminal, press Ctrl-C after a few steps, and run it again. *Check:* the progress bar starts
#    from the step of the last checkpoint, not from zero.
# 4. **Throughput.** Set `batch_size=32` and measure pairs/s. *Check:* pairs/s rises by less
#    than 2x, and explain why from the MFU.
