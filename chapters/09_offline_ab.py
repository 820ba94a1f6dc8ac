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
# # 09 · Offline A/B: which design wins, where, and at what cost
#
# Eight chapters built retrievers one at a time. This one runs them as the arms of a single
# experiment, the way a team reads an A/B test: one control, every other arm's lift over it
# with an interval and a p-value, the segments where the answer changes, the bill each arm
# sends, and finally a ledger of the claims the book set out to check, each with the
# measurement that supports or refutes it at our scale.
#
# The numbers quoted in the prose are those of the reference data, the 2018 ml-latest-small
# release. On other data (your own, or a derived copy) the chapter reads out every arm that the
# earlier chapters stored for that data and runs every section on them. Three things are
# skipped there: the LinkedIn arms read from committed adapters (trained on the reference split,
# they would score users whose test items they may have trained on), any arm whose chapter
# stored no ranking for this data (each named in a note below), and the comparison with the
# committed full-mode run (section 11). A claim about a skipped arm, and a ledger row whose
# evidence a chapter did not produce here, is listed as "not tested" in the closing table,
# "Which claims hold on this data".

# %% tags=["parameters"]
mode = None  # None: take LLMREC_MODE (default "quick"); or "quick" / "full"
seed = 20251016
control = "item-kNN"
metric = "recall@50"
n_boot = 1000
verify_data = None  # None: LLMREC_DATA_VERIFY (default: verify the reference checksums)

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llmrec_lib import abtest, config, evaluate, plots, recipes, show

chapter_t0 = time.perf_counter()
cfg = config.settings(
    "09",
    mode,
    seed=seed,
    backbone="none of its own: it re-measures the other chapters' systems",
    quick={
        "classic and RecGPT arms": "this run's chapters 02 and 08 (quick mode)",
        "LinkedIn arms": "committed full-mode adapters",
    },
    full={
        "classic and RecGPT arms": "this run's chapters 02 and 08 (full mode)",
        "LinkedIn arms": "adapters retrained by chapters 03-05 in full mode",
    },
)
cfg.show()
print(config.data_status(cfg.data_dir))

# %% [markdown]
# Every check below goes through `claims`: a claim pinned to the reference numbers ("the LLM
# dual encoder trails item-kNN") is asserted on the reference release and only recorded on
# other data; a mechanic (slot shares sum to one, an ID model recommends no movie nobody rated)
# is asserted on any data. A claim about an arm this data has no ranking for is recorded as
# not tested (`llmrec_lib/abtest.py::check_arms`).

# %%
claims = config.Claims("09", path=cfg.data_dir)

# %% [markdown]
# **Learning goals**
#
# - Read an offline comparison as an A/B readout: control, lift, interval, p-value.
# - Say why many arms against one control need a multiple-comparison correction.
# - Say what "no detectable difference" rules out: the minimum detectable effect.
# - Put an interval on a relative lift that accounts for the control's own noise.
# - Find the segments where the ranking of designs flips.
# - Put a price on each design: training, inference, index, freshness; and check guardrails.
# - Say how an offline replay maps to an online test, and what interleaving buys.
# - Check published claims against measurements, and say plainly which ones hold here.

# %% [markdown]
# ## 1. The arms
#
# An arm is a system's top-100 list for each of the 602 test users, stored by the chapter that
# built it (`evaluate.save_ranking`) and re-measured here with chapter 02's protocol: same
# users, same targets, same catalogue, seen items excluded. Nothing is refitted, so this
# chapter runs in seconds and cannot drift from what the other chapters showed. The stored
# lists are read and scored by `llmrec_lib/abtest.py::load_rankings`.
#
# On other data, the arms are the rankings the earlier chapters stored for that data. The
# three LinkedIn arms read from committed adapters are dropped (those adapters were trained on
# the reference split), and so is any arm whose chapter stored no ranking here; the cell says
# which. Chapter 02's classic arms are always there: chapter 02 runs on any data.

# %%
from llmrec_lib import results as records

setting = recipes.build_setting(cfg.data_dir, verify=verify_data)
test_data = evaluate.EvalData.from_split(setting.split, "test", setting.ml.item_ids)
rank_dir = config.results_dir() / "rankings"
ch02 = records.load("02", "choices", "sasrec")  # says to run chapter 02 when missing
SKIP_COMMITTED = (
    "its lists come from a committed adapter, trained on the reference split"
)


def committed_ranking(recipe_name: str):
    """The committed adapter's stored test lists; None on other data (no fit)."""
    return recipes.verified_ranking_path(recipe_name) if claims.artifacts_fit else None


pop_name = (
    f"popular ({ch02['choices']['popularity_window_days']} d before the user's now)"
)
# NEW ARMS GO HERE: every later cell loops over SOURCES, so adding an arm needs no other
# change.
SOURCES = {  # arm -> (design, where its ranking comes from)
    "popularity": ("classic", rank_dir / f"ch02-{evaluate.slug(pop_name)}.npz"),
    "item-kNN": ("classic", rank_dir / "ch02-item-knn.npz"),
    "SASRec": ("classic", rank_dir / "ch02-sasrec-style.npz"),
    "LLM dual encoder": ("LinkedIn", committed_ranking("infonce")),
    "LLM dual encoder + Matryoshka": ("LinkedIn", committed_ranking("matryoshka")),
    "LLM dual encoder, 2 hard negatives (400 steps)": (
        "LinkedIn",
        committed_ranking("ablate-hard2"),
    ),
    "three towers, LLM tags": (
        "RecGPT",
        rank_dir / "ch08-three-towers.npz",
    ),
    "three towers, no user ID, LLM tags": (
        "RecGPT",
        rank_dir / "ch08-three-towers-no-user-id.npz",
    ),
    # the ablation: the same towers queried with the counting rule's tags, no LLM output
    "three towers, rule tags": (
        "RecGPT",
        rank_dir / "ch08-three-towers-rule-tags.npz",
    ),
    # chapter 03's second recipe at its validation-chosen prior
    "LLM, mixed negatives + log-Q": ("LinkedIn", rank_dir / "ch03-llm-mixed.npz"),
    # chapter 03's LinkedIn arm: the validation-chosen model, prompt blended with the
    # mean of every liked movie's vector, plus its prior (section 9)
    "LLM, whole history + prior": ("LinkedIn", rank_dir / "ch03-llm-best.npz"),
}
# on other data chapter 08 queries its model without a user ID with the rule's tags too
# (no LLM tags fit there): that arm is read out when chapter 08 stored it
no_id_rule = rank_dir / "ch08-three-towers-no-user-id-rule-tags.npz"
if no_id_rule.is_file():
    SOURCES["three towers, no user ID, rule tags"] = ("RecGPT", no_id_rule)
# chapter 03's two-source lists, a quota of slots and a rank fusion, each when
# validation gave the LLM a part in it (a share or weight of 0 is item-kNN itself, and
# an arm read out against itself is no evidence: see the ledger)
c03 = records.load("03", "share", "linkedin_arm", missing_ok=not claims.reference)
# None: chapter 03 did not run on this data, and its arms are dropped below
ch03_share = c03["share"] if c03 is not None else None
ch03_fusion = c03.get("fusion_weight") if c03 is not None else None
best_recipe = c03["linkedin_arm"]["recipe"] if c03 is not None else None
MULTI, FUSION = "item-kNN + LLM multi-source", "item-kNN + LLM rank fusion"
COLD_SLOTS = f"{FUSION} + cold slots"
if ch03_share is None or ch03_share > 0:
    SOURCES[MULTI] = ("LinkedIn", rank_dir / "ch03-multi-source.npz")
if c03 is None or (ch03_fusion or 0) > 0:
    SOURCES[FUSION] = ("LinkedIn", rank_dir / "ch03-rank-fusion.npz")
    # the same list with cold slots for the members who read the long tail, at the point
    # validation chose: chapter 03's one list that meets both of its goals
    SOURCES[COLD_SLOTS] = ("LinkedIn", rank_dir / "ch03-rank-fusion-cold-slots.npz")
# LinkedIn arm -> the committed adapter behind it (on the reference; on other data
# chapter 03's arms were trained on that data, and their lists carry their fit time)
RECIPE_OF = (
    {
        "LLM dual encoder": "infonce",
        "LLM dual encoder + Matryoshka": "matryoshka",
        "LLM dual encoder, 2 hard negatives (400 steps)": "ablate-hard2",
        "LLM, mixed negatives + log-Q": "mixed",
        "LLM, whole history + prior": best_recipe,
        MULTI: best_recipe,
        FUSION: best_recipe,
        COLD_SLOTS: best_recipe,
    }
    if claims.artifacts_fit
    else {}
)
missing = {a: p for a, (_, p) in SOURCES.items() if p is None or not p.is_file()}
if claims.reference:
    assert not missing, (
        "run the earlier chapters first (make test runs them in order): "
        f"{[str(p) for p in missing.values()]}"
    )
dropped = {
    a: SKIP_COMMITTED
    if p is None
    else f"no stored ranking on this data ({config.relative_to_root(p)})"
    for a, p in missing.items()
}
for arm, why in dropped.items():
    claims.skip(f"the arm '{arm}' is read out", why)
    del SOURCES[arm]
if control not in SOURCES:
    raise FileNotFoundError(
        f"the control {control!r} has no ranking: run chapter 02 first"
    )
if dropped:
    print(
        "arms dropped on this data:",
        *(f"  {a}: {w}" for a, w in dropped.items()),
        sep="\n",
    )
results = abtest.load_rankings({arm: p for arm, (_, p) in SOURCES.items()}, test_data)
design = {arm: d for arm, (d, _) in SOURCES.items()}
pd.DataFrame(
    {
        "design": design,
        "source": {a: config.relative_to_root(p) for a, (_, p) in SOURCES.items()},
    }
)

# %% [markdown]
# ## 2. The readout
#
# The control is the strongest classic system of chapter 02. For every other arm: its mean, the
# mean per-user difference from the control with a 95% paired-bootstrap interval, the relative
# lift, and a p-value. Six arms against one control is six tests; at a 5% level each, the chance
# that at least one "wins" by luck alone is up to 1 - 0.95^6, about 26%. Holm's correction
# (`llmrec_lib/abtest.py::holm`) keeps that family-wise chance at 5%; the verdict column uses
# it.
#
# The whole table is one function, `llmrec_lib/abtest.py::readout`. For each arm it takes the
# paired bootstrap of `evaluate.py::EvalResult.compare` (users resampled,
# `metrics.py::paired_bootstrap`), the relative interval of `abtest.py::ratio_bootstrap`
# (section 4) and the MDE of `abtest.py::mde` (section 3); then it runs Holm over the tested
# arms' p-values and writes the verdict from the adjusted p-value and the sign of the lift.
# Open the cell to read it:

# %% tags=["hide-output"]
show.source(abtest.readout)

# %%
board = abtest.readout(results, control, metric, n_boot=n_boot, seed=seed)
board.insert(0, "design", [design[a] for a in board.index])
board.round(4)

# %% [markdown]
# The claims this section makes are about named arms: the single LLM dual encoder trails the
# control, neither SASRec nor the three towers beat it, and chapter 03's rank-fusion list
# (item-kNN and the LLM, each voting on every slot) does, after Holm. (An arm added to
# `SOURCES` is shown in every table, but no claim here is about it.)

# %%
CLOSE_ARMS = (
    "SASRec",
    "three towers, LLM tags",
    "three towers, no user ID, LLM tags",
    "LLM, whole history + prior",
)
abtest.check_arms(
    claims,
    results,
    ["LLM dual encoder"],
    f"the LLM dual encoder is worse than {control} ({metric}, Holm)",
    lambda: board.loc["LLM dual encoder", "verdict"] == "worse",
    detail=lambda: f"lift {board.loc['LLM dual encoder', 'lift']:+.4f}",
)
for arm in CLOSE_ARMS:
    abtest.check_arms(
        claims,
        results,
        [arm],
        f"{arm} does not beat {control} ({metric}, Holm)",
        lambda: board.loc[arm, "verdict"] != "better",
        detail=lambda: (
            f"{board.loc[arm, 'verdict']}, lift {board.loc[arm, 'lift']:+.4f}"
        ),
    )
