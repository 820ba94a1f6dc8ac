"""The evaluation protocol on a hand-made split where every number is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import metrics as M
from llmrec_lib.evaluate import EvalData, EvalResult, MatrixScorer, evaluate, top_k

ITEMS = np.array([10, 20, 30, 40, 50, 60])  # columns 0..5


def ratings(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).astype(
        {"user_id": "int64", "item_id": "int64", "rating": "float32", "timestamp": "int64"}
    )


class TinySplit:
    """The Split API (train / targets / history / users) over a few hand-written ratings.

    Training counts per item: 10:3, 20:2, 30:1, 40:1, 50:0, 60:0 (50 and 60 are cold).
    """

    def __init__(self):
        self.train = ratings([
            (1, 10, 5.0, 1), (1, 20, 1.0, 2),
            (2, 10, 4.0, 1), (2, 30, 4.5, 2),
            (3, 20, 4.0, 1),
            (4, 10, 4.0, 1), (4, 40, 3.0, 2),
        ])
        t = ratings([(1, 30, 4.0, 9), (1, 60, 5.0, 9), (2, 40, 4.0, 9), (3, 10, 4.0, 9), (3, 50, 4.5, 9)])
        t["is_cold"] = t["item_id"].isin([50, 60])
        self._targets = t

    def targets(self, stage):
        assert stage == "valid"
        return self._targets

    def history(self, stage):
        return self.train

    def users(self, stage):
        return np.sort(self._targets["user_id"].unique())


class Popularity:
    """Scores every item by its training count (ties -> lower column first)."""

    name = "popularity"

    def __init__(self, counts):
        self.counts = np.asarray(counts, dtype=np.float64)

    def score(self, user_ids):
        return np.broadcast_to(self.counts, (len(user_ids), len(self.counts)))  # read-only view


class AsRecommender:
    """Turns a scorer into a recommend(user_ids, k) system that knows nothing of exclusions."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.asked = []

    def recommend(self, user_ids, k):
        self.asked.append(k)
        return top_k(np.array(self.scorer.score(user_ids), dtype=np.float64), k)


@pytest.fixture()
def tiny():
    return EvalData.from_split(TinySplit(), "valid", ITEMS)


def test_evaldata_from_split(tiny):
    assert tiny.user_ids.tolist() == [1, 2, 3]
    assert [t.tolist() for t in tiny.targets] == [[2, 5], [3], [0, 4]]
    assert [c.tolist() for c in tiny.is_cold] == [[False, True], [False], [False, True]]
    assert [e.tolist() for e in tiny.exclusions] == [[0, 1], [0, 2], [1]]  # all ratings, even 1.0
    assert tiny.item_counts.tolist() == [3, 2, 1, 1, 0, 0]
    assert tiny.n_targets.tolist() == [2, 1, 2]
    assert tiny.n_history.tolist() == [2, 2, 1]
    assert "targets=5 (2 cold)" in repr(tiny)


def test_hand_computed_popularity(tiny):
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(1, 2, 4))
    # seen items excluded, ties by column: u1 -> 30 40 50 60, u2 -> 20 40 50 60, u3 -> 10 30 40 50
    assert r.topk.tolist() == [[2, 3, 4, 5], [1, 3, 4, 5], [0, 2, 3, 4]]
    pu = r.per_user.set_index("user_id")
    assert pu["recall@1"].tolist() == [0.5, 0.0, 0.5]
    assert pu["recall@2"].tolist() == [0.5, 1.0, 0.5]
    assert pu["recall@4"].tolist() == [1.0, 1.0, 1.0]
    assert pu["hr@1"].tolist() == [1.0, 0.0, 1.0]
    assert pu["mrr@4"].tolist() == [1.0, 0.5, 1.0]
    ndcg_u1 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert pu.loc[1, "ndcg@4"] == pytest.approx(ndcg_u1)
    assert pu.loc[2, "ndcg@4"] == pytest.approx(1 / math.log2(3))
    assert pu["n_cold_targets"].tolist() == [1, 0, 1]
    assert pu["n_history"].tolist() == [2, 2, 1]
    assert r.aggregates["coverage@1"] == pytest.approx(3 / 6)
    assert r.aggregates["coverage@4"] == pytest.approx(6 / 6)
    assert r.mean("recall@2") == pytest.approx(2 / 3)
    assert r.counts == {"n_users": 3, "n_items": 6, "n_targets": 5, "n_cold_targets": 2, "n_unscoreable_targets": 0}
    assert any("2 of 5 targets" in n and "cold" in n for n in r.notes)
    # cold targets sit at rank 4 for users 1 and 3
    cold = r.segment("cold")
    assert cold.per_user["user_id"].tolist() == [1, 3]
    assert cold.per_user["recall@2"].tolist() == [0.0, 0.0]
    assert cold.per_user["recall@4"].tolist() == [1.0, 1.0]
    warm = r.segment("warm")
    assert warm.per_user["recall@1"].tolist() == [1.0, 0.0, 1.0]


