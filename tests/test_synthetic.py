"""The synthetic world: seeded, and its planted interests are visible in its clicks."""

from __future__ import annotations

import numpy as np

from llmrec_lib import data, synthetic


def test_builds_deterministically():
    # how fast it builds is a benchmark's question, not a unit test's: a timed assert failed
    # on a busy 2-core CI machine (1.1 s)
    a = synthetic.make_world(seed=1)
    b = synthetic.make_world(seed=1)
    assert a.ml.ratings.equals(b.ml.ratings)
    assert a.user_interests == b.user_interests
    c = synthetic.make_world(seed=2)
    assert not a.ml.ratings.equals(c.ml.ratings)


def test_clicks_follow_planted_interests(world):
    imp = world.impressions
    topic = imp["item_id"].map(world.item_topic)
    in_interest = np.array([t in world.user_interests[u] for u, t in zip(imp["user_id"], topic)])
    ctr_in = imp["clicked"][in_interest].mean()
    ctr_out = imp["clicked"][~in_interest].mean()
    assert ctr_in > 0.5 and ctr_out < 0.06


def test_world_flows_through_the_split(world):
    s = data.per_user_split(world.ml.ratings)
    assert len(s.users("test")) > 100
    # impressions without a click are the seen-but-disliked ratings
    assert set(world.ml.ratings["rating"].unique()) == {1.0, 5.0}
    assert (world.ml.ratings["rating"] <= data.NEGATIVE_MAX).sum() == (~world.impressions["clicked"]).sum()
    assert world.ml.movies["genres"].map(len).min() >= 1


def test_interest_precision_counts_planted_topics():
    from llmrec_lib.synthetic import make_world

    w = make_world(n_users=5, n_items=40, seed=1)
    u = 1
    mine = set(w.user_interests[u])
    on = [i for i, t in w.item_topic.items() if t in mine][:3]
    off = [i for i, t in w.item_topic.items() if t not in mine][:1]
    top = np.array([on + off + [-1]])
    np.testing.assert_allclose(w.interest_precision([u], top, 4), [0.75])
    np.testing.assert_allclose(w.interest_precision([u], top, 5), [0.6])  # an empty slot is a miss
