"""Serving-time pieces: popularity prior, multi-source lists, the validation choice rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import serving


class Fixed:
    """A stand-in system with fixed scores and one seen item per user."""

    def __init__(self, scores, seen=None, name="fixed"):
        self.scores, self.name = np.asarray(scores, dtype=np.float32), name
        self.histories = {u: np.asarray(s, dtype=np.int64) for u, s in (seen or {}).items()}

    def score(self, user_ids):
        return self.scores[np.asarray(user_ids)]


def two_user_valid():
    """Validation data of two users over items 10-13: user 0 wants 13 and has seen 10, user 1
    wants 12."""
    import pandas as pd

    from llmrec_lib import evaluate

    return evaluate.EvalData.from_frames(
        targets=pd.DataFrame({"user_id": [0, 1], "item_id": [13, 12]}),
        history=pd.DataFrame({"user_id": [0], "item_id": [10]}),
        train=pd.DataFrame({"item_id": [10, 11]}),
        item_ids=[10, 11, 12, 13],
    )


def test_popularity_prior_adds_beta_log1p_count():
    base = Fixed([[0.5, 0.1, 0.3]])
    sys = serving.PopularityPrior(base, [0, 10, 3], beta=0.2)
    got = sys.score([0])
    np.testing.assert_allclose(got, [[0.5, 0.1 + 0.2 * np.log(11), 0.3 + 0.2 * np.log(4)]], rtol=1e-6)
    assert np.argmax(got) == 1  # the prior can reorder
    np.testing.assert_allclose(serving.PopularityPrior(base, [0, 10, 3], 0.0).score([0]), base.score([0]))
    with pytest.raises(ValueError, match="counts"):
        serving.PopularityPrior(base, [0, -1, 3], 0.1)


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5, 1 / 3, 1.0])
def test_slot_pattern_holds_the_share_at_every_length(share):
    pat = serving.slot_pattern(100, share)
    for k in (1, 7, 10, 50, 100):
        assert pat[:k].sum() == int(np.floor(k * share + 1e-9))


def test_multisource_fills_its_quota_skips_duplicates_and_seen_items():
    n = 12
    a = np.arange(n, 0, -1, dtype=np.float32)[None, :]  # first source: 0, 1, 2, ...
    b = np.arange(n, dtype=np.float32)[None, :]  # second source: 11, 10, 9, ...
    first = Fixed(a, seen={0: [0]})
    second = Fixed(b)
    sys = serving.MultiSource(first, second, share=0.5, depth=n)
    s = sys.score([0])[0]
    order = np.argsort(-s)[: n - 1]
    assert np.isneginf(s[0])  # the seen item never takes a slot
    assert list(order[:4]) == [1, 11, 2, 10]  # alternating, each source in its own order
    assert len(set(order.tolist())) == n - 1  # no item twice
    only_first = serving.MultiSource(first, second, share=0.0, depth=n).score([0])[0]
    assert list(np.argsort(-only_first)[:3]) == [1, 2, 3]


def test_choose_on_validation_keeps_the_first_value_within_tolerance():
    metric = {0.0: 0.20, 0.05: 0.281, 0.1: 0.283, 0.2: 0.25}
    chosen, table = serving.choose_on_validation(list(metric), metric.get, tol=0.005)
    assert chosen == 0.05 and table["chosen"].sum() == 1
    chosen, _ = serving.choose_on_validation(list(metric), metric.get, tol=0.0)
    assert chosen == 0.1


def test_popularity_percentiles_rank_the_catalogue():
    pct = serving.popularity_percentiles(np.array([[3, 0, -1]]), [1, 2, 3, 10])
    np.testing.assert_allclose(pct, [1.0, 0.25])


def _prompt_system(prompt_vec, liked):
    """A real bound PromptRetrieval over 3 items whose prompt vector is fixed by hand."""
    import pandas as pd

    from llmrec_lib import encoders as E

    items = np.array([1, 2, 3])
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    model = E.PromptRetrieval(items, vecs, lambda h, u: np.tile(prompt_vec, (len(u), 1))).fit()
    hist = pd.DataFrame({"user_id": 5, "item_id": liked, "rating": 5.0,
                         "timestamp": np.arange(1, len(liked) + 1)})
    return model.bind(hist)


def test_whole_history_blends_the_prompt_with_the_mean_of_liked_items():
    system = _prompt_system([1.0, 0.0], liked=[2, 2, 3])  # the prompt points at item 1
    v = system.model.item_vectors
    alone = serving.WholeHistory(system, 0.0)
    np.testing.assert_allclose(alone.score([5]), system.score([5]), rtol=1e-6)
    mean = v[[1, 1, 2]].mean(0)
    mean /= np.linalg.norm(mean)
    only_mean = serving.WholeHistory(system, 1.0).score([5])[0]
    np.testing.assert_allclose(only_mean, v @ mean, rtol=1e-6)
    half = serving.WholeHistory(system, 0.5)
    q = 0.5 * np.array([1.0, 0.0]) + 0.5 * mean
    np.testing.assert_allclose(half.user_vectors([5])[0], q / np.linalg.norm(q), rtol=1e-6)
    assert np.argmax(alone.score([5])[0]) == 0 and np.argmax(only_mean) == 1
    with pytest.raises(ValueError, match="weight"):
        serving.WholeHistory(system, 1.5)
    with pytest.raises(TypeError, match="bound dual-encoder"):
        serving.WholeHistory(Fixed([[0.0, 1.0, 0.0]]), 0.5)


def test_tune_history_keeps_the_first_point_within_tolerance():
    import pandas as pd

    from llmrec_lib import evaluate

    system = _prompt_system([1.0, 0.0], liked=[2])  # the prompt points away from the mean
    # the target is item 3: reachable only when the mean of liked item 2 pulls the query over
    frame = lambda item: pd.DataFrame({"user_id": [5], "item_id": [item]})  # noqa: E731
    valid = evaluate.EvalData.from_frames(frame(3), frame(2), frame(2), [1, 2, 3])
    (w, b), table = serving.tune_history(system, valid, [0, 0, 0], [0.0, 0.5, 1.0], [0.0, 0.1],
                                         metric="recall@1")
    assert list(table.columns) == ["weight", "beta", "metric", "chosen"]
    assert len(table) == 6 and table["chosen"].sum() == 1
    assert (w, b) == (0.5, 0.0)  # the first weight that ranks item 3 first (item 2 is seen)


def test_cold_only_keeps_the_systems_order_on_never_rated_items():
    base = Fixed([[0.9, 0.1, 0.5, 0.3]], seen={0: [2]})
    cold = serving.ColdOnly(base, [4, 0, 0, 1])
    s = cold.score([0])[0]
    assert np.isneginf(s[[0, 3]]).all()  # warm items never score
    assert s[2] > s[1]  # the system's own order among cold items
    assert cold.histories is base.histories
    with pytest.raises(ValueError, match="nothing cold"):
        serving.ColdOnly(base, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="counts cover"):
        serving.ColdOnly(base, [0, 1, 2]).score([0])


def test_cold_bonus_lifts_never_rated_items_only_and_keeps_their_order():
    base = Fixed([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.1, 0.6]], seen={0: [2]})
    counts = [4, 0, 0, 1]
    lifted = serving.ColdBonus(base, counts, 0.5).score([0, 1])
    plain = base.score([0, 1])
    assert np.allclose(lifted[:, [0, 3]], plain[:, [0, 3]])  # rated items untouched
    assert np.allclose(lifted[:, [1, 2]], plain[:, [1, 2]] + 0.5)
    # user 0: item 2 (cold) now passes item 0; user 1's cold favourite leads by more
    assert np.argmax(lifted[0]) == 2 and np.argmax(plain[0]) == 0
    assert serving.ColdBonus(base, counts, 0.0).score([0]).tolist() == base.score([0]).tolist()
    assert serving.ColdBonus(base, counts, 0.5).histories is base.histories
    with pytest.raises(ValueError, match="nothing cold"):
        serving.ColdBonus(base, [1, 2, 3, 4], 0.1)
    with pytest.raises(ValueError, match="gamma"):
        serving.ColdBonus(base, counts, -0.1)
    with pytest.raises(ValueError, match="counts cover"):
        serving.ColdBonus(base, [0, 1, 2], 0.1).score([0])


def test_cold_slots_land_where_the_share_says_and_skip_seen_items():
    n = 10
    counts = np.array([5] * 6 + [0] * 4)  # items 6..9 are cold
    first = Fixed(np.arange(n, 0, -1, dtype=np.float32)[None, :], seen={0: [0, 7]})
    llm = Fixed(np.arange(n, dtype=np.float32)[None, :])  # prefers 9, 8, 7, 6
    sys = serving.MultiSource(first, serving.ColdOnly(llm, counts), share=0.25, depth=n)
    order = np.argsort(-sys.score([0])[0])[:8]
    pattern = serving.slot_pattern(8, 0.25)
    assert all(c >= 6 for c in order[pattern])  # every fourth slot holds a cold item
    assert 7 not in order and 0 not in order  # seen items (cold or warm) take no slot
    assert list(order[pattern]) == [9, 8]  # the second source's own order
    outer = serving.MultiSource(sys, serving.ColdOnly(llm, counts), 0.5, depth=n)
    assert outer.histories is first.histories  # a list can feed another list


def test_rank_fusion_adds_reciprocal_ranks_and_lets_ties_share_a_rank():
    first = Fixed([[3.0, 2.0, 0.0, 0.0, 1.0]], seen={0: [4]})  # items 2 and 3 tie last
    second = Fixed([[0.0, 1.0, 2.0, 3.0, 4.0]])
    fused = serving.RankFusion(first, second, weight=0.5, k=1.0).score([0])[0]
    # after the seen item 4 leaves both lists: first ranks 1, 2, 3, 3; second 4, 3, 2, 1
    want = [1 / 2 + 0.5 / 5, 1 / 3 + 0.5 / 4, 1 / 4 + 0.5 / 3, 1 / 4 + 0.5 / 2]
    np.testing.assert_allclose(fused[:4], want, rtol=1e-6)
    assert np.isneginf(fused[4])
    assert fused[3] > fused[2]  # the tie in the first source is broken by the second
    alone = serving.RankFusion(first, second, weight=0.0).score([0])[0]
    assert list(np.argsort(-alone)[:2]) == [0, 1]  # weight 0: the first source's order
    with pytest.raises(ValueError, match="weight"):
        serving.RankFusion(first, second, weight=-1.0)


def test_tune_fusion_chooses_the_weight_that_validation_rewards():
    first = Fixed([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]], seen={0: [0], 1: []})
    second = Fixed([[0.0, 0.0, 0.0, 9.0], [0.0, 0.0, 9.0, 0.0]])
    valid = two_user_valid()
    w, table = serving.tune_fusion(first, second, valid, [0.0, 1.0, 2.0], k=1.0,
                                   metric="recall@1")
    assert table["metric"].tolist()[0] == 0.0  # the first source alone misses both
    assert w == 2.0 and table["metric"].max() == 1.0


def test_a_prior_passes_on_the_seen_items_so_a_merged_list_skips_them():
    base = Fixed([[0.9, 0.1, 0.5, 0.3]], seen={0: [0]})
    prior = serving.PopularityPrior(base, [3, 0, 1, 0], beta=0.1)
    assert prior.histories is base.histories
    merged = serving.MultiSource(prior, serving.ColdOnly(prior, [3, 0, 1, 0]), 0.5, depth=4)
    assert np.isneginf(merged.score([0])[0][0])  # the seen item takes no slot


def test_a_fusion_cut_at_depth_equals_one_fed_only_the_top_lists():
    live = Fixed([[0.1, 0.9, 0.3, 0.8, 0.5, 0.2]])  # its top 3: items 1, 3, 4
    top3 = Fixed([[-np.inf, 3.0, -np.inf, 2.0, 1.0, -np.inf]])  # the same list, stored
    first = Fixed([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]], seen={0: []})
    cut = serving.RankFusion(first, live, 1.0, depth=3).score([0])
    np.testing.assert_allclose(cut, serving.RankFusion(first, top3, 1.0, depth=3).score([0]))
    # beyond depth nothing votes: item 2 (first's 3rd, live's 4th) keeps the first's vote only
    np.testing.assert_allclose(cut[0, 2], 1 / 63, rtol=1e-6)
    full = serving.RankFusion(first, live, 1.0).score([0])
    assert full[0, 2] > cut[0, 2]  # uncut, the live source's 4th place still votes
    with pytest.raises(ValueError, match="depth"):
        serving.RankFusion(first, live, 1.0, depth=0)


def test_tune_prior_keeps_the_smallest_beta_that_validation_rewards():
    import pandas as pd

    from llmrec_lib import evaluate

    base = Fixed([[0.3, 0.2, 0.0]], seen={0: []})  # prefers item 0; the target is item 1
    valid = evaluate.EvalData.from_frames(
        targets=pd.DataFrame({"user_id": [0], "item_id": [11]}),
        history=pd.DataFrame({"user_id": [9], "item_id": [12]}),
        train=pd.DataFrame({"item_id": [11] * 9}),  # item 1 was rated 9 times, the others never
        item_ids=[10, 11, 12],
    )
    counts = valid.item_counts
    beta, table = serving.tune_prior(base, valid, counts, [0.0, 0.01, 0.1, 1.0], metric="recall@1")
    assert table["metric"].tolist() == [0.0, 0.0, 1.0, 1.0]  # 0.01 * log(10) is too small
    assert beta == 0.1  # the first value within tolerance of the best


def test_merges_remove_every_rated_movie_when_given_the_stages_exclusions():
    import pandas as pd

    from llmrec_lib import evaluate

    # user 0 liked item 4 (the source's histories) and rated item 0 without liking it
    first = Fixed([[5.0, 4.0, 3.0, 2.0, 1.0]], seen={0: [4]})
    second = Fixed([[5.0, 1.0, 2.0, 3.0, 4.0]])
    data = evaluate.EvalData.from_frames(
        targets=pd.DataFrame({"user_id": [0], "item_id": [12]}),
        history=pd.DataFrame({"user_id": [0, 0], "item_id": [10, 14]}),
        train=pd.DataFrame({"item_id": [10, 11]}),
        item_ids=[10, 11, 12, 13, 14],
    )
    plain = serving.RankFusion(first, second, 1.0, k=1.0).score([0])[0]
    fused = serving.RankFusion(first, second, 1.0, k=1.0, seen=data).score([0])[0]
    assert np.isfinite(plain[0]) and np.isneginf(fused[0]) and np.isneginf(fused[4])
    # item 0 no longer takes rank 1 in both sources: item 1 is first's 1st, second's 3rd
    np.testing.assert_allclose(fused[1], 1 / 2 + 1 / 4, rtol=1e-6)
    quota = serving.MultiSource(first, second, 0.5, depth=5, seen=data).score([0])[0]
    assert np.isneginf(quota[[0, 4]]).all() and np.isfinite(quota[[1, 2, 3]]).all()
    # users the data does not hold lose only their histories
    other = Fixed([[1.0, 2.0, 3.0, 4.0, 5.0]] * 2, seen={0: [4], 1: [0]})
    two = serving.RankFusion(other, other, 1.0, seen=data).score([0, 1])
    assert np.isneginf(two[1, 0]) and np.isfinite(two[1, 4])


def test_a_stored_list_merges_as_the_live_source_cut_at_its_depth(tmp_path):
    """StoredSource replays save_ranking's lists: fused with it, a fusion equals one fed the
    live source's own scores on those items only, and every item past the list scores -inf."""
    import pandas as pd

    from llmrec_lib import evaluate

    rng = np.random.default_rng(0)
    item_ids = np.arange(100, 112)
    live = Fixed(rng.normal(size=(3, 12)))
    data = evaluate.EvalData.from_frames(
        targets=pd.DataFrame({"user_id": [0, 1, 2], "item_id": [101, 105, 110]}),
        history=pd.DataFrame({"user_id": [0, 2], "item_id": [103, 111]}),
        train=pd.DataFrame({"item_id": item_ids}),
        item_ids=item_ids,
    )
    path = evaluate.save_ranking(
        evaluate.evaluate(live, data, ks=(5,)), item_ids, tmp_path / "r.npz"
    )
    stored = serving.StoredSource(evaluate.StoredRanking(path, item_ids), len(item_ids))
    users = np.array([0, 1, 2])
    s = stored.score(users)
    assert s.shape == (3, 12) and (np.isfinite(s).sum(axis=1) == 5).all()
    assert np.isneginf(s[0, 3]) and np.isneginf(s[2, 11])  # seen: never listed
    first = Fixed(rng.normal(size=(3, 12)), seen={0: [3], 1: [], 2: [11]})
    live_top5 = Fixed(np.where(np.isfinite(s), live.scores, -np.inf))
    want = serving.RankFusion(first, live_top5, 0.7, seen=data).score(users)
    got = serving.RankFusion(first, stored, 0.7, seen=data).score(users)
    assert not np.allclose(  # the check can fail: the live tail would have voted
        serving.RankFusion(first, live, 0.7, seen=data).score(users), got
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_stored_cut_check_sees_what_a_shorter_list_loses():
    import pandas as pd

    from llmrec_lib import evaluate

    n = 120
    item_ids = np.arange(1000, 1000 + n)
    first = Fixed([np.linspace(1.0, 0.0, n)], seen={0: []})  # item 59: first's 60th
    llm_scores = np.linspace(0.0, 1.0, n, dtype=np.float32)[None, :]  # item 119 first
    llm_scores[0, 59] = 0.999  # item 59: the LLM's 2nd
    llm = Fixed(llm_scores)
    data = evaluate.EvalData.from_frames(
        targets=pd.DataFrame({"user_id": [0], "item_id": [1059]}),
        history=pd.DataFrame({"user_id": [], "item_id": []}, dtype=np.int64),
        train=pd.DataFrame({"item_id": item_ids}),
        item_ids=item_ids,
    )
    fused = evaluate.evaluate(serving.RankFusion(first, llm, 1.0, seen=data), data, ks=(50,))
    assert fused.mean("recall@50") == 1.0  # the LLM's vote lifts item 59 into the top 50
    whole = serving.stored_cut_check(llm, first, 1.0, data, fused, depth=n)
    assert whole == {"same users": 1.0, "mean diff": 0.0}
    cut = serving.stored_cut_check(llm, first, 1.0, data, fused, depth=1)
    assert cut == {"same users": 0.0, "mean diff": -1.0}  # its 2nd place no longer votes


class Counting(Fixed):
    """A :class:`Fixed` system that counts how often it is asked to score."""

    calls = 0

    def score(self, user_ids):
        self.calls += 1
        return super().score(user_ids)


def test_cached_scores_each_batch_once_and_hands_out_copies():
    inner = Counting([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]], seen={0: [1]}, name="inner")
    cached = serving.Cached(inner, max_batches=2)
    first = cached.score([0, 1])
    first[0, 0] = -np.inf  # a caller writing into its copy changes nothing stored
    again = cached.score(np.array([0, 1]))
    assert inner.calls == 1 and cached.computed == 1 and again[0, 0] == 3.0
    assert cached.score([1, 0]).tolist() == [[0.0, 1.0, 2.0], [3.0, 2.0, 1.0]]  # new key
    assert inner.calls == 2
    cached.score([1])  # a third batch drops the oldest ([0, 1])
    cached.score([0, 1])
    assert inner.calls == 4
    assert cached.name == "inner" and cached.histories[0].tolist() == [1]
    with pytest.raises(ValueError, match="max_batches"):
        serving.Cached(inner, max_batches=0)