def test_exclusion_and_no_exclusion(tiny):
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(6,))
    for row, seen in zip(r.topk, tiny.exclusions):
        assert not set(row.tolist()) & set(seen.tolist())
        assert (row[6 - len(seen):] == -1).all()  # nothing left to recommend: empty slots
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(2,), exclude_seen=False)
    assert r.topk.tolist() == [[0, 1]] * 3
    assert any("NOT excluded" in n for n in r.notes)


def test_unscoreable_items_are_recorded_not_dropped(tiny):
    # An ID model cannot score the cold items 50 and 60.
    can = tiny.item_counts > 0
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(4,), can_score_items=can)
    assert r.topk.tolist() == [[2, 3, -1, -1], [1, 3, -1, -1], [0, 2, 3, -1]]
    pu = r.per_user.set_index("user_id")
    assert pu["recall@4"].tolist() == [0.5, 1.0, 0.5]  # unscoreable targets are misses
    assert pu["n_unscoreable_targets"].tolist() == [1, 0, 1]
    assert r.counts["n_unscoreable_targets"] == 2
    assert any("cannot score" in n for n in r.notes)
    assert r.segment("scoreable").per_user["recall@4"].tolist() == [1.0, 1.0, 1.0]
    assert r.segment("unscoreable").per_user["recall@4"].tolist() == [0.0, 0.0]
    # the same mask given as a system attribute
    system = Popularity(tiny.item_counts)
    system.can_score_items = can
    assert evaluate(system, tiny, ks=(4,)).topk.tolist() == r.topk.tolist()


def test_recommender_path_matches_scorer_path(tiny):
    rec = AsRecommender(Popularity(tiny.item_counts))
    a = evaluate(Popularity(tiny.item_counts), tiny, ks=(1, 2, 4))
    b = evaluate(rec, tiny, ks=(1, 2, 4))
    np.testing.assert_array_equal(a.topk, b.topk)
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert rec.asked == [4 + 2]  # k plus the largest exclusion set in the batch
    c = evaluate(AsRecommender(Popularity(tiny.item_counts)), tiny, ks=(4,), can_score_items=tiny.item_counts > 0)
    d = evaluate(Popularity(tiny.item_counts), tiny, ks=(4,), can_score_items=tiny.item_counts > 0)
    np.testing.assert_array_equal(c.topk, d.topk)