abtest.check_arms(
    claims,
    results,
    [FUSION],
    f"the rank-fusion list beats {control} ({metric}, Holm)",
    lambda: board.loc[FUSION, "verdict"] == "better",
    detail=lambda: (
        f"lift {board.loc[FUSION, 'lift']:+.4f}, "
        f"Holm p {board.loc[FUSION, 'p (Holm)']:.3f}"
    ),
)
winners = list(board.index[board["verdict"] == "better"])
print("arms that beat the control on all targets:", winners or "none")

# %%
others = board.drop(index=control).sort_values("relative lift")
fig, ax = plt.subplots(figsize=(10, 0.55 * len(others) + 1.5))
y = np.arange(len(others))
colors = {
    "classic": "grey",
    "LinkedIn": plots.COLORS["test"],
    "RecGPT": plots.COLORS["history"],
}
for i, (arm, r) in enumerate(others.iterrows()):
    ax.errorbar(
        r["relative lift"],
        i,
        xerr=[
            [r["relative lift"] - r["relative lo"]],
            [r["relative hi"] - r["relative lift"]],
        ],
        fmt="o",
        capsize=3,
        color=colors.get(r["design"], "black"),
    )
ax.axvline(0, color="black", lw=1)
ax.set_yticks(y, others.index)
ax.set_xlabel(f"relative lift in {metric} over {control} (95% ratio bootstrap)")
ax.set_title(
    f"Arms that beat {control} on all test targets: {', '.join(winners) or 'none'}"
    + ("; the LLM dual encoders trail it" if claims.reference else "")
)
fig.tight_layout()

# %% [markdown]
# ### Training seeds
#
# The intervals above resample users: they say how the verdict would move on other users, not on
# another training run. A trained arm is one draw of a random model, so its lift also carries
# seed noise. Chapter 08 trained its three arms with three seeds each and stored every ranking;
# chapter 02 did the same for SASRec in full mode, chapter 03 for its two recipes' arms, and
# the committed LinkedIn adapters have two more seeds each (`recipes.py::SEED_OF`; the
# costliest were trained on a GPU, chapter 10 says how);
# `llmrec_lib/abtest.py::seed_aware_diff` adds the variance of an arm's mean over its seeds
# (divided by their number) to the user-sampling variance, with Student's t on
# Welch-Satterthwaite degrees of freedom, since three seeds estimate that spread poorly. Which
# arms have seeds, and why the others do not:


# %%
def other_seeds(arm, path):
    """The stored rankings of an arm's other seeds: the chapters' files beside its
    own (`-seed1`, `-seed2`), or, for a committed adapter's lists, its seed adapters'
    lists."""
    found = sorted(rank_dir.glob(path.stem + "-seed*.npz"))
    if not found and arm in RECIPE_OF and path.name == "ranking_test.npz":
        found = [
            recipes.verified_ranking_path(n) for n in recipes.seeds_of(RECIPE_OF[arm])
        ]
    return found


SEEDED = {  # arm -> the stored rankings of its seeds (seed 0 is the file read above)
    arm: [p, *other_seeds(arm, p)]
    for arm, (_, p) in SOURCES.items()
    if other_seeds(arm, p)
}
sasrec_s = ch02["sasrec"]["train_log"][-1]["seconds"]  # chapter 02's fit, this mode
seed_note = {
    "popularity": "deterministic",
    "item-kNN": "deterministic",
    "SASRec": f"1 (a seed costs {sasrec_s / 60:.0f} min here)",
}
one_run = "a committed LLM adapter: one run" if claims.artifacts_fit else "one run"
seeds_table = pd.DataFrame(
    {
        "seeds": {
            a: len(SEEDED[a]) if a in SEEDED else seed_note.get(a, f"1 ({one_run})")
            for a in SOURCES
        }
    }
)
seeds_table

# %%
seed_rows = []
for arm, paths in SEEDED.items():
    more = abtest.load_rankings(  # seed 0 is already loaded, as the arm itself
        {f"{arm} #{i}": p for i, p in enumerate(paths[1:], 1)}, test_data
    )
    seed_means, sa = abtest.seed_aware_vs(
        [results[arm], *more.values()], results[control], metric
    )
    b = board.loc[arm]
    seed_rows.append(
        {
            "arm": arm,
            "seeds": len(paths),
            "mean per seed": np.round(seed_means, 4).tolist(),
            "diff (seed mean)": sa.mean_diff,
            "user-only (seed 0)": f"[{b['lift lo']:+.4f}, {b['lift hi']:+.4f}]",
            "seed-aware interval": f"[{sa.lo:+.4f}, {sa.hi:+.4f}]",
            "SE users": sa.se_users,
            "SE seeds": sa.se_seeds,
            "same verdict": (sa.lo > 0) == (b["lift lo"] > 0)
            and (sa.hi < 0) == (b["lift hi"] < 0),
        }
    )
seed_cols = ["arm", "seeds", "mean per seed", "diff (seed mean)", "user-only (seed 0)"]
seed_cols += ["seed-aware interval", "SE users", "SE seeds", "same verdict"]
seed_board = pd.DataFrame(seed_rows, columns=seed_cols).set_index("arm")
seed_board.round(4)

# %%
for arm in ("SASRec", "three towers, LLM tags", "LLM, whole history + prior"):
    abtest.check_arms(
        claims,
        results,
        [arm],
        f"{arm} has stored rankings of several seeds",
        lambda: arm in seed_board.index,
    )
claims.check(
    "every seeded arm has 3 seeds or more",
    (seed_board["seeds"] >= 3).all(),
    detail=", ".join(f"{a}: {n}" for a, n in seed_board["seeds"].items()),
)
# training noise is real but small beside user sampling for most arms (measured: seed
# SE .0002-.0035 against user SE .005-.011); the every-position recipe, which stops on
# validation, is the exception (written after its GPU-trained seeds came in: seed SE
# .0068 against user SE .0070)
EARLY_STOPPED = "LLM, mixed negatives + log-Q"
steady = seed_board.drop(index=EARLY_STOPPED, errors="ignore")
se_detail = ", ".join(
    f"{a}: {r['SE seeds']:.4f} vs {r['SE users']:.4f}" for a, r in seed_board.iterrows()
)
claims.check(
    "training seeds move every seeded arm's mean (seed SE above 0)",
    (seed_board["SE seeds"] > 0).all(),
    detail=se_detail,
)
claims.check(
    "seed noise is under half the user-sampling noise for every seeded arm but the "
    "early-stopped mixed-negatives one",
    (steady["SE seeds"] < 0.5 * steady["SE users"]).all(),
    detail=se_detail,
)
if EARLY_STOPPED in seed_board.index:
    claims.check(
        "the early-stopped mixed-negatives arm's seed noise is over half its "
        "user-sampling noise",
        seed_board.loc[EARLY_STOPPED, "SE seeds"]
        > 0.5 * seed_board.loc[EARLY_STOPPED, "SE users"],
        detail=se_detail,
    )
# the quota list's lift sits at the edge of detection (measured in full mode: seed 0
# alone [-.0029, +.0163], its three seeds' mean [+.0005, +.0206]), so it may change
changed = set(seed_board.index[~seed_board["same verdict"].astype(bool)])
claims.check(
    "counting seed noise changes no verdict but, at most, the quota list's",
    changed <= {MULTI},
    detail=", ".join(sorted(changed)) or "none changes",
)

# %% [markdown]
# For every seeded arm but one, a seed moves the arm's mean by a few thousandths of
# Recall@50: real, but small beside the user sampling of 602 users, so counting it widens the
# intervals a little. The exception is chapter 03's second recipe: its three seeds span about
# .025, and its seed noise is as large as its user noise. It trains on every position of a
# member's history for several epochs and keeps its validation-best checkpoint out of four,
# so each seed stops at a different point (steps 600, 800 and 400). Counting that noise
# widens its interval against item-kNN by more than half, yet changes no verdict: the arm trails
# item-kNN by far more. One run of such a recipe is not enough to read a small lift, and
# that is the lesson this row teaches.
#
# Seeds can also sharpen a verdict. The quota list's seed 0 is its weakest seed, and its lift
# over item-kNN alone has an interval that reaches 0; averaged over three seeds, the lift is
# larger and each user's difference less noisy, and the interval ends just above 0. That is
# a verdict at the edge of detection, which is why the claim above allows that one row to
# change. The fused list, the arm chapter 03's validation chose, is detectably better with
# or without the seeds.

# %% [markdown]
# ## 3. Power: what "no detectable difference" rules out
#
# A verdict of "no detectable difference" is only as informative as the test was sensitive. The
# **minimum detectable effect** (MDE) is the true lift the paired test would catch 80% of the
# time: MDE = (z_{1-alpha/2} + z_{0.8}) x SD(per-user difference) / sqrt(users)
# (`llmrec_lib/abtest.py::mde`, shown in chapter 04). With Holm over the tested arms, the
# strictest step tests at alpha / m, so we report the MDE at that level, a conservative bound
# (the last Holm step tests at alpha, where the MDE is smaller; both are shown). Every arm's MDE
# is measured from its own per-user differences, since an arm whose lists resemble the control's
# has less noisy differences.


# %%
def diffs(arm: str, met: str = metric) -> np.ndarray:
    """Per-user metric of ``arm`` minus the control's, matched by user id."""
    a = results[arm].per_user.set_index("user_id")[met]
    return (
        a - results[control].per_user.set_index("user_id")[met].loc[a.index]
    ).to_numpy()


tested = [a for a in results if a != control]
m_tested = len(tested)
base_mean = board.loc[control, metric]
power = board.loc[
    tested,
    [
        "design",
        "lift",
        "lift lo",
        "lift hi",
        "relative lift",
        "MDE",
        "relative MDE",
        "verdict",
    ],
].copy()
power["MDE, last Holm step"] = [abtest.mde(diffs(a)) for a in tested]
power["what the verdict rules out"] = [
    f"true lifts beyond {r['MDE']:+.4f} / {-r['MDE']:+.4f} "
    f"({r['relative MDE']:.0%} of the control)"
    if r["verdict"] == "no detectable difference"
    else f"{r['verdict']}: lift {r['lift']:+.4f}"
    for _, r in power.iterrows()
]
power.round(4)

# %% [markdown]
# The published online lifts are in other units (click-through rate, revenue), so they are not
# predictions of Recall@50. But their **size** can be set beside our sensitivity: how many test
# users would a paired readout need to detect a relative lift of that size, given the per-user
# noise each arm shows against the control here (`abtest.py::users_needed`, Bonferroni
# level)?

# %%
from statistics import NormalDist

published = {
    "RecGPT online CTR (+6.33%)": 0.0633,
    "LinkedIn online revenue (+0.8%)": 0.008,
}
need = pd.DataFrame(
    {
        name: {
            a: abtest.users_needed(
                lift * base_mean, diffs(a).std(ddof=1), n_comparisons=m_tested
            )
            for a in tested
        }
        for name, lift in published.items()
    }
)
need.insert(0, "relative MDE here", power["relative MDE"])
z975 = NormalDist().inv_cdf(0.975)
need.insert(
    1,
    "power for +6.33% (one test)",
    [
        NormalDist().cdf(
            0.0633 * base_mean / (diffs(a).std(ddof=1) / np.sqrt(test_data.n_users))
            - z975
        )
        for a in tested
    ],
)
min_rel_mde = power["relative MDE"].min()
print(
    f"test users here: {test_data.n_users}; "
    f"smallest relative MDE of any arm: {min_rel_mde:.1%}"
)
need.round(3)

