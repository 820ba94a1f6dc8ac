"""Serving-time pieces: popularity prior, multi-source lists, the validation choice rule."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec_lib import serving


class Fixed:
    """A stand-in system with fixed scores and one seen item per user."""

    def __init__(self, scores, seen=None, name="fixed"):
        self.scores, self.name = np.asarray(scores, dtype=np.float32), name
        self.histories = {u: np.asarray(s, dtype=np.int64) for u, s in (seen or {}).items()}

    def score(self, user_ids):
        return self.scores[np.asarray(user_ids)]


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