def random_data(n_users=60, n_items=300, seed=0):
    """A random split: ~10% of items seen per user, 1-8 targets each, some cold items."""
    rng = np.random.default_rng(seed)
    items = np.arange(1000, 1000 + n_items)
    train, targets = [], []
    for u in range(n_users):
        perm = rng.permutation(n_items - 20)  # the last 20 items are never in train: cold
        n_seen, n_t = rng.integers(5, n_items // 10), rng.integers(1, 9)
        train += [(u, items[i], 4.0, 0) for i in perm[:n_seen]]
        pool = np.concatenate([perm[n_seen:], np.arange(n_items - 20, n_items)])
        targets += [(u, items[i], 5.0, 1) for i in rng.choice(pool, n_t, replace=False)]
    train, targets = ratings(train), ratings(targets)
    return EvalData.from_frames(targets, train, train, items, stage="valid")


def test_batching_and_paths_give_identical_results():
    data = random_data()
    # integer scores with many ties stress the deterministic tie-break
    scores = np.random.default_rng(1).integers(0, 5, size=(data.n_users, data.n_items)).astype(np.float32)
    system = MatrixScorer(scores, data.user_ids)
    ref = evaluate(system, data, ks=(5, 20), batch_size=data.n_users)
    for bs in (1, 7, 1000):
        other = evaluate(system, data, ks=(5, 20), batch_size=bs)
        np.testing.assert_array_equal(other.topk, ref.topk)
        pd.testing.assert_frame_equal(other.per_user, ref.per_user)
    rec = evaluate(AsRecommender(system), data, ks=(5, 20), batch_size=9)
    np.testing.assert_array_equal(rec.topk, ref.topk)
    # against a naive per-user reference: full stable sort, seen items removed
    for u in range(data.n_users):
        order = np.argsort(-scores[u], kind="stable")
        order = [i for i in order if i not in set(data.exclusions[u].tolist())][:20]
        assert ref.topk[u].tolist() == order
    # metrics equal the metrics module applied to the top-K matrix
    np.testing.assert_allclose(ref.per_user["recall@20"], M.recall_at_k(ref.topk, data.targets, 20))
    np.testing.assert_allclose(ref.per_user["ndcg@5"], M.ndcg_at_k(ref.topk, data.targets, 5))


def test_top_k_ties_and_minus_inf():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=(50, 40)).astype(np.float64)
    s[rng.random(s.shape) < 0.2] = -np.inf
    for k in (1, 5, 39, 40, 45):
        got = top_k(s, k)
        for u in range(len(s)):
            order = [int(i) for i in np.argsort(-s[u], kind="stable") if s[u, i] > -np.inf][:k]
            assert got[u].tolist() == order + [-1] * (k - len(order))
    with pytest.raises(ValueError, match="k must be"):
        top_k(s, 0)


def test_scores_are_not_modified_and_bad_scores_raise(tiny):
    scores = np.tile(np.arange(6, dtype=np.float32), (3, 1))
    before = scores.copy()
    evaluate(MatrixScorer(scores, tiny.user_ids), tiny, ks=(2,))
    np.testing.assert_array_equal(scores, before)  # exclusions were written into a copy
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda u: np.zeros((len(u), 5)), tiny, ks=(2,))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda u: np.full((len(u), 6), np.nan), tiny, ks=(2,))
    with pytest.raises(TypeError, match="system must"):
        evaluate(object(), tiny)
    with pytest.raises(ValueError, match="can_score_items"):
        evaluate(Popularity(tiny.item_counts), tiny, can_score_items=np.ones(3, bool))

    class Dup:
        def recommend(self, user_ids, k):
            return np.zeros((len(user_ids), k), dtype=np.int64)

    with pytest.raises(ValueError, match="same item twice"):
        evaluate(Dup(), tiny, ks=(2,))