# %% [markdown]
# Both published lifts are below the smallest relative MDE of every arm. For an arm that builds
# its own list, a lift the size of RecGPT's +6.3% would be caught at best about half the time
# at 602 users, even as a single test (and less under Holm). The exceptions teach how the
# paired design works: the two-source lists keep item-kNN's list in most of their slots (the
# share of an arm's top 50 that is also in item-kNN's, `abtest.py::list_overlap`, is printed
# below: over half for these three arms only), so their per-user differences from item-kNN are
# small, their spread is small, and so is their MDE. A lift the size of LinkedIn's +0.8% would
# still need more than ten times our 602 users for them, and more than a hundred times for
# every other arm. So "no detectable difference" here says that a design
# is not far better or worse than item-kNN (beyond the MDE column), and nothing about effects of
# the size those teams shipped.

# %%
claims.check(  # RecGPT's lift: invisible here
    "every arm's relative MDE is above RecGPT's +6.33%",
    (power["relative MDE"] > published["RecGPT online CTR (+6.33%)"]).all(),
    detail=f"smallest {min_rel_mde:.1%}",
)
# which arms share most of their top 50 with the control (abtest.py::list_overlap)?
overlap = pd.Series(
    {a: abtest.list_overlap(results[a], results[control], k=50) for a in need.index}
)
shared = overlap.index[overlap > 0.5].tolist()
print("share of the top 50 in the control's top 50:", overlap.round(2).to_dict())
own = need.drop(index=shared)
claims.check(
    "no arm with a list of its own has 60% power for +6.33%, even as a single test",
    (own["power for +6.33% (one test)"] < 0.6).all(),
    detail=f"largest {own['power for +6.33% (one test)'].max():.2f}",
)
claims.check(  # the paired design rewards an arm close to its control
    "only the two-source lists share over half their top 50 with the control, "
    "and one of them has the smallest relative MDE of all arms",
    sorted(shared) == sorted([MULTI, FUSION, COLD_SLOTS])
    and power["relative MDE"].idxmin() in shared,
    detail=f"shared: {shared}; smallest MDE: {power['relative MDE'].idxmin()} "
    f"({min_rel_mde:.1%})",
)
claims.check(  # LinkedIn's: far out of reach
    "LinkedIn's +0.8% would need over 100x this test set's users "
    "for every own-list arm",
    (own["LinkedIn online revenue (+0.8%)"] > 100 * test_data.n_users).all(),
    detail=f"fewest {own['LinkedIn online revenue (+0.8%)'].min():,.0f} users",
)
claims.check(
    "the MDE at Holm's strictest step exceeds the last step's",
    (power["MDE"] > power["MDE, last Holm step"]).all() or m_tested == 1,
    pinned=False,
)

# %% [markdown]
# ## 4. Relative lifts need the control's noise too
#
# A relative lift is a ratio of two noisy means, mean(arm) / mean(control) - 1. Dividing the
# interval of the absolute lift by the control's point mean treats the denominator as exact. The
# readout's `relative lo` / `relative hi` instead come from a **ratio bootstrap**
# (`llmrec_lib/abtest.py::ratio_bootstrap`): resample users, recompute both means and their
# ratio on each resample, take percentiles. Below, the naive interval beside it and the
# delta-method approximation (`abtest.py::ratio_delta_interval`), which the bootstrap should
# roughly match.

# %%
rel_rows = []
for a in tested:
    x = results[a].per_user.set_index("user_id")[metric]
    c = results[control].per_user.set_index("user_id")[metric].loc[x.index]
    dm = abtest.ratio_delta_interval(x.to_numpy(), c.to_numpy())
    r = board.loc[a]
    rel_rows.append(
        {
            "arm": a,
            "relative lift": r["relative lift"],
            "naive lo": r["lift lo"] / base_mean,
            "naive hi": r["lift hi"] / base_mean,
            "ratio lo": r["relative lo"],
            "ratio hi": r["relative hi"],
            "delta lo": dm.lo,
            "delta hi": dm.hi,
        }
    )
rel = pd.DataFrame(rel_rows).set_index("arm")
rel["ratio / naive width"] = (rel["ratio hi"] - rel["ratio lo"]) / (
    rel["naive hi"] - rel["naive lo"]
)
rel.round(4)

# %% [markdown]
# The naive interval is wrong in both directions. Where an arm is far below the control (the LLM
# arms, a ratio near 0.25), the control's noise largely cancels in the ratio and the naive
# interval is too wide; where an arm tracks the control closely, it is about right. The ratio
# bootstrap agrees with the delta method to within a small fraction of the interval's width,
# which is what 602 users should give.

# %%
width = rel["ratio hi"] - rel["ratio lo"]
gap_lo = ((rel["ratio lo"] - rel["delta lo"]).abs() / width).max()
gap_hi = ((rel["ratio hi"] - rel["delta hi"]).abs() / width).max()
claims.check(
    "the ratio bootstrap's lower ends match the delta method's (within 15% of width)",
    gap_lo < 0.15,
    detail=f"largest gap {gap_lo:.1%} of the width",
)
claims.check(
    "the ratio bootstrap's upper ends match the delta method's (within 15% of width)",
    gap_hi < 0.15,
    detail=f"largest gap {gap_hi:.1%} of the width",
)
claims.check(
    "every relative lift lies inside its ratio-bootstrap interval",
    (
        (rel["ratio lo"] <= rel["relative lift"])
        & (rel["relative lift"] <= rel["ratio hi"])
    ).all(),
)
abtest.check_arms(  # the mis-scaled interval was too wide here
    claims,
    results,
    ["LLM dual encoder"],
    "the naive interval is too wide for the LLM dual encoder (ratio / naive < 0.9)",
    lambda: rel.loc["LLM dual encoder", "ratio / naive width"] < 0.9,
    detail=lambda: f"{rel.loc['LLM dual encoder', 'ratio / naive width']:.2f}",
)

# %% [markdown]
# ## 5. Robustness: does the verdict depend on K or on the metric?
#
# The readout picked Recall@50 before looking. The same lists give Recall@10, @100 and NDCG@10
# (rank-aware); a conclusion that holds only at one depth is fragile. Each column below is a
# full readout (Holm within it).

# %%
rob_metrics = ["recall@10", "recall@50", "recall@100", "ndcg@10"]
boards = {
    m: board
    if m == metric
    else abtest.readout(results, control, m, n_boot=n_boot, seed=seed)
    for m in rob_metrics
}
robust = pd.concat(
    {
        m: b.loc[tested].apply(
            lambda r: (
                f"{r['relative lift']:+.1%} [{r['relative lo']:+.1%}, "
                f"{r['relative hi']:+.1%}] {r['verdict']}"
            ),
            axis=1,
        )
        for m, b in boards.items()
    },
    axis=1,
)
robust

# %% [markdown]
# The LLM arms that read a prompt only are worse at nearly every depth (the second recipe's
# interval at K = 10 and on NDCG@10 just reaches 0). The arms close to the control (SASRec,
# the three towers, chapter 03's whole-history arm) stay undetectable on recall at every
# depth, but rank-aware NDCG@10 is harsher: there item-kNN's better ordering of its first ten
# can turn their verdict into "worse" (the cell below names the arms whose verdict depends
# on the metric). None of them beats the control on any metric.
#
# Two arms do depend on K. The multi-source list beats item-kNN at K = 100, where its LLM
# slots reach movies that item-kNN ranks lower, and not at K = 50, where chapter 03 chose its
# share. That is why a readout fixes its K before looking, as this one did; a K picked after
# seeing the table would report the win. The rank-fusion list wins at K = 50, the K fixed
# beforehand, and at 100, but not at K = 10 or on NDCG@10: the LLM's votes reorder the middle
# of item-kNN's list more than its head.

# %%
flips = {a: sorted({boards[m].loc[a, "verdict"] for m in rob_metrics}) for a in tested}
print(
    "arms whose verdict depends on the metric:",
    {a: v for a, v in flips.items() if len(v) > 1} or "none",
)
abtest.check_arms(
    claims,
    results,
    ["LLM dual encoder"],
    "the LLM dual encoder is worse at K = 10, 50, 100 and on NDCG@10",
    lambda: all(
        boards[m].loc["LLM dual encoder", "verdict"] == "worse" for m in rob_metrics
    ),
)
abtest.check_arms(
    claims,
    results,
    [MULTI],
    "the multi-source list beats item-kNN at K = 100, not at K = 50",
    lambda: (
        boards["recall@100"].loc[MULTI, "verdict"] == "better"
        and boards["recall@50"].loc[MULTI, "verdict"] != "better"
    ),
)
abtest.check_arms(
    claims,
    results,
    [FUSION],
    "the rank-fusion list beats item-kNN at K = 50 and 100, not at K = 10",
    lambda: (
        boards["recall@50"].loc[FUSION, "verdict"] == "better"
        and boards["recall@100"].loc[FUSION, "verdict"] == "better"
        and boards["recall@10"].loc[FUSION, "verdict"] != "better"
    ),
)
for arm in CLOSE_ARMS:
    abtest.check_arms(
        claims,
        results,
        [arm],
        f"{arm} beats {control} on no metric",
        lambda: all(boards[m].loc[arm, "verdict"] != "better" for m in rob_metrics),
        detail=lambda: ", ".join(flips[arm]),
    )

# %% [markdown]
# ## 6. Segments: where the answer changes
#
# The same top-100 lists, re-measured on parts of the test set
# (`llmrec_lib/abtest.py::segment_masks`; each arm's mean per segment,
# `abtest.py::segment_table`):
# **cold targets** (movies nobody rated in training), **short** and **long history** users
# (split at the median number of history ratings), and **popular** and **tail targets** (the
# 20% most-rated movies in training against the rest). Recall@100 for the cold segment, where
# targets are few; the readout metric elsewhere.

# %%
segments = abtest.segment_masks(test_data, setting.split.train)
seg_rows = []
for seg, kwargs in segments.items():
    m = "recall@100" if seg == "cold targets" else metric
    t = abtest.segment_table(results, {seg: kwargs}, m, n_boot=n_boot, seed=seed)
    seg_rows.append(t.assign(metric=m))
seg_table = pd.concat(seg_rows, ignore_index=True)
seg_wide = seg_table.pivot(index="arm", columns="segment", values="mean").loc[
    list(results)
]
seg_wide.round(4)

# %%
fig, ax = plt.subplots(figsize=(11, 5.2))
width = 0.8 / len(results)
for i, arm in enumerate(results):
    part = seg_table[seg_table["arm"] == arm].set_index("segment").loc[list(segments)]
    x = np.arange(len(segments)) + i * width
    ax.bar(
        x,
        part["mean"],
        width,
        yerr=[part["mean"] - part["lo"], part["hi"] - part["mean"]],
        capsize=2,
        label=arm,
        color=plt.cm.tab20(i % 20),  # tab10 would repeat its last colour past 10 arms
    )
ax.set_xticks(
    np.arange(len(segments)) + 0.4 - width / 2,
    [f"{s}\n({'recall@100' if s == 'cold targets' else metric})" for s in segments],
)
ax.set_ylabel("mean over the segment's users (95% CI)")
ax.set_title(
    "Text arms win cold and tail targets; ID arms lead on popular ones and overall"
    if claims.reference  # what the reference data shows; on other data, read the bars
    else "Each arm's mean by segment"
)
# below the axes: 14 arms would cover the bars
ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
fig.tight_layout()

