"""Chapter 07's ranking head: soft labels, count features, the softmax fit and its choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import recgpt as R
from llmrec_lib.recgpt import head as H

CATS = R.TAG_CATEGORIES
ITAGS = pd.Series({
    1: ["90s animation"], 2: ["family animation"], 3: ["90s sci-fi"], 4: ["action sci-fi"], 5: ["90s drama"],
    6: ["70s western"], 7: [],
})
BASE = pd.Series({"Drama": 0.5, "Comedy": 0.3, "Western": 0.2})
TUNED = {"last": 50, "half_life": 2.0, "shrink": 1.0}


def test_category_shares_are_the_window_hr_at_k_scores():
    y = H.category_shares([[1, 2, 3, 7], [7], [6, 6]], ITAGS)
    assert y.shape == (3, len(CATS))
    assert y[0, CATS.index("Animation")] == pytest.approx(2 / 3)  # item 7 has no category
    assert y[0, CATS.index("Sci-Fi")] == pytest.approx(1 / 3)
    assert (y[1] == 0).all()  # nothing to learn from: an all-zero row
    assert y[2, CATS.index("Western")] == 1.0


def test_category_scores_rank_as_weighted_tags_do():
    items = [3, 4, 1, 6, 6, 5, 2]
    for knobs in ({}, {"half_life": 1.5}, {"shrink": 2.0}, {"last": 3, "half_life": 0.5, "shrink": 0.1}):
        s = R.category_scores(items, ITAGS, BASE, **knobs)
        top = [R.tag_category(t) for t in R.weighted_tags(items, ITAGS, BASE, n=len(s), **knobs)]
        assert [s[c] for c in top] == sorted(s.values(), reverse=True), knobs
    assert R.category_scores([6, 5], ITAGS, BASE, last=1) == {"Drama": 1.0}
    with pytest.raises(ValueError, match="last"):
        R.category_scores([1], ITAGS, BASE, last=0)


def test_count_features_are_the_prompts_three_summaries_and_the_history_length():
    liked = [1, 3, 4, 6, 5]
    x = H.count_features([liked, []], ITAGS, BASE, summary_last=50, recent_last=2, tuned=TUNED)
    c = len(CATS)
    assert x.shape == (2, 3 * c + 1)
    first, recent, tuned = x[0, :c], x[0, c : 2 * c], x[0, 2 * c : 3 * c]
    assert first[CATS.index("Sci-Fi")] == pytest.approx(2 / 5)
    assert recent[CATS.index("Western")] == recent[CATS.index("Drama")] == 0.5  # the last 2 likes
    want = R.category_scores(liked, ITAGS, BASE, **TUNED)
    assert tuned[CATS.index("Drama")] == pytest.approx(want["Drama"] / sum(want.values()))
    assert x[0, -1] == pytest.approx(np.log(6)) and x[1, -1] == 0.0
    assert (x[1, : 2 * c] == 0).all() and x[1, 2 * c : 3 * c].sum() == pytest.approx(1.0)  # prior only
    with pytest.raises(ValueError, match="TUNED_RULE"):
        H.count_features([liked], ITAGS, BASE)


def _toy(n=400, seed=0):
    """Features whose first column decides between two categories; the rest is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = np.zeros((n, len(CATS)))
    y[x[:, 0] > 0, CATS.index("Western")] = 0.8
    y[x[:, 0] <= 0, CATS.index("Horror")] = 0.8
    y[:, CATS.index("Drama")] = 0.2
    return x, y


def test_fit_learns_the_signal_deterministically_and_the_penalty_shrinks_it():
    x, y = _toy()
    h = H.fit(x, y, 0.01)
    again = H.fit(x, y, 0.01)
    assert np.array_equal(h.weight, again.weight) and np.array_equal(h.bias, again.bias)
    tags = h.tags(np.array([[2.0, 0, 0, 0, 0], [-2.0, 0, 0, 0, 0]]), n=2)
    assert tags == [["western", "drama"], ["horror", "drama"]]
    assert [R.tag_category(t) for t in tags[0]] == ["Western", "Drama"]
    xv, yv = _toy(seed=1)
    assert H.cross_entropy(h, xv, yv) < 0.8 * np.log(len(CATS))  # far better than uniform
    assert np.abs(H.fit(x, y, 1.0).weight).sum() < np.abs(h.weight).sum()
    assert np.allclose(h.probs(xv).sum(1), 1.0)


def test_fit_and_cross_entropy_refuse_bad_input():
    x, y = _toy(20)
    with pytest.raises(ValueError, match="rows"):
        H.fit(x, y[:, :3], 0.1)
    with pytest.raises(ValueError, match="rows"):
        H.fit(x[:5], y, 0.1)
    with pytest.raises(ValueError, match="l2"):
        H.fit(x, y, 0.0)
    with pytest.raises(ValueError, match="no row"):
        H.cross_entropy(H.fit(x, y, 0.1), x, np.zeros_like(y))


def test_choose_keeps_the_strongest_penalty_within_the_tolerance():
    x, y = _toy()
    xv, yv = _toy(seed=1)
    best, table = H.choose(x, y, xv, yv, grid=(10.0, 0.01, 0.001), tol=0.0)
    assert list(table.columns) == ["l2", "chosen", "cross_entropy"]
    assert table["chosen"].sum() == 1
    assert best.l2 == table.loc[table["cross_entropy"].idxmin(), "l2"] != 10.0
    lenient, _ = H.choose(x, y, xv, yv, grid=(10.0, 0.01, 0.001), tol=10.0)
    assert lenient.l2 == 10.0  # every penalty ties: the first, the strongest, wins