def test_evaldata_guards():
    split = TinySplit()
    t = split.targets("valid")
    # a target the user already rated: unreachable after exclusion -> error, or kept rankable
    hist = pd.concat([split.train, ratings([(2, 40, 2.0, 3)])], ignore_index=True)
    with pytest.raises(ValueError, match="already rated"):
        EvalData.from_frames(t, hist, split.train, ITEMS)
    d = EvalData.from_frames(t, hist, split.train, ITEMS, allow_target_in_history=True)
    assert 3 not in d.exclusions[1].tolist() and any("kept rankable" in n for n in d.notes)
    with pytest.raises(ValueError, match="outside the catalogue"):
        EvalData.from_frames(t, split.train, split.train, ITEMS[:-1])
    with pytest.raises(ValueError, match="same target item twice"):
        EvalData.from_frames(pd.concat([t, t.iloc[:1]]), split.train, split.train, ITEMS)
    with pytest.raises(ValueError, match="no targets"):
        EvalData.from_frames(t, split.train, split.train, ITEMS, users=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="lacks column"):
        EvalData.from_frames(t.drop(columns="item_id"), split.train, split.train, ITEMS)
    with pytest.raises(ValueError, match="users has duplicates"):
        EvalData.from_frames(t, split.train, split.train, ITEMS, users=[1, 1, 2])
    with pytest.raises(ValueError, match="not in `users`"):
        EvalData.from_frames(t, split.train, split.train, ITEMS, users=[1])
    with pytest.raises(ValueError, match="item_ids has duplicates"):
        EvalData.from_frames(t, split.train, split.train, np.r_[ITEMS, ITEMS[:1]])
    with pytest.raises(ValueError, match="1-D catalogue"):
        EvalData.from_frames(t, split.train, split.train, [])
    # is_cold inferred from train when absent
    d = EvalData.from_frames(t.drop(columns="is_cold"), split.train, split.train, ITEMS)
    assert d.target_is_cold.tolist() == [False, True, False, False, True]


def test_subset_segment_users_and_compare(tiny):
    sub = tiny.subset(np.array([3, 1]))
    assert sub.user_ids.tolist() == [1, 3]  # kept in the original order
    assert [t.tolist() for t in sub.targets] == [[2, 5], [0, 4]]
    assert [e.tolist() for e in sub.exclusions] == [[0, 1], [1]]
    pop = evaluate(Popularity(tiny.item_counts), tiny, ks=(1, 2))
    part = evaluate(Popularity(tiny.item_counts), sub, ks=(1, 2))
    seg = pop.segment(users=[1, 3])
    pd.testing.assert_frame_equal(part.per_user.reset_index(drop=True), seg.per_user.reset_index(drop=True))
    # targets mask: only each user's first target
    first = np.zeros(len(tiny.target_cols), bool)
    first[tiny.target_ptr[:-1]] = True
    assert pop.segment(targets=first).per_user["n_targets"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="unknown segment"):
        pop.segment("tail")
    anti = evaluate(lambda u: -np.broadcast_to(tiny.item_counts, (len(u), 6)).astype(float), tiny, ks=(1, 2))
    cmp = pop.compare(anti, "recall@2", n_boot=200)
    assert cmp.mean_diff == pytest.approx(pop.mean("recall@2") - anti.mean("recall@2"))
    with pytest.raises(ValueError, match="different users"):
        pop.compare(part, "recall@2")


def test_summary_and_json(tiny):
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(1, 2), name="pop")
    s = r.summary(n_boot=200)
    assert {"recall@1", "ndcg@2", "hr@2", "mrr@2", "novelty@2", "popularity@2", "pop_percentile@1", "coverage@2", "gini@1"} <= set(s.index)
    assert list(s.columns) == ["mean", "lo", "hi", "n"]
    assert s.loc["recall@2", "mean"] == pytest.approx(2 / 3)
    assert s.loc["recall@2", "lo"] <= s.loc["recall@2", "mean"] <= s.loc["recall@2", "hi"]
    assert math.isnan(s.loc["coverage@2", "lo"])
    d = r.to_dict(n_boot=100)
    text = json.dumps(d, allow_nan=False)  # strict JSON: no NaN tokens
    assert json.loads(text)["metrics"]["recall@2"]["mean"] == pytest.approx(2 / 3)
    assert set(d["segments"]) == {"cold", "warm"}
    assert d["timing"]["users_per_s"] > 0 and d["timing"]["seconds"] >= d["timing"]["system_seconds"]
    assert isinstance(r, EvalResult) and "pop" in repr(r)