# %% [markdown]
# The ranking of designs flips twice. On **cold** targets the ID arms score exactly zero (they
# have no vector for a movie nobody rated), and the LLM arms without a popularity prior do
# not (chapter 03's whole-history arm carries a prior, which shuts cold movies out). On **tail** targets, the 80%
# of movies that share a minority of the ratings, the LLM dual encoder also beats item-kNN: text
# carries a movie's genre and era whether or not many people rated it. The overall readout is
# decided by the popular head, where co-occurrence counts are plentiful and the ID arms win.


# %%
def seg(arm, name):
    return seg_table[(seg_table["arm"] == arm) & (seg_table["segment"] == name)].iloc[0]


def seg_detail(arm, name):
    a, c = seg(arm, name), seg(control, name)
    return f"[{a['lo']:.4f}, {a['hi']:.4f}] vs [{c['lo']:.4f}, {c['hi']:.4f}]"


for name in ("cold targets", "tail targets"):  # the text arm wins here
    abtest.check_arms(
        claims,
        results,
        ["LLM dual encoder"],
        f"the LLM dual encoder beats {control} on {name} (intervals apart)",
        lambda: seg("LLM dual encoder", name)["lo"] > seg(control, name)["hi"],
        detail=lambda: seg_detail("LLM dual encoder", name),
    )
abtest.check_arms(  # and loses here
    claims,
    results,
    ["LLM dual encoder"],
    f"{control} beats the LLM dual encoder on popular targets (intervals apart)",
    lambda: (
        seg(control, "popular targets")["lo"]
        > seg("LLM dual encoder", "popular targets")["hi"]
    ),
    detail=lambda: seg_detail("LLM dual encoder", "popular targets"),
)

# %% [markdown]
# Chapter 03's last list shows what a catalogue that must show new movies can do instead of
# a prior that shuts them out. It keeps the rank fusion of item-kNN and the LLM, and gives
# the members who read the long tail slots of their own for never-rated movies, filled in
# the LLM's order (chapter 03 chose the members and the share on validation, by its goal:
# level with item-kNN on all targets, ahead of zero-shot MiniLM on cold ones; chapter 03 also
# says that this rule was written after a scratch run had shown test). It finds the most
# cold targets of any arm here. The slots are not free: they spend the fusion's lead,
# and on all targets the list falls back level with item-kNN. The cell prints the paired
# price against the fusion without slots.

# %%
cold_price = (
    results[COLD_SLOTS].compare(results[FUSION], metric)
    if (COLD_SLOTS in results and FUSION in results)
    else None
)
if cold_price is not None:
    print(
        f"{COLD_SLOTS} minus {FUSION}, {metric}: {cold_price.mean_diff:+.4f} "
        f"[{cold_price.lo:+.4f}, {cold_price.hi:+.4f}]"
    )
abtest.check_arms(
    claims,
    results,
    [COLD_SLOTS],
    "the rank fusion with cold slots finds the most cold targets of any arm "
    "(Recall@100)",
    lambda: seg_wide["cold targets"].idxmax() == COLD_SLOTS,
    detail=lambda: (
        f"{seg_wide.loc[COLD_SLOTS, 'cold targets']:.4f}; next "
        f"{seg_wide['cold targets'].drop(COLD_SLOTS).max():.4f}"
    ),
)
abtest.check_arms(
    claims,
    results,
    [COLD_SLOTS, FUSION],
    f"the cold slots cost the fusion's lead: below the fusion on {metric} (paired, "
    f"below 0), no detectable difference from {control}",
    lambda: (
        cold_price.hi < 0
        and board.loc[COLD_SLOTS, "verdict"] == "no detectable difference"
    ),
    detail=lambda: (
        f"[{cold_price.lo:+.4f}, {cold_price.hi:+.4f}]; "
        f"{board.loc[COLD_SLOTS, 'verdict']}"
    ),
)

# %% [markdown]
# Those intervals are per arm. The paired test of each arm against the control *within* each
# segment is sharper, but looking at every segment of every arm multiplies the chances of a
# lucky win: here one Holm correction runs over all segments x arms together
# (`llmrec_lib/abtest.py::segment_readout`), and each "no detectable difference" again carries
# its MDE. Where two arms are equal for every user by construction (two ID models that both
# score 0 on cold targets), the verdict says "identical", not "no detectable difference":
# nothing was tested.

# %%
# a bootstrap p-value is at least 1 / (n_boot + 1) and Holm multiplies the smallest by
# the number of tests, so the resamples grow with the tests: the floor stays at 1%
# whatever the number of arms
n_boot_holm = max(n_boot, 100 * len(segments) * m_tested)
seg_read = abtest.segment_readout(
    results,
    segments,
    control,
    metric,
    metric_for={"cold targets": "recall@100"},
    n_boot=n_boot_holm,
    seed=seed,
)
print(f"{int(seg_read['p'].notna().sum())} tests under one Holm correction")
seg_read.pivot(index="arm", columns="segment", values="verdict").loc[
    tested, list(segments)
]

# %%
seg_read.set_index(["segment", "arm"])[
    [
        "metric",
        "users",
        "control",
        "mean",
        "lift",
        "lift lo",
        "lift hi",
        "p (Holm)",
        "MDE",
        "verdict",
    ]
].round(4)


# %%
def seg_verdict(arm, name):
    return seg_read[(seg_read["arm"] == arm) & (seg_read["segment"] == name)].iloc[0][
        "verdict"
    ]


for name, verdict in (  # the text arm's wins survive the correction
    ("cold targets", "better"),
    ("tail targets", "better"),
    ("popular targets", "worse"),
):
    abtest.check_arms(
        claims,
        results,
        ["LLM dual encoder"],
        f"after Holm over segments x arms, the LLM dual encoder is {verdict} on {name}",
        lambda: seg_verdict("LLM dual encoder", name) == verdict,
        detail=lambda: seg_verdict("LLM dual encoder", name),
    )
identical = seg_read[seg_read["verdict"] == abtest.IDENTICAL]
print(
    "identities, not evidence:",
    list(zip(identical["segment"], identical["arm"])) or "none",
)
claims.check(
    "an 'identical' verdict has a zero-width interval at 0",
    (identical["lift lo"] == 0).all() and (identical["lift hi"] == 0).all(),
    pinned=False,
)

# %% [markdown]
# A segment readout re-scores the same lists; it does not show what the lists are made of. The
# share of each arm's top-50 slots that go to popular movies (the 20% most rated in training),
# to the rated tail, and to movies nobody rated makes a **mix shift** visible: an arm can win
# the tail segment because it spends more slots there, at the head's expense. The shares are
# `llmrec_lib/abtest.py::slot_shares`.

# %%
is_pop = abtest.popular_items(setting.ml.item_ids, setting.split.train)
rated = (
    setting.split.train.groupby("item_id")
    .size()
    .reindex(setting.ml.item_ids, fill_value=0)
    .to_numpy()
    > 0
)
groups = {
    "popular items": is_pop,
    "tail items (rated)": ~is_pop & rated,
    "never-rated items": ~rated,
}
mix = abtest.slot_shares(results, groups, k=50)
mix.round(3)

# %%
claims.check(
    "every arm's slot shares sum to 1", np.allclose(mix.sum(axis=1), 1.0), pinned=False
)
abtest.check_arms(
    claims,
    results,
    ["LLM dual encoder"],
    f"the LLM dual encoder gives the rated tail 5 points more slots than {control}",
    lambda: (
        mix.loc["LLM dual encoder", "tail items (rated)"]
        > mix.loc[control, "tail items (rated)"] + 0.05
    ),
    detail=lambda: (
        f"{mix.loc['LLM dual encoder', 'tail items (rated)']:.3f} vs "
        f"{mix.loc[control, 'tail items (rated)']:.3f}"
    ),
)
claims.check(  # item-kNN cannot recommend a movie nobody rated
    f"{control} recommends no movie nobody rated",
    mix.loc[control, "never-rated items"] == 0,
    pinned=False,
)

# %% [markdown]
# ## 7. What each arm costs
#
# Accuracy is half a readout; the other half is the bill. Per arm, measured or computed from
# the model's own sizes:
#
# - **training time**: seconds of training on this machine's 2 CPU cores (the LinkedIn arms'
#   full-mode runs; the classic and RecGPT arms as fitted in this run's chapters 02 and 08);
# - **inference FLOPs per user**: the forward pass that turns a user into a query vector, plus
#   scoring the whole catalogue against it (2 * d * items); the LLM's forward is counted from
#   its real prompt length and weights (`llmrec_lib/scaling.py::forward_flops`); the
#   table of arms is `llmrec_lib/scaling.py::arm_costs`;
# - **index memory**: item vectors as float32 (n_items * d * 4 bytes); item-kNN keeps an
#   item-item similarity matrix instead;
# - **freshness**: what a new movie needs before it can be retrieved.

# %%
from llmrec_lib import backbones, scaling, text
from llmrec_lib.recgpt import towers

n_items = len(setting.ml.item_ids)
smol = backbones.load_backbone("smollm2-135m", n_layers=8)
n_params_8 = sum(p.numel() for n, p in smol.body.named_parameters() if "embed" not in n)
text.add_markers(smol.tokenizer)
prompts = text.user_prompts(
    setting.split.history("test"),
    setting.history_text,
    smol.tokenizer,
    budget=128,
    users=test_data.user_ids,
)
user_tokens = float(prompts["n_tokens"].mean())
t_user = int(round(user_tokens))  # one forward over the mean prompt
llm_user_flops = scaling.forward_flops(n_params_8, t_user, 8, smol.hidden_size, t_user)
llm_item_tokens = 40
llm_item_flops = scaling.forward_flops(
    n_params_8, llm_item_tokens, 8, smol.hidden_size, llm_item_tokens
)
print(
    f"SmolLM2 (8 layers): {n_params_8 / 1e6:.1f}M non-embedding weights; "
    "a user prompt averages "
    f"{user_tokens:.0f} tokens -> {llm_user_flops / 1e9:.2f} GFLOP per user; "
    "a new item "
    f"({llm_item_tokens} tokens at most) {llm_item_flops / 1e9:.2f} GFLOP"
)

# %% [markdown]
# The classic arms are cheap enough to refit here, which lets us measure their memory and their
# latency per user directly. The LLM's latency is measured by encoding test users one at a time
# with the fine-tuned model (the online case: a user arrives, their prompt is encoded). On
# other data that arm is not read out, so it is not timed; its FLOPs, computed from the
# model's sizes, are the same on any data.

# %%
from llmrec_lib import baselines
from llmrec_lib.encoders import DualEncoder


def per_user_ms(fn, user_ids) -> np.ndarray:
    """Milliseconds per user, one user at a time (the online case)."""
    out = []
    for u in user_ids:
        t0 = time.perf_counter()
        fn(np.array([u]))
        out.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(out)


probe_users = test_data.user_ids[:20]
knn = baselines.ItemKNN(setting.ml.item_ids, n_neighbors=None).fit(setting.split.train)
knn_bound = knn.for_stage(setting.split, "test")
pop = baselines.MostPopular(
    setting.ml.item_ids,
    window_days=ch02["choices"]["popularity_window_days"],
    anchor="user",
).fit(setting.split.train)
pop_bound = pop.for_stage(setting.split, "test")
timings = {
    "popularity": per_user_ms(pop_bound.score, probe_users),
    "item-kNN": per_user_ms(knn_bound.score, probe_users),
}
tuned = None  # on other data the LLM dual encoder's arm is not read out: not timed
if "LLM dual encoder" in results:
    tuned = DualEncoder.from_adapter(recipes.ARTIFACTS / "infonce")
    llm_prompts = dict(zip(prompts["user_id"], prompts["prompt"]))
    timings["LLM dual encoder"] = per_user_ms(
        lambda u: tuned.encode_texts(
            [llm_prompts[int(u[0])]], max_tokens=128, progress=False
        ),
        probe_users,
    )
