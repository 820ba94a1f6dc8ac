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

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 09_offline_ab
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 09 · A paired readout with Holm's correction
#
# Chapter 09 reads every system as an arm of one offline A/B test: same 602 test users, lift
# over a control with a **paired** bootstrap interval, and p-values adjusted with **Holm's**
# correction because many arms are tested against one control (`abtest.readout`). Here you
# write both and redo the readout of chapter 04's ablation arms (their committed top-100
# lists, re-measured in seconds; no model runs here), with the 400-step base arm as control.

# %%
import numpy as np

from llmrec_lib import abtest, data, evaluate, metrics, recipes

ml = data.load_movielens()
split = data.per_user_split(ml.ratings)
test_data = evaluate.EvalData.from_split(split, "test", ml.item_ids)
ARMS = ["ablate-base", "ablate-hard1", "ablate-hard2", "ablate-bce", "ablate-full-history",
        "ablate-last-token", "infonce"]
results = abtest.load_rankings({a: recipes.verified_ranking_path(a) for a in ARMS}, test_data)
per_user = {a: r.per_user.sort_values("user_id")["recall@50"].to_numpy() for a, r in results.items()}
control = "ablate-base"
print({a: round(float(v.mean()), 4) for a, v in per_user.items()}, "users:", len(per_user[control]))

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · The paired interval.** Write `paired_interval(a, b, n_boot=2000, alpha=0.05,
# seed=0)`: `a[i]` and `b[i]` are the same user's metric under two arms; return the triple
# `(mean_diff, lo, hi)`: the mean of the per-user differences a - b, and the percentile
# bootstrap interval of that mean (resample **users** with replacement `n_boot` times, with
# `np.random.default_rng(seed)`; `lo` and `hi` are the alpha/2 and 1 - alpha/2 quantiles of
# the resampled means). Then store the lift of `"infonce"` (the same recipe trained four times
# as long) over the control in `lift_longer`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def paired_interval(a, b, n_boot=2000, alpha=0.05, seed=0):
    # BEGIN SOLUTION
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(lo), float(hi)
    # END SOLUTION


lift_longer = paired_interval(per_user["infonce"], per_user[control])  # SOLUTION
print("infonce - base: {:+.4f} [{:+.4f}, {:+.4f}]".format(*lift_longer))

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
m, lo, hi = lift_longer
assert abs(m - (per_user["infonce"] - per_user[control]).mean()) < 1e-12 and lo < m < hi

# %%
# HIDDEN
def _close(ours, a, b):
    ref = metrics.paired_bootstrap(a, b, n_boot=4000, seed=123)
    width = ref.hi - ref.lo
    assert abs(ours[0] - ref.mean_diff) < 1e-12
    assert abs(ours[1] - ref.lo) < 0.1 * width and abs(ours[2] - ref.hi) < 0.1 * width, (ours, ref)


_close(lift_longer, per_user["infonce"], per_user[control])
for arm in ("ablate-hard2", "ablate-bce"):
    _close(paired_interval(per_user[arm], per_user[control], seed=7), per_user[arm], per_user[control])
rng = np.random.default_rng(5)
x = rng.random(400)
y = x + 0.02 + 0.05 * rng.standard_normal(400)  # two arms that agree user by user
_close(paired_interval(y, x, seed=3), y, x)
m90 = paired_interval(y, x, alpha=0.1)
assert m90[2] - m90[1] < 0.9 * (paired_interval(y, x)[2] - paired_interval(y, x)[1])

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Question 2 · Holm's correction.** Six arms against one control are six tests. Write
# `holm_adjust(p)`: Holm's adjusted p-values, in the order given. Sort the m p-values
# ascending; the j-th smallest (j = 0, 1, ...) is multiplied by m - j; each adjusted value is
# the running **maximum** of those products up to its position (so the adjusted p-values keep
# the order of the raw ones), capped at 1. Then, with `raw_p` (below: the library's paired
# bootstrap p-value of each arm against the control), store in `verdicts` a dict arm ->
# `"better"`, `"worse"` or `"no detectable difference"` (Holm-adjusted p above 0.05), the
# verdict column of chapter 09's readout.

# %%
arms = [a for a in ARMS if a != control]
raw_p = np.array([metrics.paired_bootstrap(per_user[a], per_user[control], n_boot=1000, seed=0).p_value for a in arms])
print(dict(zip(arms, raw_p.round(4))))

# %% [raw]
# # BEGIN SOLUTION

# %%
def holm_adjust(p):
    # BEGIN SOLUTION
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
    # END SOLUTION


# BEGIN SOLUTION
adj = holm_adjust(raw_p)
verdicts = {}
for a, q in zip(arms, adj):
    lift = per_user[a].mean() - per_user[control].mean()
    verdicts[a] = "no detectable difference" if q > 0.05 else ("better" if lift > 0 else "worse")
# END SOLUTION
verdicts

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert np.allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
assert set(verdicts) == set(arms) and verdicts["ablate-bce"] == "worse"

# %%
# HIDDEN
rng = np.random.default_rng(11)
for m in (1, 2, 6, 25):
    for _ in range(20):
        p = rng.random(m) ** 3
        assert np.allclose(holm_adjust(p), abtest.holm(p)), p
assert np.allclose(holm_adjust(raw_p), abtest.holm(raw_p))
board = abtest.readout(results, control, "recall@50", n_boot=1000, seed=0)
assert all(verdicts[a] == board.loc[a, "verdict"] for a in arms), (verdicts, board["verdict"].to_dict())

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