@pytest.mark.realdata
def test_real_data_popularity(ml, split):
    data = EvalData.from_split(split, "valid", ml.item_ids)
    assert data.n_items == len(ml.item_ids) and data.n_users > 500
    r = evaluate(Popularity(data.item_counts), data)
    # Popularity is a weak but far-from-random baseline on MovieLens
    assert 0.04 < r.mean("recall@10") < 0.15
    assert r.mean("recall@10") < r.mean("recall@50") < r.mean("recall@100")
    assert r.segment("cold").mean("recall@100") == 0.0  # cold items have popularity 0
    assert r.timing["seconds"] < 3.0  # about 0.1-0.3 s on 2 cores; slack for a busy machine


def test_empty_segment(tiny):
    r = evaluate(Popularity(tiny.item_counts), tiny, ks=(2,))
    empty = r.segment("unscoreable")  # this system can score everything
    assert len(empty.per_user) == 0 and empty.counts["n_targets"] == 0
    assert empty.summary(n_boot=10)["mean"].isna().all()
    assert "unscoreable" not in r.to_dict(n_boot=10)["segments"]


def test_sampled_hit_rate():
    from llmrec_lib.evaluate import _sampled_ranks, sampled_hit_rate

    data = random_data(n_users=80, n_items=400, seed=3)
    # random scores land in the top 10 of 101 about 10/101 of the time
    rng = np.random.default_rng(0)
    rand = MatrixScorer(rng.random((data.n_users, data.n_items)), data.user_ids)
    hr = sampled_hit_rate(rand, data, n_negatives=100, k=10, seed=1)
    assert hr.shape == (data.n_users,)
    assert abs(hr.mean() - 10 / 101) < 0.04
    # negatives are never seen items or targets: give those +inf / 1, the rest 0 -> every target wins
    s = np.zeros((data.n_users, data.n_items))
    for u in range(data.n_users):
        s[u, data.exclusions[u]] = np.inf
        s[u, data.targets[u]] = 1.0
    assert (sampled_hit_rate(MatrixScorer(s, data.user_ids), data, k=1) == 1.0).all()
    # ties follow the protocol's rule (lower column first): check against a plain loop
    const = MatrixScorer(np.zeros((data.n_users, data.n_items)), data.user_ids)
    ranks, neg = _sampled_ranks(const, data, 50, seed=2, batch_size=17)
    ranks_b, neg_b = _sampled_ranks(const, data, 50, seed=2, batch_size=1000)
    np.testing.assert_array_equal(neg, neg_b)  # batch size does not change the sample
    np.testing.assert_array_equal(ranks, ranks_b)
    for u in range(data.n_users):
        assert len(set(neg[u].tolist())) == 50
        for j in range(data.target_ptr[u], data.target_ptr[u + 1]):
            assert ranks[j] == int((neg[u] < data.target_cols[j]).sum())
    # an unscoreable target is a miss even against unscoreable negatives
    hr = sampled_hit_rate(const, data, k=10, can_score_items=np.zeros(data.n_items, bool))
    assert (hr == 0).all()
    with pytest.raises(TypeError, match="scoring system"):
        sampled_hit_rate(AsRecommender(const), data)
    with pytest.raises(ValueError, match="fewer than"):
        sampled_hit_rate(const, data, n_negatives=390, k=10)


def test_stored_ranking_replays_every_metric(tmp_path):
    from llmrec_lib.evaluate import StoredRanking, save_ranking

    data = random_data(seed=3)
    scores = np.random.default_rng(4).normal(size=(data.n_users, data.n_items)).astype(np.float32)
    ref = evaluate(MatrixScorer(scores, data.user_ids), data, ks=(5, 20), name="m")
    path = save_ranking(ref, data.item_ids, tmp_path / "r.npz", meta={"note": "x"})
    stored = StoredRanking(path, data.item_ids)
    assert stored.meta["note"] == "x" and stored.name == "m"
    again = evaluate(stored, data, ks=(5, 20))
    np.testing.assert_array_equal(again.topk, ref.topk)
    pd.testing.assert_frame_equal(again.per_user, ref.per_user)
    with pytest.raises(KeyError, match="no list for users"):
        stored.recommend(np.array([10_000]), 5)
    with pytest.raises(FileNotFoundError, match="recipes evaluate"):
        StoredRanking(tmp_path / "missing.npz", data.item_ids)