measured = {k: float(v.mean()) for k, v in timings.items()}
measured_p95 = {k: float(np.percentile(v, 95)) for k, v in timings.items()}
print(
    {k: f"{v:.1f} ms (p95 {measured_p95[k]:.1f})" for k, v in measured.items()},
    f"per user over {len(probe_users)} users (encode + score the catalogue)",
)


# %%
def fit_seconds(arm: str) -> float:
    if arm in RECIPE_OF:  # a committed adapter: its full-mode training
        meta_path = recipes.ARTIFACTS / RECIPE_OF[arm] / "encoder.json"
        return json.loads(meta_path.read_text())["meta"]["train_seconds_all_steps"]
    src = SOURCES[arm][1]
    return float(
        evaluate.StoredRanking(src, setting.ml.item_ids).meta.get("fit_seconds", np.nan)
    )


# the second recipe reads up to 256 history tokens; the LinkedIn arm runs chapter 03's
# chosen recipe, and the multi-source arm runs that and item-kNN
p256 = text.user_prompts(
    setting.split.history("test"),
    setting.history_text,
    smol.tokenizer,
    budget=256,
    users=test_data.user_ids,
)
t256 = int(round(float(p256["n_tokens"].mean())))
# arm -> FLOPs per user, index bytes, what a new movie needs
arm_cost = scaling.arm_costs(
    n_items,
    llm_user_flops=llm_user_flops,
    llm_long_user_flops=scaling.forward_flops(
        n_params_8, t256, 8, smol.hidden_size, t256
    ),
    llm_item_flops=llm_item_flops,
    llm_dim=(tuned.backbone if tuned is not None else smol).hidden_size,
    median_history=float(np.median(test_data.n_history)),
    knn_nnz=knn.nnz,
    sasrec=ch02["sasrec"]["config"],
    towers=towers.TowerConfig(),
    llm_best_long=best_recipe == "mixed",
)
costs = pd.DataFrame(
    [
        {
            "arm": arm,
            "design": design[arm],
            "training s": fit_seconds(arm),
            "MFLOP per user": arm_cost[arm].mflop_per_user,
            "ms per user (measured)": measured.get(arm, np.nan),
            "p95 ms per user (measured)": measured_p95.get(arm, np.nan),
            "index MiB": arm_cost[arm].index_bytes / 2**20,
            "a new movie needs": arm_cost[arm].new_item_needs,
        }
        for arm in results
    ]
).set_index("arm")
costs.round(3)

# %% [markdown]
# The LLM arm costs several hundred times the compute per user of SASRec, and its index is
# about nine times larger at full dimension (chapter 05 shrinks it). Measured latency tells a
# subtler story on a CPU: item-kNN's sparse scoring of the whole catalogue for one user takes
# as long as the LLM's forward pass, because FLOPs are not the only cost (memory traffic is).
# What the LLM buys is in the last column: a new movie is retrievable after one forward pass
# over its text, while every ID arm must wait for ratings and a refit. That is the trade behind
# the cold and tail segments above.

# %%
# the design's cost, from the model's sizes: the same whether or not its arm is read out
ratio = arm_cost["LLM dual encoder"].mflop_per_user / arm_cost["SASRec"].mflop_per_user
print(f"LLM / SASRec FLOPs per user: {ratio:,.0f}x")
claims.check(  # the LLM's user encoding dwarfs an ID model's
    "the LLM dual encoder needs over 100x SASRec's FLOPs per user",
    ratio > 100,
    detail=f"{ratio:,.0f}x",
)

# %% [markdown]
# ## 8. Guardrails
#
# An online test watches guardrail metrics beside the goal metric: things that must not get
# worse whichever arm wins. From the stored top-50 lists alone we can measure three
# (`llmrec_lib/abtest.py::guardrails`, which calls `metrics.py::coverage`,
# `metrics.py::novelty` and `metrics.py::genre_entropy`):
#
# - **coverage@50**: the share of the catalogue recommended to at least one test user;
# - **novelty@50**: the mean self-information -log2 p(i) of recommended movies, p(i) the
#   (add-one smoothed) share of training ratings: higher means less popular movies;
# - **genre entropy@50**: the Shannon entropy (bits) of each list's genre mix, each movie's
#   weight split evenly over its genres. We chose entropy over "distinct primary categories"
#   because MovieLens lists a movie's genres alphabetically, so it has no primary genre.
#
# Latency is a guardrail too, but it needs the model running: it is measured above (mean and
# p95 per user, 20 users) only for the arms section 7 refits or loads; for the others,
# replayed from stored rankings, it is **not measured**.

# %%
genre_mat, genre_names = abtest.genre_matrix(setting.ml.movies, setting.ml.item_ids)
guard = abtest.guardrails(results, genre_mat, k=50, n_boot=n_boot, seed=seed)
guard["p95 ms per user"] = pd.Series(measured_p95)
guard.insert(0, "design", [design[a] for a in guard.index])
n_genres = len(genre_names)
print(
    f"{n_genres} genres; the most a list can reach is "
    f"log2({n_genres}) = {np.log2(n_genres):.2f} bits"
)
guard.round(3)

# %% [markdown]
# The guardrails split the designs the way the segments did: the LLM dual encoder spreads its
# lists over several times more of the catalogue and recommends much less popular movies than
# item-kNN, which concentrates on the head. That is the other side of its lower Recall@50, not a
# free win. Diversity goes the other way: each LLM list is *narrower* in genre than item-kNN's,
# because a text model retrieves movies that read like the user's history, genre words
# included, while co-occurrence mixes whatever popular movies people watched together.

# %%
g_ctl = guard.loc[control]


def g_llm(col: str) -> float:
    return guard.loc["LLM dual encoder", col]


for claim, holds, detail in (
    (
        f"the LLM dual encoder covers more of the catalogue than {control}",
        lambda: g_llm("coverage@50") > g_ctl["coverage@50"],
        lambda: f"{g_llm('coverage@50'):.3f} vs {g_ctl['coverage@50']:.3f}",
    ),
    (
        f"the LLM dual encoder's lists are more novel than {control}'s (CIs apart)",
        lambda: g_llm("novelty@50 lo") > g_ctl["novelty@50 hi"],
        lambda: f"lo {g_llm('novelty@50 lo'):.2f} vs hi {g_ctl['novelty@50 hi']:.2f}",
    ),
    (  # narrower lists, by genre
        f"the LLM dual encoder's lists are narrower in genre than {control}'s",
        lambda: g_llm("genre entropy@50 hi") < g_ctl["genre entropy@50 lo"],
        lambda: (
            f"hi {g_llm('genre entropy@50 hi'):.2f} vs "
            f"lo {g_ctl['genre entropy@50 lo']:.2f}"
        ),
    ),
):
    abtest.check_arms(
        claims, results, ["LLM dual encoder"], claim, holds, detail=detail
    )
claims.check(
    "every list's genre entropy lies between 0 and log2(genres)",
    guard["genre entropy@50"].between(0, np.log2(len(genre_names))).all(),
    pinned=False,
)

# %% [markdown]
# ## 9. An offline replay is not an A/B test
#
# Everything above replays stored lists against held-out ratings. An online A/B test differs
# in four ways that matter:
#
# - **Units.** Online, users are randomised to arms and each sees one arm; here every user
#   "sees" every arm, which is why the paired design works and why our intervals are narrower
#   than a between-users test of the same size would give.
# - **Exposure.** A held-out rating was made without our lists being shown; online, the list
#   shapes what gets clicked. A replay credits an arm only for movies the user found anyway, so
#   it undervalues arms that would *cause* discoveries (the tail arms most of all).
# - **Interference.** Online arms share a catalogue, inventory and, through retraining, logs:
#   what one arm shows changes the data the other arms learn from. Offline there is none.
# - **Novelty and learning effects.** Users react to a changed feed at first and then settle;
#   online lifts move over the first weeks. A replay has no time axis at all.
#
# So the readout ranks designs and sizes their differences on past behaviour; an online test
# is still needed to measure their effect. **Interleaving** sits between the two: online, one
# list is built from both arms (team draft: the arms take turns picking their best remaining
# item, a coin deciding who goes first), and each click is credited to the arm that placed
# the item. Every user compares both arms at once, which is why interleaving needs far fewer
# users than an A/B test. We can replay it: a "click" is a held-out target in the interleaved
# top-50 (`llmrec_lib/abtest.py::interleave_results`, seeded), and a user prefers the arm with
# more clicks.
#
# The replay over users is `abtest.py::interleave`, the sign test on the preferences
# `abtest.py::sign_test`, and the draft of one user's list `abtest.py::team_draft`: the team
# with fewer picks goes next (a coin when tied) and adds its best item not yet placed, and
# every slot remembers which team filled it. Open the cell to read it:

# %% tags=["hide-output"]
show.source(abtest.team_draft)

# %%
inter_k = 50
inter_rows, inter_outcomes = [], {}
for a in tested:
    r = abtest.interleave_results(
        results[a], results[control], test_data, k=inter_k, seed=seed, n_boot=n_boot
    )
    inter_outcomes[a] = r.outcome
    inter_rows.append(
        {
            "arm": a,
            "prefer arm": r.share_a,
            f"prefer {control}": r.share_b,
            "ties": r.share_ties,
            "preference (arm - control)": r.delta,
            "lo": r.lo,
            "hi": r.hi,
            "p (sign test)": r.p_sign,
        }
    )
inter = pd.DataFrame(inter_rows).set_index("arm")
inter["p (Holm)"] = abtest.holm(inter["p (sign test)"].to_numpy())
inter.round(4)

# %% [markdown]
# **Sensitivity.** Both methods compare the same two systems, so we can ask how many users each
# needs to detect the difference it sees here with 80% power at a 5% level. For the paired
# readout the per-user outcome is the Recall@50 difference; for interleaving it is the user's
# preference (+1, 0, -1). In both cases `llmrec_lib/abtest.py::users_needed` takes the mean and
# SD of those per-user outcomes measured in this replay (the normal approximation). To check the
# approximation on the interleaving side, `abtest.py::simulated_power` draws experiments of that
# many users with replacement from the replayed outcomes and counts how often the test rejects:
# it should be near 80%.

# %%
sens_rows = []
for a in tested:
    d, o = diffs(a), inter_outcomes[a].astype(float)
    n_paired = abtest.users_needed(d.mean(), d.std(ddof=1))
    n_inter = abtest.users_needed(o.mean(), o.std(ddof=1))
    check = (
        abtest.simulated_power(o, int(np.ceil(n_inter)), n_sims=400, seed=seed)
        if 10 <= n_inter <= 20_000
        else np.nan
    )
    sens_rows.append(
        {
            "arm": a,
            "users needed, paired readout": n_paired,
            "users needed, interleaving": n_inter,
            "paired / interleaving": n_paired / n_inter,
            "simulated power at that n": check,
        }
    )
sens = pd.DataFrame(sens_rows).set_index("arm")
sens.round(2)

# %% [markdown]
# Where two arms differ hugely (the first-edition LLM arms against item-kNN), both
# methods need only a handful of users. For SASRec, which the readout cannot tell from the
# control, the replayed interleaving needs over ten times fewer users than the paired
# Recall@50 readout (asserted above). The reason is what each outcome measures: a Recall@50
# difference mixes every slot of both lists, including the many hits the two arms share, while
# an interleaving preference is decided by the few slots where the lists disagree. That is the
# regime where online teams use interleaving: to rank close candidates quickly, before an A/B
# test measures the winner's effect. It is not a law: for the three towers, whose lists share
# fewer hits with item-kNN's, the ratio printed above is near 1 or below, and interleaving
# buys nothing.

