"""The A/B readout: Holm's adjustment, lifts that match hand computation, segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import abtest
from llmrec_lib.evaluate import MatrixScorer, evaluate
from tests.test_evaluate import random_data


def test_holm_against_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> running max 0.09, 0.5*1=0.5
    np.testing.assert_allclose(abtest.holm(p), [0.04, 0.09, 0.09, 0.5])
    assert abtest.holm([0.9, 0.9])[0] == 1.0  # capped at 1
    with pytest.raises(ValueError, match="probabilities"):
        abtest.holm([0.1, 1.5])


def _arms():
    data = random_data(n_users=80, seed=5)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(data.n_users, data.n_items)).astype(np.float32)
    truth = np.zeros_like(noise)
    for u, cols in enumerate(data.targets):
        truth[u, cols] = 1.0
    results = {
        "control": evaluate(
            MatrixScorer(noise, data.user_ids), data, ks=(10,), name="control"
        ),
        "oracle-ish": evaluate(
            MatrixScorer(noise + 3 * truth, data.user_ids), data, ks=(10,), name="o"
        ),
        "same": evaluate(
            MatrixScorer(noise, data.user_ids), data, ks=(10,), name="same"
        ),
    }
    return data, results


def test_readout_lifts_and_verdicts():
    data, results = _arms()
    t = abtest.readout(results, "control", "recall@10", n_boot=300)
    c = results["control"].mean("recall@10")
    o = results["oracle-ish"].mean("recall@10")
    assert t.loc["oracle-ish", "lift"] == pytest.approx(o - c)
    assert t.loc["oracle-ish", "relative lift"] == pytest.approx((o - c) / c)
    assert t.loc["oracle-ish", "verdict"] == "better"
    assert (
        t.loc["same", "lift"] == 0
        and t.loc["same", "verdict"] == "no detectable difference"
    )
    assert t.loc["control", "verdict"] == "control"
    assert (t["p (Holm)"].dropna() >= t["p"].dropna()).all()
    with pytest.raises(KeyError, match="control"):
        abtest.readout(results, "nope")


def test_segments_partition_users_and_targets():
    data, results = _arms()
    import pandas as pd

    # a fake training log: item popularity = column index (higher column, more ratings)
    cols = np.repeat(np.arange(data.n_items), np.arange(data.n_items) % 7)
    train = pd.DataFrame({"item_id": data.item_ids[cols]})
    seg = abtest.segment_masks(data, train, popular_share=0.2)
    short, long_ = seg["short history"]["users"], seg["long history"]["users"]
    assert len(short) + len(long_) == data.n_users and not set(short) & set(long_)
    pop, tail = seg["popular targets"]["targets"], seg["tail targets"]["targets"]
    assert (pop ^ tail).all()
    table = abtest.segment_table(
        results,
        {k: v for k, v in seg.items() if k != "cold targets"},
        "recall@10",
        n_boot=100,
    )
    assert set(table["segment"]) == {
        "short history",
        "long history",
        "popular targets",
        "tail targets",
    }
    assert table["mean"].between(0, 1).all()


# ---------------------------------------------------------------------------------------
# Power, ratio intervals, guardrails, interleaving
# ---------------------------------------------------------------------------------------


def _detect_rate(lift, sd, n, n_sims, seed, alpha=0.05):
    """Share of simulated paired experiments (n users, per-user differences ~ N(lift, sd)) in
    which a two-sided z-test with the sample SD rejects at alpha."""
    from statistics import NormalDist

    rng = np.random.default_rng(seed)
    d = rng.normal(lift, sd, size=(n_sims, n))
    z = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(n))
    return float((np.abs(z) > NormalDist().inv_cdf(1 - alpha / 2)).mean())


def test_mde_planted_lift_is_detected_80_percent_of_the_time():
    sd, n, sims = 0.3, 400, 4000
    m = abtest.mde(sd=sd, n=n)
    assert m == pytest.approx((1.959964 + 0.841621) * sd / np.sqrt(n), rel=1e-5)
    # 4000 simulations: SE of a rate near 0.8 is 0.0063; 0.025 is about 4 SE
    assert _detect_rate(m, sd, n, sims, seed=1) == pytest.approx(0.80, abs=0.025)
    half = _detect_rate(
        m / 2, sd, n, sims, seed=2
    )  # theory: Phi(2.80 / 2 - 1.96) = 0.29
    assert half == pytest.approx(0.29, abs=0.03) and half < 0.4
    # with 5 comparisons at alpha / 5 (Holm's first step), the larger MDE again gives 80%
    m5 = abtest.mde(sd=sd, n=n, n_comparisons=5)
    assert m5 > m
    assert _detect_rate(m5, sd, n, sims, seed=3, alpha=0.05 / 5) == pytest.approx(
        0.80, abs=0.025
    )
    # from the differences themselves, and its inverse
    d = np.random.default_rng(4).normal(0.0, sd, size=n)
    assert abtest.mde(d) == pytest.approx(abtest.mde(sd=d.std(ddof=1), n=n))
    assert abtest.users_needed(m, sd) == pytest.approx(n, rel=1e-9)
    assert abtest.users_needed(0.0, sd) == float("inf")
    with pytest.raises(ValueError):
        abtest.mde(d, sd=1.0, n=3)
    # from a reported 95% interval: half-width = 1.96 SE, so MDE = 2.80 / 1.96 * half-width
    se = sd / np.sqrt(n)
    assert abtest.mde_from_interval(-1.959964 * se, 1.959964 * se) == pytest.approx(
        m, rel=1e-5
    )


def test_mde_holds_for_the_paired_bootstrap_the_readout_uses():
    from llmrec_lib.metrics import paired_bootstrap

    sd, n, sims = 0.3, 300, 300
    m = abtest.mde(sd=sd, n=n)
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(sims):
        d = rng.normal(m, sd, size=n)
        hits += paired_bootstrap(d, np.zeros(n), n_boot=400, seed=i).p_value < 0.05
    assert hits / sims == pytest.approx(
        0.80, abs=0.08
    )  # 300 sims: SE 0.023, tolerance ~3.5 SE


def test_simulated_power_matches_the_formula():
    v = np.random.default_rng(0).normal(0.05, 0.5, size=5000)
    n = int(round(abtest.users_needed(v.mean(), v.std(ddof=1))))
    assert abtest.simulated_power(v, n, n_sims=2000, seed=1) == pytest.approx(
        0.80, abs=0.035
    )
    assert (
        abtest.simulated_power(v, n // 4, n_sims=2000, seed=2) < 0.45
    )  # half the effect's worth


def test_ratio_bootstrap_agrees_with_the_delta_method_on_a_large_sample():
    rng = np.random.default_rng(0)
    n = 10_000
    c = rng.gamma(2.0, 0.1, size=n)
    t = 1.1 * c + rng.normal(0, 0.15, size=n)  # correlated arms, a true ratio near 1.1
    boot = abtest.ratio_bootstrap(t, c, n_boot=1500, seed=0)
    delta = abtest.ratio_delta_interval(t, c)
    assert (
        boot.mean == pytest.approx(t.mean() / c.mean() - 1) == pytest.approx(delta.mean)
    )
    width = delta.hi - delta.lo
    assert (
        abs(boot.lo - delta.lo) < 0.1 * width and abs(boot.hi - delta.hi) < 0.1 * width
    )
    assert boot.lo < 0.1 < boot.hi
    # identical arms: every resample's ratio is exactly 1
    assert abtest.ratio_bootstrap(c, c, n_boot=200) == (0.0, 0.0, 0.0)


def test_ratio_interval_is_wider_than_the_naive_one_when_the_control_is_noisy():
    from llmrec_lib.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    n = 500
    c = rng.exponential(0.05, size=n) * (
        rng.random(n) < 0.3
    )  # a small, noisy control mean
    t = rng.exponential(0.10, size=n) * (
        rng.random(n) < 0.3
    )  # independent arm, double the mean
    ratio = abtest.ratio_bootstrap(t, c, n_boot=2000, seed=0)
    p = paired_bootstrap(t, c, n_boot=2000, seed=0)
    naive = (p.lo / c.mean(), p.hi / c.mean())  # ignores the denominator's variance
    assert ratio.hi - ratio.lo > 1.3 * (naive[1] - naive[0])
    delta = abtest.ratio_delta_interval(t, c)
    assert ratio.hi - ratio.lo > delta.hi - delta.lo - 0.2 * (
        naive[1] - naive[0]
    )  # and skewed upward
    assert ratio.hi - ratio.mean > ratio.mean - ratio.lo


def test_readout_relative_interval_is_the_ratio_bootstrap_and_mde_is_reported():
    data, results = _arms()
    t = abtest.readout(results, "control", "recall@10", n_boot=300, seed=3)
    c = results["control"].per_user["recall@10"].to_numpy()
    o = results["oracle-ish"].per_user["recall@10"].to_numpy()
    r = abtest.ratio_bootstrap(o, c, n_boot=300, seed=3)
    assert (
        t.loc["oracle-ish", "relative lo"],
        t.loc["oracle-ish", "relative hi"],
    ) == pytest.approx((r.lo, r.hi))
    assert t.loc["oracle-ish", "MDE"] == pytest.approx(
        abtest.mde(o - c, n_comparisons=2)
    )
    assert t.loc["oracle-ish", "relative MDE"] == pytest.approx(
        t.loc["oracle-ish", "MDE"] / c.mean()
    )
    assert (
        t.loc["same", "MDE"] == 0
    )  # identical lists: zero variance, nothing to detect
    assert np.isnan(t.loc["control", "MDE"])


def test_genre_entropy_by_hand():
    from llmrec_lib.metrics import genre_entropy

    g = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    topk = np.array([[0, 0 + 1, -1], [0, 3, -1], [3, -1, -1], [2, 1, 0]])
    h = genre_entropy(topk, g)
    assert h[0] == pytest.approx(1.0)  # one item of each of two genres
    assert h[1] == pytest.approx(0.0)  # one genre; the genreless item adds nothing
    assert np.isnan(h[2])  # no genre at all: undefined
    # [2] gives 0.5/0.5, [1] gives genre 1, [0] genre 0: mass 1.5 / 1.5 -> 1 bit
    assert h[3] == pytest.approx(1.0)
    assert genre_entropy(topk, g, k=1)[3] == pytest.approx(
        1.0
    )  # a two-genre item alone
    with pytest.raises(ValueError):
        genre_entropy(topk, g * 2)


def test_guardrails_and_slot_shares():
    data, results = _arms()
    rng = np.random.default_rng(0)
    genres = (rng.random((data.n_items, 4)) < 0.4).astype(int)
    g = abtest.guardrails(results, genres, k=10, n_boot=100)
    assert list(g.index) == list(results)
    from llmrec_lib import metrics as M

    c = results["control"]
    assert g.loc["control", "coverage@10"] == pytest.approx(
        M.coverage(c.topk, data.n_items, 10)
    )
    assert g.loc["control", "novelty@10"] == pytest.approx(
        np.nanmean(M.novelty(c.topk, c.item_counts, 10))
    )
    assert g.loc["same", "genre entropy@10"] == g.loc["control", "genre entropy@10"]
    assert (g["genre entropy@10"] <= np.log2(4) + 1e-9).all()
    is_pop = np.zeros(data.n_items, dtype=bool)
    is_pop[: data.n_items // 2] = True
    sh = abtest.slot_shares(results, {"popular": is_pop, "tail": ~is_pop}, k=10)
    np.testing.assert_allclose(sh.sum(axis=1), 1.0)
    manual = is_pop[c.topk[:, :10][c.topk[:, :10] >= 0]].mean()
    assert sh.loc["control", "popular"] == pytest.approx(manual)


def test_list_overlap_by_hand():
    data, results = _arms()
    c, o = results["control"], results["oracle-ish"]
    assert (
        abtest.list_overlap(results["same"], c, k=10) == 1.0
    )  # same scores, same lists
    by_hand = np.mean(
        [len(set(x[:10]) & set(y[:10])) / 10 for x, y in zip(o.topk, c.topk)]
    )
    assert abtest.list_overlap(o, c, k=10) == pytest.approx(by_hand)
    assert 0 < by_hand < 1  # the planted targets move some slots, not all
    fewer = evaluate(
        MatrixScorer(np.zeros((3, data.n_items), np.float32), data.user_ids[:3]),
        data.subset(data.user_ids[:3]),
        ks=(10,),
        name="few",
    )
    with pytest.raises(ValueError, match="different users"):
        abtest.list_overlap(fewer, c, k=10)


def test_segment_readout_applies_one_holm_over_segments_and_arms():
    data, results = _arms()
    half = data.user_ids[: data.n_users // 2]
    segs = {
        "first half": {"users": half},
        "second half": {"users": data.user_ids[data.n_users // 2 :]},
    }
    t = abtest.segment_readout(results, segs, "control", "recall@10", n_boot=200)
    assert len(t) == 2 * 2  # segments x non-control arms
    np.testing.assert_allclose(t["p (Holm)"], abtest.holm(t["p"]))
    assert (t[t["arm"] == "oracle-ish"]["verdict"] == "better").all()
    assert (
        t[t["arm"] == "same"]["verdict"] == abtest.IDENTICAL
    ).all()  # an identity is not a null result
    part = results["oracle-ish"].segment(users=half)
    assert t.iloc[0]["mean"] == pytest.approx(part.mean("recall@10"))


def test_team_draft_alternates_and_never_repeats():
    rng = np.random.default_rng(0)
    items, team = abtest.team_draft([1, 2, 3, 4], [2, 5, 1, 6], 6, rng)
    assert len(set(items.tolist())) == len(items) == 6
    assert abs(int((team == 0).sum()) - int((team == 1).sum())) <= 1
    # each team's items appear in its own list's order
    for t, src in ((0, [1, 2, 3, 4]), (1, [2, 5, 1, 6])):
        pos = [src.index(i) for i in items[team == t]]
        assert pos == sorted(pos)
    # one list runs out: the other fills the rest; -1 slots are skipped
    items, team = abtest.team_draft([7, -1], [8, 9, 10], 4, np.random.default_rng(1))
    assert sorted(items.tolist()) == [7, 8, 9, 10]
    # the coin is fair: a first pick goes to each team about half the time
    first = [abtest.team_draft([1], [2], 1, rng)[1][0] for _ in range(2000)]
    assert np.mean(first) == pytest.approx(0.5, abs=0.04)


def test_sign_test_by_hand():
    assert abtest.sign_test(0, 0) == 1.0
    assert abtest.sign_test(5, 0) == pytest.approx(2 / 32)
    assert abtest.sign_test(3, 3) == 1.0
    assert (
        abtest.sign_test(10, 2)
        == abtest.sign_test(2, 10)
        == pytest.approx(2 * 79 / 4096)
    )


def test_interleaving_finds_the_strictly_better_arm():
    rng = np.random.default_rng(0)
    n, n_items, k = 400, 200, 10
    targets = [rng.choice(n_items, size=3, replace=False) for _ in range(n)]
    better, worse = [], []
    for u in range(n):
        rest = np.setdiff1d(rng.permutation(n_items), targets[u])
        rng.shuffle(rest)
        hit = targets[u][: 1 + (u % 2)]  # the better arm puts 1-2 targets at the top
        better.append(np.concatenate([hit, rest[: k - len(hit)]]))
        worse.append(
            rng.permutation(rest)[:k]
        )  # the worse arm never retrieves a target
    r = abtest.interleave(
        np.array(better), np.array(worse), targets, k, seed=0, n_boot=300
    )
    assert r.share_b == 0 and r.share_a > 0.9 and r.p_sign < 1e-6 and r.lo > 0.8
    assert r.share_a + r.share_b + r.share_ties == pytest.approx(1.0)
    swapped = abtest.interleave(
        np.array(worse), np.array(better), targets, k, seed=0, n_boot=300
    )
    assert swapped.share_b == pytest.approx(r.share_a)
    same = abtest.interleave(
        np.array(better), np.array(better), targets, k, seed=0, n_boot=300
    )
    assert (
        same.lo <= 0 <= same.hi
    )  # identical arms: no preference beyond coin-flip noise
    again = abtest.interleave(
        np.array(better), np.array(better), targets, k, seed=0, n_boot=300
    )
    np.testing.assert_array_equal(same.outcome, again.outcome)  # seeded


def test_interleave_results_on_evaluated_arms():
    data, results = _arms()
    r = abtest.interleave_results(
        results["oracle-ish"], results["control"], data, k=10, n_boot=200
    )
    assert r.n == data.n_users and r.delta > 0 and r.lo > 0


def test_t_quantile_matches_tables():
    assert abtest.t_quantile(0.975, 2) == pytest.approx(4.303, abs=2e-3)
    assert abtest.t_quantile(0.975, 10) == pytest.approx(2.228, abs=2e-3)
    assert abtest.t_quantile(0.975, 1e6) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        abtest.t_quantile(0.975, 0)


def test_seed_aware_diff_covers_when_seeds_vary():
    """Planted lift 0.02; each trained model's mean shifts by seed noise (SD 0.02). The
    seed-aware interval covers the truth about 95% of the time; the user-only interval,
    blind to seeds, covers far less."""
    rng = np.random.default_rng(0)
    n, k, lift = 400, 3, 0.02
    cover, cover_users = 0, 0
    sims = 300
    for _ in range(sims):
        base = rng.uniform(0.1, 0.5, n)
        control = (base + rng.normal(0, 0.1, n))[None, :]
        shifts = rng.normal(0, 0.02, k)[:, None]
        treat = base + lift + shifts + rng.normal(0, 0.1, (k, n))
        r = abtest.seed_aware_diff(treat, control)
        cover += r.lo <= lift <= r.hi
        half = 1.96 * r.se_users
        cover_users += r.mean_diff - half <= lift <= r.mean_diff + half
        assert r.se > r.se_users and r.seed_sd_control == 0
    assert 0.90 <= cover / sims <= 0.995, cover / sims
    assert cover_users / sims < 0.8, cover_users / sims


def test_seed_aware_diff_with_one_seed_is_the_paired_interval():
    rng = np.random.default_rng(1)
    t, c = rng.normal(0.3, 0.1, 500), rng.normal(0.28, 0.1, 500)
    r = abtest.seed_aware_diff(t, c)
    assert r.se_seeds == 0 and r.se == pytest.approx(
        np.std(t - c, ddof=1) / np.sqrt(500)
    )
    assert r.lo == pytest.approx(r.mean_diff - 1.965 * r.se, abs=2e-3 * r.se + 1e-6)
    with pytest.raises(ValueError, match="same users"):
        abtest.seed_aware_diff(t[None, :10], c[None, :11])


def test_check_arms_and_ledger_row_skip_only_off_the_reference():
    from llmrec_lib import config

    other = config.Claims("09", reference=False)
    assert abtest.check_arms(
        other, {"a"}, ["a"], "a holds", lambda: True, detail=lambda: "d"
    )
    assert abtest.check_arms(other, {"a"}, ["a", "b"], "b holds", lambda: 1 / 0) is None
    row = abtest.ledger_row(
        other, "X", "c", lambda: (abtest.need(None, "chapter 03"), "v")
    )
    assert row == (
        "X",
        "c",
        "not available: chapter 03 is not on this data",
        "not tested on this data",
    )
    assert (
        abtest.ledger_row(other, "X", "d", lambda: ({}["k"], "v"))[3]
        == "not tested on this data"
    )
    assert abtest.ledger_row(other, "X", "e", lambda: ("ev", "ok")) == (
        "X",
        "e",
        "ev",
        "ok",
    )
    table = other.table()
    assert list(table["holds here"]) == [
        "yes",
        "not tested",
        "not tested",
        "not tested",
    ]
    assert "arm not in this readout: b" in table["detail"][1]
    with pytest.raises(ZeroDivisionError):  # a real error is not a missing input
        abtest.ledger_row(other, "X", "f", lambda: (1 / 0, "v"))

    ref = config.Claims("09", reference=True)
    with pytest.raises(AssertionError, match="skipped on the reference"):
        abtest.check_arms(ref, {"a"}, ["b"], "b holds", lambda: True)
    with pytest.raises(abtest.NotOnThisData):
        abtest.ledger_row(ref, "X", "c", lambda: (abtest.need(None, "chapter 03"), "v"))


def test_check_arms_keeps_the_kind_of_a_skipped_claim():
    from llmrec_lib import config

    other = config.Claims("09", reference=False)
    abtest.check_arms(other, set(), ["a"], "a mechanic", lambda: True, pinned=False)
    assert other.table()["kind"].tolist() == ["mechanic"]


def test_seed_aware_vs_aligns_each_seed_to_the_controls_users():
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    users = np.arange(50)
    control = rng.random(50)
    seeds = [control + 0.1 + 0.01 * k + rng.normal(0, 0.02, 50) for k in range(3)]
    frame = lambda v, order: SimpleNamespace(  # noqa: E731
        per_user=pd.DataFrame({"user_id": users[order], "recall@50": v[order]})
    )
    shuffled = [frame(s, rng.permutation(50)) for s in seeds]  # rows in another order
    means, got = abtest.seed_aware_vs(shuffled, frame(control, users))
    want = abtest.seed_aware_diff(np.stack(seeds), control)
    assert np.allclose(means, [s.mean() for s in seeds])
    assert got == want
