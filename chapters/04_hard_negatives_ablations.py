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
# # 04 · Hard negatives and the ablations
#
# LinkedIn's paper (arXiv 2510.14223) is unusually generous with ablations: hard negatives
# (+2.0% Recall@10 for one per member, +3.6% for two), InfoNCE against BCE, positive-only
# against full histories, mean against last-token pooling. Each is one switch in our recipe.
# This chapter flips each switch once on the chapter-03 model, trains every variant the same
# way, and puts our effect, with a 95% interval, beside the paper's. At our scale some effects
# will be smaller than our noise; saying so, with the interval that shows it, is the result.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. On other data (your own, or a derived copy) sections 1 and 2 run live on your data,
# with the untrained model standing in for the committed base arm. The six arms of sections 3
# and 4, the longer-trained model and section 5's arms on chapter 03's base are committed
# adapters trained on the reference split, which would score users whose test movies they
# trained on: on other data they are not evaluated. Section 6's synthetic world does not
# depend on your data, so its result is the reference run's; it costs about three minutes, so
# on other data it runs only when you set `synthetic_everywhere = True`. The closing table,
# "Which claims hold on this data", lists every claim that was not run as "not tested".

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
headline = "recall@50"  # the most stable of our metrics on 602 test users
synthetic_steps = {"quick": 16, "full": 300}
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)
synthetic_everywhere = False  # section 6 on other data too (same world: same result)
retrain_arms = True  # full mode: retrain section 3's arms (about 3 h of 2 cores)

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from llmrec_lib import abtest, config, losses, plots, recipes, show, synthetic, train
from llmrec_lib import metrics as M
from llmrec_lib import results as records
from llmrec_lib.encoders import EncoderConfig