# %%
clear = [
    a
    for a in tested
    if board.loc[a, "verdict"] != "no detectable difference"
    and inter.loc[a, "p (Holm)"] < 0.05
]
abtest.check_arms(
    claims,
    results,
    ["LLM dual encoder"],
    "both methods separate the LLM dual encoder from the control (Holm)",
    lambda: "LLM dual encoder" in clear,
)
abtest.check_arms(  # users prefer the control's picks
    claims,
    results,
    ["LLM dual encoder"],
    "interleaved users prefer the control's picks to the LLM dual encoder's",
    lambda: inter.loc["LLM dual encoder", "hi"] < 0,
    detail=lambda: f"preference hi {inter.loc['LLM dual encoder', 'hi']:+.3f}",
)
same_sign = [  # the same direction in both methods
    np.sign(inter.loc[a, "preference (arm - control)"]) == np.sign(board.loc[a, "lift"])
    for a in clear
]
claims.check(
    "every arm both methods separate moves the same way in both",
    all(same_sign),
    detail=", ".join(a for a, ok in zip(clear, same_sign) if not ok)
    or f"{len(clear)} arms",
)
checked = sens["simulated power at that n"].dropna()
claims.check(  # 400 simulations: SE 0.02
    "simulated power at the computed n is 80% (within 0.08) for every arm checked",
    len(checked) and (checked.sub(0.8).abs() < 0.08).all(),
    detail=f"{len(checked)} arms, " + ", ".join(f"{v:.2f}" for v in checked),
)
close = [
    a
    for a in CLOSE_ARMS
    if a in board.index and board.loc[a, "verdict"] == "no detectable difference"
]
claims.check(
    "interleaving needs over 2x fewer users than the paired readout for SASRec",
    "SASRec" in close and sens.loc["SASRec", "paired / interleaving"] > 2,
    detail=f"{board.loc['SASRec', 'verdict']}, "
    f"ratio {sens.loc['SASRec', 'paired / interleaving']:.2f}",
)
ratio_close = sens.loc[close, "paired / interleaving"].round(2).to_dict()
print("paired / interleaving users, arms close to the control:", ratio_close)
llm_clear = [a for a in clear if a.startswith("LLM dual encoder")]
claims.check(
    "the paired readout separates each clear LLM dual encoder arm with under 100 users",
    (sens.loc[llm_clear, "users needed, paired readout"] < 100).all(),
    detail=", ".join(
        f"{a}: {sens.loc[a, 'users needed, paired readout']:.0f}" for a in llm_clear
    )
    or "no such arm here",
)

# %% [markdown]
# ## 10. The claim ledger
#
# The book started from an overview of the two designs (a note in Russian, not part of this
# repository): a comparison table and each design's advantages and limits. Each claim below is
# paired with the measurement in this book that bears on it **at our scale** (MovieLens
# ml-latest-small, a 135M-parameter model, 2 CPU cores) and a plain verdict. A claim about
# production scale can be supported, contradicted, or simply not testable here; the verdict says
# which, and the evidence column says where to look. Two rules keep the ledger honest:
#
# - "not detectable" always says what it rules out: the MDE of that comparison (from its
#   per-user differences, or from its reported 95% interval with
#   `llmrec_lib/abtest.py::mde_from_interval`);
# - no verdict rests on a comparison that is equal by construction (a model against itself) or
#   on a judge that the pipeline satisfies by construction.


# %%
def load(ch: str) -> dict | None:
    """Chapter ``ch``'s results, checked for the keys it declares in
    `llmrec_lib/results.py::RECORDS`; on other data None when that chapter did not
    run."""
    return records.load(ch, *records.RECORDS[ch].keys, missing_ok=not claims.reference)


ch01, ch03, ch04, ch05, ch06, ch07, ch08 = (
    load(c) for c in ("01", "03", "04", "05", "06", "07", "08")
)
BEST_LLM = "LLM, whole history + prior"
facts = {}  # what the rules below the ledger check: the fusion and explanation evidence


def not_detectable(mde_abs: float, scale: float | None = None) -> str:
    rel_txt = f" ({mde_abs / scale:.0%} relative)" if scale else ""
    return (
        "not detectable at our scale: "
        f"rules out effects of +/-{mde_abs:.3f}{rel_txt} or larger (80% power)"
    )


def interval_verdict(
    lo: float,
    hi: float,
    scale: float | None = None,
    better="supported",
    worse="contradicted",
) -> str:
    return (
        better
        if lo > 0
        else worse
        if hi < 0
        else not_detectable(abtest.mde_from_interval(lo, hi), scale)
    )


def read_out(name: str) -> str:
    """``name``, or NotOnThisData when that arm is not in this readout."""
    return abtest.need(name if name in results else None, f"the arm '{name}'")


def cell(ch: dict | None, number: str) -> dict:
    """A chapter's results, or NotOnThisData when that chapter did not run here."""
    return abtest.need(ch, f"chapter {number}'s results")


# One function per row: it returns (evidence, verdict). A row whose input a chapter did
# not produce on this data reads "not tested on this data" (abtest.ledger_row).
def fine_tuning():
    lift = cell(ch03, "03")["relative_lift_recall@10"]
    return (
        f"ch03: fine-tuning lifts test Recall@10 by {lift:+.0%} over zero-shot",
        "supported" if lift > 0.5 else "not supported",
    )


def one_llm():
    # the book's LinkedIn arm (chapter 03's section 9, chosen on validation)
    llm_vs_knn = board.loc[read_out(BEST_LLM)]
    llm_mde = board.loc[BEST_LLM, ["MDE", "relative MDE"]]
    return (
        f"this readout: {metric} {llm_vs_knn[metric]:.3f} "
        f"vs {control} {board.loc[control, metric]:.3f}, "
        f"lift {llm_vs_knn['relative lift']:+.0%} "
        f"[{llm_vs_knn['relative lo']:+.0%}, {llm_vs_knn['relative hi']:+.0%}]",
        "not at our scale"
        if llm_vs_knn["verdict"] == "worse"
        else "supported"
        if llm_vs_knn["verdict"] == "better"
        else not_detectable(llm_mde["MDE"], base_mean),
    )


def multi_source():
    # Chapter 03 chose the blend (a quota or a rank fusion) and the LLM's part in it on
    # validation; the row reads out that arm. A share of 0 makes the quota item-kNN
    # itself, and a readout of an arm against itself is no evidence: the evidence is
    # then validation's.
    c3 = cell(ch03, "03")
    fusion = c3.get("multi_blend") == "fusion"
    if not fusion and c3["share"] == 0:
        return (
            "ch03: validation gave the LLM no slots (best share gains "
            f"{c3['multi_source_best_valid_gain']:+.4f} Recall@50, "
            "inside the 0.002 tie rule)",
            "not detectable at our scale: validation rules out gains above 0.002 "
            "Recall@50 for every share (the tie rule keeps item-kNN alone)",
        )
    arm = FUSION if fusion else MULTI
    vs = board.loc[read_out(arm)]
    return (
        f"this readout: {arm} (ch03's validation choice) vs {control}, "
        f"lift {vs['relative lift']:+.1%} "
        f"[{vs['relative lo']:+.1%}, {vs['relative hi']:+.1%}]",
        "supported"
        if vs["verdict"] == "better"
        else "contradicted"
        if vs["verdict"] == "worse"
        else not_detectable(vs["MDE"], base_mean),
    )


def context_length():
    fit = cell(ch01, "01")["share_users_fit"]["SmolLM2"]
    return (
        "ch01: whole positive history fits 128 / 1024 SmolLM2 tokens for "
        f"{fit['128']:.0%} / {fit['1024']:.0%} of users",
        "supported" if fit["1024"] < 0.9 else "not supported",
    )


def text_native():
    cold_llm, cold_knn = (
        seg(read_out("LLM dual encoder"), "cold targets"),
        seg("item-kNN", "cold targets"),
    )
    return (
        f"cold targets Recall@100: LLM {cold_llm['mean']:.3f} "
        f"vs {control} {cold_knn['mean']:.3f}; on all targets "
        f"the ID models lead (section 6, Holm over segments x arms)",
        "supported (wins cold, loses warm)"
        if seg_verdict("LLM dual encoder", "cold targets") == "better"
        and seg_verdict("LLM dual encoder", "popular targets") == "worse"
        else "mixed",
    )


def hard_negatives():
    hard2 = next(
        r for r in cell(ch04, "04")["table"] if r["arm"] == "+ 2 hard negatives"
    )
    hard2_base = hard2["recall@50"] - hard2["diff"]
    return (
        f"ch04: 2 hard negatives change test Recall@50 by {hard2['diff']:+.4f} "
        f"[{hard2['diff lo']:+.4f}, {hard2['diff hi']:+.4f}]",
        interval_verdict(hard2["diff lo"], hard2["diff hi"], hard2_base),
    )


def matryoshka():
    c5 = cell(ch05, "05")
    smallest = c5["matryoshka_vs_truncation_smallest"]
    return (
        "ch05: 1/4 of the dims keeps "
        f"{c5['keeps_at_quarter']['Matryoshka prefix']:.0%} "
        "of Recall@20 (not significant); "
        "at 1/16 Matryoshka beats truncation by "
        f"{smallest['mean_diff']:+.4f}",
        "partly supported" if smallest["lo"] > 0 else "not supported",
    )


def inference_cost():
    tower_fit_s = np.median(list(cell(ch08, "08")["fit_seconds"].values()))
    llm_fit_s = fit_seconds(read_out("LLM dual encoder"))
    return (
        f"section 7: the LLM dual encoder needs {ratio:,.0f}x SASRec's FLOPs "
        "per user; chapter 08's three towers "
        f"train in {tower_fit_s:.0f} s vs {llm_fit_s:,.0f} s",
        "supported" if ratio > 100 else "not supported",
    )


def fusion():
    # Fusion: chapter 08 picks b on validation. b = 1 makes the fused model the user
    # tower itself, so "fused minus user tower" is 0 by construction: that comparison
    # is no evidence either way.
    c8 = cell(ch08, "08")
    fused = c8["fused_minus_user_tower_recall@50"]
    b_chosen = c8["chosen"]["b"]
    head = c8.get("headline") or {}
    seeds08 = (c8.get("seed_averaged") or {}).get("ablations")
    if b_chosen < 1 and seeds08:
        fz = {
            "mean_diff": seeds08[0]["diff"],
            "lo": seeds08[0]["lo"],
            "hi": seeds08[0]["hi"],
        }
        fz_base = c8["seed_averaged"]["user_tower_recall@50"]
        fz_text = (
            f"ch08: fused with the LLM's tags (b = {b_chosen:g}) minus its own user "
            "tower, per-user Recall@50 averaged over 3 seeds"
        )
    elif b_chosen < 1:
        fz, fz_base = fused, None
        fz_text = f"ch08: fused (b = {b_chosen:g}) minus its own user tower"
    elif head.get("b", 1) < 1:
        fz, fz_base = head["diff"], head["user_tower_recall@50"]
        fz_text = (
            "ch08: the ID model's validation chose b = 1 "
            "(fused = user tower: an identity, not evidence); the "
            f"model without a user ID chose b = {head['b']:g}: "
            "fused minus its user tower"
        )
    else:
        fz, fz_base, fz_text = (
            None,
            None,
            "ch08: validation chose b = 1 for both models: fused = user tower",
        )
    facts["fusion"] = fz
    return (
        fz_text
        + (
            f", Recall@50 {fz['mean_diff']:+.4f} [{fz['lo']:+.4f}, {fz['hi']:+.4f}]"
            if fz
            else ""
        ),
        interval_verdict(fz["lo"], fz["hi"], fz_base)
        if fz
        else "not tested here (identity comparison only)",
    )