def test_tuning_a_blend_scores_each_source_once_per_batch():
    first = Counting([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]], seen={0: [0], 1: []})
    second = Counting([[0.0, 0.0, 0.0, 9.0], [0.0, 0.0, 9.0, 0.0]])
    valid = two_user_valid()
    serving.tune_fusion(first, second, valid, [0.0, 1.0, 2.0], k=1.0, metric="recall@1")
    serving.tune_share(first, second, valid, [0.0, 0.5, 1.0], metric="recall@1")
    assert (first.calls, second.calls) == (2, 2)  # once per tuning, not once per value


def test_multisource_breaks_ties_by_the_lower_column_and_never_places_minus_inf():
    first = Fixed([[1.0, 2.0, 2.0, -np.inf, 2.0]], seen={0: []})
    second = Fixed([[-np.inf, 5.0, -np.inf, 5.0, -np.inf]])
    scores = serving.MultiSource(first, second, 0.5, depth=3).score([0])[0]
    order = np.argsort(-scores, kind="stable")[: int(np.isfinite(scores).sum())]
    # slots alternate first, second, ...: first's tied 2s in column order (1, 2, 4), second's
    # tied 5s (1 placed already, then 3), then first fills the slots second cannot
    assert order.tolist() == [1, 3, 2, 4]
    assert scores[0] == -np.inf  # beyond first's top 3 and -inf in second: never placed


