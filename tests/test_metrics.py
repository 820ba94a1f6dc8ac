"""Metrics: hand-computed cases, and property tests against loop-per-user references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec_lib import metrics as M

# --------------------------------------------------------------------------------------
# Plain references: one user at a time, Python sets and loops, written from the definitions
# --------------------------------------------------------------------------------------


def ref_user(row, targets, k):
    """All ranking metrics of one user at k, from the textbook definitions."""
    tset = set(int(t) for t in targets)
    if not tset:
        return dict(recall=math.nan, recall_capped=math.nan, precision=math.nan, ndcg=math.nan, hr=math.nan, mrr=math.nan)
    ranked = [int(i) for i in row[:k]]
    hits = [1 if (i >= 0 and i in tset) else 0 for i in ranked]
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(tset))))
    first = next((r for r, h in enumerate(hits) if h), None)
    return dict(
        recall=sum(hits) / len(tset),
        recall_capped=sum(hits) / min(k, len(tset)),
        precision=sum(hits) / k,
        ndcg=dcg / idcg,
        hr=float(any(hits)),
        mrr=0.0 if first is None else 1.0 / (first + 1),
    )


def ref_self_information(counts):
    total = sum(counts) + len(counts)
    return [-math.log2((c + 1) / total) for c in counts]


def ref_percentiles(counts):
    n = len(counts)
    if n == 1:
        return [0.5]
    out = []
    for i, c in enumerate(counts):
        below = sum(1 for d in counts if d < c)
        ties = sum(1 for j, d in enumerate(counts) if d == c and j != i)
        out.append((below + ties / 2) / (n - 1))
    return out


def ref_user_mean(row, k, per_item):
    vals = [per_item[i] for i in row[:k] if i >= 0]
    return sum(vals) / len(vals) if vals else math.nan


def ref_gini(topk, n_items, k):
    counts = [0] * n_items
    for row in topk:
        for i in row[:k]:
            if i >= 0:
                counts[i] += 1
    total = sum(counts)
    if total == 0:
        return math.nan
    mad = sum(abs(a - b) for a in counts for b in counts)
    return mad / (2 * n_items * total)


# --------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------

TOPK = np.array([[3, 1, 7, 2], [5, 6, -1, -1], [0, 4, 8, 9]])
TARGETS = [np.array([1, 2, 9]), np.array([], dtype=int), np.array([9])]


def test_hand_computed_ranking_metrics():
    # user 0: hits at ranks 2 and 4 of 3 targets
    assert M.recall_at_k(TOPK, TARGETS, 2)[0] == pytest.approx(1 / 3)
    assert M.recall_at_k(TOPK, TARGETS, 4)[0] == pytest.approx(2 / 3)
    assert M.recall_capped_at_k(TOPK, TARGETS, 2)[0] == pytest.approx(1 / 2)
    assert M.precision_at_k(TOPK, TARGETS, 4)[0] == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(TOPK, TARGETS, 4)[0] == pytest.approx(dcg / idcg)
    assert M.ndcg_at_k(TOPK, TARGETS, 4)[0] == pytest.approx(0.498190, abs=1e-6)
    assert M.hit_rate_at_k(TOPK, TARGETS, 1)[0] == 0.0
    assert M.hit_rate_at_k(TOPK, TARGETS, 2)[0] == 1.0
    assert M.mrr_at_k(TOPK, TARGETS)[0] == pytest.approx(0.5)
    assert M.mrr_at_k(TOPK, TARGETS, 1)[0] == 0.0
    # user 1 has no targets: undefined, not zero
    for fn in (M.recall_at_k, M.ndcg_at_k, M.hit_rate_at_k, M.mrr_at_k, M.precision_at_k):
        assert np.isnan(fn(TOPK, TARGETS)[1])
    # user 2: one target at rank 4
    assert M.recall_at_k(TOPK, TARGETS)[2] == 1.0
    assert M.ndcg_at_k(TOPK, TARGETS)[2] == pytest.approx(1 / math.log2(5))
    assert M.mrr_at_k(TOPK, TARGETS)[2] == pytest.approx(0.25)
    assert M.recall_at_k(TOPK, TARGETS, 3)[2] == 0.0


def test_perfect_list_scores_one():
    topk = np.array([[4, 2, 0, 1, 3]])
    targets = [np.array([2, 4])]
    for fn in (M.recall_at_k, M.ndcg_at_k, M.hit_rate_at_k, M.mrr_at_k):
        assert fn(topk, targets)[0] == pytest.approx(1.0)
    # more targets than k: recall cannot reach 1, capped recall and NDCG can
    targets = [np.array([4, 2, 0])]
    assert M.recall_at_k(topk, targets, 2)[0] == pytest.approx(2 / 3)
    assert M.recall_capped_at_k(topk, targets, 2)[0] == pytest.approx(1.0)
    assert M.ndcg_at_k(topk, targets, 2)[0] == pytest.approx(1.0)


def test_ranking_metrics_matches_single_functions():
    out = M.ranking_metrics(TOPK, TARGETS, ks=(2, 4), metrics=("recall", "ndcg", "hr", "mrr", "precision", "recall_capped"))
    assert set(out) == {f"{m}@{k}" for m in ("recall", "ndcg", "hr", "mrr", "precision", "recall_capped") for k in (2, 4)}
    np.testing.assert_array_equal(out["recall@2"], M.recall_at_k(TOPK, TARGETS, 2))
    np.testing.assert_array_equal(out["ndcg@4"], M.ndcg_at_k(TOPK, TARGETS, 4))
    with pytest.raises(ValueError, match="unknown metric"):
        M.ranking_metrics(TOPK, TARGETS, metrics=("auc",))


def test_empty_slot_is_never_a_hit():
    # -1 at user 1 must not match the previous user's item m - 1 in the encoded keys
    topk = np.array([[0, 1], [-1, -1]])
    targets = [np.array([1]), np.array([0, 1])]
    hits, n_t = M.hit_matrix(topk, targets)
    assert hits.tolist() == [[False, True], [False, False]]
    assert n_t.tolist() == [1, 2]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same item twice"):
        M.recall_at_k(np.array([[1, 2, 1]]), [np.array([1])])
    with pytest.raises(ValueError, match="same target twice"):
        M.recall_at_k(np.array([[1, 2, 3]]), [np.array([1, 1])])
    with pytest.raises(ValueError, match="target arrays"):
        M.recall_at_k(np.array([[1, 2, 3]]), [np.array([1]), np.array([2])])
    with pytest.raises(ValueError, match="outside 1..3"):
        M.recall_at_k(np.array([[1, 2, 3]]), [np.array([1])], k=4)
    with pytest.raises(TypeError, match="integer"):
        M.recall_at_k(np.array([[1.0, 2.0]]), [np.array([1])])
    with pytest.raises(ValueError, match="2-D"):
        M.recall_at_k(np.array([1, 2]), [np.array([1])])
    with pytest.raises(ValueError, match="below -1"):
        M.recall_at_k(np.array([[1, -2]]), [np.array([1])])
    with pytest.raises(ValueError, match="negative"):
        M.recall_at_k(np.array([[1, 2]]), [np.array([-3])])
    with pytest.raises(ValueError, match="catalogue has 3"):
        M.coverage(np.array([[0, 5]]), n_items=3)


def test_beyond_accuracy_hand_computed():
    topk = np.array([[0, 1, -1], [1, 2, 3]])
    counts = np.array([6, 2, 0, 0])  # 8 interactions, 4 items
    assert M.coverage(topk, 4) == 1.0
    assert M.coverage(topk, 4, k=1) == 0.5
    assert M.coverage(topk, 8, k=1) == 0.25
    info = M.self_information(counts)  # p = (c + 1) / 12
    np.testing.assert_allclose(info, -np.log2(np.array([7, 3, 1, 1]) / 12))
    nov = M.novelty(topk, counts)
    assert nov[0] == pytest.approx((info[0] + info[1]) / 2)  # the empty slot is not an item
    assert nov[1] == pytest.approx(info[1:].mean())
    assert M.average_popularity(topk, counts).tolist() == [4.0, pytest.approx(2 / 3)]
    # percentiles: item 0 is the top (1.0); items 2 and 3 tie at the bottom (mid-rank 1/6)
    np.testing.assert_allclose(M.popularity_percentiles(counts), [1.0, 2 / 3, 1 / 6, 1 / 6])
    assert M.popularity_percentile(topk, counts)[0] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(M.novelty(np.array([[-1, -1]]), counts)).all()
    # gini: every slot the same item -> (n - 1) / n; equal spread -> 0
    assert M.gini_index(np.array([[0], [0]]), 4) == pytest.approx(3 / 4)
    assert M.gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    assert np.isnan(M.gini_index(np.array([[-1]]), 4))
    with pytest.raises(ValueError, match="non-negative"):
        M.self_information(np.array([1, -1]))


# --------------------------------------------------------------------------------------
# Property tests: vectorised == reference on random data
# --------------------------------------------------------------------------------------


@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(1, 25))
    n_users = draw(st.integers(1, 7))
    width = draw(st.integers(1, n_items))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    topk = np.full((n_users, width), -1, dtype=np.int64)
    targets = []
    for u in range(n_users):
        filled = draw(st.integers(0, width))  # trailing -1 pads when a system ran out
        topk[u, :filled] = rng.permutation(n_items)[:filled]
        n_t = draw(st.integers(0, n_items))
        targets.append(rng.choice(n_items, size=n_t, replace=False))
    counts = rng.integers(0, 5, size=n_items) * draw(st.sampled_from([0, 1, 10]))
    k = draw(st.integers(1, width))
    return topk, targets, counts, k, n_items


@settings(max_examples=200, deadline=None)
@given(ranking_case())
def test_ranking_metrics_match_reference(case):
    topk, targets, _, k, _ = case
    out = M.ranking_metrics(topk, targets, ks=(k,), metrics=("recall", "recall_capped", "precision", "ndcg", "hr", "mrr"))
    for u in range(len(topk)):
        ref = ref_user(topk[u], targets[u], k)
        for name, want in ref.items():
            got = out[f"{name}@{k}"][u]
            if math.isnan(want):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(want, abs=1e-12), (name, u)


@settings(max_examples=150, deadline=None)
@given(ranking_case())
def test_beyond_accuracy_match_reference(case):
    topk, _, counts, k, n_items = case
    assert M.coverage(topk, n_items, k) == pytest.approx(
        len({int(i) for row in topk for i in row[:k] if i >= 0}) / n_items
    )
    gini = M.gini_index(topk, n_items, k)
    want = ref_gini(topk.tolist(), n_items, k)
    assert (math.isnan(gini) and math.isnan(want)) or gini == pytest.approx(want, abs=1e-12)
    info = ref_self_information(counts.tolist())
    pct = ref_percentiles(counts.tolist())
    np.testing.assert_allclose(M.self_information(counts), info)
    np.testing.assert_allclose(M.popularity_percentiles(counts), pct, atol=1e-12)
    for fn, per_item in ((M.novelty, info), (M.popularity_percentile, pct), (M.average_popularity, counts.tolist())):
        got = fn(topk, counts, k)
        want = [ref_user_mean(row, k, per_item) for row in topk.tolist()]
        np.testing.assert_allclose(got, want, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------


def test_bootstrap_equals_naive_resampling():
    # For small inputs the draws come from one rng.integers call, so a naive
    # "index and average" loop with the same generator must give the same interval.
    v = np.random.default_rng(1).random(37)
    got = M.bootstrap_ci(v, n_boot=500, alpha=0.1, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, v.size, size=(500, v.size))
    means = np.array([v[row].mean() for row in idx])
    assert got.mean == pytest.approx(v.mean())
    assert got.lo == pytest.approx(np.quantile(means, 0.05))
    assert got.hi == pytest.approx(np.quantile(means, 0.95))
    mean, lo, hi = got  # unpacks as a plain tuple
    assert lo <= mean <= hi


def test_bootstrap_chunking_large_input():
    # more users than one chunk holds: still correct mean, a narrow sensible interval
    v = np.random.default_rng(2).normal(3.0, 1.0, size=20_000)
    ci = M.bootstrap_ci(v, n_boot=300)
    se = v.std() / math.sqrt(v.size)
    assert ci.lo < ci.mean < ci.hi
    assert ci.hi - ci.lo == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_bootstrap_basic_properties():
    assert M.bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3, 0.3))
    v = np.random.default_rng(0).random(50)
    assert M.bootstrap_ci(v, seed=3) == M.bootstrap_ci(v, seed=3)
    assert M.bootstrap_ci(v, seed=3) != M.bootstrap_ci(v, seed=4)
    narrow = M.bootstrap_ci(v, alpha=0.5)
    wide = M.bootstrap_ci(v, alpha=0.01)
    assert wide.lo < narrow.lo < narrow.hi < wide.hi
    with pytest.raises(ValueError, match="NaN"):
        M.bootstrap_ci([0.1, np.nan])
    assert M.bootstrap_ci([0.1, np.nan, 0.3], nan_policy="omit").mean == pytest.approx(0.2)
    assert all(math.isnan(x) for x in M.bootstrap_ci([]))
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(v, alpha=1.5)


def test_bootstrap_coverage_of_true_mean():
    # A 95% interval should cover the true mean about 95% of the time.
    rng = np.random.default_rng(123)
    covered = 0
    trials = 200
    for t in range(trials):
        sample = rng.exponential(1.0, size=60)  # true mean 1
        ci = M.bootstrap_ci(sample, n_boot=400, seed=t)
        covered += ci.lo <= 1.0 <= ci.hi
    assert 0.86 <= covered / trials <= 0.99


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    b = rng.random(200)
    a = b + 0.05 + rng.normal(0, 0.02, 200)
    r = M.paired_bootstrap(a, b, n_boot=999)
    assert r.mean_diff == pytest.approx(np.mean(a - b))
    assert r.lo < r.mean_diff < r.hi and r.lo > 0
    assert r.p_value == pytest.approx(1 / 1000)  # never exactly 0
    assert r.n == 200
    # swapping the systems mirrors the interval
    s = M.paired_bootstrap(b, a, n_boot=999)
    assert s.mean_diff == pytest.approx(-r.mean_diff)
    assert s.lo == pytest.approx(-r.hi) and s.hi == pytest.approx(-r.lo)
    # identical systems: no difference, p = 1
    same = M.paired_bootstrap(b, b)
    assert same.mean_diff == 0 and same.p_value == 1.0
    with pytest.raises(ValueError, match="same users"):
        M.paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        M.paired_bootstrap([1.0, np.nan], [1.0, 2.0])
    assert M.paired_bootstrap([1.0, np.nan, 3.0], [0.0, 2.0, 2.0], nan_policy="omit").n == 2


def test_paired_bootstrap_pvalues_under_null_are_not_too_small():
    # Two systems with the same expected metric: "significant at 5%" should be rare.
    rng = np.random.default_rng(5)
    small = 0
    for t in range(100):
        a, b = rng.random(80), rng.random(80)
        small += M.paired_bootstrap(a, b, n_boot=400, seed=t).p_value < 0.05
    assert small <= 12


def test_interval_text_prints_values_and_differences():
    assert M.interval_text(0.2361, 0.2149, 0.2583) == "0.236 [0.215, 0.258]"
    assert M.interval_text(0.012, -0.003, 0.027, signed=True) == "+0.012 [-0.003, +0.027]"
    assert M.interval_text(0.5, 0.25, 0.75, digits=1) == "0.5 [0.2, 0.8]"