def explanations():
    # Explanations: "relevant" judges the tag the retrieval picked (by category), not
    # the writer, so it is not counted; "grounded" reads the text, and its
    # shuffled-item control shows it can fail.
    judges = cell(ch08, "08")["explanation_judges"]
    faith, form = judges["faithful"], judges["well formed"]
    grounded, shuffled = judges["grounded"], judges["grounded, shuffled items"]
    relevant_mean = judges["relevant"]["mean"]
    verdict = (
        "supported"
        if min(grounded["lo"], faith["lo"], form["lo"]) > 0.9
        else "partly supported (often unfaithful or generic)"
        if grounded["lo"] > shuffled["hi"]
        else "not supported"
    )
    facts["explain"] = (verdict, faith)
    return (
        "ch08: explanations grounded in a fact of their own film "
        f"{grounded['mean']:.0%} "
        f"[{grounded['lo']:.0%}, {grounded['hi']:.0%}] against {shuffled['mean']:.0%} "
        "when judged against another film; faithful "
        f"{faith['mean']:.0%} [{faith['lo']:.0%}, {faith['hi']:.0%}], "
        f"well formed {form['mean']:.0%}; 'relevant' ({relevant_mean:.0%}) judges the "
        "retrieval's tag pick, not the text, so it is not counted",
        verdict,
    )


def compression():
    comp = cell(ch06, "06")["compression"]
    return (
        "ch06: sequence-level compression saves "
        f"{comp['saving']['sequence-level']:.0%} of tokens; histories that fit "
        f"2048 tokens: {comp['fit']['2048']['raw']:.0%} raw -> "
        f"{comp['fit']['2048']['sequence-level']:.0%}",
        "supported"
        if comp["fit"]["2048"]["sequence-level"] > comp["fit"]["2048"]["raw"] + 0.1
        else "not supported",
    )


def tag_generation():
    c7 = cell(ch07, "07")
    judged = abtest.need(c7["tag_judges"], "chapter 07's judged tags")
    tag_hr = {r["system"]: r for r in judged if r["judge"] == "hr@6"}
    tuned_tags = next(v for k, v in tag_hr.items() if "LoRA" in k)
    v2 = c7["llm_it_v2"]
    v2_hr = v2["hr_at_k"]["LLM_IT v2"]["6"]
    v2_diff = next(
        r
        for r in v2["vs_rule_last_50"]
        if r["system"] == "LLM_IT v2" and r["judge"] == "hr@6"
    )
    return (
        f"ch07: the second LLM_IT's HR@6 {v2_hr:.2f} minus the counting rule's "
        f"(same history) {v2_diff['diff']:+.3f} "
        f"[{v2_diff['lo']:+.3f}, {v2_diff['hi']:+.3f}]; popular categories "
        f"{tag_hr['popular']['mean']:.2f}; first student {tuned_tags['mean']:.2f}",
        interval_verdict(
            v2_diff["lo"],
            v2_diff["hi"],
            None,
            better="contradicted",
            worse="supported",
        ),
    )


def staleness():
    stale = cell(ch07, "07")["staleness"]
    return (
        f"ch07: interests {stale['weeks']} weeks stale vs fresh, "
        f"HR@3 difference {stale['diff']:+.3f} "
        f"[{stale['lo']:+.3f}, {stale['hi']:+.3f}]",
        interval_verdict(
            stale["lo"],
            stale["hi"],
            stale["hr@3_fresh"],
            better="contradicted",
            worse="supported",
        ),
    )


LEDGER = [
    (
        "LinkedIn",
        "Fine-tuning brings the collaborative signal into the LLM's embeddings",
        fine_tuning,
    ),
    (
        "LinkedIn",
        "One LLM can replace the retrieval stack (classic models included)",
        one_llm,
    ),
    (
        "LinkedIn",
        "The LLM is one candidate source among several: it adds to classic retrieval",
        multi_source,
    ),
    ("LinkedIn", "User histories are limited by the context length", context_length),
    (
        "LinkedIn",
        "Text is a native item representation for an LLM; "
        "weaker where items are not text",
        text_native,
    ),
    (
        "LinkedIn",
        "Hard negatives (seen, not engaged) improve recall (+2.0% / +3.6%)",
        hard_negatives,
    ),
    (
        "LinkedIn",
        "Matryoshka training shrinks the embedding at little cost (3072 -> 512)",
        matryoshka,
    ),
    (
        "both",
        "LLM inference is costlier for the single-LLM design; "
        "RecGPT's final model is a light DNN",
        inference_cost,
    ),
    (
        "RecGPT",
        "Fusing predicted-tag embeddings with the user embedding improves retrieval",
        fusion,
    ),
    (
        "RecGPT",
        "Intermediate text makes recommendations interpretable and explainable",
        explanations,
    ),
    ("RecGPT", "Compressing behaviour lets longer histories into the LLM", compression),
    (
        "RecGPT",
        "Tag generation without collaborative signal is a limit",
        tag_generation,
    ),
    ("RecGPT", "Interests refreshed daily lag behind the user (a limit)", staleness),
]
ledger = pd.DataFrame(
    [abtest.ledger_row(claims, d, c, build) for d, c, build in LEDGER],
    columns=["design", "claim", "evidence (this book)", "verdict"],
)
ledger

# %%
claims.check(
    "every ledger row has a verdict, and there are 8 rows or more",
    (ledger["verdict"] != "").all() and len(ledger) >= 8,
    pinned=False,
    detail=f"{len(ledger)} rows",
)
undetected = ledger[ledger["verdict"].str.startswith("not detectable")]
claims.check(  # every null result says what it rules out
    "every 'not detectable' verdict says what it rules out",
    undetected["verdict"].str.contains("rules out").all(),
    pinned=False,
    detail=f"{len(undetected)} rows",
)
fz = facts.get("fusion")
claims.check(
    "the fusion verdict does not rest on an identity comparison",
    fz is None or not (fz["lo"] == fz["hi"] == 0),
    pinned=False,
)
explain_verdict, faith = facts.get("explain", ("not tested on this data", None))
claims.check(
    "the explanation verdict ignores the 'relevant' judge, and says 'supported' "
    "only when faithful above 0.9",
    "relevant" not in explain_verdict
    and (explain_verdict != "supported" or faith["lo"] > 0.9),
    pinned=False,
    detail=explain_verdict,
)
print(
    f"{len(undetected)} claims not detectable at our scale, "
    "each with the effect size it rules out"
)

# %% [markdown]
# ## 11. This run beside the reference full-mode run
#
# Quick mode refits the classic and RecGPT arms briefly; the LinkedIn arms are the committed
# full-mode adapters in both modes. So that a reader who runs only quick mode still sees what
# full mode says, the book commits one full-mode run of every chapter: `make reproduce`
# (`tools/reproduce.py`) wrote `results/full/`, including this chapter's readout and a manifest,
# `results/full/reproduce.json`, with the machine, the commit, and each chapter's wall time.
# Running `make reproduce` yourself overwrites those files with your own, and `git diff
# results/full` shows what changed. That run is on the reference data, so on other data this
# section is skipped: there is nothing of the same data to compare with.

# %%
SKIP_REPRO = "compares with results/full, the full-mode run on the reference data"
repro = claims.artifacts_fit
ref09 = None
adapter_sha = {}
if not repro:
    print(f"skipped on this data: section 11 ({SKIP_REPRO})")
    for claim in (
        "the committed reference run is a full-mode run",
        "the reference run's chapter 03 took less than its adapter's training",
        "the run from nothing's chapter 03 took longer than the reference's",
        "every committed adapter scores the same in both runs (within 0.002)",
        "quick mode gives every arm the reference full run's verdict",
        f"quick mode's {metric} is within 0.01 of full mode's for every arm",
    ):
        claims.skip(claim, SKIP_REPRO)
if repro:
    ref_dir = config.REFERENCE_RESULTS
    this_is_the_reference = (
        config.results_dir().resolve() == ref_dir.resolve()
    )  # make reproduce, now
    needed = ["reproduce.json"] + ([] if this_is_the_reference else ["ch09.json"])
    for f in needed:
        if not (ref_dir / f).is_file():
            raise FileNotFoundError(
                f"{ref_dir / f} is missing: restore it (git checkout results/full) "
                "or run make reproduce"
            )
    manifest = json.loads((ref_dir / "reproduce.json").read_text())
    ref09 = (
        None
        if this_is_the_reference
        else records.load("09", "mode", "readout", folder=ref_dir)
    )
    claims.check(
        "the committed reference run is a full-mode run",
        manifest["mode"] == "full" and (ref09 is None or ref09["mode"] == "full"),
        detail=f"manifest: {manifest['mode']}",
    )
    hw = manifest["hardware"]
    chapter_hours = (
        sum(c.get("seconds", 0) for c in manifest["chapters"].values()) / 3600
    )
    print(
        f"reference run: {manifest['command']} at commit {manifest['commit']}; "
        f"{hw['cpu']}, {hw['logical_cpus']} logical CPUs, "
        f"{hw.get('ram_gb', '?')} GB, GPU: {hw.get('gpu') or 'none'}; "
        f"{chapter_hours:.1f} h of chapters"
        + (" so far (this is that run)" if this_is_the_reference else "")
    )
    times = pd.DataFrame(
        {
            k: {
                "seconds": v.get("seconds"),
                "finished": v.get("finished"),
                "status": v["status"],
            }
            for k, v in manifest["chapters"].items()
        }
    ).T
    scratch_path = (
        ref_dir / "from-nothing.json"
    )  # the manifest of a second run, from a clone with no checkpoints
    scratch = json.loads(scratch_path.read_text()) if scratch_path.is_file() else None
    if scratch is not None:
        times["from nothing, s"] = pd.Series(
            {k: v.get("seconds") for k, v in scratch["chapters"].items()}
        )
        print(
            f"from nothing: {scratch['command']} at commit {scratch['commit']}, "
            f"{times['from nothing, s'].sum() / 3600:.1f} h of chapters, "
            "training included"
        )
times if repro else None

# %% [markdown]
# The chapter times above are wall-clock seconds of each full-mode chapter. The LLM training
# runs inside chapters 03-06 resume from their checkpoints, so a run that finds them finished
# spends its time on evaluation. The committed reference run did: it was made in a fresh clone
# given the finished checkpoints of the runs that trained the committed adapters
# (`results/full/README.md` tells how, and what it checked). The column "from nothing", where
# present, is a second `make reproduce` in a fresh clone given nothing, so its chapters 03-06
# include their training; the README lists what it matched and where its clock was paused.
# The two columns come from different commits: the reference's chapter 03 is a later version,
# with more sections, that encoded the catalogue with each adapter from empty caches, so the
# gap between them is a lower bound on the training, not a measure of it.
# What the training of the committed adapters took is recorded with each adapter:

# %%
if repro:
    adapter_meta = {
        n: recipes.train_record(n)
        for n in sorted(
            p.name
            for p in recipes.ARTIFACTS.iterdir()
            if (p / "encoder.json").is_file()
        )
    }
    adapter_seconds = {
        n: m for n, m in adapter_meta.items() if "train_seconds_all_steps" in m
    }
    unfinished = sorted(
        set(adapter_meta) - set(adapter_seconds)
    )  # a run still training has no total yet
    if unfinished:
        print("adapters without a finished training record (left out):", unfinished)
    recgpt_meta = json.loads((config.artifacts_dir("recgpt") / "meta.json").read_text())
    training = pd.DataFrame(
        [
            {
                "run": n,
                "command": m["command"],
                "training s": m["train_seconds_all_steps"],
                "hardware": m["hardware"],
            }
            for n, m in adapter_seconds.items()
        ]
        + [
            {
                "run": "recgpt (chapters 06-07)",
                "command": recgpt_meta["command"],
                "training s": recgpt_meta["timings_s"]["sft"],
                "hardware": recgpt_meta["hardware"],
            }
        ]
    ).set_index("run")
    training_h = training["training s"].sum() / 3600
    print(f"LLM training behind the committed adapters: {training_h:.1f} h")