chapter_t0 = time.perf_counter()
enc_cfg, base_cfg = recipes.recipe("ablate-base", "full")
cfg = config.settings(
    "04",
    mode,
    seed=seed,
    backbone=f"{enc_cfg.backbone}, first {enc_cfg.n_layers} layers, LoRA "
    f"r={enc_cfg.lora_r}",
    quick={
        "ablation arms": "committed full-mode adapters, re-measured from their "
        "stored rankings",
        "arms on chapter 03's base": "committed (GPU-trained), re-measured likewise",
        "live": "hard-negative batches and losses; one arm re-encoded on 100 users; "
        f"synthetic check, MiniLM, {synthetic_steps['quick']} steps per arm",
    },
    full={
        "ablation arms": f"retrained here, {base_cfg.steps} steps each, then evaluated"
        if retrain_arms
        else "committed full-mode adapters (retrain_arms = False)",
        "arms on chapter 03's base": "committed (GPU-trained), re-measured from their "
        "stored rankings",
        "live": f"synthetic check, MiniLM, {synthetic_steps['full']} steps per arm",
    },
)
cfg.show()
print(config.data_status(cfg.data_dir))

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers ("two hard
# negatives change Recall@50 by no detectable amount") is asserted on the reference release
# and only recorded on other data; a mechanic (the checks in section 6's synthetic world,
# which is the same whatever data you run on) is asserted everywhere. Claims that need the
# committed adapters are recorded as not tested on other data, with the reason.

# %%
claims = config.Claims("04", path=cfg.data_dir)
NOT_HERE = "needs the committed ablation adapters, trained on the reference split"

# %% [markdown]
# **Learning goals**
#
# - Say what a hard negative is, where MovieLens has one, and what it costs per step.
# - Read an ablation as a paired comparison: same users, same items, one switch flipped.
# - Tell an effect from noise with a paired bootstrap interval, and say so when it is noise.
# - Check a claim in a synthetic world where the truth is known.

# %% [markdown]
# ## 1. Hard negatives in MovieLens
#
# LinkedIn's hard negatives are posts a member was **shown but did not engage with**: close
# enough to be served, wrong enough to be skipped. MovieLens has no impressions, but it has the
# nearest analogue: movies a user watched and rated 2 or lower (`data.NEGATIVE_MAX`). The
# trainer draws k of them per pair from the user's training ratings; a user with none gets
# random catalogue items instead, which are then only extra easy negatives. How often that
# happens decides how much the switch can do. The draw is
# `llmrec_lib/train.py::sample_hard_negatives` (open the cell to read it); the disliked movies
# per user come with the pairs from `train.py::training_pairs`.

# %% tags=["hide-output"]
show.source(train.sample_hard_negatives)

# %%
setting = recipes.build_setting(cfg.data_dir, verify=verify_data)
pairs = train.training_pairs(setting.split.train)
has_neg = np.array([len(pairs.negatives.get(int(u), ())) > 0 for u in pairs.user_id])
n_neg = pd.Series({u: len(v) for u, v in pairs.negatives.items()})
print(
    f"{has_neg.mean():.0%} of training pairs belong to a user with at least "
    "one disliked movie; "
    f"median {int(n_neg.median())} disliked movies per such user"
)

# %%
claims.check(  # most pairs get real hard negatives, some fall back to random
    "between half and all training pairs have a user with a real dislike",
    0.5 < has_neg.mean() < 1,
    detail=f"{has_neg.mean():.1%} of {len(has_neg):,} pairs",
)

# %% [markdown]
# One pair of a batch with k = 2: the member prompt, the positive, and the two disliked movies
# that are now in its denominator (drawn with replacement, so a user with one dislike sees
# it twice).

# %%
from llmrec_lib.encoders import DualEncoder

config.seed_everything(seed)
model = DualEncoder(enc_cfg)
_, hard2_cfg = recipes.recipe("ablate-hard2", "full")
trainer = train.Trainer(
    model, pairs, setting.item_text, setting.history_text, hard2_cfg, progress=False
)
batch = trainer.make_batch(0)
row = int(np.flatnonzero(has_neg[batch["index"]])[0])
print("USER:", batch["users"][row][-300:])
print("POSITIVE:", batch["items"][row])
print("HARD NEGATIVES:", *batch["hard"][2 * row : 2 * row + 2], sep="\n  ")

# %% [markdown]
# ## 2. What a hard negative does to the loss
#
# With k hard negatives, row i's softmax runs over the B in-batch items **and** its own k hard
# items, and the gradient now pushes the member away from the movies they disliked, not only
# from random ones. In `llmrec_lib/losses.py::InfoNCE` (chapter 03 shows its source) they are
# the `hard` argument: k extra columns per row, `einsum("bd,bkd->bk", users, hard)`, which no
# other row sees. Same batch, same vectors, k = 0 and k = 2:

# %%
with torch.no_grad(), config.autocast(model.device.type, enabled=True):
    u, v = model(
        model.tokenize(batch["users"], enc_cfg.user_max_tokens),
        model.tokenize(batch["items"] + batch["hard"], enc_cfg.item_max_tokens),
    )
u, v = u.float(), v.float()
b = len(batch["users"])
nce = losses.InfoNCE(temperature=hard2_cfg.temperature)
kw = {"item_ids": batch["item_ids"], "user_positives": batch["user_positives"]}
loss_k0 = float(nce(u, v[:b], **kw))
loss_k2 = float(nce(u, v[:b], hard=v[b:].reshape(b, 2, -1), **kw))
mask = losses.false_negative_mask(
    batch["item_ids"], batch["item_ids"], user_positives=batch["user_positives"]
)
print(
    f"loss k=0 {loss_k0:.3f}, k=2 {loss_k2:.3f}; {int(mask.sum())} in-batch "
    "columns masked as false negatives"
)

# %% [markdown]
# The loss is higher with k = 2, but that is arithmetic, not evidence: adding terms to a
# softmax's denominator can only raise the loss, so the chapter does not assert it. The claim
# the method rests on is one that can fail: **a disliked movie is a harder negative than a
# random in-batch item**, that is, a model trained without hard negatives scores it closer to
# the member. If it did not, the hard columns would add little to the loss or its gradient.
#
# We measure it with the committed base arm (section 3), trained without hard negatives, on 8
# batches of real pairs, keeping the rows whose user has a real dislike. (On other data the
# committed arm does not fit, so the untrained model of section 1 stands in for it: it never
# saw a dislike as a negative either, but it never learned from any pair at all, so read its
# number as a weaker version of the test.) Per member: the mean
# cosine to their two disliked movies minus the mean cosine to the batch's other items (false
# negatives masked out) and, for scale, the cosine to their positive minus that to their
# dislikes. Each with a 95% bootstrap interval over members.

# %%
if claims.artifacts_fit:
    base_model = DualEncoder.from_adapter(recipes.ARTIFACTS / "ablate-base")
    probe_model = "the committed base arm (400 steps, no hard negatives)"
else:  # the committed arm was trained on the reference split
    base_model = model
    probe_model = "the untrained model (the committed base arm fits the reference only)"
probe = train.Trainer(
    base_model,
    pairs,
    setting.item_text,
    setting.history_text,
    hard2_cfg,
    progress=False,
)
hard_gap, pos_gap = [], []
for step in range(8):
    bt = probe.make_batch(step)
    with torch.no_grad(), config.autocast(base_model.device.type, enabled=True):
        pu, pv = base_model(
            base_model.tokenize(bt["users"], enc_cfg.user_max_tokens),
            base_model.tokenize(bt["items"] + bt["hard"], enc_cfg.item_max_tokens),
        )
    pu = torch.nn.functional.normalize(pu.float(), dim=-1)
    pv = torch.nn.functional.normalize(pv.float(), dim=-1)
    n = len(bt["users"])
    sim = pu @ pv[:n].T  # (n, n): member i against every positive of the batch
    to_hard = torch.einsum("nd,nkd->nk", pu, pv[n:].reshape(n, 2, -1)).mean(1)
    other = losses.false_negative_mask(
        bt["item_ids"], bt["item_ids"], user_positives=bt["user_positives"]
    )
    other[torch.arange(n), torch.arange(n)] = True  # the own positive is no negative
    to_random = torch.where(other, torch.nan, sim).nanmean(1)
    real = has_neg[bt["index"]]  # rows whose user has a real dislike
    hard_gap += (to_hard - to_random)[torch.as_tensor(real)].tolist()
    pos_gap += (sim.diagonal() - to_hard)[torch.as_tensor(real)].tolist()
del base_model, probe
hard_ci = M.bootstrap_ci(hard_gap, seed=seed)
pos_ci = M.bootstrap_ci(pos_gap, seed=seed)
print(
    f"{probe_model}: {len(hard_gap)} members; cosine to dislikes minus to random items "
    f"{hard_ci.mean:+.3f} [{hard_ci.lo:+.3f}, {hard_ci.hi:+.3f}]; "
    f"to the positive minus to dislikes {pos_ci.mean:+.3f} "
    f"[{pos_ci.lo:+.3f}, {pos_ci.hi:+.3f}]"
)

# %% [markdown]
# Disliked movies are hard: the base model, which never saw them as negatives, puts them
# closer to the member than random movies of the batch (in the committed run by about 0.03 of
# cosine, with an interval well above zero), and about as far below the positive as above the
# random ones. Watched-but-disliked movies look like the member's taste, because the member
# chose to watch them. This is what gives the switch something to learn; whether it turns into
# recall is the question of section 4.

# %%
claims.check(  # dislikes score above random in-batch items: they are hard
    "a model that never saw dislikes as negatives scores them above random in-batch "
    "items (95% interval above 0)",
    hard_ci.lo > 0,
    detail=f"{hard_ci.mean:+.3f} [{hard_ci.lo:+.3f}, {hard_ci.hi:+.3f}] cosine, "
    f"{len(hard_gap)} members; model: {probe_model}",
)

# %% [markdown]
# The price is compute: every hard negative is one more item prompt through the LLM per pair.
# Tokens per step, counted on the same batch for each k:

# %%
tokens = {}
for k in (0, 1, 2):
    c = recipes.recipe(
        {0: "ablate-base", 1: "ablate-hard1", 2: "ablate-hard2"}[k], "full"
    )[1]
    bt = train.Trainer(
        model, pairs, setting.item_text, setting.history_text, c, progress=False
    ).make_batch(0)
    tokens[k] = sum(
        len(x)
        for x in model.tokenize(bt["users"], enc_cfg.user_max_tokens)["input_ids"]
    ) + sum(
        len(x)
        for x in model.tokenize(bt["items"] + bt["hard"], enc_cfg.item_max_tokens)[
            "input_ids"
        ]
    )
print(
    {f"k={k}": t for k, t in tokens.items()},
    f"-> k=2 computes {tokens[2] / tokens[0]:.2f}x the tokens of k=0",
)

# %% [markdown]
# That more negatives mean more tokens is true by construction, so there is nothing to assert.
# What they cost in time was measured when the committed arms were trained (section 3 loads
# their records): seconds per training step, relative to k = 0. Those runs shared two cores
# with other work, so read the ratios as rough; they are below the token ratio because a
# member prompt (up to 128 tokens, attention growing with its square) costs more per token
# than a short item prompt.

# %%
if claims.artifacts_fit:
    sec = {
        k: recipes.train_record(n)
        for k, n in ((0, "ablate-base"), (1, "ablate-hard1"), (2, "ablate-hard2"))
    }
    sec = {k: m["train_seconds_all_steps"] / m["steps_done"] for k, m in sec.items()}
    print({f"k={k}": f"{t:.2f} s/step ({t / sec[0]:.2f}x)" for k, t in sec.items()})
else:
    print("the committed arms' step times: reference data only (no arm trained here)")

# %% [markdown]
# ## 3. Six arms, one switch each
#
# Every arm is the chapter-03 recipe with exactly one change, trained in full mode for the same
# number of steps on the same batches (the batch order is a function of the seed and the step),
# and committed as a 0.5 MB adapter with the command that regenerates it. The arms are entries
# of `llmrec_lib/recipes.py::RECIPES`, trained by `recipes.py::train_recipe`:

# %%
ARMS = {
    "ablate-base": "InfoNCE, positives only, mean pooling (the base)",
    "ablate-hard1": "+ 1 hard negative",
    "ablate-hard2": "+ 2 hard negatives",
    "ablate-bce": "BCE instead of InfoNCE",
    "ablate-full-history": "full history (all ratings, with scores)",
    "ablate-last-token": "last-token pooling",
}
retrain = cfg.mode == "full" and retrain_arms
if retrain and claims.artifacts_fit:  # never publish adapters of other data
    for name in ARMS:
        t0 = time.perf_counter()
        tr = recipes.train_recipe(name, "full", setting=setting)
        recipes.publish(
            tr,
            name,
            time.perf_counter() - t0,
            f"python -m llmrec_lib.recipes train {name} --mode full",
        )
        recipes.evaluate_published(name, setting, "test", save=True)
metas = {n: recipes.train_record(n) for n in (ARMS if claims.artifacts_fit else ())}
pd.DataFrame(
    {
        n: {
            "command": m["command"],
            "steps": m["steps_done"],
            "pairs seen": m["pairs_seen"],
            "loss, first 50 steps": round(m["loss_first_50"], 3),
            "loss, last 50": round(m["loss_last_50"], 3),
        }
        for n, m in metas.items()
    }
).T

# %% [markdown]
# Evaluating an arm means encoding 9,742 item prompts with its adapter: about a minute and a
# half each on two cores. So the evaluation command (`python -m llmrec_lib.recipes evaluate
# NAME`) also stores each arm's top-100 list per test user beside its adapter, and quick mode
# re-measures every metric from those lists with chapter 02's protocol, in seconds. To show the
# stored lists are what the adapter produces, one adapter is re-encoded live on 100 test users
# and scored against its stored list: chapter 03's first recipe, `infonce`, whose vectors
# chapter 03 has already cached (a catalogue costs 2 to 6 minutes of two cores).
# On other data the arms, their lists and everything below up to section 6 are skipped: the
# adapters were trained on the reference split, and retraining six arms does not fit a quick
# run (each takes about half an hour of two cores, then a minute and a half to evaluate).

# %%
spot = "infonce"  # its item and user vectors are in chapter 03's cache
stored_res, agree = {}, None  # on other data: no arm, no stored list
if claims.artifacts_fit:
    rng = np.random.default_rng(seed)
    spot_users = np.sort(
        rng.choice(setting.split.users("test"), size=100, replace=False)
    )
    live_res = recipes.evaluate_published(spot, setting, "test", users=spot_users)
    stored_res = {n: recipes.stored_result(n, setting, "test") for n in ARMS}
    spot_stored = recipes.stored_result(spot, setting, "test")
    a = live_res.per_user.set_index("user_id")[headline]
    s = spot_stored.per_user.set_index("user_id").loc[a.index, headline]
    agree = float(np.mean(np.isclose(a.to_numpy(), s.to_numpy())))
    print(
        f"{spot}: live vs stored {headline} agree for {agree:.0%} of 100 users "
        f"(mean {a.mean():.4f} live, {s.mean():.4f} stored)"
    )

# %%
spot_claim = "the stored top-100 lists are what the adapter produces (>= 95% agree)"
if agree is None:
    claims.skip(spot_claim, NOT_HERE)
else:  # bf16 rounding may swap a near-tie, nothing more
    claims.check(spot_claim, agree >= 0.95, detail=f"{agree:.0%} of 100 users")

# %% [markdown]
# ## 4. The ablation table
#
# Each arm against the base on the same 602 test users: the mean difference per user in
# Recall@50 (our headline, the most stable of our metrics), its 95% paired-bootstrap interval
# and p-value, and the **minimum detectable effect** (MDE: the true difference this test finds
# with 80% power; a "no detectable effect" rules out effects of that size, not smaller ones).
# The paper reports Recall@10 only, so the table also gives our relative change in Recall@10,
# with its interval (users resampled together, `abtest.ratio_bootstrap`), beside the paper's.
#
# Where this lives: the paired interval is `llmrec_lib/evaluate.py::EvalResult.compare`
# (a bootstrap over users, `metrics.py::paired_bootstrap`), the relative one
# `abtest.py::ratio_bootstrap`, and the MDE `llmrec_lib/abtest.py::mde`, the formula that
# decides what "no detectable effect" rules out. Open the cell to read it:

# %% tags=["hide-output"]
show.source(abtest.mde)

# %%
PAPER = {  # LinkedIn, Recall@10 relative to its reference arm (secondary write-ups [S])
    "ablate-hard1": 0.020,
    "ablate-hard2": 0.036,
    "ablate-bce": 0.394 / 0.424 - 1,
    "ablate-full-history": 0.398 / 0.424 - 1,
    "ablate-last-token": -0.124,
}
rows = []
base = stored_res.get("ablate-base")  # None on other data: no arm is evaluated there
bm = base.mean(headline) if base is not None else None


def paired(name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """An arm's and the base's per-user metric, user by user."""
    a = stored_res[name].per_user.set_index("user_id")[metric]
    return a.to_numpy(float), base.per_user.set_index("user_id")[metric].loc[
        a.index
    ].to_numpy(float)


for name, label in ARMS.items():
    if name not in stored_res:  # other data: the keys later chapters read, left empty
        rows.append({"arm": label, "diff": None, "diff lo": None, "diff hi": None})
        continue
    r = stored_res[name].summary()
    row = {
        "arm": label,
        **{m: r.loc[m, "mean"] for m in ("recall@10", "recall@50", "recall@100")},
        f"{headline} lo": r.loc[headline, "lo"],
        f"{headline} hi": r.loc[headline, "hi"],
    }
    if name != "ablate-base":
        p = stored_res[name].compare(base, headline)
        rel = abtest.ratio_bootstrap(*paired(name, headline), seed=seed)
        rel10 = abtest.ratio_bootstrap(*paired(name, "recall@10"), seed=seed)
        a, b = paired(name, headline)
        a10, b10 = paired(name, "recall@10")
        row |= {
            "diff": p.mean_diff,
            "diff lo": p.lo,
            "diff hi": p.hi,
            "p": p.p_value,
            "MDE": abtest.mde(a - b),
            "ours, relative": p.mean_diff / bm,
            "relative lo": rel.lo,
            "relative hi": rel.hi,
            "ours, relative (R@10)": rel10.mean,
            "R@10 relative lo": rel10.lo,
            "R@10 relative hi": rel10.hi,
            "relative MDE (R@10)": abtest.mde(a10 - b10) / b10.mean(),
            "LinkedIn, relative (R@10)": PAPER[name],
        }
    rows.append(row)
table = pd.DataFrame(rows).set_index("arm")
table.round(4)

# %% [markdown]
# One metric per axis: the left panel is our Recall@50 alone; the right panel puts our
# Recall@10 beside the paper's Recall@10, the only metric the paper reports.

# %%
t = table.dropna(subset=["diff"])
if len(t):  # other data: no arm, no figure
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    y = np.arange(len(t))
    for ax, col, lo, hi, metric in (
        (axes[0], "ours, relative", "relative lo", "relative hi", "Recall@50"),
        (
            axes[1],
            "ours, relative (R@10)",
            "R@10 relative lo",
            "R@10 relative hi",
            "Recall@10",
        ),
    ):
        ax.errorbar(
            t[col],
            y,
            xerr=[t[col] - t[lo], t[hi] - t[col]],
            fmt="o",
            capsize=3,
            color=plots.COLORS["test"],
            label=f"ours, test {metric} (95% CI)",
        )
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel(f"relative change in {metric} vs the base arm")
        ax.set_title(f"{metric}")
    axes[1].scatter(
        t["LinkedIn, relative (R@10)"],
        y,
        marker="D",
        color="black",
        zorder=3,
        label="LinkedIn, Recall@10 (no interval reported)",
    )
    axes[0].set_yticks(y, t.index)
    axes[0].invert_yaxis()
    for ax in axes:  # below the panel, clear of the rows
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle("Each switch against the base arm, one metric per panel", fontsize=10)
    fig.tight_layout()

# %% [markdown]
# What the table says, switch by switch (each asserted below):
#
# - **Hard negatives**: no effect we can detect, and the test could only have detected a large
#   one. One or two disliked movies per pair leave Recall@50 where it was, with intervals on
#   both sides of zero; the MDE (printed below) is about 0.010 of Recall@50, a quarter of the
#   base arm's 0.044. LinkedIn's +2.0% / +3.6% are several times smaller than what our 602
#   test users can resolve (exercise 3 asks how many users they would need). On Recall@10,
#   the paper's metric, our test is weaker still: its relative MDE is about 60%, against the
#   paper's +2.0% / +3.6%. And a disliked movie is a weaker signal than a post shown in the
#   feed and skipped: the user chose to watch it.
# - **BCE instead of InfoNCE**: far worse, in the paper's direction but much further. BCE scores
#   each pair on its own against a fixed threshold; this arm reuses InfoNCE's temperature
#   (0.05, the sentence-transformers default; the paper gives none) and a fixed bias, none of
#   them tuned for BCE, and after 400 steps it has not learned to rank, while InfoNCE only has
#   to order a row. LinkedIn's BCE lost 7%.
# - **Full history**: worse, as in the paper. With ratings shown, low-rated movies take room in
#   the same 128-token prompt, so fewer liked movies fit, and the model must learn what a
#   score means.
# - **Last-token pooling**: worse, as in the paper (-12.4% there). A causal model's last token
#   has seen the whole prompt, but one position is a narrow summary after only 400 steps.

# %%
diffs = table.dropna(subset=["diff"])
names = {label: name for name, label in ARMS.items()}
for arm in diffs.index.intersection(["+ 1 hard negative", "+ 2 hard negatives"]):
    r = diffs.loc[arm]
    print(
        f"{arm}: {headline} {r['diff']:+.4f} "
        f"[{r['diff lo']:+.4f}, {r['diff hi']:+.4f}], "
        f"MDE {r['MDE']:.4f} ({r['MDE'] / bm:.0%} of the base arm's {bm:.3f}); "
        f"Recall@10 {r['ours, relative (R@10)']:+.0%} [{r['R@10 relative lo']:+.0%}, "
        f"{r['R@10 relative hi']:+.0%}], relative MDE {r['relative MDE (R@10)']:.0%} "
        f"(LinkedIn {PAPER[names[arm]]:+.1%})"
    )
for arm, worse in (
    ("+ 1 hard negative", False),  # no detectable effect
    ("+ 2 hard negatives", False),
    ("BCE instead of InfoNCE", True),  # significantly worse: the paper's direction
    ("full history (all ratings, with scores)", True),
    ("last-token pooling", True),
):
    claim = (
        f"{arm}: {headline} significantly below the base arm (interval below 0)"
        if worse
        else f"{arm}: no detectable change in {headline} (interval spans 0)"
    )
    if arm not in diffs.index:
        claims.skip(claim, NOT_HERE)
        continue
    lo, hi = diffs.loc[arm, "diff lo"], diffs.loc[arm, "diff hi"]
    claims.check(
        claim,
        hi < 0 if worse else lo < 0 < hi,
        detail=f"{diffs.loc[arm, 'diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]",
    )

# %% [markdown]
# ### Longer training, for scale
#
# The arms train 400 steps, so that all six fit in an evening of two CPU cores. Chapter 03's
# committed model is the base arm trained four times as long (1,600 steps). Its gain over the
# base is the yardstick for the switches above: what more steps buy, against what each switch
# buys.

# %%
long_claim = f"1,600 steps beat the 400-step base arm on {headline} (interval above 0)"
p_long = None
if claims.artifacts_fit:
    longer = recipes.stored_result("infonce", setting, "test")
    p_long = longer.compare(base, headline)
    print(
        f"1,600 vs 400 steps: {headline} {longer.mean(headline):.4f} vs {bm:.4f}, "
        f"diff {p_long.mean_diff:+.4f} [{p_long.lo:+.4f}, {p_long.hi:+.4f}], "
        f"p={p_long.p_value:.3f}"
    )
    claims.check(  # four times the steps helps more than any switch above
        long_claim,
        p_long.lo > 0,
        detail=f"{p_long.mean_diff:+.4f} [{p_long.lo:+.4f}, {p_long.hi:+.4f}]",
    )
else:
    claims.skip(long_claim, "needs the committed 'infonce' model and the base arm")

# %% [markdown]
# ## 5. The switches again, on chapter 03's popularity-aware base
#
# The six arms above flip a switch on the first-edition recipe: 400 steps of one
# (member, next movie) pair per forward, a 128-token history and no log-Q correction. That
# recipe scores below popularity. Chapter 03's second recipe, `mixed`, is the LinkedIn arm
# the book now serves: a pair at every item boundary of one 256-token forward, log-Q, 32
# uniformly drawn catalogue items shared by the batch, 800 steps with validation early
# stopping. A switch that did nothing on a weak model may matter on a strong one, so each
# switch is flipped again on `mixed`, with two more from chapter 01's prompt design:
#
# - **titles only** in the history (no genres): more movies fit the 256 tokens;
# - popularity written as the **raw count** (`[POP] 173`) instead of the decile token
#   (`[POP_9]`), the choice chapter 01 explains and LinkedIn made for buckets.
#
# BCE gets what section 4's arm did not: its own temperature and bias, chosen on validation
# from a 2 x 2 grid (0.05 or 0.1; 0.25 or 0.5). Each arm is a recipe in
# `recipes.py::MIXED_ABLATIONS`, trained by the same `recipes train NAME --mode full
# --eval-every 200` as `mixed`. The base has three seeds (chapter 03), and so does the
# raw-count arm; the others have one.
#
# **Where they were trained.** Twelve runs of `mixed`'s cost are about 15 hours of two CPU
# cores (75 minutes each). They ran side by side on one NVIDIA H200 in about 11 minutes, ten
# and then two (`tools/train_recipes.py`; each adapter's `encoder.json` names the machine;
# the commands are in `results/full/README.md`). Chapter 10
# shows that lists from the GPU and from this CPU agree. In both modes this section
# re-measures the committed top-100 lists; nothing here trains.

# %%
NEW_BASE = ["mixed"] + recipes.seeds_of("mixed")
NEW_ARMS = {
    "mixed-hard1": "+ 1 hard negative",
    "mixed-hard2": "+ 2 hard negatives",
    "mixed-full-history": "full history (all ratings, with scores)",
    "mixed-last-token": "last-token pooling",
    "mixed-titles": "titles only in the history",
    "mixed-pop-count": "popularity as a raw count",
}
BCE_GRID = recipes.BCE_GRID  # name -> (temperature, bias)


def best_valid(name: str) -> tuple[int, float]:
    """The step and Recall@50 (150 validation users) of the adapter that was kept."""
    best = max(recipes.train_record(name)["evals"], key=lambda e: e["eval_recall@50"])
    return best["step"], best["eval_recall@50"]


# %% [markdown]
# ### BCE's temperature and bias, chosen on validation
#
# The rule, fixed before the grid was trained: the highest Recall@50 of the kept adapter on
# the 150 validation users of early stopping; a grid point within 0.005 of the best loses
# to section 4's setting (0.05, 0.5) if that is among them. Test plays no part.

# %%
bce_pick, bce_valid = None, None
if claims.artifacts_fit:
    bce_valid = pd.DataFrame(
        {
            n: {"temperature": t, "bias": b, "valid recall@50": best_valid(n)[1]}
            for n, (t, b) in BCE_GRID.items()
        }
    ).T
    top = bce_valid["valid recall@50"].max()
    near = bce_valid.index[bce_valid["valid recall@50"] >= top - 0.005]
    old = [n for n in near if BCE_GRID[n] == (0.05, 0.5)]
    bce_pick = old[0] if old else bce_valid["valid recall@50"].idxmax()
    print(f"chosen on validation: {bce_pick} {BCE_GRID[bce_pick]}")
    NEW_ARMS[bce_pick] = "BCE, own temperature and bias"
bce_valid

# %% [markdown]
# ### Each switch against three seeds of the base
#
# One seed of a switch against three of the base cannot say how much the switch's own seed
# moves it. So each row shows three things: the paired interval over users (against the
# base's seed mean), the seed-aware interval (`abtest.seed_aware_diff`, which adds the base's
# seed noise; for the raw-count arm, its own three seeds' too) and the **base's seed range**
# (best seed minus worst). The rule, stated before the table: a switch changes Recall@50
# when its seed-aware interval excludes 0 **and** the change is larger than that range; it
# is within seed noise when the change is smaller than the range.

# %%
new_res, new_table, seed_range = {}, None, None
if claims.artifacts_fit:
    for n in NEW_BASE + [a for arm in NEW_ARMS for a in [arm, *recipes.seeds_of(arm)]]:
        new_res[n] = recipes.stored_result(n, setting, "test")
    users = new_res["mixed"].per_user["user_id"].to_numpy()

    def per_user(names: list[str]) -> np.ndarray:
        """(seeds, users) test Recall@50 of the runs ``names``, the base's users."""
        return np.stack(
            [
                new_res[n].per_user.set_index("user_id")[headline].reindex(users)
                for n in names
            ]
        )

    base_runs = per_user(NEW_BASE)
    base_means = base_runs.mean(axis=1)
    seed_range = float(np.ptp(base_means))
    print(f"base seeds {np.round(base_means, 4)}: range {seed_range:.4f}")
    rows = []
    for name, label in NEW_ARMS.items():
        runs = per_user([name, *recipes.seeds_of(name)])
        d = abtest.seed_aware_diff(runs, base_runs)
        u = M.paired_bootstrap(runs.mean(axis=0), base_runs.mean(axis=0), seed=seed)
        moved = (d.lo > 0 or d.hi < 0) and abs(d.mean_diff) > seed_range
        rows.append(
            {
                "switch": label,
                "recipe": name,
                "seeds": len(runs),
                "valid recall@50": best_valid(name)[1],
                "test recall@50": runs.mean(),
                "diff": d.mean_diff,
                "users lo": u.lo,
                "users hi": u.hi,
                "seed-aware lo": d.lo,
                "seed-aware hi": d.hi,
                "base seed range": seed_range,
                "verdict": "changes"
                if moved
                else (
                    "within seed noise" if abs(d.mean_diff) < seed_range else "unclear"
                ),
            }
        )
    new_table = pd.DataFrame(rows).set_index("switch")
new_table.round(4) if new_table is not None else None

# %% [markdown]
# The same effects as a figure: the seed-aware interval of each switch, and the band of the
# base's seed range around 0.

# %%
if new_table is not None:
    t = new_table.sort_values("diff")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    y = np.arange(len(t))
    ax.axvspan(-seed_range, seed_range, color="0.9", label="base's seed range")
    ax.errorbar(
        t["diff"],
        y,
        xerr=[t["diff"] - t["seed-aware lo"], t["seed-aware hi"] - t["diff"]],
        fmt="o",
        capsize=3,
        color=plots.COLORS["test"],
        label="test Recall@50 minus the base's, seed-aware 95% CI",
    )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, t.index)
    ax.set_xlabel("change in test Recall@50 against mixed (three seeds)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_title("The switches on the popularity-aware base", fontsize=10)
    fig.tight_layout()

# %% [markdown]
# What changes when the base is strong (each asserted below):
#
# - **Popularity as a raw count** is the one switch that helps, by about .04 of Recall@50
#   with three seeds on each side, more than the base's seed range. LinkedIn's buckets exist
#   because a raw count "barely registered" with their model. Here, with log-Q removing the
#   popularity that batch sampling teaches, the prompt is the model's only view of how
#   popular a movie is, and the top decile token lumps a movie rated 20 times with one rated
#   300 times: the count keeps the difference. That is our reading, not a measured cause.
# - **Last-token pooling** and **BCE**, even with its own temperature and bias, stay worse,
#   as on the first-edition base and in the paper.
# - **Hard negatives**, **full history** and **titles only** move Recall@50 by less than the
#   base's seed range. Full history was significantly worse on the 400-step base; with 256
#   tokens and every-position pairs it is no longer distinguishable from positives only. The
#   base's early-stopped seed (Recall@50 .168) makes that range wide (.027): these are
#   "no difference we can tell from seed noise", not "no difference".

# %%
new_claims = {
    "mixed-pop-count": (
        "on the popularity-aware base, popularity as a raw count beats the bucket "
        "token (three seeds each, seed-aware interval above 0, change above the "
        "base's seed range)",
        lambda r: r["seed-aware lo"] > 0 and r["diff"] > r["base seed range"],
    ),
    "mixed-last-token": (
        "on the popularity-aware base, last-token pooling is worse (seed-aware "
        "interval below 0, change beyond the base's seed range)",
        lambda r: r["seed-aware hi"] < 0 and -r["diff"] > r["base seed range"],
    ),
    "bce": (
        "on the popularity-aware base, BCE with its validation-chosen temperature "
        "and bias is worse than InfoNCE (seed-aware interval below 0, change beyond "
        "the base's seed range)",
        lambda r: r["seed-aware hi"] < 0 and -r["diff"] > r["base seed range"],
    ),
}
for name in ("mixed-hard1", "mixed-hard2", "mixed-full-history", "mixed-titles"):
    new_claims[name] = (
        f"on the popularity-aware base, '{NEW_ARMS[name]}' moves test Recall@50 by "
        "less than the base's seed range",
        lambda r: abs(r["diff"]) < r["base seed range"],
    )
for name, (claim, holds) in new_claims.items():
    if new_table is None:
        claims.skip(claim, NOT_HERE)
        continue
    r = new_table.set_index("recipe").loc[bce_pick if name == "bce" else name]
    claims.check(
        claim,
        holds(r),
        detail=f"{r['diff']:+.4f} seed-aware [{r['seed-aware lo']:+.4f}, "
        f"{r['seed-aware hi']:+.4f}], seed range {r['base seed range']:.4f}",
    )

# %% [markdown]
# ### The raw-count arm at its own serving point, against item-kNN
#
# Chapter 03 serves `mixed` at a point chosen on validation: the prompt's vector blended
# with the mean of every liked movie (weight $w$), plus a prior $\beta \log(1 + n_v)$. The
# raw-count arm gets the same treatment: the same grid and tie rule, on every validation
# user (`recipes.tune_point`; the point and the grid it was chosen from are stored beside
# the adapter by `python -m llmrec_lib.recipes tune-point mixed-pop-count`, which also
# stores the test lists of its three seeds at that point; seeds 1 and 2 are served at seed
# 0's point, as chapter 03 does for `mixed`). The bar is chapter 03's: to **match item-kNN**
# a model must come within .01 of it on test Recall@50, with a paired interval that reaches
# 0. Item-kNN is refitted here with chapter 02's choice of neighbours (seconds).

# %%
pc_point, pc_res, vs_knn_pc = None, {}, None
if claims.artifacts_fit:
    from llmrec_lib import baselines, evaluate

    pc_point = recipes.stored_point("mixed-pop-count")
    pc_grid = pd.DataFrame(
        json.loads(recipes.point_path("mixed-pop-count").read_text())["grid"]
    )
    print(f"raw-count arm: (w, beta) = {pc_point}, chosen on validation")
    for n in ["mixed-pop-count", *recipes.seeds_of("mixed-pop-count")]:
        pc_res[n] = recipes.stored_result(n, setting, "test", point=pc_point)
    knn_k = records.load("02", "choices")["choices"]["knn_neighbors"]
    knn = baselines.ItemKNN(
        setting.ml.item_ids, n_neighbors=None if knn_k == "None" else int(knn_k)
    ).fit(setting.split.train)
    test_data = evaluate.EvalData.from_split(setting.split, "test", setting.ml.item_ids)
    knn_res = evaluate.evaluate(knn.for_stage(setting.split, "test"), test_data)
    pc_means, vs_knn_pc = abtest.seed_aware_vs(list(pc_res.values()), knn_res, headline)
    print(
        f"test {headline}: raw-count arm seeds {np.round(pc_means, 4)}, item-kNN "
        f"{knn_res.mean(headline):.4f}; difference {vs_knn_pc.mean_diff:+.4f} "
        f"[{vs_knn_pc.lo:+.4f}, {vs_knn_pc.hi:+.4f}] (seed-aware)"
    )
pc_grid.pivot(index="weight", columns="beta", values="metric").round(
    4
) if pc_point else None

# %% [markdown]
# On the reference data validation picks $w = 0.25$, $\beta = 0.02$ (validation Recall@50
# .277, against .271 for the model alone). At that point the three seeds score .230, .235
# and .232 on test, against item-kNN's .243: a gap of .011, with a seed-aware interval that
# reaches 0. Chapter 03's bar asks for a gap of at most .010, so the raw-count arm **misses
# it by about .001**. One seed (seed 1, .235) would pass on its own; the bar is on the mean
# of three. This is the nearest the LinkedIn design has come to item-kNN in this book, and
# the step from chapter 03's `mixed` (.198 at its own point) is one prompt change. Chapter
# 03 still serves `mixed`; moving the book's arm to this recipe is a chapter 03 change,
# with its cold-start and multi-source sections measured again.

# %%
pc_claims = (
    (
        "the raw-count arm at its validation-chosen point is not detectably below "
        "item-kNN (seed-aware interval reaches 0)",
        lambda d: d.hi >= 0,
    ),
    (
        "the raw-count arm misses chapter 03's match bar (within .01 of item-kNN) by "
        "less than .005",
        lambda d: -0.015 < d.mean_diff < -0.01,
    ),
)
for claim, holds in pc_claims:
    if vs_knn_pc is None:
        claims.skip(claim, NOT_HERE)
        continue
    claims.check(
        claim,
        holds(vs_knn_pc),
        detail=f"{vs_knn_pc.mean_diff:+.4f} [{vs_knn_pc.lo:+.4f}, {vs_knn_pc.hi:+.4f}]",
    )

# %% [markdown]
# ## 6. A second check where the truth is known
#
# In the synthetic world of chapter 00 every user has planted interests and every impression is
# logged: an impression without a click is exactly LinkedIn's "shown but not engaged". Training
# a small dual encoder (MiniLM, all 6 layers, LoRA) there with 0 and 2 such hard negatives, we can
# measure not only Recall@10 but **interest precision@10**: the share of the top 10 that belongs
# to one of the user's planted interests, a ground truth no real log has. The world is
# `llmrec_lib/synthetic.py::make_world`. It is the same world whatever data the book runs
# on, so on other data this section is skipped unless `synthetic_everywhere` is set: the
# answer would be the reference run's, at a few minutes of training.

# %%
run_synthetic = claims.artifacts_fit or synthetic_everywhere
world = synthetic.make_world(seed=seed % 1000)
wset = recipes.world_setting(world)
mini = EncoderConfig(
    backbone="minilm-l6", n_layers=None, user_max_tokens=96, item_max_tokens=24
)
syn = {}
for k in (0, 2) if run_synthetic else ():
    c = train.TrainConfig(
        steps=synthetic_steps[cfg.mode],
        batch_size=16,
        lr=3e-4,
        warmup_steps=5,
        hard_negatives=k,
        temperature=0.05,
        user_budget=96,
        history_items=20,
        seed=seed,
    )
    tr_k, res_k = recipes.train_and_evaluate(wset, mini, c, ks=(10,), progress=True)
    prec = world.interest_precision(
        res_k.user_ids, np.where(res_k.topk >= 0, world.ml.item_ids[res_k.topk], -1), 10
    )
    syn[k] = {
        "result": res_k,
        "precision": prec,
        "seconds_per_step": tr_k.throughput()["seconds_per_step"],
    }
syn_table = pd.DataFrame(  # empty when skipped
    {
        f"k={k}": {
            "recall@10": v["result"].mean("recall@10"),
            "interest precision@10": v["precision"].mean(),
            "s/step": v["seconds_per_step"],
        }
        for k, v in syn.items()
    }
).T
syn_table.round(4)

# %%
p_syn = p_syn_recall = syn_mde = syn_verdict = None  # skipped: nothing measured
if syn:
    p_syn = M.paired_bootstrap(syn[2]["precision"], syn[0]["precision"], seed=seed)
    p_syn_recall = syn[2]["result"].compare(syn[0]["result"], "recall@10")
    syn_recall = {
        k: v["result"].per_user.set_index("user_id")["recall@10"]
        for k, v in syn.items()
    }
    syn_mde = abtest.mde(syn_recall[2] - syn_recall[0].loc[syn_recall[2].index])
    syn_verdict = (
        "hard negatives help"
        if p_syn_recall.lo > 0
        else "hard negatives hurt"
        if p_syn_recall.hi < 0
        else f"no detectable effect (MDE {syn_mde:.3f})"
    )
    print(
        f"{synthetic_steps[cfg.mode]} steps, k=2 minus k=0: recall@10 "
        f"{p_syn_recall.mean_diff:+.4f} "
        f"[{p_syn_recall.lo:+.4f}, {p_syn_recall.hi:+.4f}] -> {syn_verdict}; "
        f"interest precision@10 {p_syn.mean_diff:+.4f} "
        f"[{p_syn.lo:+.4f}, {p_syn.hi:+.4f}], both arms at "
        f"{min(v['precision'].mean() for v in syn.values()):.3f} or above"
    )

# %% [markdown]
# Read the two measures separately.
#
# - **Interest precision@10 is near its ceiling** in both arms, in both modes (above 0.95). The
#   world's titles name their topic ("The Galactic Odyssey ..."), so after a dozen steps
#   both arms fill their top 10 with planted-interest items. A measure at its ceiling cannot
#   show an effect in either direction, so the chapter reports it and tests nothing on it,
#   beyond the fact that both arms learned the interests.
# - **Recall@10 of the held-out clicks can move, and it does once the arms train long
#   enough.** The committed full-mode run (300 steps per arm) measures +0.044 [+0.016, +0.071]
#   for two hard negatives: they help, by almost 40% of the k = 0 arm's 0.119. Quick mode's
#   16 steps measure no detectable effect (about +0.010 [-0.012, +0.034]; the MDE, about
#   0.032, is smaller than the full-mode effect): after 16 steps the switch has had no time to
#   matter. The cell above prints this run's verdict from its own interval, and the assert
#   below checks it, for the mode you ran.
#
# So in full mode the synthetic world and MovieLens **disagree**: here two hard negatives
# help, on MovieLens we detect nothing (section 4). The likely reason is what a hard negative
# is in each. Here it is an impression the user was shown and skipped, LinkedIn's definition:
# the slate mixes items from the user's interests with random ones, so the skipped items
# differ from the clicked ones in a way the model can learn. On MovieLens it is a movie the
# user chose to watch and then rated low, a weaker and noisier signal. One more observation,
# not tested here: the k = 0 arm's Recall@10 is lower after 300 steps (0.119) than after 16
# (about 0.14), so trained longer on in-batch negatives alone it drifts away from what users
# click, and the hard negatives hold it back. Exercise 2 makes the world harder.

# %%
# the synthetic world is the same whatever data the book runs on: asserted where it runs
syn_claims = [
    "synthetic world: both arms' interest precision@10 above max(0.9, 2x chance)",
    "synthetic world, 300 steps: 2 hard negatives raise Recall@10"
    if cfg.mode == "full"
    else "synthetic world, 16 steps: 2 hard negatives change Recall@10 undetectably",
]
if syn:
    chance = np.mean(
        [
            len(world.user_interests[int(u)]) / len(world.topics)
            for u in syn[0]["result"].user_ids
        ]
    )
    lowest = min(v["precision"].mean() for v in syn.values())
    claims.check(  # both arms learned the interests
        syn_claims[0],
        lowest > max(0.9, 2 * chance),
        pinned=False,
        detail=f"lowest {lowest:.3f}, chance {chance:.3f}",
    )
    claims.check(  # 300 steps: they raise Recall@10; 16 steps: no detectable effect yet
        syn_claims[1],
        p_syn_recall.lo > 0
        if cfg.mode == "full"
        else p_syn_recall.lo < 0 < p_syn_recall.hi,
        pinned=False,
        detail=f"{p_syn_recall.mean_diff:+.4f} "
        f"[{p_syn_recall.lo:+.4f}, {p_syn_recall.hi:+.4f}]",
    )
else:
    for claim in syn_claims:
        claims.skip(
            claim,
            "the synthetic world does not depend on this data (the reference run "
            "measured it); set synthetic_everywhere = True to train it here",
        )

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "04",
    "mode": cfg.mode,
    "produced_by": {n: m["command"] for n, m in metas.items()} or None,
    "table": table.reset_index().to_dict(orient="records"),  # None where not tested
    "longer_training": p_long._asdict() if p_long is not None else None,
    "spot_check_agreement": agree,
    "new_base": {
        "bce_grid": bce_valid.reset_index().to_dict(orient="records")
        if bce_valid is not None
        else None,
        "bce_pick": bce_pick,
        "table": new_table.reset_index().to_dict(orient="records")
        if new_table is not None
        else None,
        "raw_count_point": list(pc_point) if pc_point else None,
        "raw_count_vs_item_knn": vs_knn_pc.__dict__ if vs_knn_pc is not None else None,
    },
    "synthetic": {
        "steps": synthetic_steps[cfg.mode],
        "table": syn_table.reset_index().to_dict(orient="records"),
        "precision_diff": p_syn._asdict() if syn else None,
        "recall_diff": p_syn_recall._asdict() | {"mde": syn_mde} if syn else None,
        "recall_verdict": syn_verdict,
    },
    "test": {n: r.to_dict(segments=False) for n, r in stored_res.items()},
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("04", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again: a "no" is a result about your data, not an error.
# Rows "not tested" needed the committed adapters, which fit the reference split only.
# Mechanics hold on any data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. A hard negative is an item the member was shown and did not engage with; MovieLens's
#    nearest analogue is a movie the user rated 2 or lower, and 89% of training pairs have one.
# 2. Those dislikes are hard: a model trained without them scores a member's dislikes above
#    random in-batch movies, about halfway to the positive. Each one costs one more item
#    prompt per pair (k = 2: 1.45x the tokens, about 1.3x the step time).
# 3. On MovieLens, one or two hard negatives change Recall@50 by no detectable amount; the
#    test could only have seen a change of about a quarter of the recall (MDE about 0.010),
#    several times the paper's +2.0% / +3.6%. Recall@10, the paper's metric, is noisier still.
# 4. BCE (with InfoNCE's untuned temperature and a fixed bias), full histories with scores and
#    last-token pooling are significantly worse, in the paper's direction; four times the
#    training steps helps more than any switch.
# 5. On chapter 03's popularity-aware base (`mixed`, three seeds), popularity written as a raw
#    count beats the bucket token by about .04 of Recall@50, seeds counted; last-token pooling
#    and BCE (with its own validation-chosen temperature and bias) stay worse; hard negatives,
#    full history and titles-only histories move it by less than the base's seed range.
#    Served at its own validation-chosen point, the raw-count arm comes within .011 of
#    item-kNN (interval reaching 0), missing chapter 03's match bar of .010 by .001.
# 6. In the synthetic world, where a hard negative is a skipped impression as in LinkedIn's
#    logs, two hard negatives raise Recall@10 after 300 steps (+0.044 [+0.016, +0.071]) and
#    show no detectable effect after 30; interest precision sits at its ceiling and cannot
#    tell the arms apart.
# 7. A "no difference" is only as strong as its MDE: every one in this chapter comes with it.
#
# ## Exercises
#
# 1. **Three hard negatives.** Add `recipes.RECIPES["ablate-hard3"]` with `hard_negatives=3` and
#    count its tokens per step as in section 2. *Check:* on batch 0 (16 pairs), 4,576 tokens,
#    1.87x k=0's 2,448 (k=1: 3,296; k=2: 3,552, 1.45x). The 2,016 member tokens are the same
#    for every k (a different member count means a different batch); the 64 item prompts (16
#    positives, 48 hard) are padded to the longest, here the 40-token cap, so the items count
#    64 x 40 = 2,560 padded tokens, as the model computes them.
# 2. **A harder world.** Build `synthetic.make_world(p_click_other=0.2, seed=1)` (users click
#    an off-interest item with probability 0.2 instead of the default 0.03, so impressions
#    carry more signal) and rerun section 6. *Check:* the k=0 arm's interest precision@10
#    falls from 0.980 (the default world) to about 0.73, and its Recall@10 from 0.139 to
#    about 0.087 (quick mode, 16 steps). A precision still near 0.98 means the arms were
#    trained or judged on the default world. Say whether k=2 now helps, from its paired
#    interval.
# 3. **How many users to see +3.6%?** From the base arm's per-user Recall@10, estimate by bootstrap
#    how many test users a +3.6% relative lift needs for a paired interval that excludes zero.
#    *Check:* the base arm's Recall@10 is 0.0093, so +3.6% is 0.00034 per user; with the
#    per-user SD of a paired difference the ablation arms show (0.047 for k=1, 0.050 for k=2,
#    committed adapters), an interval that excludes zero half the time needs about 75,000 to
#    83,000 users, and 80% power about 150,000 to 170,000: over a hundred times 602. A number
#    below 602 (about 140) has put the standard error of the mean, about 0.002, where the
#    per-user SD belongs.
# 4. **A fair BCE.** BCE has a bias term (`losses.BCELoss(bias=...)`); try 0.0 and 0.8 on the batch
#    of section 2. *Check:* with the untrained model of section 1 (temperature 0.05), the loss
#    is about 19.0 at bias 0.0, 9.0 at the default 0.5 and 3.1 at 0.8: it falls as the bias
#    rises. Untrained, every cosine is near 0.95 (positives 0.956, negatives 0.951), so the
#    negatives' term is almost all of it. A loss that rises with the bias (about 35 at "0.8")
#    has the sign of the shift reversed. Say which direction favours recall and why.
