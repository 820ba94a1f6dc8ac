"""Nested prefixes, truncation and PCA behave as their definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec_lib.compress import (
    PCAProjection,
    nested_dims,
    nested_prefixes_figure,
    smallest_dim_keeping,
    svd_vectors,
    truncate,
)


def test_nested_dims():
    assert nested_dims(576) == [576, 288, 144, 72, 36]
    assert nested_dims(64, 4) == [64, 32, 16]
    with pytest.raises(ValueError, match="divisible"):
        nested_dims(100, 16)
    with pytest.raises(ValueError, match="power of two"):
        nested_dims(96, 3)


def test_truncate_is_a_normalised_prefix():
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    t = truncate(x, 3)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(t * np.linalg.norm(x[:, :3], axis=1, keepdims=True), x[:, :3], rtol=1e-5)
    with pytest.raises(ValueError, match="d must be"):
        truncate(x, 9)
    with pytest.raises(ValueError, match="NaN"):
        truncate(np.full((2, 3), np.nan), 2)


def test_pca_finds_the_planted_subspace():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0][:, :2]  # a random 2-d plane in 16-d
    x = rng.normal(size=(500, 2)) @ basis.T * 5 + 0.01 * rng.normal(size=(500, 16)) + 3.0
    p = PCAProjection.fit(x, 2)
    assert p.explained.sum() > 0.99
    # the fitted directions span the planted plane
    np.testing.assert_allclose(np.linalg.svd(p.components @ basis)[1], 1, atol=1e-3)
    # inner products in the projection match those of the centred data, up to normalisation
    y = p.transform(x[:5])
    c = x[:5] - x.mean(0)
    ref = c / np.linalg.norm(c, axis=1, keepdims=True)
    np.testing.assert_allclose(y @ y.T, ref @ ref.T, atol=1e-3)
    with pytest.raises(ValueError, match="fitted on 16"):
        p.transform(x[:, :8])



def _hits(rng, n, p):
    return (rng.random(n) < p).astype(float)


def test_smallest_dim_keeping_takes_the_smallest_prefix_shown_to_keep_the_share():
    rng = np.random.default_rng(2)
    n = 4000
    full = _hits(rng, n, 0.5)
    # a prefix that flips 1% of the full dimension's hits off: keeps 99%, tightly measured
    keeps99 = full * (rng.random(n) > 0.01)
    # a prefix that loses a fifth of the hits: keeps 80%
    keeps80 = full * (rng.random(n) > 0.2)
    choice = smallest_dim_keeping({64: full, 32: keeps99, 16: keeps80}, keep=0.95, seed=0)
    assert choice.dim == 32 and choice.full == 64 and choice.fraction == 0.5
    t = choice.table
    assert list(t.index) == [64, 32, 16]
    assert t.loc[32, "share lo"] >= 0.95 and t.loc[16, "share hi"] < 0.95
    assert t["qualifies"].tolist() == [True, True, False]
    # the full dimension keeps exactly all of itself
    assert (t.loc[64, ["share", "share lo", "share hi"]] == 1).all()


def test_smallest_dim_keeping_does_not_reward_noise():
    rng = np.random.default_rng(3)
    n = 300
    full = _hits(rng, n, 0.3)
    # a noisy prefix with exactly the full dimension's mean (the same hits, dealt to other
    # users): its point estimate keeps 100%, but its interval reaches far below 95%.
    # "Not significantly worse" would take it; the rule must not
    noisy = rng.permutation(full)
    choice = smallest_dim_keeping({128: full, 8: noisy}, keep=0.95)
    assert choice.table.loc[8, "share"] == pytest.approx(1.0)
    assert choice.table.loc[8, "share lo"] < 0.95 < choice.table.loc[8, "share hi"]
    assert choice.dim == 128  # nothing smaller is shown to keep 95%: serve the full dimension


def test_smallest_dim_keeping_checks_its_input():
    x = np.ones(10)
    with pytest.raises(ValueError, match="share"):
        smallest_dim_keeping({8: x, 4: x}, keep=1.5)
    with pytest.raises(ValueError, match="same users"):
        smallest_dim_keeping({8: x, 4: x[:5]})
    with pytest.raises(ValueError, match="not positive"):
        smallest_dim_keeping({8: np.zeros(10), 4: x})
    with pytest.raises(ValueError, match="empty"):
        smallest_dim_keeping({})


def test_nested_prefixes_figure_draws_one_labelled_prefix_per_dimension():
    import matplotlib

    matplotlib.use("Agg")
    # weights follow their dimensions, in whatever order the dimensions come
    fig = nested_prefixes_figure([576, 36, 288, 72, 144], weights=[4, 1, 1, 1, 1])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if t.get_text().startswith("first")]
    # smallest prefix first, its share of the full vector, the normalised weight
    assert labels[0].startswith("first 36 (6%)") and labels[-1].startswith("first 576 (100%)")
    assert len(labels) == 5 and labels[-1].endswith("weight 0.50")
    # the bar, drawn to scale: one segment per nested prefix, the new coordinates it adds
    assert [p.get_width() for p in ax.patches] == [36, 36, 72, 144, 288]
    with pytest.raises(ValueError, match="one weight"):
        nested_prefixes_figure([8, 4], weights=[1])


def test_svd_vectors_are_nested_and_fold_in_new_users():
    import pandas as pd

    # two tastes: users 0-9 watch items 0-4, users 10-19 items 5-9; item 10 nobody watched
    pairs = [(u, i) for u in range(10) for i in range(5)]
    pairs += [(u, i) for u in range(10, 20) for i in range(5, 10)]
    pairs += [(u, 0) for u in range(10, 13)]  # a little overlap, so the values differ
    train = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    history = pd.DataFrame({"user_id": [100, 100, 101], "item_id": [1, 2, 7]})
    users, items = svd_vectors(train, history, [100, 101, 102], np.arange(11), dim=4)
    assert users.shape == (3, 4) and items.shape == (11, 4)
    assert users.dtype == items.dtype == np.float32
    norms = np.linalg.norm(items, axis=0)  # column j of V S has norm s_j: decreasing
    assert (np.diff(norms) <= 1e-5).all() and norms[0] > 0
    np.testing.assert_allclose(items[10], 0, atol=1e-6)  # an unwatched item: no signal
    np.testing.assert_allclose(users[2], 0, atol=1e-6)  # user 102 has no history
    scores = users[:2] @ items.T  # a new user of each taste prefers its own items
    assert scores[0, :5].min() > scores[0, 5:10].max()
    assert scores[1, 5:10].min() > scores[1, 1:5].max()
    again, _ = svd_vectors(train, history, [100, 101, 102], np.arange(11), dim=4)
    np.testing.assert_array_equal(users, again)  # signs fixed: the same vectors
    with pytest.raises(ValueError, match="dim must be"):
        svd_vectors(train, history, [100], np.arange(11), dim=12)
    with pytest.raises(ValueError, match="not in item_ids"):
        svd_vectors(train, history, [100], np.arange(5), dim=2)