training if repro else None

# %%
if repro and not this_is_the_reference:
    # the reference resumed finished training: chapter 03 took less than its training
    ch03_s = manifest["chapters"]["03_llm_dual_encoder"]["seconds"]
    claims.check(
        "the reference run's chapter 03 took less than its adapter's training",
        ch03_s < training.loc["infonce", "training s"],
        detail=f"{ch03_s:,.0f} s vs {training.loc['infonce', 'training s']:,.0f} s",
    )
if repro and scratch is not None:
    # and the run from nothing trained: its chapter 03 took longer than the
    # reference's, a later and longer chapter that encodes from empty caches
    t03 = times.loc["03_llm_dual_encoder"]
    claims.check(
        "the run from nothing's chapter 03 took longer than the reference's",
        t03["from nothing, s"] > t03["seconds"],
        detail=f"{t03['from nothing, s']:,.0f} s vs {t03['seconds']:,.0f} s",
    )

# %% [markdown]
# Now the readout of section 2, side by side: this run (mode printed at the top) and the
# reference full-mode run. An arm or a column the reference does not have yet is shown (empty on
# the reference side) but not compared; it is compared once the reference is regenerated.

# %%
if repro:
    adapter_sha = {
        a: recipes.adapter_sha(RECIPE_OF[a]) for a in results if a in RECIPE_OF
    }
    cols = [metric, "relative lift", "relative lo", "relative hi", "MDE", "verdict"]
    if ref09 is None:
        print("this run is the reference run: nothing to compare it with")
        side = board[cols]
    else:
        ref_board = pd.DataFrame(ref09["readout"]).set_index("arm")
        side = pd.concat(
            {
                f"this run ({cfg.mode})": board[cols],
                "reference (full)": ref_board.reindex(index=board.index, columns=cols),
            },
            axis=1,
        )
        in_ref = [a for a in board.index if a in ref_board.index]
        print(
            "not in the reference (shown, not compared):",
            [a for a in board.index if a not in in_ref] or "none",
            "| columns not in the reference:",
            [c for c in cols if c not in ref_board.columns] or "none",
        )
side if repro else None

# %%
if repro:
    if ref09 is not None:
        same_adapters = [
            a
            for a in adapter_sha
            if ref09.get("adapter_sha", {}).get(a) == adapter_sha[a]
        ]
        # chapter 03's prior weight behind an arm, chosen on validation in each run: a
        # near-tie there can flip with another CPU's bf16 rounding, and then the two
        # runs serve different systems from the same adapter
        PRIOR_OF = {  # arm -> chapter 03's name of its model (the committed adapter)
            "LLM, mixed negatives + log-Q": "SmolLM2, mixed negatives + log-Q "
            "(full-mode adapter)"
        }
        here03 = records.load("03", "beta", "linkedin_arm")
        ref03 = records.load("03", "beta", "linkedin_arm", folder=ref_dir)
        flipped = [
            a
            for a, k in PRIOR_OF.items()
            if a in same_adapters and here03["beta"].get(k) != ref03["beta"].get(k)
        ]
        for a in flipped:
            k = PRIOR_OF[a]
            vh = here03["linkedin_arm"]["valid_recall@50"][k]
            vr = ref03["linkedin_arm"]["valid_recall@50"][k]
            claims.check(
                f"{a}: where validation chose another prior weight in the two runs, "
                "its validation Recall@50 differs by under 0.002 (a near-tie flipped)",
                abs(vh - vr) < 0.002,
                detail=f"beta {here03['beta'][k]} vs {ref03['beta'][k]}; "
                f"validation {vh:.4f} vs {vr:.4f}",
            )
        # the same committed adapter, served the same way, scores the same in both runs,
        # up to the few near-ties that re-encoding in bf16 can reorder (measured: 99.98%
        # of top-100 slots identical)
        for a in (a for a in same_adapters if a not in flipped):
            claims.check(
                f"{a}: the committed adapter scores the same in both runs "
                "(within 0.002)",
                abs(ref_board.loc[a, metric] - board.loc[a, metric]) < 0.002,
                detail=f"{board.loc[a, metric]:.4f} vs {ref_board.loc[a, metric]:.4f}",
            )
        print(
            f"{len(same_adapters)} of {len(adapter_sha)} LinkedIn arms "
            "use the same adapter in both runs"
        )
        if cfg.mode == "quick":  # the claim below, on the arms the reference has
            this, ref = (
                side[f"this run ({cfg.mode})"].loc[in_ref],
                side["reference (full)"].loc[in_ref],
            )
            claims.check(
                "quick mode gives every arm the reference full run's verdict",
                (this["verdict"] == ref["verdict"]).all(),
                detail=", ".join(this.index[this["verdict"] != ref["verdict"]])
                or "all",
            )
            claims.check(
                f"quick mode's {metric} is within 0.01 of full mode's for every arm",
                (this[metric] - ref[metric]).abs().max() < 0.01,
                detail=f"largest gap {(this[metric] - ref[metric]).abs().max():.4f}",
            )

# %% [markdown]
# In quick mode every arm the reference has gets the same verdict as in the reference full-mode run. The LinkedIn
# arms are the same adapters; full mode's wider grids for the classic baselines and its longer
# sweeps for the three towers move their Recall@50 by less than a hundredth, well inside the
# intervals. So at this scale quick mode previews full mode faithfully. What full mode adds is
# the training itself (the hours above) and numbers you made on your own machine.

# %% [markdown]
# ## Results

# %%
out = {
    "chapter": "09",
    "mode": cfg.mode,
    "control": control,
    "metric": metric,
    "sources": {a: p for a, (_, p) in SOURCES.items()},  # saved relative to the repo
    "seeds": seeds_table["seeds"].astype(str).to_dict(),
    "seed_aware": seed_board.reset_index().to_dict(orient="records"),
    "adapter_sha": adapter_sha,
    "readout": board.reset_index().replace({np.nan: None}).to_dict(orient="records"),
    "published_lifts_users_needed": need.replace({np.inf: None}).to_dict(
        orient="index"
    ),
    "relative_intervals": rel.reset_index().to_dict(orient="records"),
    "robustness": {
        m: b.reset_index()[
            ["arm", m, "relative lift", "relative lo", "relative hi", "MDE", "verdict"]
        ]
        .replace({np.nan: None})
        .to_dict(orient="records")
        for m, b in boards.items()
    },
    "segments": seg_table.replace({np.nan: None}).to_dict(orient="records"),
    "segment_readout": seg_read.replace({np.nan: None}).to_dict(orient="records"),
    "slot_shares_top50": mix.to_dict(orient="index"),
    "guardrails_top50": guard.reset_index()
    .replace({np.nan: None})
    .to_dict(orient="records"),
    "interleaving_top50": inter.reset_index().to_dict(orient="records"),
    "sensitivity": sens.reset_index()
    .replace({np.nan: None, np.inf: None})
    .to_dict(orient="records"),
    "costs": costs.reset_index().replace({np.nan: None}).to_dict(orient="records"),
    "ledger": ledger.to_dict(orient="records"),
    "chapter_seconds": time.perf_counter() - chapter_t0,
}
records.save("09", out)  # checked against llmrec_lib/results.py::RECORDS

# %% [markdown]
# ## Which claims hold on this data
#
# Every check of this chapter, one row each. On the reference release every row holds (the
# chapter would have stopped otherwise). On other data, rows "pinned to reference" are the
# reference's findings measured again on the arms this data has: a "no" is a result about your
# data, not an error. Mechanics hold on any data. Rows "not tested" name an arm this data has
# no ranking for, a ledger row whose evidence a chapter did not produce here, or the
# comparison with the committed full-mode run of the reference data.

# %%
claims.report()  # the data, the guarantee that all held here, every row

# %% [markdown]
# ## Summary
#
# 1. Read as one A/B test, the classic item-kNN control is not beaten on all test targets by any
#    arm that is an LLM alone at our scale; the readout says by how much, with Holm-adjusted
#    p-values. The LLM as a second source does beat it: chapter 03's rank fusion of item-kNN
#    and the LLM lifts Recall@50 by about 8%, an interval above 0 after Holm.
# 2. A null verdict is reported with its minimum detectable effect: at 602 users no arm could
#    detect lifts the size of RecGPT's or LinkedIn's published online gains.
# 3. Relative lifts get a ratio-bootstrap interval; no single-source arm the claims are about
#    beats the control at K = 10, 50, 100 or on NDCG@10 (which is harsher on the close arms),
#    and the rank fusion's win holds at K = 50 and 100, not at K = 10.
# 4. The segments are where the designs differ: only text-based arms retrieve cold movies, and
#    they also win on the long tail (after one Holm correction over all segments and arms); the
#    lists' mix shows why, and so do the guardrails (coverage, novelty). Chapter 03's fusion
#    with cold slots finds the most cold targets of all, paid for with the fusion's lead: on
#    all targets it is level with item-kNN.
# 5. An offline replay is not an online test. A replayed interleaving needs several to tens of
#    times fewer users than the paired readout to separate arms close to the control; for arms
#    far apart both need only a handful.
# 6. The LLM's per-user cost is orders of magnitude above an ID model's; its payoff is freshness.
# 7. The ledger separates what our measurements support, contradict, or cannot detect (and then
#    what they rule out).
# 8. The committed full-mode reference run (`make reproduce`) gives every arm it has the same
#    verdict as quick mode; its manifest says on what machine and in how long.
#
# ## Exercises
#
# 1. **Another control.** Rerun the readout with `control = "SASRec"`. *Check:* every lift
#    moves (popularity -0.0329 instead of -0.0387, three towers with LLM tags +0.0163 instead
#    of +0.0105), item-kNN reads +0.0059 with p 0.46, yet no tested arm's verdict changes (quick
#    mode): the same five are worse (popularity and the four LLM arms that read a prompt
#    only), the rank-fusion list is better, and the other seven show no detectable difference;
#    the closest to a flip is three towers with LLM tags, raw p 0.032 but Holm 0.22. Explain
#    why a readout depends on its control, and why it did not matter here.
# 2. **No correction.** Count the arms whose raw p-value is below 0.05 and those whose Holm
#    p-value is. *Check:* 6 and 6 (quick mode), the same six arms (popularity, the four LLM
#    arms that read a prompt only, and the rank-fusion list): each has p 0.001, the smallest a
#    1,000-resample bootstrap gives, and Holm's 13 tests lift it to 0.013. The next arm, the
#    quota multi-source list, has raw p 0.088. Say how small the raw p-value of a seventh arm
#    would have to be to survive Holm.
# 3. **Your own segment.** Build a segment of users whose history is mostly dramas
#    (`setting.ml.movies` genres) and add it to `segments`. *Check:* with "mostly" read as
#    more than half of the user's training ratings (`setting.split.train`) on movies whose
#    genres include Drama, the segment holds 163 of the 602 test users (185 with "at least
#    half"), and its Recall@50 is 0.2237 for item-kNN and 0.2221 for SASRec (quick mode),
#    close to their overall gap (0.2433 against 0.2374). With "at least half" the order flips
#    (0.2273 against 0.2323): say why a 0.005 gap on 185 users is no finding.
# 4. **Cost of freshness.** From the cost table, compute how many new movies per second one CPU
#    core could embed with the LLM. *Check:* the answer is a measured GFLOP/s
#    (`train.matmul_peak_gflops()`) divided by `llm_item_flops`, 2.30 GFLOP per movie: about
#    22 movies per second on a core that measures 50 GFLOP/s. About 7 per second at that speed
#    means you used the user prompt's cost (6.95 GFLOP) instead of the item's.