def test_fusions_that_share_votes_score_as_fusions_that_do_not():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (3, 12)).astype(np.float32)  # tied ranks
    b = rng.standard_normal((3, 12)).astype(np.float32)
    b[0, :5] = -np.inf
    first, second = Fixed(a, seen={0: [1], 1: [], 2: [3, 4]}), Fixed(b)
    shared: dict = {}
    for w in (0.0, 0.5, 2.0):
        alone = serving.RankFusion(first, second, w, k=1.0, depth=8)
        sharing = serving.RankFusion(first, second, w, k=1.0, depth=8)
        sharing.votes_cache = shared
        np.testing.assert_array_equal(sharing.score([0, 1, 2]), alone.score([0, 1, 2]))
    assert len(shared) == 1  # one batch, its votes computed once for all three weights


def test_targeted_serves_the_second_system_to_the_chosen_users_only():
    a = Fixed([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # row = user id
    b = Fixed(-a.scores)
    t = serving.Targeted(a, b, [2, 0, 99])
    np.testing.assert_array_equal(t.score(np.array([1, 2])), [[4.0, 5.0, 6.0], [-7.0, -8.0, -9.0]])
    np.testing.assert_array_equal(t.score(np.array([0])), [[-1.0, -2.0, -3.0]])
    with pytest.raises(ValueError, match="scores 2 items"):
        serving.Targeted(a, Fixed([[0.0, 0.0]]), [0]).score(np.array([0]))


def test_long_tail_share_counts_the_rarely_rated_movies_of_each_history():
    history = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2], "item_id": [5, 6, 7, 8, 5, 5]})
    counts = pd.Series({5: 100, 6: 3, 7: 0})  # 8 is missing: never rated, so 0
    share = serving.long_tail_share(history, counts, max_count=3)
    assert share.to_dict() == {1: 0.75, 2: 0.0}
    assert serving.long_tail_share(history, counts, max_count=2).loc[1] == 0.5
    with pytest.raises(ValueError, match="split.history"):
        serving.long_tail_share(history.rename(columns={"item_id": "movie"}), counts)
